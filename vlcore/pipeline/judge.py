"""Entry point of the attribute judge: ``train_judge`` (synthetic experiments only).

The judge (:mod:`vlcore.models.judge`) learns from the train split's real images, with labels
regenerated from the synthetic generator (:func:`vlcore.synthetic.truth.scene_truth`: the
scene of ``image_id`` under the experiment seed), through the shared loop. Half of the images
are mirrored (drawn per ``(seed, epoch, key)``, so the draw does not depend on the process
layout); the grid's columns swap with them. It is then scored on the real test images: the
mean attribute accuracy (the number ``score_images`` relies on, checked >= 98% on the default
config), the fraction of images read exactly, and per-head accuracies.

    train_judge("results/default/shards", {"seed": 0, "dirty_rate": 0.05},
                {"max_steps": 600, "seed": 0}, "results/default/judge",
                "results/default/scores/judge.json")
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from vlcore.data.shard import load_manifest
from vlcore.data.stream import ShardStream, training_streams
from vlcore.ids import stable_hash
from vlcore.io import write_json
from vlcore.models.judge import (
    ATTRIBUTES,
    AttributeJudge,
    JudgeConfig,
    attribute_accuracy,
    hflip_targets,
    judge_loss,
    predict_objects,
    save_judge,
    scene_targets,
)
from vlcore.synthetic.truth import scene_truth, truth_settings
from vlcore.train.checkpoint import unwrap
from vlcore.train.loop import TrainConfig, fit, split_settings
from vlcore.train.runtime import setup_runtime, teardown_runtime

logger = logging.getLogger(__name__)


@dataclass
class JudgeSettings:
    """The ``judge:`` config section besides the :class:`TrainConfig` fields it also holds."""

    # JudgeConfig fields (channels, hidden, dropout); image_size comes from the shards
    model: dict[str, Any] = field(default_factory=dict)
    # images per process and step
    batch_size: int = 64
    # mirror half of the training images (the shapes look the same mirrored)
    hflip: bool = True
    # DataLoader workers per process (PNG decoding); 0 decodes in the training process
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"judge batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"judge num_workers must be >= 0, got {self.num_workers}")


def parse_settings(settings: Mapping[str, Any]) -> tuple[JudgeSettings, TrainConfig]:
    """Split a ``judge:`` section into its own settings and the shared loop's TrainConfig."""
    return split_settings("judge", settings, JudgeSettings)


def flipped(key: str, seed: int, epoch: int) -> bool:
    """Whether row ``key`` is mirrored in ``epoch``: a fair coin fixed by (seed, epoch, key)."""
    return stable_hash(f"judge-flip:{seed}:{epoch}:{key}")[0] % 2 == 1


def collate_judge(
    rows: list[dict[str, Any]], *, truth: Mapping[str, Any], seed: int, epoch: int, hflip: bool
) -> dict[str, Any]:
    """ShardStream rows -> ``{"image": B 3 H W, "targets": per-cell targets}``."""
    images = torch.stack([r["image"] for r in rows])
    targets = scene_targets(scene_truth(truth, [r["image_id"] for r in rows]))
    if hflip:
        flip = torch.tensor([flipped(r["key"], seed, epoch) for r in rows])
        if flip.any():
            images[flip] = images[flip].flip(-1)
            mirrored = hflip_targets(targets)
            targets = {k: torch.where(flip[:, None], mirrored[k], v) for k, v in targets.items()}
    return {"image": images, "targets": targets}


def _data_fingerprint(shards_dir: str | os.PathLike) -> dict[str, list[str]]:
    manifest = load_manifest(shards_dir)
    return {s: [sh["sha256"] for sh in v["shards"]] for s, v in manifest["splits"].items()}


