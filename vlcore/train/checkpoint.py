"""Checkpoints that resume exactly and never unpickle code.

A checkpoint is a folder: ``model.safetensors`` (weights), ``state.pt`` (optimizer,
scheduler, step, data position and RNG states, loaded with ``weights_only=True``) and
``meta.json`` (the configs that made it). It is written to a temporary folder and renamed,
so an interrupted save never leaves a half checkpoint behind.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from vlcore.io import atomic_dir, read_json, write_json

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
META_FILE = "meta.json"


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DDP / compiled wrapper."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuple(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_tuple(value):
    if isinstance(value, list):
        return tuple(_to_tuple(v) for v in value)
    return value


def save_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    save_model(unwrap(model), str(path))


def load_weights(model: torch.nn.Module, path: str | os.PathLike, strict: bool = True) -> None:
    missing, unexpected = load_model(unwrap(model), str(path), strict=strict)
    if strict and (missing or unexpected):  # pragma: no cover - load_model raises first
        raise ValueError(
            f"weights do not fit the model: missing {missing}, unexpected {unexpected}"
        )


def save_checkpoint(
    ckpt_dir: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    train_state: dict[str, Any],
    meta: dict[str, Any],
) -> None:
    """Write a complete checkpoint folder atomically (call on the main process only)."""
    with atomic_dir(ckpt_dir) as tmp:
        save_weights(model, tmp / MODEL_FILE)
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "train_state": train_state,
            "rng": rng_state(),
        }
        torch.save(state, tmp / STATE_FILE)
        write_json(meta, tmp / META_FILE)


def load_checkpoint(
    ckpt_dir: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    map_location: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG from ``ckpt_dir``; return the train state."""
    ckpt_dir = Path(ckpt_dir)
    for name in (MODEL_FILE, STATE_FILE, META_FILE):
        if not (ckpt_dir / name).is_file():
            raise FileNotFoundError(
                f"checkpoint {ckpt_dir} is incomplete: {name} is missing; delete the folder to "
                "start training afresh"
            )
    load_weights(model, ckpt_dir / MODEL_FILE)
    state = torch.load(ckpt_dir / STATE_FILE, map_location=map_location, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state["train_state"]


def read_meta(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(ckpt_dir) / META_FILE)
