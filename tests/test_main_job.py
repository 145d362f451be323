"""bench/main_job.py builds a snakemake call that keeps its targets apart from the options."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import load_bench

main_job = load_bench("main_job")


def test_targets_are_not_swallowed_by_configfile_or_config():
    args = main_job.parse_args(
        ["--configfile", "config/experiments/synthetic_zh.yaml", "--config", "run=[synthetic_zh]",
         "--target", "results/cider.json", "results/vqa.json"]
    )  # fmt: skip
    command = main_job.snakemake_command(args)
    # snakemake's --configfile and --config take every value after them: targets go first
    assert command[1:5] == ["--cores", "2", "results/cider.json", "results/vqa.json"]
    assert command[5] == "--configfile"
    assert Path(command[6]).is_absolute() and command[6].endswith("synthetic_zh.yaml")
    assert command[7:] == ["--config", "run=[synthetic_zh]"]


def test_default_run_is_rule_all_on_two_cores():
    command = main_job.snakemake_command(main_job.parse_args([]))
    assert command[1:] == ["--cores", "2"]


def test_timeline_reads_each_jobs_end_from_its_benchmark_file(tmp_path):
    header = "s\th:m:s\tmax_rss\n"
    for rule, wildcards, seconds, end in (
        ("train_clip", "default", 100.0, 1100.0),
        ("train_captioner", "default-vit_gpt2", 300.0, 1300.0),
        ("score_captions", "default-vit_gpt2", 10.0, 1312.0),
    ):
        path = tmp_path / "benchmarks" / rule / f"{wildcards}.tsv"
        path.parent.mkdir(parents=True)
        path.write_text(f"{header}{seconds}\t0:00:00\t100.0\n")
        os.utime(path, (end, end))
    jobs = main_job.timeline(tmp_path, main_job.read_benchmarks(tmp_path))
    # starts: 1000 (both trainers), 1302 (scoring); offsets from the first start
    assert jobs == [
        (0.0, 100.0, "train_clip", "default"),
        (0.0, 300.0, "train_captioner", "default-vit_gpt2"),
        (302.0, 312.0, "score_captions", "default-vit_gpt2"),
    ]
    assert main_job.timeline(tmp_path / "nothing", []) == []
