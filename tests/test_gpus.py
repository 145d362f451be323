"""Local GPU handling: counting visible GPUs, the concurrent-GPU-job cap, per-job GPU locks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from vlcore import gpus
from vlcore.gpus import apply_local_gpu_limit, claim_gpus, visible_gpus


@pytest.fixture
def four_gpus(tmp_path: Path) -> Path:
    """A fake /proc/driver/nvidia/gpus with four GPUs."""
    proc = tmp_path / "proc"
    for i in range(4):
        (proc / f"0000:0{i}:00.0").mkdir(parents=True)
    return proc


def test_visible_gpus_follows_cuda_visible_devices(four_gpus: Path, tmp_path: Path):
    assert visible_gpus({}, four_gpus) == ["0", "1", "2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, four_gpus) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, four_gpus) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"}, four_gpus) == ["1"]  # stops at -1
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-aa,GPU-bb"}, four_gpus) == [
        "GPU-aa",
        "GPU-bb",
    ]
    # No driver: no GPU, whatever CUDA_VISIBLE_DEVICES says (as on SLURM's fake GPUs).
    no_driver = tmp_path / "absent"
    if not gpus.shutil.which("nvidia-smi"):
        assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0"}, no_driver) == []


class FakeWorkflow:
    """The attributes of snakemake.workflow.Workflow that apply_local_gpu_limit uses."""

    def __init__(self, main=True, nodes=None, resources=None):
        self.is_main_process = main
        self.nodes = nodes
        self.global_resources = dict(resources or {})

    def register_resource(self, name, value):
        self.global_resources[name] = value


def test_gpu_limit_set_to_the_gpus_present():
    workflow = FakeWorkflow()
    assert apply_local_gpu_limit(workflow, gpus=2) == 2
    assert workflow.global_resources["gpu"] == 2


@pytest.mark.parametrize(
    "workflow",
    [
        FakeWorkflow(resources={"gpu": 1}),  # the user's --resources gpu=1 wins
        FakeWorkflow(nodes=20),  # --jobs: a cluster run (SLURM counts GPUs itself)
        FakeWorkflow(main=False),  # a job's own Snakemake process
    ],
)
def test_gpu_limit_left_alone(workflow):
    before = dict(workflow.global_resources)
    assert apply_local_gpu_limit(workflow, gpus=2) is None
    assert workflow.global_resources == before


def test_no_gpu_means_no_cap_so_gpu_rules_still_run():
    workflow = FakeWorkflow()
    assert apply_local_gpu_limit(workflow, gpus=0) is None
    assert "gpu" not in workflow.global_resources


def test_snakemake_workflow_has_what_the_limit_uses():
    import inspect

    import snakemake.api  # noqa: F401  (snakemake.workflow imports it; import order matters)
    from snakemake.workflow import Workflow

    for name in ("is_main_process", "nodes", "register_resource"):
        assert hasattr(Workflow, name), name
    assert "self.global_resources = " in inspect.getsource(Workflow)


def test_claims_give_jobs_distinct_gpus(four_gpus: Path, tmp_path: Path):
    locks = tmp_path / "locks"
    locks.mkdir()
    first, second = {}, {}
    assert claim_gpus(1, first, lock_dir=locks, proc_dir=four_gpus) == ["0"]
    assert first["CUDA_VISIBLE_DEVICES"] == "0"
    assert claim_gpus(2, second, lock_dir=locks, proc_dir=four_gpus) == ["1", "2"]
    assert second["CUDA_VISIBLE_DEVICES"] == "1,2"
    with pytest.raises(TimeoutError):
        claim_gpus(2, {}, lock_dir=locks, proc_dir=four_gpus, poll_seconds=0.05, timeout=0.2)
    with pytest.raises(ValueError, match="asks for 5 GPUs"):
        claim_gpus(5, {}, lock_dir=locks, proc_dir=four_gpus)


def test_claim_is_released_when_the_job_process_exits(four_gpus: Path, tmp_path: Path):
    locks = tmp_path / "locks"
    locks.mkdir()
    code = (
        "import os, sys; from pathlib import Path; from vlcore.gpus import claim_gpus; "
        f"print(claim_gpus(4, {{}}, lock_dir=Path({str(locks)!r}), proc_dir=Path({str(four_gpus)!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['0', '1', '2', '3']"
    # The child held all four and exited: all four are free again.
    assert claim_gpus(4, {}, lock_dir=locks, proc_dir=four_gpus, timeout=1) == ["0", "1", "2", "3"]


def test_nothing_to_claim_without_gpus_or_under_slurm(four_gpus: Path, tmp_path: Path):
    assert claim_gpus(1, {}, proc_dir=tmp_path / "absent") == [] or gpus.shutil.which("nvidia-smi")
    env = {"SLURM_JOB_ID": "12"}
    assert claim_gpus(1, env, proc_dir=four_gpus) == []
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert claim_gpus(0, {}, proc_dir=four_gpus) == []


def test_claim_job_gpus_reads_the_gpu_resource(monkeypatch):
    seen = []
    monkeypatch.setattr(gpus, "claim_gpus", lambda n: seen.append(n) or [])
    gpus.claim_job_gpus(SimpleNamespace(resources={"gpu": 2}))
    gpus.claim_job_gpus(SimpleNamespace(resources={}))
    assert seen == [2, 0]


SNAKEFILE = """
from vlcore.gpus import apply_local_gpu_limit

apply_local_gpu_limit(workflow, gpus=1)  # as rules/common.smk does, with one GPU "present"

rule all:
    input: "a.txt", "b.txt"

rule gpu_job:
    output: "{x}.txt"
    resources: gpu=1
    shell: "python -c 'import time; print(time.time())' > {output}; sleep 2; python -c 'import time; print(time.time())' >> {output}"
"""


def _intervals(workdir: Path) -> list[tuple[float, float]]:
    return [tuple(map(float, (workdir / f"{x}.txt").read_text().split())) for x in "ab"]


@pytest.mark.parametrize(
    "extra, limit, overlap", [((), 1, False), (("--resources", "gpu=2"), 2, True)]
)
def test_real_scheduler_runs_one_gpu_job_at_a_time(tmp_path: Path, extra, limit, overlap):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    snakemake = Path(sys.executable).parent / "snakemake"
    out = subprocess.run(
        [str(snakemake), "--cores", "2", *extra],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    (a0, a1), (b0, b1) = _intervals(tmp_path)
    assert (a0 < b1 and b0 < a1) is overlap
    provided = re.search(r'Provided resources: gpu=(?:Resource\("gpu", )?(\d+)', out)
    assert provided and int(provided.group(1)) == limit, out  # the user's gpu=2 is kept
