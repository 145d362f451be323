"""Word segmentation for caption metrics (BLEU, CIDEr and friends count words).

English splits into words and punctuation. Chinese has no spaces, so it is segmented either
into characters (``method="char"``, with Latin words and numbers kept whole) or into words
with jieba's dictionary (``method="jieba"``; HMM discovery of new words is off, so the same
text always gives the same words). Join the result with spaces before handing it to
pycocoevalcap's scorers.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Literal

from vlcore.text.cjk import CJK_CHAR_CLASS

METHODS = ("jieba", "char")

_NUMBER = r"\d+(?:[.,]\d+)*"
_EN_TOKEN = re.compile(rf"{_NUMBER}|[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_", re.UNICODE)
_ZH_CHAR_TOKEN = re.compile(
    rf"{CJK_CHAR_CLASS}|{_NUMBER}|(?:(?!{CJK_CHAR_CLASS})[^\W_])+|[^\w\s]|_", re.UNICODE
)


@functools.cache
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it announces loading its dictionary otherwise
    return jieba.Tokenizer()


def segment(
    text: str, lang: Literal["en", "zh"], method: Literal["jieba", "char"] = "jieba"
) -> list[str]:
    """Split ``text`` into words for scoring; whitespace is dropped.

    >>> segment("A red circle, top-left.", "en")
    ['A', 'red', 'circle', ',', 'top', '-', 'left', '.']
    >>> segment("图片里有3个red圆形", "zh", method="char")
    ['图', '片', '里', '有', '3', '个', 'red', '圆', '形']

    ``method`` only matters for Chinese; English is always split into words and punctuation.
    """
    if method not in METHODS:
        raise ValueError(f"segmentation method {method!r} is unknown; expected one of {METHODS}")
    if lang == "en":
        return _EN_TOKEN.findall(text)
    if lang != "zh":
        raise ValueError(f"segmentation lang {lang!r} is unknown; expected 'en' or 'zh'")
    if method == "char":
        return _ZH_CHAR_TOKEN.findall(text)
    return [w for w in (w.strip() for w in _jieba().lcut(text, HMM=False)) if w]
