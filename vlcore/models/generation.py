"""The text side shared by both captioners: sequence formats, the GPT-2 decoder, the token loss,
and decoding (beam search for captions, greedy for VQA answers, both through Hugging Face
``generate`` with the KV cache).

Every captioner sees its text as one decoder sequence, after the image (cross-attended by
ViT-GPT2, or a prefix of embeddings for CLIP-prefix)::

    caption        <bos> [<style:Happy>] a red circle in the top left <eos>
    VQA answer     <bos> question: how many shapes are there? answer: 2 <eos>

The style token is there only for styled captions (neutral captions have none); the loss
covers the caption (or answer) tokens and ``<eos>``, never ``<bos>``, the style token or the
question. At inference the same prompt (``<bos>`` [+ style], or ``<bos>`` + question) is given
and the model continues it. Answers are decoded greedily (they are one or two tokens); captions
by beam search with length normalisation (score = log p / length ** ``length_penalty``, as in
Wu et al.'s GNMT, 2016; transformers' implementation), ``num_beams`` wide, optionally
forbidding repeated n-grams (``no_repeat_ngram_size``). Decoding is deterministic: no sampling
anywhere, and prompts are batched by length, so no padding ever enters a prompt.

Both captioner classes implement ``generate_tokens(pixel_values, prompt_ids, **kwargs)``
returning only the new tokens (``[B, T]``); the functions here batch, bucket and decode.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from vlcore.text import decode_batch, style_token

logger = logging.getLogger(__name__)

#: The default VQA prompt; ``{question}`` is replaced by the question text.
VQA_PROMPT = "question: {question} answer:"
#: Label of a token that carries no loss (bos, style token, question, padding).
IGNORE = -100
_STYLE_RE = re.compile(r"^<style:([^\s>]+)>$")


@dataclass
class DecodingConfig:
    """How captions and answers are decoded (the ``generate:`` section of a captioner)."""

    num_beams: int = 4  # beam width for captions (1 = greedy)
    max_new_tokens: int = 32  # longest caption, in tokens after the prompt
    length_penalty: float = 1.0  # beam score = log p / length**length_penalty (> 0: longer)
    no_repeat_ngram_size: int = 0  # forbid repeating any n-gram of this size (0: off)
    batch_size: int = 64  # images (or questions) per generate call
    answer_max_new_tokens: int = 6  # longest VQA answer, in tokens (greedy decoding)

    def __post_init__(self) -> None:
        for name in ("num_beams", "max_new_tokens", "batch_size", "answer_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"generate.{name} must be >= 1, got {getattr(self, name)}")
        if self.no_repeat_ngram_size < 0:
            raise ValueError(
                f"generate.no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DecodingConfig:
        values = dict(values or {})
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(
                f"unknown generate option(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**values)

    def beam_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``generate`` for captions (deterministic beam search)."""
        return {
            "num_beams": self.num_beams,
            "max_new_tokens": self.max_new_tokens,
            "length_penalty": self.length_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "early_stopping": True,
            "do_sample": False,
        }

    def greedy_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``generate`` for VQA answers (greedy)."""
        return {"num_beams": 1, "max_new_tokens": self.answer_max_new_tokens, "do_sample": False}


# -- prompt formats -------------------------------------------------------------------------


def styles_of(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The styles a tokenizer has tokens for (``<style:Happy>`` -> ``Happy``), sorted."""
    found = (_STYLE_RE.match(token) for token in tokenizer.get_vocab())
    return sorted(m.group(1) for m in found if m)


def style_token_id(tokenizer: PreTrainedTokenizerBase, style: str) -> int:
    """The id of ``<style:{style}>``; ``ValueError`` naming the known styles if it has none."""
    token = style_token(style)
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        known = styles_of(tokenizer)
        raise ValueError(
            f"style {style!r} is unknown to this captioner; it was trained with styles "
            f"{known or 'none (the data had no styled captions)'}"
        )
    return token_id


def caption_prompt(tokenizer: PreTrainedTokenizerBase, style: str | None = None) -> list[int]:
    """``<bos>``, then the style token when ``style`` is given: what a caption continues."""
    prompt = [tokenizer.bos_token_id]
    if style is not None:
        prompt.append(style_token_id(tokenizer, style))
    return prompt


