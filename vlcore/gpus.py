"""GPUs of a local run: how many there are, and which ones a job uses.

Snakemake knows GPUs only as a number (``resources: gpu=1``). Locally, two things make that
number mean something:

- :func:`apply_local_gpu_limit` (called from ``rules/common.smk``) caps the GPU jobs running at
  once at the GPUs present, as if the user had passed ``--resources gpu=<n>``. Without GPUs it
  sets no cap, so GPU-declaring rules still run (on the CPU). A ``--resources gpu=N`` given by
  the user, and every run on a cluster, are left alone.
- :func:`claim_job_gpus` (called by the GPU rules' scripts) gives the job ``gpu`` GPUs of its
  own: it takes a lock file per GPU (``/tmp/vlcore-gpus-<uid>/``) and narrows
  ``CUDA_VISIBLE_DEVICES`` to the GPUs it holds, so that two one-GPU jobs run on two GPUs and
  not both on ``cuda:0``. Under SLURM, which sets
  ``CUDA_VISIBLE_DEVICES`` for the job, it does nothing.

Neither imports torch: the workflow calls them while it parses the Snakefile.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")

# Lock files held for the life of the process (released by the OS when it exits).
_held: list[Any] = []


def _physical_gpus(proc_dir: Path = NVIDIA_PROC) -> list[str]:
    """The NVIDIA GPUs of this machine, by index (as strings); empty without a driver."""
    if proc_dir.is_dir():
        return [str(i) for i in range(len(list(proc_dir.iterdir())))]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
    return []


def visible_gpus(
    environ: Mapping[str, str] | None = None, proc_dir: Path = NVIDIA_PROC
) -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` entries, else all present.

    As CUDA does, the list stops at the first entry that names no GPU (``-1``, an index past
    the last GPU). UUIDs (``GPU-...``, ``MIG-...``) count as GPUs when a driver is present.
    """
    environ = os.environ if environ is None else environ
    present = _physical_gpus(proc_dir)
    if not present:
        return []
    devices = environ.get("CUDA_VISIBLE_DEVICES")
    if devices is None:
        return present
    visible = []
    for entry in (d.strip() for d in devices.split(",")):
        index = entry.isdigit() and int(entry) < len(present)
        if not (index or entry.startswith(("GPU-", "MIG-"))):
            break
        visible.append(entry)
    return visible


def apply_local_gpu_limit(workflow, gpus: int | None = None) -> int | None:
    """Cap concurrent GPU jobs of a local run at the GPUs present; returns the cap set.

    Only in the main Snakemake process of a local run (``--cores``; a cluster run has
    ``--jobs`` and its own GPU accounting) and only when the user gave no ``--resources gpu=``.
    With no GPU present no cap is set: rules that declare ``gpu=1`` run on the CPU.
    """
    if not workflow.is_main_process or workflow.nodes is not None:
        return None
    if "gpu" in workflow.global_resources:
        return None
    count = len(visible_gpus()) if gpus is None else gpus
    if count <= 0:
        return None
    workflow.register_resource("gpu", count)
    return count


def _lock_dir() -> Path:
    # /tmp, not $TMPDIR: Snakemake may give every job a TMPDIR of its own (resources tmpdir).
    base = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
    path = base / f"vlcore-gpus-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def claim_gpus(
    count: int,
    environ: dict[str, str] | None = None,
    *,
    lock_dir: Path | None = None,
    proc_dir: Path = NVIDIA_PROC,
    poll_seconds: float = 2.0,
    timeout: float | None = None,
) -> list[str]:
    """Lock ``count`` of the visible GPUs for this process and narrow CUDA_VISIBLE_DEVICES.

    Returns the GPUs taken (``[]`` when there are none to take: no GPU, ``count`` 0, or
    under SLURM). Waits while every GPU is held by other jobs; raises ``ValueError`` when
    fewer than ``count`` GPUs are visible at all, ``TimeoutError`` after ``timeout`` seconds.
    """
    environ = os.environ if environ is None else environ
    if count <= 0 or environ.get("SLURM_JOB_ID"):
        return []
    gpus = visible_gpus(environ, proc_dir)
    if not gpus:
        return []
    if count > len(gpus):
        raise ValueError(
            f"the job asks for {count} GPUs but this machine shows {len(gpus)} "
            f"({', '.join(gpus)}); lower the rule's gpu resource"
        )
    lock_dir = lock_dir or _lock_dir()
    start, warned = time.monotonic(), False
    while True:
        taken: list[tuple[str, Any]] = []
        for gpu in gpus:
            handle = open(lock_dir / f"gpu-{gpu}.lock", "a+")  # noqa: SIM115 (held open)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            taken.append((gpu, handle))
            if len(taken) == count:
                break
        if len(taken) == count:
            _held.extend(handle for _, handle in taken)
            chosen = [gpu for gpu, _ in taken]
            environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
            logger.info("using GPU(s) %s (CUDA_VISIBLE_DEVICES)", ",".join(chosen))
            return chosen
        for _, handle in taken:
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        if timeout is not None and time.monotonic() - start > timeout:
            raise TimeoutError(f"no {count} free GPU(s) among {gpus} after {timeout} s")
        if not warned:
            logger.info("waiting for %d free GPU(s) among %s (held by other jobs)", count, gpus)
            warned = True
        time.sleep(poll_seconds)


def claim_job_gpus(job) -> list[str]:
    """:func:`claim_gpus` for a Snakemake job object: as many GPUs as its ``gpu`` resource."""
    return claim_gpus(int(job.resources.get("gpu", 0) or 0))
