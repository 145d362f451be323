"""bench/clip_variants.py: CLIP variants trained from an experiment's preset and settings,
scored by retrieval, side by side."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import torch

from tests.clip_fixtures import make_shards, make_tokenizer
from tests.conftest import REPO, load_bench
from vlcore.io import read_json
from vlcore.pipeline.clip import train_clip


@pytest.fixture(scope="module")
def bench():
    return load_bench("clip_variants")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """An experiment folder as the workflow leaves it: shards, tokenizer, a trained CLIP."""
    root = tmp_path_factory.mktemp("variants")
    shards = make_shards(root, 24, split={"val": 0.2, "test": 0.3})
    make_tokenizer(shards, root / "tokenizer")
    settings = {"model": "tiny", "batch_size": 8, "max_steps": 2, "warmup_steps": 1,
                "val_every": 0, "ckpt_every": 0, "device": "cpu", "seed": 0}  # fmt: skip
    torch.set_num_threads(1)
    train_clip(shards, root / "tokenizer", settings, root / "clip")
    return root


def test_variants_are_name_equals_json_objects(bench):
    assert bench.parse_variant('a={"text_cfg": {"layers": 1}}') == (
        "a",
        {"text_cfg": {"layers": 1}},
    )
    for bad in ("a", "={}", "a=[1]", "a={bad", 'a={"init": "xavier"}', 'a={"train": 3}'):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.parse_variant(bad)


def test_overrides_merge_into_the_preset_without_touching_it(bench):
    preset = {"embed_dim": 8, "vision_cfg": {"layers": 2, "width": 16}}
    merged = bench.variant_preset(
        preset, {"vision_cfg": {"block_type": "custom"}, "init": "open_clip"}
    )
    assert merged == {
        "embed_dim": 8,
        "vision_cfg": {"layers": 2, "width": 16, "block_type": "custom"},
    }
    assert preset == {"embed_dim": 8, "vision_cfg": {"layers": 2, "width": 16}}


def test_train_overrides_replace_known_settings_only(bench):
    settings = {"batch_size": 128, "max_steps": 250, "lr": 1e-3}
    own = bench.variant_settings(settings, {"train": {"batch_size": 64, "max_steps": 500}})
    assert own == {"batch_size": 64, "max_steps": 500, "lr": 1e-3}
    assert bench.variant_settings(settings, {"vision_cfg": {}}) == settings
    # a setting the recorded run predates is still a setting
    assert bench.variant_settings(settings, {"train": {"loss": "siglip"}})["loss"] == "siglip"
    with pytest.raises(SystemExit, match=r"unknown training setting\(s\) \['lrate'\]"):
        bench.variant_settings(settings, {"train": {"lrate": 1}})
    assert bench.variant_preset({"embed_dim": 8}, {"train": {"lr": 1}}) == {"embed_dim": 8}


def test_experiment_settings_come_from_its_clip(bench, experiment):
    preset, settings = bench.experiment_clip(experiment)
    assert preset["vision_cfg"]["layers"] >= 1 and settings["batch_size"] == 8
    assert settings["max_steps"] == 2 and settings["model"] == "tiny"
    with pytest.raises(SystemExit, match="train_clip"):
        bench.experiment_clip(experiment / "nowhere")


def test_command_line_trains_each_variant_and_seed(experiment, tmp_path):
    out = tmp_path / "runs"
    command = [sys.executable, str(REPO / "bench" / "clip_variants.py"), str(experiment),
               "--jobs", "2", "--seeds", "0", "1", "--steps", "1", "--out", str(out),
               "--variant", "base={}",
               "--variant", 'custom={"vision_cfg": {"block_type": "custom"}, "init": "open_clip",'
                                    ' "train": {"batch_size": 6}}']  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert sorted((r["variant"], r["seed"]) for r in rows) == [
        ("base", 0), ("base", 1), ("custom", 0), ("custom", 1)
    ]  # fmt: skip
    assert all(0 <= r["i2t_r1"] <= 100 and r["seconds"] > 0 for r in rows)
    # the synthetic captions name shapes, so every run reads its shape-swap pairs
    assert all(0 <= r["shape_swap"] <= 100 for r in rows)
    table = done.stdout.splitlines()[-4:]
    assert [line.split()[:2] for line in table] == [
        ["base", "0"], ["base", "1"], ["custom", "0"], ["custom", "1"]
    ]  # fmt: skip
    assert [float(line.split()[-1]) for line in table[:2]] == [1.0, 1.0]
    assert read_json(out / "custom-seed1" / "train_config.json")["settings"]["batch_size"] == 6
    assert read_json(out / "base-seed1" / "train_config.json")["settings"]["batch_size"] == 8
    saved = read_json(out / "custom-seed1" / "open_clip_config.json")["model_cfg"]
    assert saved["vision_cfg"]["block_type"] == "custom"
    assert (
        "block_type"
        not in read_json(out / "base-seed0" / "open_clip_config.json")["model_cfg"]["vision_cfg"]
    )
