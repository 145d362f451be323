"""The real DAG to results/cider.json, vqa.json and retrieval.json on a tiny config, twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import copy_workflow, run_snakemake

pytestmark = pytest.mark.workflow

TRAIN = "{max_steps: 4, warmup_steps: 1, val_every: 0, ckpt_every: 0, log_every: 1}"
TINY = f"""
experiments:
  default:
    source:
      synthetic: {{n_images: 60, dirty_rate: 0.0}}
    shard:
      split: {{val: 0.15, test: 0.25}}
    tokenizer: {{vocab_size: 300}}
    clip:
      batch_size: 16
      train: {TRAIN}
    captioners:
      vit_gpt2:
        batch_size: 8
        train: {TRAIN}
        scst: {{steps: 2, samples: 2, max_new_tokens: 8}}
        generate: {{num_beams: 2, max_new_tokens: 8}}
      clip_prefix:
        batch_size: 8
        train: {TRAIN}
        generate: {{num_beams: 2, max_new_tokens: 8, answer_max_new_tokens: 3}}
    evaluation:
      metrics: [BLEU, ROUGE_L, CIDEr]
"""
TARGETS = ("results/cider.json", "results/vqa.json", "results/retrieval.json")


@pytest.fixture(scope="module")
def tiny_main(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("main"))
    (workdir / "tiny.yaml").write_text(TINY)
    run_snakemake(workdir, *TARGETS, "--cores", "2", "--configfile", "tiny.yaml")
    return workdir


def read(workdir: Path, name: str) -> dict:
    return json.loads((workdir / "results" / name).read_text())


def test_tables_hold_models_and_reference_rows(tiny_main: Path):
    cider = read(tiny_main, "cider.json")["experiments"]["default"]
    assert set(cider["rows"]) == {
        "vit_gpt2", "clip_prefix", "human", "nearest_neighbour", "most_frequent"
    }  # fmt: skip
    for row in cider["rows"].values():
        assert 0 <= row["CIDEr"] < 10 and 0 <= row["BLEU-4"] <= 1
        assert row["SPICE"]["available"] is False
    assert cider["rows"]["human"]["CIDEr"] > cider["rows"]["most_frequent"]["CIDEr"]
    vqa = read(tiny_main, "vqa.json")["experiments"]["default"]
    assert 0 <= vqa["model"]["overall"] <= 100 and vqa["n_questions"] > 0
    assert vqa["captioner"] == "vit_gpt2"  # the default's vqa_with
    assert "per_question" not in vqa
    retrieval = read(tiny_main, "retrieval.json")["experiments"]["default"]
    assert retrieval["chance"]["image_to_text"]["R@1"] > 0
    vit_gpt2 = tiny_main / "results" / "default" / "captioners" / "vit_gpt2"
    assert len(json.loads((vit_gpt2 / "history.json").read_text())["scst"]["reward"]) == 2
    caption_file = tiny_main / "results" / "default" / "captions" / "vit_gpt2.tsv"
    assert all(len(line.split("\t")) == 2 for line in caption_file.read_text().splitlines())


def test_same_config_and_seed_give_identical_metrics(tiny_main: Path):
    before = {name: read(tiny_main, name.split("/")[1]) for name in TARGETS}
    run_snakemake(tiny_main, *TARGETS, "--cores", "2", "--forceall", "--configfile", "tiny.yaml")
    after = {name: read(tiny_main, name.split("/")[1]) for name in TARGETS}
    assert before == after
