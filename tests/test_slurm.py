"""SLURM for real: the tiny workflow through `snakemake --profile slurm` on a one-node cluster.

``tests/slurm/cluster.sh`` stands up munge, MariaDB + slurmdbd, slurmctld and slurmd with two
fake GPUs (GRES); this module brings it up unless it already runs (and then leaves it up),
runs the tiny config of tests/test_workflow_main.py locally and through the repository's own
SLURM profile (partition, account and CPUs per GPU overridden for the small cluster), and
checks from ``sacct`` that every rule ran as a SLURM job, that the GPU rules asked for and got
a GPU (``gres/gpu=1``) and the others none, that train_clip ran 2 DDP processes as a torchrun
step inside its job, and that the result tables equal the local run's.

Needs root and the packages (``tests/slurm/cluster.sh install``); skipped without them unless
``VLCORE_REQUIRE_SLURM=1`` (``make test-slurm``, CI), which turns the skip into a failure.

    sudo tests/slurm/cluster.sh install && make test-slurm
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, copy_workflow, run_snakemake
from tests.test_profiles import gpu_rules
from tests.test_workflow_main import TARGETS, TINY

# The module fixture (a local run, then the SLURM run) counts against the first test.
pytestmark = [pytest.mark.slurm, pytest.mark.workflow, pytest.mark.timeout(3600)]

CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
STATE = Path(os.environ.get("VLCORE_SLURM_DIR", "/tmp/vlcore-slurm"))
SLURM_CONF = STATE / "etc" / "slurm.conf"
PARTITION, ACCOUNT = "vlcore", "vlcore_ci"
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct", "srun")
# Of the tiny run, these declare gpu=1 (every rule that does is checked, see gpu_rules).
GPU_RULES = {"train_clip", "train_captioner", "generate_captions", "answer_questions"}
RUN_TIMEOUT = 1500  # seconds for the whole SLURM run (about 9 minutes on 2 busy cores)


def _env() -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(SLURM_CONF), "HF_HUB_OFFLINE": "1"}


def _cluster(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(CLUSTER_SH), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


def _slurm(*args: str) -> str:
    return subprocess.run(
        list(args), capture_output=True, text=True, check=True, timeout=60, env=_env()
    ).stdout


def _diagnostics() -> str:
    parts = [_cluster("logs", timeout=60).stdout]
    for cmd in (["squeue", "-a"], ["sinfo", "-N", "-o", "%N %T %E"]):
        try:
            parts.append(f"$ {' '.join(cmd)}\n{_slurm(*cmd)}")
        except (subprocess.SubprocessError, OSError) as err:
            parts.append(f"$ {' '.join(cmd)}: {err}")
    return "\n".join(parts)


def _unavailable(reason: str) -> None:
    if os.environ.get("VLCORE_REQUIRE_SLURM") == "1":
        pytest.fail(f"SLURM harness unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm_cluster():
    """The cluster, up for the module: started here (and torn down after) unless already up."""
    if os.geteuid() != 0:
        _unavailable("the SLURM harness needs root (it runs the daemons)")
    missing = [cmd for cmd in DAEMONS if shutil.which(cmd) is None]
    if missing:
        _unavailable(f"missing {', '.join(missing)}: run `tests/slurm/cluster.sh install`")
    already_up = (
        SLURM_CONF.is_file() and _cluster("status", timeout=60).stdout.count("running") == 5
    )
    if not already_up:
        up = _cluster("up", timeout=600)
        if up.returncode != 0:
            pytest.fail(f"the SLURM cluster did not come up:\n{up.stdout}\n{up.stderr}")
    try:
        yield
    finally:
        if not already_up:
            down = _cluster("down", timeout=300)
            if down.returncode != 0:
                print(f"cluster.sh down failed:\n{down.stdout}\n{down.stderr}", file=sys.stderr)


def tiny_config() -> str:
    """The main workflow test's tiny config, CLIP trained by 2 DDP processes (torchrun)."""
    config = yaml.safe_load(TINY)
    config["experiments"]["default"]["clip"]["train"]["processes"] = 2
    return yaml.safe_dump(config)


def cluster_profile(workdir: Path) -> None:
    """Point the copied SLURM profile at the test cluster, and make it quick."""
    path = workdir / "slurm" / "config.yaml"
    profile = yaml.safe_load(path.read_text())
    profile["default-resources"].update(slurm_partition=PARTITION, slurm_account=ACCOUNT)
    cpus = min(2, os.cpu_count() or 1)
    for rule, resources in profile["set-resources"].items():
        # The node has few CPUs and the machine may have little memory: fit the jobs in.
        profile["set-resources"][rule] = {**resources, "cpus_per_gpu": cpus, "mem_mb": 3000}
    profile.update(
        {
            "slurm-init-seconds-before-status-checks": 1,
            "seconds-between-status-checks": 1,
            "slurm-keep-successful-logs": True,
            "latency-wait": 5,
            "retries": 0,
        }
    )
    path.write_text(yaml.safe_dump(profile, sort_keys=False))


