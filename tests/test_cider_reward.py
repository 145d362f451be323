"""vlcore.metrics.cider_reward: the SCST reward equals pycocoevalcap's CIDEr-D."""

import numpy as np
import pytest
from pycocoevalcap.cider.cider_scorer import CiderScorer

from vlcore.metrics.cider_reward import CiderD, reward_tokens

REFS = [
    ["a red circle in the top left", "a big red circle", "one red disk at the top left"],
    ["two shapes a blue square and a green star", "a blue square left of a green star"],
    ["a small yellow triangle", "a little yellow triangle in the center", "a yellow triangle"],
    ["three shapes", "a pink hexagon a red star and a cyan square"],
]
CANDIDATES = [
    "a red circle at the top left",
    "a blue square and a green star",
    "a purple diamond",
    "a pink hexagon and a red star and a cyan square in the picture of shapes",
]


def test_scores_equal_pycocoevalcap_with_the_same_corpus():
    reference = CiderScorer(n=4, sigma=6.0)
    for candidate, refs in zip(CANDIDATES, REFS, strict=True):
        reference += (candidate, refs)
    _, expected = reference.compute_score()
    cider = CiderD([[r.split() for r in refs] for refs in REFS])
    got = [
        cider.score(c.split(), [cider.tfidf(r.split()) for r in refs])
        for c, refs in zip(CANDIDATES, REFS, strict=True)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got[0] > got[2] == 0.0  # a caption sharing nothing scores 0


def test_reward_tokens_drop_case_and_punctuation():
    assert reward_tokens("A red circle, and a Blue star.") == [
        "a",
        "red",
        "circle",
        "and",
        "a",
        "blue",
        "star",
    ]
    assert reward_tokens("红色的圆形。", lang="zh", segmenter="char") == [
        "红",
        "色",
        "的",
        "圆",
        "形",
    ]


def test_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="corpus"):
        CiderD([])
    with pytest.raises(ValueError, match="reference"):
        CiderD([[["a"]]]).score(["a"], [])
