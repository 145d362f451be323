"""Captions -> the fixed-length id tensors a CLIP text tower reads.

Two kinds, one interface (``tokenizer(texts) -> LongTensor [B, context_length]``):

- :class:`CaptionTokenizer`: the experiment's own tokenizer folder (:mod:`vlcore.text`), for
  models trained from scratch (the presets). Rows are ``<bos> tokens <eos> <pad>...``; the
  text tower pools at the first ``<eos>`` (``pool_type="eos"``), so it never depends on
  ``<eos>`` being the largest id, as open_clip's ``argmax`` pooling does.
- :class:`OpenClipTokenizer`: open_clip's own tokenizer of a pretrained model
  (``open_clip.get_tokenizer``: its BPE, or the Hugging Face tokenizer the model names).

``reference()`` is what a saved model records, so :func:`vlcore.models.clip.load_clip` can
rebuild the same tokenizer from the model folder alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import open_clip
import torch

from vlcore.text import encode_batch, load_tokenizer

#: model_max_length values above this mean "unset" in Hugging Face tokenizers.
_MAX_SANE_LENGTH = 4096
#: context length used when neither the preset nor the tokenizer names one (open_clip's).
DEFAULT_CONTEXT_LENGTH = 77


def tokenizer_context_length(tokenizer: Any) -> int:
    """The caption length a tokenizer folder was made for (``TokenizerConfig.max_length``)."""
    length = getattr(tokenizer, "model_max_length", None)
    if not isinstance(length, int) or length < 3 or length > _MAX_SANE_LENGTH:
        return DEFAULT_CONTEXT_LENGTH
    return length


class CaptionTokenizer:
    """The experiment's tokenizer folder, as fixed-length CLIP inputs.

    Args:
        path: a tokenizer folder written by :func:`vlcore.text.train_tokenizer`.
        context_length: ids per caption, ``<bos>`` and ``<eos>`` included; captions are cut
            (keeping ``<eos>``) or right-padded with ``<pad>`` to this length.

    When a tokenizer uses one id for both ``<bos>`` and ``<eos>`` (GPT-2's
    ``<|endoftext|>``), the leading ``<bos>`` is dropped so that the first ``<eos>`` (where
    the text tower pools) is the one that ends the caption.
    """

    kind = "vlcore"

    def __init__(self, path: str | os.PathLike, context_length: int | None = None):
        self.path = Path(path)
        self.tokenizer = load_tokenizer(self.path)
        self.context_length = context_length or tokenizer_context_length(self.tokenizer)
        if self.context_length < 3:
            raise ValueError(f"context_length {self.context_length} must be >= 3")
        self.drop_bos = self.tokenizer.bos_token_id == self.tokenizer.eos_token_id

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)  # added tokens (style tokens, <sep>) included

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    def __call__(self, texts: Iterable[str]) -> torch.Tensor:
        ids, _ = encode_batch(self.tokenizer, list(texts), self.context_length + self.drop_bos)
        return ids[:, 1:].contiguous() if self.drop_bos else ids

    def reference(self) -> dict[str, Any]:
        return {"kind": self.kind, "context_length": self.context_length}


class OpenClipTokenizer:
    """open_clip's tokenizer for a model name, ``local-dir:`` folder or ``hf-hub:`` repo."""

    kind = "open_clip"

    def __init__(self, model_name: str, context_length: int | None = None):
        self.model_name = model_name
        self.tokenizer = open_clip.get_tokenizer(model_name, context_length=context_length)
        self.context_length = int(self.tokenizer.context_length)

    def __call__(self, texts: Iterable[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).long()

    def reference(self) -> dict[str, Any]:
        return {"kind": self.kind, "context_length": self.context_length}


ClipTokenizer = CaptionTokenizer | OpenClipTokenizer
