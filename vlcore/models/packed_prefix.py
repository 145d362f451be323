"""Teacher forcing of several texts per image behind one prefix: the texts packed together.

A training batch of the captioners holds several texts per image (captions, a styled caption,
questions: ``image_index`` says whose). A prefix captioner (:mod:`vlcore.models.
captioner_clip_prefix`) puts the image's prefix in front of every one of them, so the
decoder computes the same prefix positions once per text, and the padding of every short
text to the longest. With GIT's prefix (every patch token, 64 of them) that is most of its
work.

In a causal decoder the prefix never sees the text that follows it, so its states are the
same for every text of the image. Here each image is one sequence: its prefix, then the real
tokens of each of its texts one after the other (no padding between them)::

    [prefix_1 .. prefix_P] [text 1 ...] [text 2 ...] [text 3 ...]   (pad to the longest image)

An attention mask keeps each text to the prefix and its own earlier tokens, and each text's
positions start after the prefix as they did alone, so every text token sees what it saw
before: the logits are those of the texts one by one, up to the order of floating-point sums
(``tests/test_packed_prefix.py``). Texts must be padded on the right (as the collate and the
self-critical samples are).

Shapes: prefix ``B P E``, texts ``S L``, ``image_index`` ``S``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel


@dataclass(frozen=True)
class PackedLayout:
    """Where each real text token sits in the packed sequences, and how they attend."""

    text: torch.Tensor  # S L: True at a text's real tokens
    row: torch.Tensor  # N: the packed sequence (image) of each real token, in text order
    column: torch.Tensor  # N: its position in that sequence
    positions: torch.Tensor  # B T: position ids (each text restarts after the prefix)
    allowed: torch.Tensor  # B 1 T T: query i may attend to key k


def pack_layout(
    attention_mask: torch.Tensor, image_index: torch.Tensor, n_prefix: int, n_images: int
) -> PackedLayout:
    """The layout of :func:`packed_text_logits` for texts ``attention_mask`` (``S L``,
    right-padded) about images ``image_index`` behind prefixes of ``n_prefix`` embeddings."""
    text = attention_mask.bool()
    n_texts, width = text.shape
    lengths = text.sum(dim=1)
    steps = torch.arange(width, device=text.device)
    if not torch.equal(text, steps < lengths.unsqueeze(1)):
        raise ValueError("packed texts must be padded on the right (attention_mask 1s first)")
    # each text starts after the prefix and the real tokens of its image's earlier texts
    same_image = image_index.unsqueeze(0) == image_index.unsqueeze(1)
    before = same_image.tril(diagonal=-1).to(lengths.dtype) @ lengths
    per_image = torch.zeros(n_images, dtype=lengths.dtype, device=text.device)
    per_image.index_add_(0, image_index, lengths)
    total = n_prefix + int(per_image.max()) if n_texts else n_prefix
    token_text, token_step = text.nonzero(as_tuple=True)  # in text order, then step order
    row = image_index[token_text]
    column = n_prefix + before[token_text] + token_step
    # segment 0: the prefix; s + 1: text s; -1: padding at the end of a short image
    segment = torch.full((n_images, total), -1, dtype=torch.long, device=text.device)
    segment[:, :n_prefix] = 0
    segment[row, column] = token_text + 1
    positions = torch.zeros((n_images, total), dtype=torch.long, device=text.device)
    positions[:, :n_prefix] = torch.arange(n_prefix, device=text.device)
    positions[row, column] = n_prefix + token_step
    key = segment.unsqueeze(1)  # B 1 T
    query = segment.unsqueeze(2)  # B T 1
    causal = torch.ones(total, total, dtype=torch.bool, device=text.device).tril()
    # padding rows see the prefix (never an empty row); their outputs are dropped
    allowed = causal & ((key == 0) | (key == query))
    return PackedLayout(text, row, column, positions, allowed.unsqueeze(1))


def packed_text_logits(
    decoder: PreTrainedModel,
    prefix: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    image_index: torch.Tensor,
) -> torch.Tensor:
    """Next-token logits ``S L V`` of the texts, each behind its image's ``prefix``, from one
    decoder pass over the packed sequences (0 at padding, whose labels are ignored)."""
    n_images, n_prefix, _ = prefix.shape
    layout = pack_layout(attention_mask, image_index, n_prefix, n_images)
    tokens = decoder.get_input_embeddings()(input_ids[layout.text])
    embeds = tokens.new_zeros(n_images, layout.positions.shape[1], tokens.shape[-1])
    embeds[:, :n_prefix] = prefix.to(tokens.dtype)
    embeds[layout.row, layout.column] = tokens
    mask = layout.allowed
    if decoder.config._attn_implementation == "eager":  # adds the mask to the scores
        mask = torch.zeros(mask.shape, dtype=embeds.dtype, device=embeds.device).masked_fill(
            ~mask, torch.finfo(embeds.dtype).min
        )
    hidden = decoder.base_model(
        inputs_embeds=embeds,
        attention_mask=mask,
        position_ids=layout.positions,
        use_cache=False,
    ).last_hidden_state
    logits = decoder.get_output_embeddings()(hidden[layout.row, layout.column])
    out = logits.new_zeros(*input_ids.shape, logits.shape[-1])
    out[layout.text] = logits
    return out
