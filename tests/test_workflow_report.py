"""Two experiments side by side, the HTML report in a real browser, and partial rebuilds.

One module-scoped run builds the default target for two tiny experiments from two config
files (the default English one and ``config/experiments/synthetic_zh.yaml``); the tests then
read its tables, open its ``snakemake --report`` in headless Chromium, and ask Snakemake what
it would rerun after ``--forcerun train_captioner`` and after a captioner hyperparameter
change (dry runs: the plan a real run executes; ``--until shard_dataset`` is checked on a
real run in test_workflow_data.py).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageStat

from tests.conftest import copy_workflow, run_snakemake

pytestmark = pytest.mark.workflow

EXPERIMENTS = ("default", "synthetic_zh")
TRAIN = {"max_steps": 3, "warmup_steps": 1, "val_every": 0, "ckpt_every": 0, "log_every": 1}
CAPTIONER = {"batch_size": 8, "train": TRAIN}
GENERATE = {"num_beams": 2, "max_new_tokens": 6}


def tiny_experiment(n_images: int) -> dict:
    """Settings that make every stage of an experiment take seconds."""
    return {
        "source": {"synthetic": {"n_images": n_images, "dirty_rate": 0.1}},
        "shard": {"split": {"val": 0.15, "test": 0.25}},
        "tokenizer": {"vocab_size": 300},
        "clip": {"batch_size": 8, "train": TRAIN},
        "captioners": {
            # clip_prefix answers in both experiments (synthetic_zh's file keeps the schema's
            # default; the default config's vit_gpt2 answering is tested in test_workflow_main)
            "vqa_with": "clip_prefix",
            "vit_gpt2": {**CAPTIONER, "generate": GENERATE,
                         "scst": {"steps": 2, "samples": 2, "max_new_tokens": 6}},
            "clip_prefix": {**CAPTIONER, "generate": {**GENERATE, "answer_max_new_tokens": 3},
                            "scst": {"steps": 2, "samples": 2, "max_new_tokens": 6}},
        },
        "evaluation": {"metrics": ["BLEU", "ROUGE_L", "CIDEr"]},
        "vqvae": {"batch_size": 8, "train": TRAIN, "model": {"channels": [8, 16, 16],
                  "embed_dim": 16, "codebook_size": 32, "codebook_dim": 8}},
        "judge": {"batch_size": 8, "train": TRAIN, "model": {"channels": [8, 16, 16], "hidden": 32}},
        "dalle": {"batch_size": 8, "train": TRAIN, "generate": {"prompts": 2, "samples": 3, "batch_size": 6},
                  "model": {"text_length": 16, "transformer": {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_inner": 64}}},
        "rerank": {"keep": 2, "grid_prompts": 2},
    }  # fmt: skip


TINY = {"experiments": {"default": tiny_experiment(60)}}
TINY_ZH = {"experiments": {"synthetic_zh": tiny_experiment(48)}}
# The shipped experiment file adds synthetic_zh (`run: {synthetic_zh: true}`); tiny_zh.yaml
# after it only shrinks it.
CONFIGS = ("--configfile", "tiny.yaml", "config/experiments/synthetic_zh.yaml", "tiny_zh.yaml")

# What depends on a captioner: everything downstream of train_captioner, and nothing else.
CAPTIONER_CHAIN = {
    "train_captioner", "generate_captions", "answer_questions", "score_captions", "score_vqa",
    "tabulate_captions", "tabulate_vqa", "render_caption_grid", "render_vqa_grid",
    "render_table", "compare_experiments", "all",
}  # fmt: skip
UPSTREAM = {
    "download_dataset", "clean_pairs", "shard_dataset", "train_tokenizer", "train_clip",
    "score_retrieval", "score_caption_baselines", "tabulate_retrieval", "plot_cleaning",
    "train_vqvae", "encode_images", "train_judge", "train_dalle", "generate_images",
    "rerank_images", "score_images", "tabulate_t2i",
}  # fmt: skip


@pytest.fixture(scope="module")
def two_experiments(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("experiments"))
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (workdir / "tiny_zh.yaml").write_text(yaml.safe_dump(TINY_ZH))
    run_snakemake(workdir, "--cores", "2", *CONFIGS)
    return workdir


def planned_jobs(workdir: Path, *args: str) -> Counter:
    """The jobs per rule a dry run of ``snakemake *args`` lists (empty: nothing to do)."""
    proc = run_snakemake(workdir, "-n", *args)
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return Counter()
    table = out.split("Job stats:", 1)[1].split("\ntotal", 1)[0]
    return Counter({m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)})


def read(workdir: Path, name: str) -> dict:
    return json.loads((workdir / "results" / name).read_text())


def test_experiments_sit_side_by_side(two_experiments: Path):
    for exp in EXPERIMENTS:
        assert (two_experiments / "results" / exp / "shards" / "manifest.json").is_file()
    for table in ("cider.json", "retrieval.json", "vqa.json", "t2i.json"):
        assert list(read(two_experiments, table)["experiments"]) == list(EXPERIMENTS), table
    assert read(two_experiments, "cider.json")["experiments"]["synthetic_zh"]["lang"] == "zh"
    compare = read(two_experiments, "compare.json")
    assert compare["experiments"] == list(EXPERIMENTS)
    rows = {r["metric"]: r["values"] for s in compare["sections"] for r in s["rows"]}
    assert rows["rows in"] == {"default": 60, "synthetic_zh": 48}
    for metric in ("CIDEr vit_gpt2", "CIDEr human", "image→text R@1", "accuracy clip_prefix"):
        assert all(rows[metric][e] is not None for e in EXPERIMENTS), metric
    md = (two_experiments / "results" / "compare.md").read_text()
    assert "| | default | synthetic_zh |" in md and "| rows in | 60 | 48 |" in md


def test_report_figures_are_in_the_default_target(two_experiments: Path):
    for exp in EXPERIMENTS:
        report = two_experiments / "results" / exp / "report"
        with Image.open(report / "cleaning.png") as img:
            assert img.format == "PNG"
        assert (report / "captions.html").read_text().count("<img ") == 8
        assert "<img " in (report / "vqa.html").read_text()
    zh = (two_experiments / "results" / "synthetic_zh" / "report" / "captions.html").read_text()
    assert re.search(r"[\u4e00-\u9fff]", zh)  # the Chinese references
    for table in ("cider", "retrieval", "vqa", "t2i", "compare"):
        assert "<table>" in (two_experiments / "results" / "report" / f"{table}.html").read_text()


def test_nothing_to_do_after_the_run(two_experiments: Path):
    assert planned_jobs(two_experiments, *CONFIGS) == Counter()


def test_forcerun_train_captioner_plans_only_its_chain(two_experiments: Path):
    jobs = planned_jobs(two_experiments, *CONFIGS, "--forcerun", "train_captioner")
    assert jobs["train_captioner"] == 4  # two captioners x two experiments
    assert jobs["generate_captions"] == 4 and jobs["answer_questions"] == 2
    assert jobs["render_table"] == 3  # cider, vqa, compare
    assert set(jobs) <= CAPTIONER_CHAIN, set(jobs) - CAPTIONER_CHAIN
    assert not set(jobs) & UPSTREAM


def with_vit_gpt2_batch(batch_size: int) -> dict:
    config = copy.deepcopy(TINY)
    config["experiments"]["default"]["captioners"]["vit_gpt2"]["batch_size"] = batch_size
    return config


def test_changing_a_captioner_param_plans_only_that_captioner(two_experiments: Path):
    (two_experiments / "tiny_b4.yaml").write_text(yaml.safe_dump(with_vit_gpt2_batch(4)))
    jobs = planned_jobs(two_experiments, "--configfile", "tiny_b4.yaml", *CONFIGS[2:])
    # default's vit_gpt2 and what reads it; clip_prefix answers the VQA questions: untouched
    assert jobs["train_captioner"] == 1 and jobs["generate_captions"] == 1
    assert jobs["score_captions"] == 1 and jobs["render_caption_grid"] == 1
    assert "answer_questions" not in jobs and "render_vqa_grid" not in jobs
    assert set(jobs) <= CAPTIONER_CHAIN and not set(jobs) & UPSTREAM


def test_report_renders_in_chromium(two_experiments: Path, tmp_path: Path):
    from vlcore.report.browser import (
        ChromiumNotFound,
        find_chromium,
        probe_report,
        screenshot_report,
    )

    try:
        find_chromium()
    except ChromiumNotFound as err:
        pytest.skip(str(err))
    report = tmp_path / "report.html"
    run_snakemake(two_experiments, *CONFIGS, "--report", str(report))
    probe = probe_report(report)
    assert probe.broken_images() == []
    assert {"Data", "Samples", "Metrics", "Training"} <= set(probe.categories)
    assert "Metrics" in probe.app_text  # the menu rendered
    by_rule = Counter(entry["rule"] for entry in probe.results.values())
    assert by_rule["plot_cleaning"] == 2 and by_rule["render_caption_grid"] == 2
    assert by_rule["render_vqa_grid"] == 2 and by_rule["render_table"] == 5
    assert by_rule["train_clip"] == 2 and by_rule["train_captioner"] == 4
    for path, entry in probe.results.items():
        if entry["rule"] == "render_caption_grid":
            assert len(entry["images"]) == 8 and all(i["width"] > 0 for i in entry["images"])
        if entry["rule"] == "render_table":
            assert entry["tables"] >= 1, path
    assert probe.runtime_charts >= 1  # Snakemake's per-rule runtimes ("Statistics")
    assert {"train_clip", "train_captioner", "compare_experiments"} <= set(probe.runtime_rules)

    shots = Path(os.environ.get("VLCORE_SCREENSHOTS", tmp_path))
    for show, name in ((None, "start"), ("synthetic_zh/report/captions.html", "captions"),
                       ("report/compare.html", "compare"), ("stats", "runtimes")):  # fmt: skip
        png = screenshot_report(report, shots / f"report-{name}.png", show)
        with Image.open(png) as img:
            stat = ImageStat.Stat(img.convert("L"))
            assert stat.stddev[0] > 10, f"{name}: the screenshot is blank"
    if "VLCORE_SCREENSHOTS" in os.environ:
        shutil.copy(report, shots / "report.html")


@pytest.mark.slow
def test_a_captioner_param_change_reruns_only_that_captioner(two_experiments: Path):
    """The real run behind the plan above: only default's vit_gpt2 chain is rebuilt.

    Last in the module: it leaves the run built with the changed config."""
    results = two_experiments / "results"
    untouched = [
        results / "default" / "shards" / "manifest.json",
        results / "default" / "tokenizer" / "tokenizer.json",
        results / "default" / "clip" / "model.safetensors",
        results / "default" / "captioners" / "clip_prefix" / "model.safetensors",
        results / "default" / "vqa" / "answers.json",
        results / "synthetic_zh" / "captioners" / "vit_gpt2" / "model.safetensors",
        results / "retrieval.json",
        results / "t2i.json",
    ]
    rebuilt = [
        results / "default" / "captioners" / "vit_gpt2" / "model.safetensors",
        results / "default" / "captions" / "vit_gpt2.json",
        results / "default" / "report" / "captions.html",
        results / "cider.json",
        results / "compare.md",
    ]
    before = {path: path.stat().st_mtime_ns for path in untouched + rebuilt}
    (two_experiments / "tiny_b2.yaml").write_text(yaml.safe_dump(with_vit_gpt2_batch(2)))
    run_snakemake(two_experiments, "--cores", "2", "--configfile", "tiny_b2.yaml", *CONFIGS[2:])
    assert [p for p in untouched if p.stat().st_mtime_ns != before[p]] == []
    assert [p for p in rebuilt if p.stat().st_mtime_ns == before[p]] == []
    config = json.loads((results / "default/captioners/vit_gpt2/train_config.json").read_text())
    assert config["settings"]["batch_size"] == 2
