"""Caption tokenization before scoring: the COCO PTB tokenizer for English, segmenters for Chinese.

English follows ``pycocoevalcap.eval.COCOEvalCap`` (Chen et al., "Microsoft COCO Captions:
Data Collection and Evaluation Server", 2015): the Stanford PTBTokenizer (CoreNLP 3.4.1, Java,
``-preserveLines -lowerCase``), then 17 punctuation tokens are dropped. It is run through
pycocoevalcap's own ``PTBTokenizer`` class, once for references and predictions together (each
line is tokenized independently, so this equals COCOEvalCap's two calls).

Chinese is not segmented by the PTB tokenizer. Two common choices are offered, and which one was
used must be reported next to every score (they give very different numbers):

- ``"jieba"``: word segmentation with jieba's default dictionary, HMM off (the dictionary
  route is deterministic; the HMM for unknown words is what varies between setups), as in the
  AI Challenger caption evaluation;
- ``"char"``: every CJK character is a token; runs of other letters or digits stay together.

Both first apply NFKC (full-width letters and digits become ASCII), turn Unicode punctuation
into spaces (the counterpart of the PTB punctuation removal), segment, lower-case the tokens
and join them with single spaces.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections.abc import Hashable, Mapping, Sequence
from typing import Literal

logger = logging.getLogger(__name__)

Segmenter = Literal["jieba", "char"]
SEGMENTERS: tuple[str, ...] = ("jieba", "char")

PTB_DESCRIPTION = (
    "Stanford PTBTokenizer (CoreNLP 3.4.1 via pycocoevalcap, lower-cased, 17 punctuation tokens "
    "dropped), as COCOEvalCap"
)
SEGMENTER_DESCRIPTIONS = {
    "jieba": "jieba {version} word segmentation (default dictionary, HMM off), NFKC, "
    "punctuation dropped, lower-cased, joined by spaces",
    "char": "character segmentation (one token per CJK character, other letter/digit runs "
    "kept whole), NFKC, punctuation dropped, lower-cased, joined by spaces",
}

# Everything str.splitlines() treats as a line break. Java's -preserveLines splits on some of
# these too, which would shift every later caption onto the wrong image; they become spaces.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_CJK = (
    "\u2e80-\u2fdf\u3005\u3007\u3021-\u3029\u3038-\u303b\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\U00020000-\U0002ffff\U00030000-\U0003134f"
)
_CHAR_TOKENS = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")

Captions = Mapping[Hashable, Sequence[str]]


def ptb_tokenize(captions: Captions) -> dict[Hashable, list[str]]:
    """Tokenize ``id -> [caption, ...]`` with pycocoevalcap's PTBTokenizer (needs ``java``)."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    flat = {
        key: [{"caption": _LINE_BREAKS.sub(" ", caption)} for caption in texts]
        for key, texts in captions.items()
    }
    try:
        tokenized = PTBTokenizer().tokenize(flat)
    except FileNotFoundError as err:
        raise RuntimeError("PTBTokenizer needs `java` (>= 8) on PATH; none was found") from err
    # PTBTokenizer pairs output lines with ids by position; a lost line would shift them.
    for key, texts in captions.items():
        if len(tokenized.get(key, ())) != len(texts):
            raise RuntimeError(
                f"PTBTokenizer returned {len(tokenized.get(key, ()))} caption(s) for {key!r}, "
                f"expected {len(texts)}: did the java tokenizer fail?"
            )
    return {key: tokenized[key] for key in captions}


@functools.cache
def _jieba_tokenizer():
    import jieba

    # A private instance: words others add to jieba's global dictionary cannot change ours.
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer


def jieba_version() -> str:
    import jieba

    return str(getattr(jieba, "__version__", "unknown"))


def _strip_punctuation(text: str) -> str:
    return "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)


def segment_chinese(text: str, segmenter: Segmenter = "jieba") -> str:
    """One Chinese caption as space-separated tokens, by ``segmenter`` (``jieba`` or ``char``)."""
    if segmenter not in SEGMENTERS:
        raise ValueError(f"segmenter must be one of {SEGMENTERS}, got {segmenter!r}")
    text = _strip_punctuation(unicodedata.normalize("NFKC", text))
    if segmenter == "jieba":
        tokens = _jieba_tokenizer().lcut(text, HMM=False)
    else:
        tokens = _CHAR_TOKENS.findall(text)
    return " ".join(token.lower() for token in (t.strip() for t in tokens) if token)


def segment_captions(
    captions: Captions, segmenter: Segmenter = "jieba"
) -> dict[Hashable, list[str]]:
    """Segment ``id -> [caption, ...]`` (Chinese) into space-separated tokens."""
    return {
        key: [segment_chinese(caption, segmenter) for caption in texts]
        for key, texts in captions.items()
    }


def describe(lang: str, segmenter: str | None) -> str:
    """The tokenization recorded next to the scores."""
    if lang == "en":
        return PTB_DESCRIPTION
    description = SEGMENTER_DESCRIPTIONS[segmenter]
    return description.format(version=jieba_version()) if segmenter == "jieba" else description
