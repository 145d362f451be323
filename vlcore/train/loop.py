"""The training loop every vlcore trainer shares (CLIP, captioners, VQ-VAE, DALL-E).

Read top to bottom, one optimizer step is:
  1. gather ``grad_accum`` micro-batches (DDP syncs gradients only on the last one),
  2. clip the global gradient norm, step AdamW (or Muon with AdamW: ``optimizer: muon``),
  3. step the schedule: linear warm-up for ``warmup_steps``, then cosine decay to zero,
  4. every ``val_every`` steps: mean validation loss over all processes,
  5. every ``ckpt_every`` steps: a resumable checkpoint (weights, optimizer, schedule,
     data position, RNG), so a killed job continues where it stopped, bit for bit on CPU.

Usage (what a trainer does)::

    history = fit(model, loss_fn, train_batches, val_batches, TrainConfig(max_steps=300),
                  out_dir="results/default/clip", meta={"model": model_cfg})

``loss_fn(model, batch) -> scalar tensor``; ``train_batches(epoch)`` returns an iterable of
batches for that epoch (a DataLoader over :class:`vlcore.data.stream.ShardStream`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from vlcore.io import write_json
from vlcore.train.checkpoint import (
    load_checkpoint,
    read_meta,
    save_checkpoint,
    save_weights,
    unwrap,
)
from vlcore.train.optimizers import build_optimizer
from vlcore.train.plots import plot_loss_curve
from vlcore.train.runtime import Runtime, all_reduce_mean, setup_runtime, to_device

logger = logging.getLogger(__name__)

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]


@dataclass
class TrainConfig:
    max_steps: int = 300  # optimizer steps in total (the schedule's length)
    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    weight_decay: float = 0.01  # AdamW decoupled decay, on matrices only (not biases/norms)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW; 0.98 is steadier for small batches
    # adamw | muon (Muon for weight matrices and conv filters, AdamW for the rest; optimizers.py)
    optimizer: str = "adamw"
    warmup_steps: int = 30  # linear warm-up, then cosine decay to zero
    grad_accum: int = 1  # micro-batches per optimizer step (larger effective batch)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    val_every: int = 100  # steps between validation losses (0: only at the end)
    val_batches: int = 0  # batches per validation (0: the whole split)
    ckpt_every: int = 100  # steps between resumable checkpoints (0: never)
    log_every: int = 10  # steps between train-loss records
    seed: int = 0  # model init, dropout and data order
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA and on CPUs with AMX, else fp32) | fp32 | bf16
    compile: bool = False  # torch.compile the training forward (dynamic shapes); see docs/time.md
    # MiB of decoded training images each split's stream keeps, so that later epochs skip
    # reading and decoding the shards (vlcore.data.stream); the batches are the same either way
    data_cache_mb: int = 1024


Settings = TypeVar("Settings")


def split_settings(
    section: str, settings: Mapping[str, Any] | None, own_type: type[Settings]
) -> tuple[Settings, TrainConfig]:
    """Split a config section (``clip:``, ``judge:``, ...) into its stage's own settings
    dataclass and the shared loop's :class:`TrainConfig`. An unknown key is an error that
    lists the allowed ones; a loop key set to null keeps the loop's default."""
    settings = dict(settings or {})
    own = {f.name for f in fields(own_type)}
    loop = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(settings) - own - loop)
    if unknown:
        raise ValueError(
            f"unknown {section} setting(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(own | loop))}"
        )
    train = {k: v for k, v in settings.items() if k in loop and v is not None}
    if "betas" in train:
        train["betas"] = tuple(train["betas"])
    return own_type(**{k: v for k, v in settings.items() if k in own}), TrainConfig(**train)


def config_fingerprint(meta: dict[str, Any]) -> str:
    """A hash of everything that defines a run; a checkpoint resumes only a matching run."""
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_meta(meta: dict[str, Any] | None, config: TrainConfig, world_size: int) -> dict:
    """What :func:`fit` records in ``train_config.json`` (and fingerprints) for a run."""
    return {**(meta or {}), "train": asdict(config), "world_size": world_size}


