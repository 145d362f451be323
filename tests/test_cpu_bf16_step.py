"""bench/cpu_bf16_step.py: a captioner trained in fp32 and under bf16 autocast, side by side."""

from __future__ import annotations

import subprocess
import sys

from tests.clip_fixtures import make_shards, make_tokenizer
from tests.conftest import REPO


def _run(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "bench" / "cpu_bf16_step.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)


def test_bad_step_counts_and_missing_shards_are_refused(tmp_path):
    out = _run(str(tmp_path), "--steps", "5", "5")
    assert out.returncode != 0 and "the first smaller" in out.stderr
    out = _run(str(tmp_path / "default"), "--steps", "1", "2")
    assert out.returncode != 0 and "shards is missing" in out.stderr


def test_command_line_times_fp32_and_bf16(tmp_path):
    root = tmp_path / "default"  # named after the default experiment, whose settings it reads
    make_tokenizer(make_shards(root, 60), root / "tokenizer")
    out = _run(str(root), "--captioner", "vit_gpt2", "--steps", "1", "2")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    runs = [line.split("|") for line in lines if line.count("|") == 3]
    runs = [[cell.strip() for cell in row] for row in runs if row[1].strip().isdigit()]
    assert [(row[0], row[1]) for row in runs] == [
        ("fp32", "1"), ("fp32", "2"), ("bf16", "1"), ("bf16", "2")]  # fmt: skip
    for row in runs:
        assert float(row[2]) > 0 and float(row[3]) > 0  # seconds, and a finite last loss
    # with one and two steps the slopes are noise; the line is what is checked
    assert any(line.startswith("bf16 / fp32, time per step:") for line in lines)
