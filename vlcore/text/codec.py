"""Captions to padded id tensors and back, the same way for every tokenizer the trainers use.

Every sequence is ``<bos> tokens <eos> <pad>...``: padding on the right, and truncation drops
tokens from the end of the text but always keeps ``<eos>``, so a captioner still learns where
captions stop. This is built here rather than left to each tokenizer's post-processor, so a
pretrained GPT-2 (which adds no bos/eos of its own) behaves like the tokenizers we train.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from transformers import PreTrainedTokenizerBase

from vlcore.text.cjk import join_cjk


def _require(tokenizer: PreTrainedTokenizerBase, *names: str) -> list[int]:
    ids = [getattr(tokenizer, f"{name}_token_id") for name in names]
    missing = [name for name, i in zip(names, ids, strict=True) if i is None]
    if missing:
        raise ValueError(
            f"tokenizer {tokenizer.name_or_path!r} has no {', '.join(missing)} token; "
            "load it with vlcore.text.load_tokenizer, which adds them"
        )
    return ids


def _truncated_bodies(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], budget: int
) -> list[list[int]]:
    """Token ids of each text, at most ``budget`` of them, never ending inside a character.

    Byte-level BPE spells a character it has not learnt as several byte tokens (three for
    most Chinese characters); cutting between them would leave half a character.
    """
    if not texts:
        return []
    enc = tokenizer(
        texts,
        add_special_tokens=False,
        truncation=True,
        max_length=budget + 1,  # one more, to see whether the cut splits a character
        padding=False,
        return_offsets_mapping=True,
    )
    bodies = []
    for ids, offsets in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        cut = min(len(ids), budget)
        # the first dropped token starts before the last kept one ends: same character
        while 0 < cut < len(ids) and offsets[cut][0] < offsets[cut - 1][1]:
            cut -= 1
        bodies.append(list(ids[:cut]))
    return bodies


def encode_batch(
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    max_length: int,
    *,
    padding: Literal["max_length", "longest"] = "max_length",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode ``texts`` as ``<bos> ... <eos>``, right-padded and truncated to ``max_length``.

    Returns ``(input_ids, attention_mask)``, both LongTensor ``[B, T]``; ``T`` is
    ``max_length`` (``padding="max_length"``, fixed shapes) or the longest sequence of the
    batch (``padding="longest"``). ``attention_mask`` is 1 on tokens (bos and eos included)
    and 0 on padding.
    """
    if isinstance(texts, str):
        raise ValueError("encode_batch takes a list of texts, not a single string")
    texts = list(texts)
    if max_length < 3:
        raise ValueError(f"max_length {max_length} must be >= 3 (<bos>, a token, <eos>)")
    if padding not in ("max_length", "longest"):
        raise ValueError(f"padding {padding!r} is unknown; expected 'max_length' or 'longest'")
    bos, eos, pad = _require(tokenizer, "bos", "eos", "pad")
    rows = [[bos, *body, eos] for body in _truncated_bodies(tokenizer, texts, max_length - 2)]
    width = max_length if padding == "max_length" else max((len(r) for r in rows), default=2)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


def _decoder_spaces_tokens(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether decoding puts spaces between tokens (WordPiece, BERT) rather than gluing bytes."""
    probe = tokenizer.encode("一一", add_special_tokens=False)
    text = tokenizer.decode(probe, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return " " in text.strip()


def decode_batch(
    tokenizer: PreTrainedTokenizerBase,
    ids: torch.Tensor | Sequence[Sequence[int]],
    *,
    skip_special_tokens: bool = True,
) -> list[str]:
    """Decode rows of ids (``[B, T]``) into texts.

    Each row loses a leading ``<bos>``, is cut at the first ``<eos>`` (generated tokens after
    it are ignored) and loses padding. ``skip_special_tokens`` then drops the other special
    tokens (style tokens, ``<sep>``, ``<unk>``); with ``False`` they are kept in the text, e.g.
    ``"<style:Happy>a red circle"``. Where the tokenizer's decoder puts spaces between tokens
    (WordPiece), spaces between two Chinese characters are removed. Texts are stripped of
    outer whitespace and of trailing replacement characters (a byte-level generation that
    stopped halfway through a character).
    """
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 2:
            raise ValueError(f"decode_batch expects ids of shape [B, T], got {tuple(ids.shape)}")
        rows = ids.tolist()
    else:
        rows = [list(row) for row in ids]
    bos, eos, pad = _require(tokenizer, "bos", "eos", "pad")
    join = _decoder_spaces_tokens(tokenizer)
    texts = []
    for row in rows:
        if row and row[0] == bos:
            row = row[1:]
        if eos in row:
            row = row[: row.index(eos)]
        row = [i for i in row if i != pad]
        text = tokenizer.decode(
            row, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False
        )
        if join:
            text = join_cjk(text)
        # a generation cut off inside a character ends in undecodable bytes
        texts.append(text.strip().rstrip("\ufffd"))
    return texts
