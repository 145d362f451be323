"""Run a trainer on every process its Snakemake job has: in-process for one, torchrun for more.

A trainer's script calls, instead of ``train_clip(...)``::

    launch(snakemake, train_clip, shards, tokenizer, settings, out_dir)

How many processes (see :func:`plan_launch`):

- ``processes`` in the model's ``train:`` config (passed as the rule's ``params.processes``)
  when set: that many per node, on GPUs or on the CPU (gloo; this is how tests run DDP);
- else one per GPU the job got (``resources: gpu=N``, or ``gres="gpu:N"`` per node),
  when CUDA is available;
- else one.

With one process the trainer runs here, as a plain call. With more, the call (the function's
import path and its JSON arguments) goes to a spec file, and every process runs it under
``torch.distributed.run`` (torchrun) with ``python -m vlcore.train.launch <spec>``; the
trainers join the process group from torchrun's environment
(:func:`vlcore.train.runtime.setup_runtime`). The workers' output is relayed into the job's log.

- Locally (no SLURM): ``torchrun --standalone --nproc-per-node P`` on this machine.
- Under SLURM: ``srun --overlap --nodes N --ntasks-per-node 1`` starts one torchrun agent on
  every node of the job's allocation; they meet at a c10d rendezvous on the allocation's first
  node (port from the job id), so ``--nnodes N`` nodes x ``P`` processes join one group and
  torchrun assigns node ranks. The step shares the job's CPUs, memory and GPUs (``--overlap``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SPEC_DIR = Path(".snakemake") / "vlcore-launch"
# SLURM variables a nested srun may inherit: the allocation's identity, nothing that would
# silently become a step option (the SLURM job-step executor strips the same way).
SLURM_KEEP = {
    "SLURM_JOB_ID",
    "SLURM_JOBID",
    "SLURM_CONF",
    "SLURM_CLUSTER_NAME",
    "SLURM_SUBMIT_DIR",
    "SLURM_SUBMIT_HOST",
}


@dataclasses.dataclass(frozen=True)
class LaunchPlan:
    nodes: int = 1  # nodes of the job (SLURM allocation); 1 locally
    per_node: int = 1  # training processes on each node
    slurm: bool = False  # start the agents with srun across the allocation

    @property
    def world_size(self) -> int:
        return self.nodes * self.per_node


def gres_gpus(gres: str | None) -> int:
    """GPUs per node in a SLURM gres string: ``gpu:4``, ``gpu:a100:4`` -> 4, ``gpu`` -> 1."""
    if not gres:
        return 0
    for item in str(gres).split(","):
        parts = item.strip().split(":")
        if parts[0] == "gpu":
            return int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return 0


def plan_launch(
    processes: int | None,
    resources: Mapping[str, Any],
    cuda_devices: int,
    environ: Mapping[str, str] | None = None,
) -> LaunchPlan:
    """How many nodes and processes per node a training job runs (see the module docstring).

    ``resources``: the job's Snakemake resources (``gpu``, ``gres``, ``nodes``);
    ``cuda_devices``: CUDA devices this process sees (``torch.cuda.device_count()``).
    """
    environ = os.environ if environ is None else environ
    slurm = bool(environ.get("SLURM_JOB_ID"))
    nodes = int(resources.get("nodes") or 1) if slurm else 1
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, got {nodes}")
    if processes is not None:
        if int(processes) < 1:
            raise ValueError(f"train processes must be >= 1 or null, got {processes}")
        per_node = int(processes)
        if cuda_devices and per_node > cuda_devices:
            raise ValueError(
                f"train processes {per_node} is more than the {cuda_devices} GPU(s) this job "
                "sees on its node: DDP needs a GPU per process (set processes: null to use "
                "one per GPU, or ask for more GPUs)"
            )
    elif cuda_devices:
        gpus = gres_gpus(resources.get("gres")) or math.ceil(int(resources.get("gpu") or 0) / nodes)
        per_node = max(1, min(gpus, cuda_devices))
    else:
        per_node = 1
    return LaunchPlan(nodes=nodes, per_node=per_node, slurm=slurm)


def _qualified_name(fn: Callable) -> str:
    name = f"{fn.__module__}:{fn.__qualname__}"
    if fn.__module__ == "__main__" or "<" in fn.__qualname__:
        raise ValueError(f"launch needs an importable module-level function, got {name}")
    return name


def _resolve(name: str) -> Callable:
    module, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _jsonable(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(
        f"launch passes arguments to torchrun processes as JSON; {type(value).__name__} "
        f"({value!r}) is not representable"
    )


def write_spec(fn: Callable, args: tuple, kwargs: dict, threads: int, directory: Path) -> Path:
    """The call every process runs, as JSON (on the shared file system, for multi-node)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.json"
    spec = {
        "target": _qualified_name(fn),
        "args": _jsonable(list(args)),
        "kwargs": _jsonable(kwargs),
        "threads": threads,
    }
    path.write_text(json.dumps(spec, indent=1))
    return path


