"""bench/compile_step.py, bench/cpu_bf16_step.py, bench/data_cache_step.py,
bench/per_image_step.py and bench/packed_prefix_step.py: a captioner trained eager and
compiled, in fp32 and under bf16 autocast, with and without the decoded image cache, with and
without per-image cross-attention and stacked Newton-Schulz, or with its texts packed or not,
timed side by side."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.clip_fixtures import make_shards, make_tokenizer
from tests.conftest import REPO, load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("compile_step")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A folder named after the default experiment with its shards and tokenizer."""
    root = tmp_path_factory.mktemp("compile") / "default"
    shards = make_shards(root, 60)  # more training rows than the default batch of 32
    make_tokenizer(shards, root / "tokenizer")
    return root


def test_settings_are_the_captioners_train_section_flattened(bench):
    settings = bench.captioner_settings([str(REPO / "config" / "config.yaml")], "default",
                                        "vit_gpt2")  # fmt: skip
    assert "train" not in settings and "processes" not in settings
    assert settings["max_steps"] >= 1 and settings["batch_size"] >= 1
    assert isinstance(settings["seed"], int)  # the experiment's seed when the section has none
    assert settings["compile"] is False


def _run(*args: str, script: str = "compile_step.py") -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "bench" / script), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)


def _timed_runs(lines: list[str], columns: int) -> list[list[str]]:
    """The table rows of the runs: ``columns`` cells, the second a step count."""
    rows = [[cell.strip() for cell in line.split("|")] for line in lines]
    return [row for row in rows if len(row) == columns and row[1].isdigit()]


@pytest.mark.parametrize(
    "script", ["compile_step.py", "cpu_bf16_step.py", "data_cache_step.py", "packed_prefix_step.py"]
)
def test_bad_step_counts_and_missing_shards_are_refused(tmp_path, script):
    out = _run(str(tmp_path), "--steps", "5", "5", script=script)
    assert out.returncode != 0 and "the first smaller" in out.stderr
    out = _run(str(tmp_path / "default"), "--steps", "1", "2", script=script)
    assert out.returncode != 0 and "shards is missing" in out.stderr


@pytest.mark.slow
def test_command_line_times_eager_and_compiled(experiment):
    out = _run(str(experiment), "--captioner", "vit_gpt2", "--steps", "1", "2")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert [row[0] for row in _timed_runs(lines, 3)] == [
        "eager", "eager", "compiled, cold cache", "compiled", "compiled"]  # fmt: skip
    assert any(line.startswith("compiled / eager, time per step:") for line in lines)


def test_command_line_times_fp32_and_bf16(experiment):
    out = _run(str(experiment), "--captioner", "vit_gpt2", "--steps", "1", "2",
               script="cpu_bf16_step.py")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    runs = _timed_runs(lines, 4)
    assert [(row[0], row[1]) for row in runs] == [
        ("fp32", "1"), ("fp32", "2"), ("bf16", "1"), ("bf16", "2")]  # fmt: skip
    for row in runs:
        assert float(row[2]) > 0 and float(row[3]) > 0  # seconds, and a finite last loss
    # with one and two steps the slopes are noise; the line is what is checked
    assert any(line.startswith("bf16 / fp32, time per step:") for line in lines)


def test_command_line_times_with_and_without_the_cache_and_the_losses_agree(experiment):
    # about 48 training rows, one batch of 32 an epoch: steps 2 and 3 read from the cache
    out = _run(str(experiment), "--captioner", "vit_gpt2", "--steps", "1", "3",
               script="data_cache_step.py")  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    runs = _timed_runs(lines, 4)
    assert [(row[0], row[1]) for row in runs] == [
        ("no cache", "1"), ("no cache", "3"), ("cache", "1"), ("cache", "3")]  # fmt: skip
    assert runs[0][3] == runs[2][3] and runs[1][3] == runs[3][3]  # the same losses
    assert "the same losses with and without the cache" in lines
    assert any(line.startswith("cache / no cache, time per step:") for line in lines)


def test_command_line_times_per_image_attention_and_stacked_newton_schulz(experiment):
    out = _run(str(experiment), "--steps", "1", "2", script="per_image_step.py")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    modes = [row[0] for row in _timed_runs(lines, 4)]
    assert modes == [mode for mode in ("before", "per image", "stacked", "both") for _ in "12"]
    assert "stacked Newton-Schulz: the same losses as one matrix at a time" in lines
    assert any(line.startswith("both / before, time per step:") for line in lines)
    out = _run(str(experiment), "--captioner", "clip_prefix", script="per_image_step.py")
    assert out.returncode != 0 and "only vit_gpt2" in out.stderr


def test_command_line_times_texts_per_text_and_packed(experiment):
    from vlcore.pipeline.clip import train_clip

    clip = {"model": "tiny", "batch_size": 8, "max_steps": 2, "warmup_steps": 1,
            "val_every": 0, "ckpt_every": 0, "device": "cpu"}  # fmt: skip
    train_clip(experiment / "shards", experiment / "tokenizer", clip, experiment / "clip")
    out = _run(str(experiment), "--steps", "1", "2", script="packed_prefix_step.py")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    modes = [row[0] for row in _timed_runs(lines, 4)]
    assert modes == ["per text", "per text", "packed", "packed"]
    assert "packed and per-text losses within 1% of each other" in lines
    assert any(line.startswith("packed / per text, time per step:") for line in lines)
    out = _run(str(experiment), "--captioner", "vit_gpt2", script="packed_prefix_step.py")
    assert out.returncode != 0 and "only clip_prefix" in out.stderr
