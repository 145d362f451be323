"""Entry points of the CLIP stages: ``train_clip`` and the retrieval benchmark ``score_retrieval``.

Each training sample is an image and one of its captions, drawn afresh every epoch from
``(seed, epoch, key)``, so the draw is the same whatever the number of processes or data
workers. The loss is open_clip's symmetric InfoNCE (``ClipLoss``), with NegCLIP hard negatives
when ``hard_negatives`` lists word groups (:mod:`vlcore.models.clip_loss`); under DDP each process
scores its own images against the texts of all processes (``local_loss``, features gathered
with their gradients), which gives the gradient of the global batch at a fraction of the
memory. ``loss: siglip`` takes open_clip's ``SigLipLoss`` instead (a sigmoid per pair, with
the model's learned logit bias; under DDP the texts pass from process to process). The
learnable temperature is clamped to ``log(max_logit_scale)`` before every step, as open_clip's
trainer does after one.

    train_clip("results/default/shards", "results/default/tokenizer",
               {"model": "tiny", "max_steps": 250, "seed": 0}, "results/default/clip")
    score_retrieval("results/default/shards", "results/default/clip", "test",
                    "results/default/scores/retrieval.json")
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from open_clip import ClipLoss
from open_clip.loss import SigLipLoss
from torch.utils.data import DataLoader

from vlcore.data.hard_negatives import WordSwapper
from vlcore.data.shard import load_manifest, shards_fingerprint
from vlcore.data.stream import ShardStream, collate, training_streams
from vlcore.ids import stable_uint64
from vlcore.io import write_json
from vlcore.metrics.retrieval import DEFAULT_KS, retrieval_recall
from vlcore.models.clip import (
    Clip,
    build_clip,
    encode_images,
    encode_texts,
    inference_runtime,
    load_clip,
    save_clip,
)
from vlcore.models.clip_loss import HardNegativeClipLoss
from vlcore.train.checkpoint import save_weights, unwrap
from vlcore.train.loop import TrainConfig, fit, split_settings
from vlcore.train.runtime import Runtime, pick_device, setup_runtime, teardown_runtime

logger = logging.getLogger(__name__)


LOSSES = ("clip", "siglip")


@dataclass
class ClipSettings:
    """The ``clip:`` config section besides the :class:`TrainConfig` fields it also holds."""

    # preset (vlcore/presets/clip), open_clip name (ViT-B-32) or a CLIP folder
    model: str = "tiny"
    # with an open_clip name: a tag (needs the hub once) or a local weights file
    pretrained: str | None = None
    # image-caption pairs per process and micro-batch; each image is contrasted with the
    # batch_size * world_size captions of the step (grad_accum adds no negatives)
    batch_size: int = 128
    # DataLoader workers per process (PNG decoding); 0 decodes in the training process.
    # Workers split the stream, so the sample order (not its quality) depends on this
    num_workers: int = 0
    # upper bound of exp(logit_scale), open_clip's 100
    max_logit_scale: float = 100.0
    # NegCLIP: groups of mutually exclusive words ([[circle, square], [left, right]]); each
    # caption's copy with one word swapped within its group is an extra negative (empty: off)
    hard_negatives: list[list[str]] = field(default_factory=list)
    # "clip": open_clip's ClipLoss (softmax over the batch); "siglip": its SigLipLoss (a
    # sigmoid per image-caption pair; Zhai et al., 2023), for a model with a logit bias
    # (open_clip's SigLIP models, or a preset with "init_logit_bias": -10)
    loss: str = "clip"

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(
                f"clip batch_size must be >= 2 (a contrastive batch), got {self.batch_size}"
            )
        if self.num_workers < 0:
            raise ValueError(f"clip num_workers must be >= 0, got {self.num_workers}")
        if self.max_logit_scale <= 1:
            raise ValueError(f"clip max_logit_scale must be > 1, got {self.max_logit_scale}")
        WordSwapper(self.hard_negatives)  # raises on a malformed group
        if self.loss not in LOSSES:
            raise ValueError(f"clip loss must be one of {LOSSES}, got {self.loss!r}")
        if self.loss == "siglip" and self.hard_negatives:
            raise ValueError("clip hard_negatives extend the softmax of loss 'clip'; "
                             "with loss 'siglip' leave hard_negatives empty")  # fmt: skip


def parse_settings(settings: dict[str, Any]) -> tuple[ClipSettings, TrainConfig]:
    """Split a ``clip:`` section into its own settings and the shared loop's TrainConfig."""
    return split_settings("clip", settings, ClipSettings)


