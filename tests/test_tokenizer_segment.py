"""vlcore.text.segment: words for caption metrics, and the deterministic WordPiece trainer."""

from __future__ import annotations

from collections import Counter

import pytest

from vlcore.text import segment
from vlcore.text.wordpiece import PREFIX, train_wordpiece


def test_english_splits_words_and_punctuation():
    assert segment("A red circle, top-left.", "en") == [
        "A", "red", "circle", ",", "top", "-", "left", ".",
    ]  # fmt: skip
    assert segment("It's 3.5 m  wide", "en", method="char") == ["It's", "3.5", "m", "wide"]


def test_chinese_characters_keep_latin_words_and_numbers_whole():
    text = "图片里有3.5个 red 圆形，和2个CD。"
    assert segment(text, "zh", method="char") == [
        "图", "片", "里", "有", "3.5", "个", "red", "圆", "形", "，", "和", "2", "个", "CD", "。",
    ]  # fmt: skip


def test_jieba_segments_words_deterministically():
    text = "一个红色的大圆形在图片的左上角。"
    words = segment(text, "zh")
    assert "".join(words) == text
    assert "图片" in words and "红色" in words
    assert all(w.strip() for w in segment("一个 红色  的圆形", "zh"))
    assert segment(text, "zh", method="jieba") == words


@pytest.mark.parametrize("lang, method", [("fr", "char"), ("zh", "spaces")])
def test_segment_rejects_unknown_options(lang, method):
    with pytest.raises(ValueError, match="unknown"):
        segment("x", lang, method=method)


def _vocab(model) -> list[str]:
    import tokenizers

    tok = tokenizers.Tokenizer(model)
    vocab = tok.get_vocab()
    return sorted(vocab, key=vocab.get)


def test_wordpiece_training_is_deterministic_and_complete():
    """tokenizers' own WordPieceTrainer gives a different vocabulary on most runs (#1794)."""
    words = Counter({"circle": 30, "circles": 12, "square": 20, "red": 25, "3个": 4, "ab": 4})
    kwargs = dict(
        vocab_size=80, min_frequency=2, special_tokens=["<pad>", "<unk>"], unk_token="<unk>"
    )
    vocabs = [_vocab(train_wordpiece(words, **kwargs)) for _ in range(5)]
    assert all(v == vocabs[0] for v in vocabs)
    vocab = vocabs[0]
    assert vocab[:2] == ["<pad>", "<unk>"]
    chars = {c for w in words for c in w}
    assert chars <= set(vocab)  # any seen character may start a word
    assert {PREFIX + c for w in words for c in w[1:]} <= set(vocab)
    assert "circle" in vocab and PREFIX + "s" in vocab
    continuation = [t for t in vocab if t.startswith(PREFIX)]
    first = continuation[: len({c for w in words for c in w[1:]})]
    assert first == sorted(first)  # the continuation alphabet comes in code-point order
