"""Entry point of ``train_tokenizer``: a text tokenizer from the experiment's training text."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from vlcore.data.shard import read_split
from vlcore.text import VQA_SEP_TOKEN, TokenizerConfig, style_token, train_tokenizer

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("captions", "styled_captions", "questions")


def training_texts(rows: list[dict[str, Any]]) -> Iterator[str]:
    """Every text a model will read or write: captions, styled captions, questions, answers."""
    for row in rows:
        yield from row["captions"]
        for styled in row["styled_captions"]:
            yield styled["caption"]
        for question in row["questions"]:
            yield question["question"]
            yield from question["answers"]


def styles_of(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({s["style"] for row in rows for s in row["styled_captions"]})


def train(shards_dir: str, settings: dict[str, Any], lang: str, out_dir: str) -> None:
    """Train (or, for ``kind: pretrained``, copy) the tokenizer into ``out_dir``.

    Style tokens (``<style:Happy>`` ...) for every style in the training split and the VQA
    separator are added as special tokens, so every model of the experiment shares their ids.
    """
    rows = read_split(shards_dir, "train", columns=TEXT_COLUMNS)
    if not rows:
        raise ValueError(
            f"the train split of {shards_dir} is empty: nothing to train a tokenizer on"
        )
    config = TokenizerConfig.from_dict({**settings, "lang": lang})
    extra = [style_token(s) for s in styles_of(rows)] + [VQA_SEP_TOKEN]
    tokenizer = train_tokenizer(training_texts(rows), config, out_dir, extra_special_tokens=extra)
    logger.info(
        "tokenizer: %d tokens (%s, %s), extra tokens %s", len(tokenizer), config.kind, lang, extra
    )