def train_judge(
    shards_dir: str | os.PathLike,
    truth: int | Mapping[str, Any],
    settings: Mapping[str, Any],
    out_dir: str | os.PathLike,
    scores_json: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train the judge on the ``train`` split of a synthetic experiment; score it on ``test``.

    ``truth``: the synthetic source's seed, or ``{"seed", "dirty_rate"}`` (see
    :func:`vlcore.synthetic.truth.scene_truth`). Writes ``model.safetensors``, ``judge.json``
    (with ``truth``, so a reader can regenerate scenes), ``history.json``, ``loss_curve.png``
    to ``out_dir`` and the test scores to ``scores_json``.
    """
    own, config = parse_settings(settings)
    seed_of_data, dirty_rate = truth_settings(truth)
    truth = {"seed": seed_of_data, "dirty_rate": dirty_rate}
    out_dir = Path(out_dir)
    manifest = load_manifest(shards_dir)
    model_config = JudgeConfig.from_dict({**own.model, "image_size": int(manifest["image_size"])})
    owns_group = not (dist.is_available() and dist.is_initialized())
    runtime = setup_runtime(config.device, config.precision)
    torch.manual_seed(config.seed)
    judge = AttributeJudge(model_config)
    streams = training_streams(
        manifest,
        seed=config.seed,
        rank=runtime.rank,
        world_size=runtime.world_size,
        cache_mb=config.data_cache_mb,
    )
    logger.info(
        "train_judge: %.2fM parameters, %d train / %d val rows per process, batch %d x %d",
        sum(p.numel() for p in judge.parameters()) / 1e6,
        len(streams["train"]),
        len(streams["val"]),
        own.batch_size,
        runtime.world_size,
    )

    def loader(split: str, epoch: int) -> DataLoader:
        streams[split].set_epoch(epoch)
        train = split == "train"
        fn = functools.partial(collate_judge, truth=truth, seed=config.seed, epoch=epoch,
                               hflip=own.hflip and train)  # fmt: skip
        return DataLoader(streams[split], batch_size=own.batch_size,
                          num_workers=own.num_workers, collate_fn=fn, drop_last=train)  # fmt: skip

    def loss_fn(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return judge_loss(model(batch["image"]), batch["targets"])

    meta = {
        "name": "train_judge",
        "model": dataclasses.asdict(model_config),
        "settings": dataclasses.asdict(own),
        "truth": truth,
        "data": _data_fingerprint(shards_dir),
    }
    has_val = len(streams["val"]) > 0
    start = time.perf_counter()
    scores: dict[str, Any] = {}
    try:
        history = fit(
            judge,
            loss_fn,
            lambda epoch: loader("train", epoch),
            (lambda: loader("val", 0)) if has_val else None,
            config,
            out_dir,
            meta=meta,
            runtime=runtime,
        )
        seconds = time.perf_counter() - start
        if runtime.is_main:
            trained = unwrap(judge).eval()
            save_judge(trained, out_dir, {"truth": truth, "train": meta}, weights=False)
            scores = {
                split: evaluate_judge(trained, manifest, split, truth)
                for split in ("test", "val")
                if manifest["splits"][split]["rows"]
            }
            scores.update(train_seconds=seconds, steps=config.max_steps, judge_dir=str(out_dir))
            if scores_json is not None:
                write_json(scores, scores_json)
        if runtime.distributed:
            dist.barrier()
    finally:
        if owns_group:
            teardown_runtime(runtime)
    test = scores.get("test", {})
    logger.info("train_judge: %d steps in %.1f s; test attribute accuracy %.4f, exact %.4f",
                config.max_steps, seconds, test.get("attribute_accuracy", float("nan")),
                test.get("exact", float("nan")))  # fmt: skip
    return {**history, "scores": scores, "seconds": seconds}


def _key(obj: Mapping[str, Any]) -> tuple:
    return tuple(obj[a] for a in ATTRIBUTES)


@torch.no_grad()
def evaluate_judge(
    judge: AttributeJudge,
    shards: str | os.PathLike | dict[str, Any],
    split: str,
    truth: int | Mapping[str, Any],
    *,
    batch_size: int = 256,
) -> dict[str, Any]:
    """The judge on the real images of ``split``: mean attribute accuracy, exact reads (the
    predicted objects equal the scene's, positions included), and per-head accuracies over
    cells (presence) and occupied cells (shape, colour, size)."""
    manifest = shards if isinstance(shards, dict) else load_manifest(shards)
    stream = ShardStream(manifest, split, rank=0, world_size=1)
    device = next(judge.parameters()).device
    n, acc_sum, exact = 0, 0.0, 0
    cells = {"presence": [0, 0], **{a: [0, 0] for a in ATTRIBUTES}}
    loader = DataLoader(stream, batch_size=batch_size, collate_fn=lambda rows: rows)
    for rows in loader:
        images = torch.stack([r["image"] for r in rows]).to(device)
        scenes = scene_truth(truth, [r["image_id"] for r in rows])
        predicted = predict_objects(judge, images, batch_size=batch_size)
        for pred, scene in zip(predicted, scenes, strict=True):
            n += 1
            acc_sum += attribute_accuracy(pred, scene)
            by_cell = {tuple(p["cell"]): p for p in pred}
            truth_cells = {tuple(o["cell"]): o for o in scene}
            exact += {c: _key(p) for c, p in by_cell.items()} == {
                c: _key(o) for c, o in truth_cells.items()
            }
            for cell in ((r, c) for r in range(3) for c in range(3)):
                cells["presence"][0] += (cell in by_cell) == (cell in truth_cells)
                cells["presence"][1] += 1
                if cell in truth_cells and cell in by_cell:
                    for a in ATTRIBUTES:
                        cells[a][0] += by_cell[cell][a] == truth_cells[cell][a]
                        cells[a][1] += 1
    if n == 0:
        raise ValueError(f"split {split!r} has no images to score the judge on")
    return {
        "split": split,
        "n_images": n,
        "attribute_accuracy": acc_sum / n,
        "exact": exact / n,
        "cell_accuracy": {k: (v[0] / v[1] if v[1] else None) for k, v in cells.items()},
    }