def pick_caption(captions: list[str], key: str, seed: int, epoch: int) -> str:
    """One caption of an image, fixed by (seed, epoch, key): the same on any process layout."""
    return captions[stable_uint64(f"{seed}:{epoch}:{key}") % len(captions)]


def row_texts(row: dict[str, Any]) -> list[str]:
    """The captions of a row; for rows with styled captions only (Personality), their texts."""
    return list(row["captions"]) or [s["caption"] for s in row["styled_captions"] or ()]


def collate_pairs(
    rows: list[dict[str, Any]],
    *,
    tokenizer,
    seed: int,
    epoch: int,
    swapper: WordSwapper | None = None,
) -> dict:
    """ShardStream rows -> ``{"image": [B, 3, H, W], "text": LongTensor [B, T]}``.

    With a non-empty ``swapper`` also ``negative_text`` (each caption with one word swapped,
    or the caption itself where it has no group word) and ``negative_valid`` (bool ``B``).
    Rows without any text (VQA-only rows) are left out."""
    pairs = [(r["image"], row_texts(r), r["key"]) for r in rows]
    pairs = [(image, texts, key) for image, texts, key in pairs if texts]
    if not pairs:
        return {"image": torch.empty(0), "text": torch.empty(0, dtype=torch.long)}
    texts = [pick_caption(texts, key, seed, epoch) for _, texts, key in pairs]
    batch = {"image": torch.stack([image for image, _, _ in pairs]), "text": tokenizer(texts)}
    if swapper:
        draws = [stable_uint64(f"{seed}:{epoch}:{key}:negative") for _, _, key in pairs]
        negatives = [swapper.negative(t, d) for t, d in zip(texts, draws, strict=True)]
        batch["negative_text"] = tokenizer(
            [n if n is not None else t for n, t in zip(negatives, texts, strict=True)]
        )
        batch["negative_valid"] = torch.tensor([n is not None for n in negatives])
    return batch


def count_rows_without_text(shards_dir: str | os.PathLike, split: str) -> int:
    """Rows of ``split`` with neither captions nor styled captions (reads two columns only)."""
    manifest = load_manifest(shards_dir)
    missing = 0
    for shard in manifest["splits"][split]["shards"]:
        table = pq.read_table(Path(manifest["dir"]) / shard["file"],
                              columns=["captions", "styled_captions"])  # fmt: skip
        for caps, styled in zip(*(table[c].to_pylist() for c in table.column_names), strict=True):
            missing += not caps and not styled
    return missing


def _loader(stream: ShardStream, clip: Clip, settings: ClipSettings, seed: int, epoch: int,
            drop_last: bool, swapper: WordSwapper | None = None) -> DataLoader:  # fmt: skip
    stream.set_epoch(epoch)
    fn = functools.partial(
        collate_pairs, tokenizer=clip.tokenizer, seed=seed, epoch=epoch, swapper=swapper
    )
    return DataLoader(
        stream,
        batch_size=settings.batch_size,
        num_workers=settings.num_workers,
        collate_fn=fn,
        drop_last=drop_last,
    )


