"""Cross-attention that reads each image's encoder states once, however many texts it has.

A training batch of the captioners holds several texts per image (captions, a styled caption,
questions: ``image_index`` says whose). Handing the decoder the encoder states repeated per
text makes every cross-attention layer project the same keys and values once per text, and
copy them through attention and its backward: four times the work and memory for four texts
an image.

Cross-attention has no mask, so the texts of one image may as well be one long query: this
attention stacks each image's texts along the query axis (``B H m*L D``, ``m`` the most texts
any image has; missing texts are zero rows whose output is dropped) and attends once to the
image's own keys and values. Each query row sees the same keys as before, so the logits are
the same (to the bit in fp32 on CPU; ``tests/test_cross_attention.py``).

It is a Hugging Face attention implementation (``PER_IMAGE``), registered with transformers'
``AttentionInterface``. A layer uses it while it holds the batch's ``image_index``
(:func:`set_image_index`); otherwise (generation, where the states are already per sequence)
it is plain ``sdpa``. Only GPT-2 decoders take it (:func:`use_per_image_attention`): their
cross-attention projects keys and values from the states it is given, which is what lets the
states stay per image. While torch.compile traces the decoder it gets the states per text
(:func:`uses_per_image_attention`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

PER_IMAGE = "vlcore_sdpa_per_image"


def per_image_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """``sdpa``, except in a cross-attention layer given the batch's ``image_index`` by
    :func:`set_image_index`: there ``query`` is ``S H L D`` (texts) and ``key``/``value``
    ``B H K D`` (images). Returns ``S L H D``, as transformers' attention functions do."""
    slots = getattr(module, "vlcore_slots", None)
    if slots is None or query.shape[0] == key.shape[0]:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if attention_mask is not None:
        raise ValueError("per-image cross-attention takes no encoder attention mask")
    _, heads, length, width = query.shape
    images = key.shape[0]
    slot, most = slots
    stacked = query.new_zeros(images * most, heads, length, width).index_copy(0, slot, query)
    stacked = stacked.view(images, most, heads, length, width).transpose(1, 2)
    out = F.scaled_dot_product_attention(
        stacked.reshape(images, heads, most * length, width),
        key,
        value,
        dropout_p=dropout,
        scale=scaling,
    )
    out = out.view(images, heads, most, length, width).transpose(1, 2)
    out = out.reshape(images * most, heads, length, width)[slot]
    return out.transpose(1, 2).contiguous(), None


def _slots(image_index: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Each text's row in the stacked query (``image * most + its rank among the image's
    texts``, in their order) and ``most``, the most texts of one image."""
    same_image = image_index.unsqueeze(0) == image_index.unsqueeze(1)
    rank = same_image.tril(diagonal=-1).sum(dim=1)  # earlier texts of the same image
    most = int(rank.max()) + 1
    return image_index * most + rank, most


AttentionInterface.register(PER_IMAGE, per_image_attention)
AttentionMaskInterface.register(PER_IMAGE, sdpa_mask)  # its self-attention masks are sdpa's


def _cross_attention_layers(decoder: PreTrainedModel) -> list[torch.nn.Module]:
    return [block.crossattention for block in decoder.transformer.h]


def use_per_image_attention(decoder: PreTrainedModel) -> bool:
    """Switch a GPT-2 decoder with cross-attention from ``sdpa`` to :data:`PER_IMAGE`
    (anything else is left as it is); returns whether the decoder now uses it."""
    config = decoder.config
    if config.model_type != "gpt2" or not getattr(config, "add_cross_attention", False):
        return False
    if config._attn_implementation not in ("sdpa", PER_IMAGE):
        return False  # eager (or another kernel) asked for on purpose: keep it
    decoder.set_attn_implementation(PER_IMAGE)
    return True


def uses_per_image_attention(decoder: PreTrainedModel) -> bool:
    """Whether to hand ``decoder`` its encoder states per image. Not while torch.compile
    traces it: the stacking's size depends on the data (a graph break), and a graph break
    inside the CPU's bf16 attention mode (``vlcore/train/runtime.py``) derails the traced
    decoder; compiled, the decoder gets the states per text, which computes the same."""
    return decoder.config._attn_implementation == PER_IMAGE and not torch.compiler.is_compiling()


def set_image_index(decoder: PreTrainedModel, image_index: torch.Tensor | None) -> None:
    """Tell the decoder's cross-attention layers that the encoder states they get next are
    per image (``B K D``), for texts ``S`` about images ``image_index``; None: per text
    again. Each text's row in the stacked query is worked out here, once for all layers."""
    slots = None if image_index is None else _slots(image_index)
    for layer in _cross_attention_layers(decoder):
        layer.vlcore_slots = slots
