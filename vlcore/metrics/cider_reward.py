"""CIDEr-D as a training reward, for self-critical sequence training (Rennie et al., 2017).

The formula is pycocoevalcap's ``CiderScorer`` (Vedantam et al., 2015, the "-D" variant:
clipped n-gram counts and a Gaussian length penalty, sigma 6, times 10), written for scoring
thousands of sampled captions against fixed references fast and in Python: the document
frequencies come from a fixed reference corpus (the training split's captions, as in SCST),
and each reference's tf-idf vector is computed once.

Tokens: evaluation uses the Java PTB tokenizer (English) or a Chinese segmenter
(:mod:`vlcore.metrics.tokenization`); a reward needs something cheaper, so
:func:`reward_tokens` lower-cases and drops punctuation (English) or segments with the same
Chinese segmenters. The reward is a training signal, never a reported score.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from vlcore.metrics.tokenization import segment_chinese

_NOT_WORD = re.compile(r"[^\w\s]")
NGRAMS = 4
SIGMA = 6.0


def reward_tokens(text: str, lang: str = "en", segmenter: str = "jieba") -> list[str]:
    """The tokens a caption is rewarded on: lower-cased words without punctuation (``en``),
    or the Chinese segmentation the evaluation uses (``zh``)."""
    if lang == "zh":
        return segment_chinese(text, segmenter).split()
    return _NOT_WORD.sub(" ", text.lower()).split()


def ngram_counts(tokens: Sequence[str], n: int = NGRAMS) -> Counter:
    """Counts of every 1..``n``-gram of ``tokens``."""
    counts: Counter = Counter()
    for k in range(1, n + 1):
        for i in range(len(tokens) - k + 1):
            counts[tuple(tokens[i : i + k])] += 1
    return counts


@dataclass(frozen=True)
class TfIdf:
    """One caption as CIDEr sees it: tf-idf weights per n-gram order, their norms, length."""

    weights: tuple[dict[tuple[str, ...], float], ...]
    norms: tuple[float, ...]
    length: int  # bigram count, as pycocoevalcap measures it


class CiderD:
    """CIDEr-D of candidates against references, n-grams weighted by a fixed corpus.

    ``corpus``: the references of every image of the corpus (token lists), whose document
    frequencies weigh the n-grams (an n-gram's document frequency is the number of images
    with a reference containing it, pycocoevalcap's definition).
    """

    def __init__(self, corpus: Sequence[Sequence[Sequence[str]]]):
        if not corpus:
            raise ValueError("CIDEr-D needs a reference corpus of at least one image")
        self.document_frequency: Counter = Counter()
        for refs in corpus:
            seen = set()
            for ref in refs:
                seen.update(ngram_counts(ref))
            self.document_frequency.update(seen)
        self.log_images = math.log(float(len(corpus)))

    def tfidf(self, tokens: Sequence[str]) -> TfIdf:
        weights: list[dict[tuple[str, ...], float]] = [{} for _ in range(NGRAMS)]
        squares = [0.0] * NGRAMS
        for gram, count in ngram_counts(tokens).items():
            order = len(gram) - 1
            value = count * (self.log_images - math.log(max(1.0, self.document_frequency[gram])))
            weights[order][gram] = value
            squares[order] += value * value
        return TfIdf(tuple(weights), tuple(math.sqrt(s) for s in squares), max(len(tokens) - 1, 0))

    def score(self, candidate: Sequence[str], references: Sequence[TfIdf]) -> float:
        """CIDEr-D of ``candidate`` (tokens) against ``references`` (:meth:`tfidf` of each)."""
        if not references:
            raise ValueError("CIDEr-D needs at least one reference")
        hyp = self.tfidf(candidate)
        total = 0.0
        for ref in references:
            penalty = math.exp(-((hyp.length - ref.length) ** 2) / (2 * SIGMA**2))
            for order in range(NGRAMS):
                ref_weights = ref.weights[order]
                value = sum(
                    min(weight, ref_weights.get(gram, 0.0)) * ref_weights.get(gram, 0.0)
                    for gram, weight in hyp.weights[order].items()
                )
                if hyp.norms[order] and ref.norms[order]:
                    value /= hyp.norms[order] * ref.norms[order]
                total += value * penalty
        return 10.0 * total / (NGRAMS * len(references))
