"""bench/main_job.py builds a snakemake call that keeps its targets apart from the options."""

from __future__ import annotations

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