def text_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of ``text`` without any special token added."""
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def question_prompt(
    tokenizer: PreTrainedTokenizerBase, question: str, template: str = VQA_PROMPT
) -> list[int]:
    """``<bos> question: {question} answer:`` as ids: what an answer continues."""
    return [tokenizer.bos_token_id, *text_ids(tokenizer, template.format(question=question))]


def keep_prompt_end(prompt: list[int], length: int | None) -> list[int]:
    """``prompt`` cut to at most ``length`` tokens the way training cuts a question's: its
    ``<bos>`` and the end of the rest (None: as it is)."""
    if length is None or len(prompt) <= length:
        return prompt
    return [prompt[0], *prompt[1:][len(prompt) - max(length, 1) :]]


def answer_ids(tokenizer: PreTrainedTokenizerBase, answer: str) -> list[int]:
    """The answer's tokens (after a space, as it follows ``answer:``) and ``<eos>``."""
    return [*text_ids(tokenizer, " " + answer.strip()), tokenizer.eos_token_id]


# -- the text decoder -----------------------------------------------------------------------


@dataclass(frozen=True)
class TextIds:
    """The tokenizer facts a decoder needs."""

    vocab_size: int  # len(tokenizer), special and style tokens included
    bos: int
    eos: int
    pad: int

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase) -> TextIds:
        return cls(
            len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
        )


def from_pretrained(loader, name: str, what: str, **kwargs) -> PreTrainedModel:
    """``loader.from_pretrained(name)`` with an error that says what to do when offline."""
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as err:
        raise OSError(
            f"could not load the pretrained {what} {name!r}: {err}. Offline (HF_HUB_OFFLINE=1) "
            "a hub name loads only from the local cache; point the option at a local folder "
            "saved with save_pretrained, or go online once."
        ) from err


def text_decoder(
    text: TextIds,
    config: Mapping[str, Any] | None = None,
    pretrained: str | None = None,
    *,
    cross_attention: bool = False,
) -> PreTrainedModel:
    """A causal LM over the experiment's vocabulary: GPT-2 built from ``config`` (GPT2Config
    fields, random init) or the ``pretrained`` one (hub name or local folder), resized to
    ``text.vocab_size``, with bos/eos/pad wired to the tokenizer. ``cross_attention`` adds a
    cross-attention block to every layer (randomly initialised in a pretrained model)."""
    extra = {"add_cross_attention": True, "is_decoder": True} if cross_attention else {}
    ids = {"bos_token_id": text.bos, "eos_token_id": text.eos, "pad_token_id": text.pad}
    if pretrained is not None:
        # Set the cross-attention switches on the config, not as from_pretrained kwargs:
        # transformers 5 passes unknown kwargs on to the model's __init__.
        decoder_config = from_pretrained(AutoConfig, pretrained, "decoder config")
        for key, value in extra.items():
            setattr(decoder_config, key, value)
        decoder = from_pretrained(
            AutoModelForCausalLM, pretrained, "decoder", config=decoder_config
        )
        old = decoder.get_input_embeddings().num_embeddings
        if old != text.vocab_size:
            if text.vocab_size < old:
                logger.warning(
                    "the tokenizer has %d tokens but the pretrained decoder %s has %d: is the "
                    "experiment's tokenizer the decoder's own (tokenizer kind: pretrained)?",
                    text.vocab_size,
                    pretrained,
                    old,
                )
            decoder.resize_token_embeddings(text.vocab_size)
        for key, value in ids.items():
            setattr(decoder.config, key, value)
            setattr(decoder.generation_config, key, value)
        return decoder
    values = {"model_type": "gpt2", **dict(config or {}), **extra, **ids}
    values["vocab_size"] = text.vocab_size
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(**values))


def decoder_from_config(config: Mapping[str, Any]) -> PreTrainedModel:
    """Rebuild a decoder from its saved ``config.to_dict()`` (random init; no hub access)."""
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))


