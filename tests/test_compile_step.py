"""bench/compile_step.py: a captioner trained eager and compiled, timed side by side."""

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


def _run(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "bench" / "compile_step.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)


def test_bad_step_counts_and_missing_shards_are_refused(tmp_path):
    out = _run(str(tmp_path), "--steps", "5", "5")
    assert out.returncode != 0 and "the first smaller" in out.stderr
    out = _run(str(tmp_path / "default"), "--steps", "1", "2")
    assert out.returncode != 0 and "shards is missing" in out.stderr


@pytest.mark.slow
def test_command_line_times_eager_and_compiled(experiment):
    out = _run(str(experiment), "--captioner", "vit_gpt2", "--steps", "1", "2")
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    runs = [line for line in lines if line.count("|") == 2 and line.split("|")[1].strip().isdigit()]
    assert [line.split("|")[0].strip() for line in runs] == [
        "eager", "eager", "compiled, cold cache", "compiled", "compiled"]  # fmt: skip
    assert any(line.startswith("compiled / eager, time per step:") for line in lines)