def finished_run(
    out_dir: str | Path, meta: dict[str, Any] | None, config: TrainConfig, world_size: int
) -> bool:
    """Whether ``out_dir`` holds the final weights of exactly this run (same meta, config and
    process count), so that a later stage can start from them instead of training again."""
    out_dir = Path(out_dir)
    record = out_dir / "train_config.json"
    if not (out_dir / "model.safetensors").is_file() or not record.is_file():
        return False
    expected = json.loads(json.dumps(run_meta(meta, config, world_size), default=str))
    return json.loads(record.read_text(encoding="utf-8")) == expected


class _Batches:
    """Endless batches over epochs, resumable at (epoch, batch index within the epoch)."""

    def __init__(self, factory: Callable[[int], Iterable], epoch: int = 0, position: int = 0):
        self.factory = factory
        self.epoch = epoch
        self.position = position
        self._it: Iterator | None = None

    def _start_epoch(self) -> None:
        self._it = iter(self.factory(self.epoch))
        for _ in range(self.position):  # fast-forward after a resume
            next(self._it)

    def __next__(self):
        if self._it is None:
            self._start_epoch()
        try:
            batch = next(self._it)
        except StopIteration:
            if self.position == 0:
                raise ValueError(
                    "the training data yields no batch: the training split has fewer rows than "
                    "one batch per process; lower batch_size or add data"
                ) from None
            self.epoch, self.position = self.epoch + 1, 0
            self._start_epoch()
            batch = next(self._it)
        self.position += 1
        return batch


@torch.no_grad()
def evaluate(model, loss_fn: LossFn, batches: Iterable, runtime: Runtime, limit: int = 0) -> float:
    """Mean loss over ``batches`` (at most ``limit`` when > 0), averaged over processes."""
    model.eval()
    total, count = 0.0, 0
    for i, batch in enumerate(batches):
        if limit and i >= limit:
            break
        with runtime.autocast():
            total += float(loss_fn(model, to_device(batch, runtime.device)))
        count += 1
    model.train()
    total = all_reduce_mean(total, runtime) * runtime.world_size
    count = all_reduce_mean(float(count), runtime) * runtime.world_size
    return total / max(count, 1.0)


@contextlib.contextmanager
def _compiler_errors_explained(compiling: bool):
    """A crash inside torch.compile's compiler says what it is and how to train without it."""
    try:
        yield
    except Exception as exc:
        if not (compiling and isinstance(exc, torch._dynamo.exc.BackendCompilerFailed)):
            raise
        raise RuntimeError(
            f"torch.compile failed inside its compiler (torch {torch.__version__}): "
            f"{type(exc).__name__}. The model trains without it: set `compile: false` in "
            "this model's train section (the default), or try another torch version."
        ) from exc