def train_clip(
    shards_dir: str | os.PathLike,
    tokenizer_dir: str | os.PathLike | None,
    settings: dict[str, Any],
    out_dir: str | os.PathLike,
) -> dict[str, Any]:
    """Train CLIP on the ``train`` split (validation loss on ``val``); save it to ``out_dir``.

    ``settings``: :class:`ClipSettings` and :class:`~vlcore.train.loop.TrainConfig` fields.
    Writes ``model.safetensors``, ``open_clip_config.json``, ``vlcore_clip.json``,
    ``tokenizer/`` (presets), ``history.json``, ``train_config.json`` and ``loss_curve.png``
    (loadable with :func:`vlcore.models.clip.load_clip`). Under torchrun every process calls
    this; the main one writes. Returns the history plus a timing summary.
    """
    clip_settings, config = parse_settings(settings)
    out_dir = Path(out_dir)
    owns_group = not (dist.is_available() and dist.is_initialized())
    runtime = setup_runtime(config.device, config.precision)
    torch.manual_seed(config.seed)  # the same initial weights on every process
    clip = build_clip(
        clip_settings.model, tokenizer_dir=tokenizer_dir, pretrained=clip_settings.pretrained
    )
    if tokenizer_dir is not None and clip.tokenizer.kind != "vlcore":
        logger.warning("train_clip: %s brings its own tokenizer; %s is not used",
                       clip_settings.model, tokenizer_dir)  # fmt: skip
    preprocess = clip.preprocess
    seed = config.seed
    streams = training_streams(
        shards_dir,
        transform=preprocess,
        seed=seed,
        rank=runtime.rank,
        world_size=runtime.world_size,
        cache_mb=config.data_cache_mb,  # preprocess is open_clip's eval transform: no randomness
    )
    logger.info(
        "train_clip: %s (%.2fM parameters), %d train / %d val rows per process, batch %d x %d",
        clip.source,
        sum(p.numel() for p in clip.model.parameters()) / 1e6,
        len(streams["train"]),
        len(streams["val"]),
        clip_settings.batch_size,
        runtime.world_size,
    )

    swapper = WordSwapper(clip_settings.hard_negatives) or None

    def train_batches(epoch: int):
        return _loader(streams["train"], clip, clip_settings, seed, epoch, True, swapper)

    def val_batches():
        return _loader(streams["val"], clip, clip_settings, seed, 0, False, swapper)

    logit_bias = getattr(unwrap(clip.model), "logit_bias", None)
    if clip_settings.loss == "siglip":
        if logit_bias is None:
            raise ValueError(
                f"clip loss 'siglip' needs a model with a logit bias; {clip.source.get('name')!r} "
                'has none: add "init_logit_bias": -10 (and "init_logit_scale": 2.3026, '
                "log 10) to its preset, as open_clip's SigLIP configs have, or use loss 'clip'"
            )
        loss = SigLipLoss(cache_labels=True, rank=runtime.rank, world_size=runtime.world_size)
    else:
        if logit_bias is not None:  # a SigLIP model: the softmax loss has no use for its bias
            logit_bias.requires_grad_(False)  # (an unused parameter would stall DDP)
            logger.warning("train_clip: %s has a logit bias, which loss 'clip' leaves as it "
                           "is; set loss: siglip to train it", clip.source.get("name"))  # fmt: skip
        loss = (HardNegativeClipLoss if clip_settings.hard_negatives else ClipLoss)(
            local_loss=True,
            gather_with_grad=True,
            cache_labels=True,
            rank=runtime.rank,
            world_size=runtime.world_size,
        )
    max_log_scale = math.log(clip_settings.max_logit_scale)

    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            unwrap(model).logit_scale.clamp_(0, max_log_scale)
        if batch["text"].shape[0] == 0:  # every row of the batch lacked text
            return unwrap(model).logit_scale.sum() * 0.0
        if "negative_text" not in batch:
            out = model(image=batch["image"], text=batch["text"])
            features = (out["image_features"], out["text_features"], out["logit_scale"])
            if clip_settings.loss == "siglip":
                return loss(*features, out["logit_bias"])
            return loss(*features)
        # captions and their negatives through the text tower in one batch (one DDP forward)
        texts = torch.cat([batch["text"], batch["negative_text"]])
        out = model(image=batch["image"], text=texts)
        text_features, negative_features = out["text_features"].chunk(2)
        return loss(
            out["image_features"],
            text_features,
            out["logit_scale"],
            negative_features,
            batch["negative_valid"].to(text_features.device),
        )

    meta = {
        "name": "train_clip",
        "model": clip.source,
        "model_cfg": clip.model_cfg,
        "settings": dataclasses.asdict(clip_settings),
        "data": shards_fingerprint(shards_dir),
    }
    has_val = len(streams["val"]) > 0
    textless = {split: count_rows_without_text(shards_dir, split) for split in streams}
    if any(textless.values()) and runtime.distributed:
        raise ValueError(
            f"rows without a caption in {shards_dir} ({textless}); under DDP every process "
            "needs equal batches: drop such rows when cleaning, or train on one process"
        )
    if any(textless.values()):
        logger.warning("train_clip: rows without a caption are skipped: %s", textless)
    start = time.perf_counter()
    try:
        history = fit(
            clip.model,
            loss_fn,
            train_batches,
            val_batches if has_val else None,
            config,
            out_dir,
            meta=meta,
            runtime=runtime,
        )
        seconds = time.perf_counter() - start
        if runtime.is_main:
            model = unwrap(clip.model)
            over = float(model.logit_scale.detach().max()) > max_log_scale
            if over:  # the last optimizer step went past the bound: clamp the saved value too
                with torch.no_grad():
                    model.logit_scale.clamp_(0, max_log_scale)
                save_weights(model, out_dir / "model.safetensors")
            save_clip(clip, out_dir, weights=False)
        if runtime.distributed:
            dist.barrier()
    finally:
        if owns_group:
            teardown_runtime(runtime)
    summary = {
        "steps": config.max_steps,
        "seconds": seconds,
        "steps_per_second": config.max_steps / seconds if seconds > 0 else None,
        "world_size": runtime.world_size,
        "batch_size": clip_settings.batch_size,
        "model": clip.source,
    }
    logger.info("train_clip: %d steps in %.1f s (%.2f steps/s)", config.max_steps, seconds,
                summary["steps_per_second"] or 0.0)  # fmt: skip
    return {**history, "summary": summary}


