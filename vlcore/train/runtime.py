"""Where training runs: device choice, bf16 autocast, and torchrun/DDP set-up.

Code never assumes a CPU: it picks CUDA when present, uses bf16 autocast there, and joins a
process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1): NCCL on GPUs, gloo on CPU.

On a CPU with AMX-BF16 tiles (Intel Xeon since Sapphire Rapids) ``precision: auto`` trains
under bf16 autocast too: matrix products run several times faster there than in fp32. Attention
stays in fp32 under CPU autocast, because PyTorch's bf16 attention kernels on the CPU are
several times slower than its fp32 ones (``bench/bf16_matmul.py --attention``; the whole
training step: ``bench/cpu_bf16_step.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0  # global rank of this process
    local_rank: int = 0  # rank on this node: picks the GPU
    world_size: int = 1  # processes in the job
    precision: str = "fp32"  # "fp32", or "bf16": autocast on the device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self):
        """bf16 autocast when ``precision`` is bf16 (on a CPU with attention in fp32); a no-op
        in fp32."""
        if self.precision != "bf16":
            return contextlib.nullcontext()
        if self.device.type != "cpu":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return _cpu_bf16_autocast()


@contextlib.contextmanager
def _cpu_bf16_autocast():
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16), AttentionInFloat32():
        yield


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX-BF16 tiles)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    return bool(get is not None and get().get("amx_bf16", False))


# the attention functions of every model here: HF (GPT-2, ViT) and open_clip call the first,
# nn.MultiheadAttention (clip_prefix's mapping network) the second
_ATTENTION = (F.scaled_dot_product_attention, F.multi_head_attention_forward)


def _float32(value):
    if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
        return value.float()
    if isinstance(value, (list, tuple)):
        return type(value)(_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: _float32(v) for k, v in value.items()}
    return value


class AttentionInFloat32(TorchFunctionMode):
    """Under CPU bf16 autocast, run attention (and its backward) in fp32: its bf16 inputs are
    cast up and autocast is off inside it. Every other function runs as it was called."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _ATTENTION:
            return func(*args, **kwargs)
        with torch.autocast(device_type="cpu", enabled=False):
            return func(*_float32(args), **_float32(kwargs))


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` means CUDA (this process's GPU) when available, else CPU."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {preference!r}")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but no CUDA GPU is visible")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """Build the runtime for this process, joining the torchrun process group if there is one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    native = torch.cuda.is_bf16_supported() if dev.type == "cuda" else cpu_has_native_bf16()
    if precision == "auto":
        precision = "bf16" if native else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "bf16" and dev.type == "cpu" and not native:
        logger.warning(
            "precision bf16 on a CPU without AMX-BF16: its bf16 matrix products are slower "
            "than fp32 ones (bench/bf16_matmul.py); precision auto trains in fp32 here"
        )
    runtime = Runtime(dev, rank, local_rank, world_size, precision)
    logger.info("runtime: %s", runtime)
    return runtime


def teardown_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: float, runtime: Runtime) -> float:
    """Mean of a scalar over all processes (the value itself when not distributed)."""
    if not runtime.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t)
    return t.item() / runtime.world_size


def to_device(batch, device: torch.device):
    """Move every tensor in a (nested) batch to ``device``; other values are left as they are."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch
