"""Shared fixtures: repository paths and a runner for the real Snakemake workflow."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKFLOW_FILES = ("Snakefile", "rules", "scripts", "config", "envs", "profiles", "slurm", "report")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow (not results or the venv) into ``dest`` so a test run writes there."""
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True)
        else:
            shutil.copy2(src, dest / name)
    return dest


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real snakemake CLI of this environment in ``workdir``."""
    snakemake = Path(sys.executable).parent / "snakemake"
    proc = subprocess.run(
        [str(snakemake), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def texts_about_images(image_size: int, images: int = 6, vocab: int = 40, width: int = 9):
    """A captioner batch of random images and token texts in no particular order, 0 to 4 per
    image (image 2 has none), of several lengths right-padded with 0 (one fills ``width``):
    ``pixel_values, input_ids, attention_mask, image_index``."""
    import torch

    generator = torch.Generator().manual_seed(1)
    counts = [4, 1, 0, 3, 4, 2][:images]
    image_index = torch.tensor([i for i, n in enumerate(counts) for _ in range(n)])
    image_index = image_index[torch.randperm(len(image_index), generator=generator)]
    ids = torch.randint(3, vocab, (len(image_index), width), generator=generator)
    lengths = torch.randint(1, width + 1, (len(image_index),), generator=generator)
    lengths[0] = width
    mask = (torch.arange(width) < lengths.unsqueeze(1)).long()
    ids[mask == 0] = 0
    pixels = torch.rand(images, 3, image_size, image_size, generator=generator)
    return pixels, ids, mask, image_index


def load_bench(name: str):
    """Import ``bench/<name>.py`` (the bench scripts are not a package) as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def workflow_dir(tmp_path: Path) -> Path:
    return copy_workflow(tmp_path)
