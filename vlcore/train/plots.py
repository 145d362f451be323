"""Loss-curve images for the report."""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vlcore.io import atomic_path  # noqa: E402


def curve_title(history: dict[str, Any], name: str = "") -> str:
    """The run's name and where it trained, e.g. ``train_clip default (cpu, bf16)``."""
    runtime = history.get("runtime")
    where = f"({runtime['device']}, {runtime['precision']})" if runtime else ""
    return " ".join(part for part in (name, where) if part)


def plot_loss_curve(history: dict[str, Any], path: str | os.PathLike, title: str = "") -> None:
    """Train loss (and validation loss, when recorded) against the optimizer step; the title
    is ``title`` and the device and precision the run recorded."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    values = []
    if history["train"]:
        steps, losses = zip(*[(s, loss) for s, loss, *_ in history["train"]], strict=True)
        ax.plot(steps, losses, label="train", color="tab:blue")
        values += losses
    if history["val"]:
        steps, losses = zip(*history["val"], strict=True)
        ax.plot(steps, losses, "o-", label="validation", color="tab:orange")
        values += losses
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if values and min(values) > 0:  # a policy-gradient loss (self-critical) can be negative
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    title = curve_title(history, title)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
