"""Deterministic WordPiece training (Schuster & Nakajima, 2012; the BERT vocabulary).

``tokenizers`` trains WordPiece with its BPE trainer, but creates the ``##``-prefixed
continuation characters while iterating over a hash map, so their ids, and through merge
tie-breaking the vocabulary itself, change from run to run (huggingface/tokenizers#1794,
still open in 0.23). vlcore promises byte-identical tokenizers for identical inputs, so this
module runs the (deterministic) BPE trainer without a prefix on words whose non-initial
characters have been renamed to private-use code points: "circle" becomes "c" + 5 symbols that
stand for "##i", "##r", ... Every token the trainer builds is then either a word-initial piece
or a pure continuation piece, and renaming back gives the WordPiece vocabulary with the
continuation alphabet in code-point order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import tokenizers
from tokenizers import models, pre_tokenizers, trainers

PREFIX = "##"
# Supplementary Private Use Areas A and B: 131,068 code points no text should contain.
_PUA_RANGES = ((0xF0000, 0xFFFFD), (0x100000, 0x10FFFD))
# Repetitions of one word per training string: bounds memory for very frequent words.
_CHUNK = 1024


def count_words(
    texts: Iterable[str],
    normalizer: tokenizers.normalizers.Normalizer | None,
    pre_tokenizer: tokenizers.pre_tokenizers.PreTokenizer,
) -> tuple[Counter[str], int]:
    """Word counts after normalization and pre-tokenization, and the number of texts."""
    counts: Counter[str] = Counter()
    n = 0
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"training texts must be str, got {type(text).__name__}: {text!r}")
        n += 1
        if normalizer is not None:
            text = normalizer.normalize_str(text)
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(text))
    return counts, n


def _continuation_symbols(counts: Counter[str]) -> dict[str, str]:
    """Map each character seen after a word's first one to an unused private-use character."""
    used = set().union(*map(set, counts)) if counts else set()
    continuation = sorted({c for word in counts for c in word[1:]})
    free = (chr(cp) for lo, hi in _PUA_RANGES for cp in range(lo, hi + 1) if chr(cp) not in used)
    mapping = dict(zip(continuation, free, strict=False))
    if len(mapping) < len(continuation):
        raise ValueError(f"too many distinct characters ({len(continuation)}) for WordPiece")
    return mapping


def _renamed_corpus(counts: Counter[str], mapping: dict[str, str]) -> Iterator[str]:
    for word in sorted(counts):
        renamed = word[0] + "".join(mapping[c] for c in word[1:])
        count = counts[word]
        while count > 0:
            k = min(count, _CHUNK)
            yield " ".join([renamed] * k)
            count -= k


def train_wordpiece(
    counts: Counter[str],
    *,
    vocab_size: int,
    min_frequency: int,
    special_tokens: list[str],
    unk_token: str,
) -> models.WordPiece:
    """A WordPiece model trained on word ``counts``; the special tokens get ids 0, 1, ..."""
    mapping = _continuation_symbols(counts)
    inverse = {v: k for k, v in mapping.items()}
    bpe = tokenizers.Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special_tokens,
        # as in the library's trainer, every character seen may also start a word
        initial_alphabet=sorted({c for word in counts for c in word}),
        show_progress=False,
    )
    bpe.train_from_iterator(_renamed_corpus(counts, mapping), trainer=trainer)
    specials = set(special_tokens)
    vocab = {}
    for token, token_id in bpe.get_vocab(with_added_tokens=True).items():
        if token in specials:
            vocab[token] = token_id
        elif token[0] in inverse:  # a continuation piece: every character renamed
            vocab[PREFIX + "".join(inverse[c] for c in token)] = token_id
        else:  # a word-initial piece: the first character is itself
            vocab[token[0] + "".join(inverse[c] for c in token[1:])] = token_id
    return models.WordPiece(vocab=vocab, unk_token=unk_token, continuing_subword_prefix=PREFIX)