def sequence_losses(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Per-token cross-entropy of next-token ``logits`` (``S L V``) against ``labels``
    (``S L``, aligned with the input ids; -100 = no loss): ``S L-1``, 0 where ignored.
    Position ``t`` scores the prediction of token ``t+1``."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    out = torch.zeros(targets.shape, dtype=torch.float32, device=logits.device)
    out[keep] = F.cross_entropy(
        logits[:, :-1][keep].float(),
        targets[keep],
        reduction="none",
        label_smoothing=label_smoothing,
    )
    return out


class TeacherForcedCaptioner(nn.Module):
    """What the captioners share: ``forward`` is the per-token cross-entropy of
    ``text_logits``, which each captioner defines (the image read its own way)."""

    def text_logits(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_index: torch.Tensor,
    ) -> torch.Tensor:
        """Next-token logits ``S L V`` of the texts ``input_ids`` (``S L``), text ``s`` about
        image ``image_index[s]`` of ``pixel_values``."""
        raise NotImplementedError

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_index: torch.Tensor,
        labels: torch.Tensor,
        label_smoothing: float = 0.0,
    ) -> torch.Tensor:
        """Per-token cross-entropy ``S L-1`` (0 where ``labels`` is -100); see
        :func:`sequence_losses`."""
        logits = self.text_logits(pixel_values, input_ids, attention_mask, image_index)
        return sequence_losses(logits, labels, label_smoothing)


# -- decoding -------------------------------------------------------------------------------


def _buckets(prompts: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices grouped by prompt length (no padding, so batching never changes a result),
    then cut into batches of at most ``batch_size``; order: by length, then by index."""
    by_length: dict[int, list[int]] = {}
    for i, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(i)
    batches = []
    for length in sorted(by_length):
        idx = by_length[length]
        batches += [idx[k : k + batch_size] for k in range(0, len(idx), batch_size)]
    return batches


@torch.no_grad()
def generate_texts(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    images: torch.Tensor,
    prompts: Sequence[Sequence[int]],
    generate_kwargs: Mapping[str, Any],
    batch_size: int,
    image_index: Sequence[int] | None = None,
) -> list[str]:
    """Continue ``prompts[i]`` for image ``images[image_index[i]]`` and decode the new tokens.

    ``images``: ``[N, 3, H, W]`` in [0, 1] (moved to the model's device batch by batch);
    ``image_index`` defaults to ``range(len(prompts))``. Prompts of equal length are batched
    together, so no result ever depends on padding.
    """
    if image_index is None:
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images but {len(prompts)} prompts")
        image_index = range(len(prompts))
    elif len(image_index) != len(prompts):
        raise ValueError(f"got {len(image_index)} image indices but {len(prompts)} prompts")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    texts: list[str] = [""] * len(prompts)
    try:
        for idx in _buckets(prompts, batch_size):
            pixel_values = images[[image_index[i] for i in idx]].to(device)
            prompt_ids = torch.tensor([list(prompts[i]) for i in idx], device=device)
            new_tokens = model.generate_tokens(pixel_values, prompt_ids, **generate_kwargs)
            for i, text in zip(idx, decode_batch(tokenizer, new_tokens.cpu()), strict=True):
                texts[i] = text
    finally:
        model.train(was_training)
    return texts


def caption_images(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    images: torch.Tensor,
    config: DecodingConfig,
    style: str | None = None,
) -> list[str]:
    """One beam-search caption per image (``images``: ``[N, 3, H, W]`` in [0, 1])."""
    prompt = caption_prompt(tokenizer, style)
    return generate_texts(
        model, tokenizer, images, [prompt] * len(images), config.beam_kwargs(), config.batch_size
    )


def answer_image_questions(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    images: torch.Tensor,
    questions: Sequence[str],
    image_index: Sequence[int],
    config: DecodingConfig,
    template: str = VQA_PROMPT,
    max_length: int | None = None,
) -> list[str]:
    """One greedy answer per question; ``questions[i]`` is about ``images[image_index[i]]``.
    ``max_length``: the longest text the model was trained on; a longer prompt loses the
    start of its question as it did in training, leaving room for the answer."""
    room = None if max_length is None else max_length - config.answer_max_new_tokens
    prompts = [keep_prompt_end(question_prompt(tokenizer, q, template), room) for q in questions]
    return generate_texts(
        model,
        tokenizer,
        images,
        prompts,
        config.greedy_kwargs(),
        config.batch_size,
        image_index=image_index,
    )