@torch.no_grad()
def embed_split(
    clip: Clip,
    shards_dir: str | os.PathLike,
    split: str,
    *,
    batch_size: int = 256,
    runtime: Runtime | None = None,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Embed every image of ``split`` and all its captions (:func:`row_texts`).

    Returns ``image_emb [N_images, D]``, ``text_emb [N_texts, D]``, ``text_to_image``
    (``N_texts`` image indices), ``keys`` (per image) and ``skipped`` (images without captions).
    """
    stream = ShardStream(shards_dir, split, transform=clip.preprocess, rank=0, world_size=1)
    loader = DataLoader(stream, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    image_emb, texts, text_to_image, keys, skipped = [], [], [], [], 0
    for batch in loader:
        row_text = [
            row_texts({"captions": caps, "styled_captions": styled})
            for caps, styled in zip(batch["captions"], batch["styled_captions"], strict=True)
        ]
        keep = [i for i, t in enumerate(row_text) if t]
        skipped += len(row_text) - len(keep)
        if not keep:
            continue
        image_emb.append(encode_images(clip, batch["image"][keep], batch_size=batch_size,
                                       runtime=runtime))  # fmt: skip
        for i in keep:
            text_to_image += [len(keys)] * len(row_text[i])
            texts += row_text[i]
            keys.append(batch["key"][i])
    if not keys:
        raise ValueError(f"split {split!r} of {shards_dir} has no image with a caption")
    return {
        "image_emb": torch.cat(image_emb),
        "text_emb": encode_texts(clip, texts, batch_size=batch_size, runtime=runtime),
        "text_to_image": text_to_image,
        "keys": keys,
        "skipped": skipped,
    }


def score_retrieval(
    shards_dir: str | os.PathLike,
    clip_dir: str | os.PathLike,
    split: str = "test",
    out_json: str | os.PathLike | None = None,
    *,
    batch_size: int = 256,
    device: str = "auto",
    ks: tuple[int, ...] = DEFAULT_KS,
) -> dict[str, Any]:
    """Image->text and text->image R@K of ``clip_dir`` on ``split``, with chance levels.

    Every caption of every image is a query (text->image) and a target (image->text); see
    :func:`vlcore.metrics.retrieval.retrieval_recall` for the protocol. The result (recalls
    in percent, chance beside them, ``n_images``, ``n_texts``) is written to ``out_json``
    atomically when given, and returned.
    """
    clip = load_clip(clip_dir, device=pick_device(device))
    runtime = inference_runtime(clip)
    data = embed_split(clip, shards_dir, split, batch_size=batch_size, runtime=runtime)
    result = retrieval_recall(data["image_emb"], data["text_emb"], data["text_to_image"], ks=ks)
    result.update(
        split=split,
        clip_dir=str(clip_dir),
        model=clip.source,
        images_without_captions=data["skipped"],
    )
    if out_json is not None:
        write_json(result, out_json)
    return result