def run_on_slurm(workdir: Path, *args: str) -> str:
    """`snakemake --profile slurm ...`, killed (with the cluster's logs shown) on a timeout."""
    snakemake = Path(sys.executable).parent / "snakemake"
    proc = subprocess.Popen(
        [str(snakemake), *args],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        # Snakemake may ignore SIGTERM while it waits on job states: kill its process group.
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        subprocess.run(["scancel", "--user=root"], env=_env(), check=False)
        pytest.fail(
            f"snakemake --profile slurm did not finish in {RUN_TIMEOUT} s:\n{out[-6000:]}\n"
            f"{_diagnostics()}"
        )
    if proc.returncode != 0:
        pytest.fail(
            f"snakemake --profile slurm failed ({proc.returncode}):\n{out[-8000:]}\n"
            f"{_diagnostics()}"
        )
    return out


def sacct_jobs(since: str) -> list[dict[str, str]]:
    """Allocations (not steps) since ``since``, with the rule from the plugin's comment."""
    fields = ("JobID", "JobName", "State", "AllocTRES", "Account", "Partition", "Comment")
    out = _slurm(
        "sacct", "-X", "-n", "-P", "-a", "-S", since, "-o", ",".join(fields)
    )  # fmt: skip
    jobs = []
    for line in out.splitlines():
        job = dict(zip(fields, line.split("|"), strict=True))
        match = re.match(r"^rule_(.+?)(?:_wildcards_.*)?$", job["Comment"])
        job["rule"] = match.group(1) if match else ""
        jobs.append(job)
    return jobs


@pytest.fixture(scope="module")
def runs(tmp_path_factory, slurm_cluster):
    config = tiny_config()
    local = copy_workflow(tmp_path_factory.mktemp("local"))
    (local / "tiny.yaml").write_text(config)
    run_snakemake(local, *TARGETS, "--cores", "2", "--configfile", "tiny.yaml")

    cluster = copy_workflow(tmp_path_factory.mktemp("slurm"))
    (cluster / "tiny.yaml").write_text(config)
    cluster_profile(cluster)
    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    time.sleep(1)  # sacct -S has one-second resolution
    start = time.monotonic()
    out = run_on_slurm(cluster, *TARGETS, "--profile", "slurm", "--configfile", "tiny.yaml")
    seconds = time.monotonic() - start
    print(f"snakemake --profile slurm: {seconds:.0f} s", file=sys.stderr)
    # Accounting records a job's end a moment after it ends.
    deadline = time.monotonic() + 60
    while True:
        jobs = sacct_jobs(since)
        if all(j["State"] not in ("RUNNING", "PENDING", "COMPLETING") for j in jobs) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(1)
    return {"local": local, "cluster": cluster, "jobs": jobs, "out": out, "since": since}


def test_profile_is_found_as_profile_slurm(runs):
    # ./slurm/ from the workflow folder, with the workflow profile on top.
    assert "Using profiles slurm and workflow specific profile profiles/default" in runs["out"]


def test_every_rule_ran_as_a_slurm_job(runs):
    jobs = runs["jobs"]
    assert jobs, f"sacct lists no job since {runs['since']}"
    bad = [j for j in jobs if j["State"] != "COMPLETED"]
    assert not bad, f"jobs not COMPLETED: {bad}"
    assert all(j["Account"] == ACCOUNT and j["Partition"] == PARTITION for j in jobs), jobs
    local_rules = {p.name for p in (runs["local"] / "logs").iterdir() if p.is_dir()}
    assert {j["rule"] for j in jobs} == local_rules


def test_gpu_rules_asked_for_and_got_a_gpu(runs):
    by_rule: dict[str, list[dict]] = {}
    for job in runs["jobs"]:
        by_rule.setdefault(job["rule"], []).append(job)
    assert set(by_rule) >= GPU_RULES, f"GPU rules missing from sacct: {set(by_rule)}"
    declared = gpu_rules(runs["cluster"])
    for rule, jobs in by_rule.items():
        for job in jobs:
            if rule in declared:
                assert "gres/gpu=1" in job["AllocTRES"], (rule, job)
            else:
                assert "gres/gpu" not in job["AllocTRES"], (rule, job)


def test_train_clip_ran_two_processes_as_a_torchrun_step(runs):
    (job,) = [j for j in runs["jobs"] if j["rule"] == "train_clip"]
    steps = _slurm("sacct", "-n", "-P", "-j", job["JobID"], "-o", "JobID,JobName,State")
    assert f"torchrun-{job['JobID']}" in steps, steps
    log = (runs["cluster"] / "logs" / "train_clip" / "default.log").read_text()
    assert "launching 2 process(es) on 1 node(s): srun --overlap" in log
    assert "--rdzv-backend=c10d" in log and "[rank 0]" in log
    meta = json.loads((runs["cluster"] / "results/default/clip/train_config.json").read_text())
    assert meta["world_size"] == 2


def _close(a, b, path="") -> list[str]:
    """Differences between two JSON values, floats compared to 1e-9 relative."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in _close(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _close(x, y, f"{path}[{i}]")]  # fmt: skip
    if isinstance(a, float) and isinstance(b, (int, float)):
        return [] if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_results_match_the_local_run(runs):
    for target in TARGETS:
        local = json.loads((runs["local"] / target).read_text())
        cluster = json.loads((runs["cluster"] / target).read_text())
        diffs = _close(local, cluster)
        assert not diffs, f"{target} differs from the local run:\n" + "\n".join(diffs[:20])