def _slurm_head_node(environ: Mapping[str, str]) -> str:
    """The first node of the job's allocation (hosts the rendezvous)."""
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
    if not nodelist:
        job = subprocess.run(
            ["scontrol", "show", "job", environ["SLURM_JOB_ID"]],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        match = re.search(r"\bNodeList=(\S+)", job)
        if not match:
            raise RuntimeError(f"cannot find the node list of SLURM job {environ['SLURM_JOB_ID']}")
        nodelist = match.group(1)
    hosts = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    ).stdout.split()
    if not hosts:
        raise RuntimeError(f"scontrol show hostnames {nodelist} returned no host")
    return hosts[0]


def rendezvous_port(job_id: str) -> int:
    """A port for the job's rendezvous, fixed by the job id (the same on every node)."""
    digits = re.sub(r"\D", "", job_id) or "0"
    return 20000 + int(digits) % 20000


def torchrun_command(
    plan: LaunchPlan,
    spec: Path,
    threads: int,
    environ: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The command line that starts every process of ``plan`` running ``spec``."""
    environ = os.environ if environ is None else environ
    run = [python, "-m", "torch.distributed.run", f"--nproc-per-node={plan.per_node}"]
    worker = ["-m", "vlcore.train.launch", str(spec)]
    if not plan.slurm:
        return [*run, "--standalone", "--nnodes=1", *worker]
    job_id = environ["SLURM_JOB_ID"]
    head = _slurm_head_node(environ)
    srun = [
        "srun",
        "--overlap",
        f"--nodes={plan.nodes}",
        f"--ntasks={plan.nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={max(1, threads)}",
        "--cpu-bind=none",
        "--kill-on-bad-exit=1",
        f"--job-name=torchrun-{job_id}",
    ]
    rdzv = [
        f"--nnodes={plan.nodes}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={head}:{rendezvous_port(job_id)}",
        f"--rdzv-id=slurm-{job_id}",
    ]
    return [*srun, *run, *rdzv, *worker]


def _child_env(plan: LaunchPlan, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    if plan.slurm:
        for name in list(env):
            if (name.startswith("SLURM_") and name not in SLURM_KEEP) or name.startswith(
                ("SRUN_", "SBATCH_")
            ):
                del env[name]
    env["OMP_NUM_THREADS"] = str(max(1, threads // plan.per_node))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_distributed(
    plan: LaunchPlan, fn: Callable, args: tuple, kwargs: dict, threads: int = 1
) -> None:
    """Run ``fn(*args, **kwargs)`` in every process of ``plan`` and wait for all of them."""
    spec = write_spec(fn, args, kwargs, max(1, threads // plan.per_node), SPEC_DIR)
    cmd = torchrun_command(plan, spec, threads)
    logger.info("launching %d process(es) on %d node(s): %s", plan.world_size, plan.nodes,
                " ".join(cmd))  # fmt: skip
    relay = logging.getLogger("vlcore.torchrun")
    try:
        with subprocess.Popen(
            cmd,
            env=_child_env(plan, threads),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                relay.info("%s", line.rstrip())
        if proc.returncode != 0:
            raise RuntimeError(
                f"{_qualified_name(fn)} failed in its torchrun processes (exit status "
                f"{proc.returncode}); the workers' output above says why"
            )
    finally:
        spec.unlink(missing_ok=True)


def launch(job, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run trainer ``fn(*args, **kwargs)`` for Snakemake job ``job`` (a script's ``snakemake``).

    Claims the job's GPUs on a local run (:func:`vlcore.gpus.claim_job_gpus`), plans the
    processes (:func:`plan_launch`) and runs ``fn`` here (one process; its result is
    returned) or under torchrun (several; returns None once all finished).
    """
    import torch

    from vlcore.gpus import claim_job_gpus

    if "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return fn(*args, **kwargs)  # already one of torchrun's processes
    claim_job_gpus(job)
    processes = job.params.get("processes") if hasattr(job.params, "get") else None
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    plan = plan_launch(processes, job.resources, cuda)
    if plan.world_size == 1:
        return fn(*args, **kwargs)
    if shutil.which("srun") is None and plan.slurm:
        raise RuntimeError("SLURM_JOB_ID is set but srun is not on PATH")
    run_distributed(plan, fn, args, kwargs, threads=int(job.threads))
    return None


def _worker(spec_path: str) -> None:
    """One torchrun process: run the spec's call (every rank), log with the rank."""
    import torch

    spec = json.loads(Path(spec_path).read_text())
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.captureWarnings(True)
    torch.set_num_threads(int(spec["threads"]))
    try:
        _resolve(spec["target"])(*spec["args"], **spec["kwargs"])
    except Exception:
        logging.getLogger("vlcore.job").exception("rank %d failed", rank)
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m vlcore.train.launch SPEC.json  (started by torchrun)")
    _worker(sys.argv[1])
