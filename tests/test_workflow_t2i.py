"""The real text-to-image DAG to results/t2i.json on a tiny config: VQ-VAE, codes, judge, CLIP,
DALL-E, sampling, reranking and scores; sampling again gives the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import copy_workflow, run_snakemake

pytestmark = pytest.mark.workflow

TRAIN = "{max_steps: 3, warmup_steps: 1, val_every: 0, ckpt_every: 0, log_every: 1}"
TINY = f"""
experiments:
  default:
    source:
      synthetic: {{n_images: 48, dirty_rate: 0.0}}
    shard:
      split: {{val: 0.15, test: 0.25}}
    tokenizer: {{vocab_size: 300}}
    clip:
      batch_size: 8
      train: {TRAIN}
    vqvae:
      batch_size: 8
      model: {{channels: [8, 16, 16], embed_dim: 16, codebook_size: 32, codebook_dim: 8}}
      train: {TRAIN}
    judge:
      batch_size: 8
      model: {{channels: [8, 16, 16], hidden: 32}}
      train: {TRAIN}
    dalle:
      batch_size: 8
      model: {{text_length: 16, transformer: {{n_embd: 32, n_layer: 2, n_head: 2, n_inner: 64}}}}
      generate: {{prompts: 3, samples: 4, batch_size: 5, top_k: 8}}
      train: {TRAIN}
    rerank: {{keep: 2, grid_prompts: 2}}
"""
TARGET = "results/t2i.json"
T2I_RULES = ("generate_images", "rerank_images", "score_images", "tabulate_t2i")


@pytest.fixture(scope="module")
def tiny_t2i(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("t2i"))
    (workdir / "tiny.yaml").write_text(TINY)
    run_snakemake(workdir, TARGET, "--cores", "2", "--configfile", "tiny.yaml")
    return workdir


def test_t2i_table_and_artifacts(tiny_t2i: Path):
    table = json.loads((tiny_t2i / TARGET).read_text())["experiments"]["default"]
    assert table["prompts"] == 3 and table["samples_per_prompt"] == 4 and table["keep"] == 2
    for block in (table["clip_score"], table["attribute_accuracy"]):
        for name in ("random", "top1", "topk", "best_of_n", "real", "reconstruction", "gain_top1"):
            assert name in block
    acc = table["attribute_accuracy"]
    assert 0 <= acc["random"] <= acc["best_of_n"] <= 100 and 0 <= acc["real"] <= 100
    assert -1 <= table["clip_score"]["top1"] <= 1
    # reranking keeps the best CLIP scores: the top-1 is never below a random pick
    assert table["clip_score"]["top1"] >= table["clip_score"]["random"]
    results = tiny_t2i / "results" / "default"
    samples = pq.read_table(results / "t2i" / "samples.parquet")
    assert samples.num_rows == 12
    rerank = json.loads((results / "t2i" / "rerank.json").read_text())
    assert all(len(p["kept"]) == 2 and len(p["scores"]) == 4 for p in rerank["prompts"])
    for path in ("dalle/model.safetensors", "dalle/loss_curve.png", "t2i/grid.png"):
        assert (results / path).is_file(), path
    for rule in ("train_dalle", *T2I_RULES[:-1]):
        assert (tiny_t2i / "benchmarks" / rule / "default.tsv").is_file(), rule


def test_sampling_again_gives_identical_numbers(tiny_t2i: Path):
    before = (tiny_t2i / TARGET).read_text()
    samples = tiny_t2i / "results" / "default" / "t2i" / "samples.parquet"
    codes = pq.read_table(samples, columns=["codes"]).to_pylist()
    run_snakemake(
        tiny_t2i, TARGET, "--cores", "2", "--configfile", "tiny.yaml", "--forcerun", *T2I_RULES
    )
    assert pq.read_table(samples, columns=["codes"]).to_pylist() == codes
    assert (tiny_t2i / TARGET).read_text() == before
