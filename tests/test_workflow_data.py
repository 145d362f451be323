"""The real Snakemake DAG up to shard_dataset on a tiny default config."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import run_snakemake
from vlcore.synthetic import generate

pytestmark = pytest.mark.workflow

TINY = """
experiments:
  default:
    source:
      synthetic: {n_images: 120, dirty_rate: 0.2}
    shard:
      rows_per_shard: 40
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from tests.conftest import copy_workflow

    workdir = copy_workflow(tmp_path_factory.mktemp("wf"))
    (workdir / "tiny.yaml").write_text(TINY)
    run_snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml", "--until", "shard_dataset")
    return workdir


def test_data_stages_produce_shards_and_report(tiny_run: Path):
    exp = tiny_run / "results" / "default"
    assert pq.read_metadata(exp / "data" / "raw.parquet").num_rows == 120
    report = json.loads((exp / "data" / "clean_report.json").read_text())
    assert report["rows_in"] == 120
    assert report["rows_kept"] + sum(report["dropped"].values()) == 120
    truth = Counter(s.dirty_reason for s in generate(120, 0, dirty_rate=0.2) if s.dirty_reason)
    assert {reason: n for reason, n in report["dropped"].items() if n} == dict(truth)
    manifest = json.loads((exp / "shards" / "manifest.json").read_text())
    assert manifest["total"]["rows"] == report["rows_kept"]
    assert manifest["splits"]["train"]["rows"] > manifest["splits"]["test"]["rows"] > 0
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            assert (exp / "shards" / shard["file"]).is_file()


def test_every_rule_logs_and_benchmarks(tiny_run: Path):
    for rule in ("download_dataset", "clean_pairs", "shard_dataset"):
        assert (tiny_run / "logs" / rule / "default.log").stat().st_size > 0
        assert (tiny_run / "benchmarks" / rule / "default.tsv").is_file()


def test_until_stops_after_sharding(tiny_run: Path):
    """--until shard_dataset ran the data stages and nothing after them."""
    ran = sorted(p.name for p in (tiny_run / "logs").iterdir())
    assert ran == ["clean_pairs", "download_dataset", "shard_dataset"]
    built = sorted(p.name for p in (tiny_run / "results" / "default").iterdir())
    assert built == ["data", "shards"]


def test_second_run_has_nothing_to_do(tiny_run: Path):
    proc = run_snakemake(
        tiny_run, "--cores", "2", "--configfile", "tiny.yaml", "--until", "shard_dataset", "-n"
    )
    out = proc.stdout + proc.stderr
    # Snakemake says "Nothing to be done", or (with --until) lists a job total of 0.
    assert "Nothing to be done" in out or re.search(r"^total\s+0$", out, re.MULTILINE), out


def test_changing_a_shard_param_reruns_only_sharding(tiny_run: Path):
    (tiny_run / "tiny2.yaml").write_text(TINY.replace("rows_per_shard: 40", "rows_per_shard: 30"))
    proc = run_snakemake(tiny_run, "--configfile", "tiny2.yaml", "--until", "shard_dataset", "-n")
    out = proc.stdout
    assert "shard_dataset" in out
    assert "clean_pairs" not in out.split("Job stats")[-1]
    assert "download_dataset" not in out.split("Job stats")[-1]