def fit(
    model: torch.nn.Module,
    loss_fn: LossFn,
    train_batches: Callable[[int], Iterable],
    val_batches: Callable[[], Iterable] | None,
    config: TrainConfig,
    out_dir: str | Path,
    meta: dict[str, Any] | None = None,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place; write ``model.safetensors``, ``history.json``,
    ``loss_curve.png`` and ``train_config.json`` to ``out_dir`` and return the history."""
    out_dir = Path(out_dir)
    runtime = runtime or setup_runtime(config.device, config.precision)
    meta = run_meta(meta, config, runtime.world_size)
    fingerprint = config_fingerprint(meta)
    ckpt_dir = out_dir / "checkpoint"

    model.to(runtime.device)
    model.train()
    # Muon's Newton-Schulz iterations in bf16 only where bf16 is the training precision
    ns_dtype = torch.bfloat16 if runtime.precision == "bf16" else torch.float32
    # a model may step some of its parameters at a fraction of the rate (a tuned pretrained
    # tower: ClipPrefixCaptioner.learning_rate_scales)
    scales = model.learning_rate_scales() if hasattr(model, "learning_rate_scales") else {}
    optimizer = build_optimizer(
        model,
        config.optimizer,
        config.lr,
        config.weight_decay,
        config.betas,
        ns_dtype,
        lr_scales=scales,
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.max_steps)
    state = {"step": 0, "epoch": 0, "position": 0, "history": {"train": [], "val": []}}
    if ckpt_dir.is_dir():
        if read_meta(ckpt_dir).get("fingerprint") == fingerprint:
            state = load_checkpoint(ckpt_dir, model, optimizer, scheduler, runtime.device)
            logger.info("resumed from %s at step %d", ckpt_dir, state["step"])
        else:
            logger.warning("ignoring checkpoint %s: it belongs to another configuration", ckpt_dir)

    ddp = runtime.distributed
    wrapped = (
        DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None
        )
        if ddp
        else model
    )
    # compiled after the DDP wrap (its optimizer splits graphs at gradient buckets); the
    # weights stay the model's own, so checkpoints and saved weights do not change
    step_model = torch.compile(wrapped, dynamic=True) if config.compile else wrapped
    batches = _Batches(train_batches, state["epoch"], state["position"])
    history = state["history"]
    bar = tqdm(
        total=config.max_steps,
        initial=state["step"],
        desc="train",
        disable=None if runtime.is_main else True,
        dynamic_ncols=True,
    )

    step = state["step"]
    while step < config.max_steps:
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for micro in range(config.grad_accum):
            batch = to_device(next(batches), runtime.device)
            sync = not ddp or micro == config.grad_accum - 1
            with contextlib.nullcontext() if sync else wrapped.no_sync():
                with runtime.autocast(), _compiler_errors_explained(config.compile):
                    loss = loss_fn(step_model, batch) / config.grad_accum
                loss.backward()
            loss_sum += loss.item()
        if not math.isfinite(loss_sum):
            raise FloatingPointError(f"training loss became {loss_sum} at step {step}; lower lr")
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        bar.update(1)

        if step % config.log_every == 0 or step == config.max_steps:
            train_loss = all_reduce_mean(loss_sum, runtime)
            history["train"].append([step, train_loss, scheduler.get_last_lr()[0]])
            bar.set_postfix(loss=f"{train_loss:.4f}")
        if step % max(1, config.max_steps // 20) == 0 and runtime.is_main:
            # A line every 5% for logs (the progress bar is quiet off a terminal).
            logger.info("step %d/%d  loss %.4f  lr %.2e", step, config.max_steps, loss_sum,
                        scheduler.get_last_lr()[0])  # fmt: skip
        val_due = config.val_every and step % config.val_every == 0
        if val_batches is not None and (val_due or step == config.max_steps):
            val_loss = evaluate(wrapped, loss_fn, val_batches(), runtime, config.val_batches)
            history["val"].append([step, val_loss])
            logger.info("step %d: val loss %.4f", step, val_loss)
        if config.ckpt_every and step % config.ckpt_every == 0 and step < config.max_steps:
            train_state = {
                "step": step,
                "epoch": batches.epoch,
                "position": batches.position,
                "history": history,
            }
            if runtime.is_main:
                save_checkpoint(
                    ckpt_dir, model, optimizer, scheduler, train_state, {"fingerprint": fingerprint}
                )
            if ddp:
                torch.distributed.barrier()
    bar.close()
    # what "auto" became here: bf16 on GPUs and on CPUs with AMX, else fp32
    history["runtime"] = {"device": runtime.device.type, "precision": runtime.precision}

    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_weights(unwrap(model), out_dir / "model.safetensors")
        write_json(history, out_dir / "history.json")
        write_json(meta, out_dir / "train_config.json")
        plot_loss_curve(history, out_dir / "loss_curve.png", title=meta.get("name", ""))
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    if ddp:
        torch.distributed.barrier()
    return history
