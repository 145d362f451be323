"""CJK character classes shared by the tokenizer, the batch decoder and the segmenter.

Chinese is written without spaces, so two decisions hinge on recognising its characters:
byte-level BPE must see each ideograph as its own pre-token (otherwise whole sentences
merge into single tokens), and decoders that glue tokens with spaces (WordPiece, BERT)
must have those spaces taken out again between Chinese characters.
"""

from __future__ import annotations

import re

#: CJK unified ideographs: Extension A, the basic block, compatibility ideographs,
#: and Extensions B to F in the supplementary plane.
CJK_IDEOGRAPHS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef"

#: Ideographic punctuation and fullwidth forms (。，、「」！？ and friends).
CJK_PUNCTUATION = "\u3000-\u303f\uff00-\uffef"

#: One ideograph, as a regular-expression character class (valid for Python ``re`` and for
#: the Oniguruma engine behind ``tokenizers.Regex``).
CJK_CHAR_CLASS = f"[{CJK_IDEOGRAPHS}]"

_CJK_WIDE = f"[{CJK_IDEOGRAPHS}{CJK_PUNCTUATION}]"
_SPACES_BETWEEN_CJK = re.compile(rf"(?<={_CJK_WIDE})[ \t]+(?={_CJK_WIDE})")
_HAS_CJK = re.compile(CJK_CHAR_CLASS)


def has_cjk(text: str) -> bool:
    """Whether ``text`` contains at least one CJK ideograph."""
    return _HAS_CJK.search(text) is not None


def join_cjk(text: str) -> str:
    """Remove spaces between two CJK characters (ideographs or ideographic punctuation).

    ``"一 个 红 色 的 圆 。"`` becomes ``"一个红色的圆。"``; spaces next to Latin words and
    numbers are kept (``"3 个 red 圆"`` stays as it is), since the original spacing there is
    unknown.
    """
    return _SPACES_BETWEEN_CJK.sub("", text)
