"""bench/clip_word_swaps.py: true captions against their one-word swaps, scored by a CLIP."""

from __future__ import annotations

import re

import pytest
import torch

from tests.clip_fixtures import make_shards, make_tokenizer
from tests.conftest import load_bench
from vlcore.data.stream import ShardStream
from vlcore.models.clip import build_clip, save_clip
from vlcore.pipeline.clip import row_texts


@pytest.fixture(scope="module")
def bench():
    return load_bench("clip_word_swaps")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("swaps")
    shards = make_shards(root, 24, split={"val": 0.2, "test": 0.3})
    torch.manual_seed(0)
    clip = build_clip("tiny", tokenizer_dir=make_tokenizer(shards, root / "tokenizer"))
    save_clip(
        clip, root / "clip"
    )  # random init: the probe's numbers mean nothing, its plumbing does
    return {"shards": str(shards), "clip": str(root / "clip")}


def test_swap_pairs_change_exactly_one_word_of_the_group(bench, data):
    group = bench.SHAPES_WORLD_GROUPS["colour"]
    image_captions = bench.split_captions(data["shards"], "test")
    index, captions, negatives = bench.swap_pairs(image_captions, group)
    rows = list(ShardStream(data["shards"], "test", transform=lambda image: None))
    with_colour = [
        (i, c) for i, row in enumerate(rows) for c in row_texts(row)
        if re.search(rf"\b({'|'.join(group)})\b", c, re.IGNORECASE)
    ]  # fmt: skip
    assert list(zip(index, captions, strict=True)) == with_colour and captions
    for caption, negative in zip(captions, negatives, strict=True):
        changed = [(a, b) for a, b in zip(caption.split(), negative.split(), strict=True) if a != b]
        assert len(changed) == 1
        (a, b) = changed[0]
        assert a.lower().strip(".,:") in group and b.lower().strip(".,:") in group
    assert bench.swap_pairs(image_captions, group)[2] == negatives  # the same draw


def test_probe_counts_pairs_and_scores_them(bench, data):
    groups = {"colour": bench.SHAPES_WORLD_GROUPS["colour"], "none": ["zebra", "okapi"]}
    result = bench.probe(data["clip"], data["shards"], "test", groups)
    assert result["none"] == {"pairs": 0}
    image_captions = bench.split_captions(data["shards"], "test")
    n_pairs = len(bench.swap_pairs(image_captions, groups["colour"])[1])
    assert result["colour"]["pairs"] == n_pairs
    assert 0.0 <= result["colour"]["accuracy"] <= 100.0
    # the accuracy is a fraction of the pairs
    assert (result["colour"]["accuracy"] * n_pairs / 100.0) == pytest.approx(
        round(result["colour"]["accuracy"] * n_pairs / 100.0)
    )


def test_command_line_prints_a_row_per_group(bench, data, capsys):
    groups = '[["red", "blue", "green"], ["left", "right"]]'
    assert bench.main([data["clip"], "--shards", data["shards"], "--groups", groups]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["red/blue/...", "left/right"]
    assert lines[-1].startswith("(accuracy:")
