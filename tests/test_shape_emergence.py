"""bench/shape_emergence.py: the teacher-forced shape-word accuracy it reports."""

import argparse
import math

import pytest
import torch

from tests.conftest import load_bench
from tests.test_captioner import data  # noqa: F401 (that module's fixture)
from vlcore.synthetic.lexicon import SHAPE_SYNONYMS_EN, SHAPES

WORDS = [w for s in SHAPES for w in SHAPE_SYNONYMS_EN[s]]


@pytest.fixture(scope="module")
def bench():
    return load_bench("shape_emergence")


class WordTokenizer:
    """One token per word; ids 10, 11, ... in WORDS order."""

    def __init__(self, ids=None):
        self.ids = ids or {" " + w: 10 + i for i, w in enumerate(WORDS)}

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.ids[text], 99]}


def test_synonyms_map_to_their_shape(bench):
    classes = bench.shape_token_classes(WordTokenizer())
    assert len(classes) == len(WORDS)
    for word in WORDS:
        shape = next(s for s in SHAPES if word in SHAPE_SYNONYMS_EN[s])
        assert classes[10 + WORDS.index(word)] == SHAPES.index(shape)


def test_shapes_sharing_a_first_token_are_refused(bench):
    ids = {" " + w: 10 + i for i, w in enumerate(WORDS)}
    ids[" star"] = ids[" square"]
    with pytest.raises(ValueError, match="share first token"):
        bench.shape_token_classes(WordTokenizer(ids))


def test_accuracy_counts_only_shape_positions_and_uses_synonyms(bench):
    classes = bench.shape_token_classes(WordTokenizer())
    token = {w: 10 + i for i, w in enumerate(WORDS)}
    vocab = 100
    # two texts: "<bos> x disk" (right only through the synonym) and "<bos> x star" (wrong)
    labels = torch.tensor([[-100, 5, token["disk"]], [-100, 5, token["star"]]])
    logits = torch.zeros(2, 3, vocab)
    logits[0, 1, token["disk"]] = 3.0  # position 1 predicts label 2
    logits[0, 1, 5] = 9.0  # a non-shape token ranked higher does not matter
    logits[1, 1, token["hexagon"]] = 2.0
    logits[1, 1, token["star"]] = 1.0
    logits[:, 0, token["square"]] = 5.0  # position 0 predicts token 5: not a shape, not counted
    assert bench.shape_accuracy(logits, labels, classes) == (1, 2)


def test_variants_are_name_equals_json(bench):
    assert bench.parse_variant('x5={"shape_word_weight": 5}') == ("x5", {"shape_word_weight": 5})
    assert bench.parse_variant("baseline=") == ("baseline", {})
    for bad in ("noequals", "a=[1]", "a={oops"):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_variant(bad)


def test_colour_and_size_classes_use_the_same_accuracy(bench):
    words = list(bench.WORD_GROUPS["colour"]) + ["small", "little", "large", "big"]
    ids = {" " + w: 10 + i for i, w in enumerate(words)}
    tokenizer = WordTokenizer(ids)
    colours = bench.token_classes(tokenizer, bench.WORD_GROUPS["colour"])
    sizes = bench.token_classes(tokenizer, bench.WORD_GROUPS["size"])
    assert len(colours) == 8 and sorted(set(sizes.values())) == [0, 1]
    assert sizes[ids[" little"]] == sizes[ids[" small"]] != sizes[ids[" big"]]
    # "<bos> x big": "large" ranked first counts as right (a synonym of the same size)
    labels = torch.tensor([[-100, 5, ids[" big"]], [-100, 5, ids[" red"]]])
    logits = torch.zeros(2, 3, 100)
    logits[0, 1, ids[" large"]] = 2.0
    logits[0, 1, ids[" small"]] = 1.0
    logits[1, 1, ids[" blue"]] = 1.0
    assert bench.class_accuracy(logits, labels, sizes) == (1, 1)
    assert bench.class_accuracy(logits, labels, colours) == (0, 1)


@pytest.mark.parametrize(
    "extra",
    [{}, {"encoder_lr_scale": 3.0}, {"focal_gamma": 2.0}, {"shape_word_weight": 5.0}],
    ids=["plain", "encoder_lr_scale", "focal_gamma", "shape_word_weight"],
)
def test_a_variant_trains_and_reports_its_curve(bench, data, extra):  # noqa: F811
    result = bench.run_variant(
        {
            "experiment": str(data["root"]),
            "captioner": "vit_gpt2",
            "label": "x",
            "settings": {"batch_size": 4, **extra},
            "steps": 2,
            "every": 1,
        }  # fmt: skip
    )
    assert [point["step"] for point in result["curve"]] == [1, 2]
    for point in result["curve"]:
        assert 0 <= point["shape_accuracy"] <= 1 and math.isfinite(point["val_loss"])
