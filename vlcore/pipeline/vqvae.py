"""Entry points of the image tokenizer: ``train_vqvae`` and ``encode_images``.

``train_vqvae`` fits a :class:`vlcore.models.vqvae.VQVAE` on the train split's pixels (the
shared loop: resume, DDP, bf16 autocast on CUDA), then scores it on the test split: pixel MSE,
PSNR, the fraction of the codebook the split uses and the perplexity of its code histogram
(``exp`` of the entropy: the number of equally used codes with the same spread). It also draws
test originals above their reconstructions for the report.

``encode_images`` writes every split of the shards as code indices (:mod:`vlcore.data.codes`),
once, so DALL-E trains on tokens, not pixels.

    train_vqvae("results/default/shards", {"preset": "tiny", "max_steps": 600, "seed": 0},
                "results/default/vqvae", "results/default/scores/vqvae.json")
    encode_images("results/default/shards", "results/default/vqvae", "results/default/codes")
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vlcore.data import codes as codes_format
from vlcore.data.images import decode_rgb
from vlcore.data.shard import load_manifest, sha256_file
from vlcore.data.stream import ShardStream, image_to_tensor, training_streams
from vlcore.io import atomic_dir, atomic_path, write_json
from vlcore.models.vqvae import (
    VQVAE,
    load_preset,
    load_vqvae,
    reconstruction_loss,
    save_vqvae,
)
from vlcore.train.checkpoint import unwrap
from vlcore.train.loop import TrainConfig, fit, split_settings
from vlcore.train.runtime import pick_device, setup_runtime, teardown_runtime

logger = logging.getLogger(__name__)

GRID_IMAGES = 12  # test images in reconstructions.png
GRID_SCALE = 2  # pixel repetition in reconstructions.png


@dataclass
class VQVAESettings:
    """The ``vqvae:`` config section besides the :class:`TrainConfig` fields it also holds."""

    # architecture: a preset in vlcore/presets/vqvae or a JSON file
    preset: str = "tiny"
    # deep-merged into the preset, e.g. {"codebook_size": 1024}
    model: dict[str, Any] = field(default_factory=dict)
    # images per process and step (small batches, more steps: faster to learn on a CPU)
    batch_size: int = 16
    # weight of the chroma (colour minus grey level) MSE beside the pixel MSE
    chroma_weight: float = 4.0
    # DataLoader workers per process (PNG decoding); 0 decodes in the training process
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"vqvae batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"vqvae num_workers must be >= 0, got {self.num_workers}")
        if self.chroma_weight < 0:
            raise ValueError(f"vqvae chroma_weight must be >= 0, got {self.chroma_weight}")


def parse_settings(settings: dict[str, Any]) -> tuple[VQVAESettings, TrainConfig]:
    """Split a ``vqvae:`` section into its own settings and the shared loop's TrainConfig."""
    return split_settings("vqvae", settings, VQVAESettings)


def collate_images(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """ShardStream rows -> ``{"image": B 3 H W}`` (the VQ-VAE needs nothing else)."""
    return {"image": torch.stack([r["image"] for r in rows])}


def _data_fingerprint(shards_dir: str | os.PathLike) -> dict[str, list[str]]:
    manifest = load_manifest(shards_dir)
    return {s: [sh["sha256"] for sh in v["shards"]] for s, v in manifest["splits"].items()}


def train_vqvae(
    shards_dir: str | os.PathLike,
    settings: dict[str, Any],
    out_dir: str | os.PathLike,
    scores_json: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train on the ``train`` split (validation loss on ``val``), save to ``out_dir``, score on
    ``test``.

    Writes ``model.safetensors``, ``vqvae.json``, ``history.json``, ``train_config.json``,
    ``loss_curve.png`` and ``reconstructions.png`` to ``out_dir`` and the test scores to
    ``scores_json`` (the main process writes). Returns the history, the scores and a timing
    summary.
    """
    own, config = parse_settings(settings)
    out_dir = Path(out_dir)
    manifest = load_manifest(shards_dir)
    image_size = int(manifest["image_size"])
    model_config = load_preset(own.preset, {**own.model, "image_size": image_size})
    owns_group = not (dist.is_available() and dist.is_initialized())
    runtime = setup_runtime(config.device, config.precision)
    torch.manual_seed(config.seed)  # the same initial weights on every process
    model = VQVAE(model_config)
    streams = training_streams(
        manifest,
        seed=config.seed,
        rank=runtime.rank,
        world_size=runtime.world_size,
        cache_mb=config.data_cache_mb,
    )
    logger.info(
        "train_vqvae: %s (%.2fM parameters), %d px -> %dx%d codes of %d, %d train / %d val "
        "rows per process, batch %d x %d",
        own.preset,
        sum(p.numel() for p in model.parameters()) / 1e6,
        image_size,
        *model.grid,
        model.codebook_size,
        len(streams["train"]),
        len(streams["val"]),
        own.batch_size,
        runtime.world_size,
    )

    def loader(split: str, epoch: int, drop_last: bool) -> DataLoader:
        streams[split].set_epoch(epoch)
        return DataLoader(
            streams[split],
            batch_size=own.batch_size,
            num_workers=own.num_workers,
            collate_fn=collate_images,
            drop_last=drop_last,
        )

    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return reconstruction_loss(model(batch["image"]), batch["image"], own.chroma_weight)

    meta = {
        "name": "train_vqvae",
        "model": model_config.to_dict(),
        "settings": dataclasses.asdict(own),
        "data": _data_fingerprint(shards_dir),
    }
    has_val = len(streams["val"]) > 0
    start = time.perf_counter()
    scores: dict[str, Any] = {}
    try:
        history = fit(
            model,
            loss_fn,
            lambda epoch: loader("train", epoch, drop_last=True),
            (lambda: loader("val", 0, drop_last=False)) if has_val else None,
            config,
            out_dir,
            meta=meta,
            runtime=runtime,
        )
        seconds = time.perf_counter() - start
        if runtime.is_main:
            trained = unwrap(model).eval()
            save_vqvae(trained, out_dir, {"train": meta}, weights=False)
            scores = evaluate_vqvae(trained, manifest, "test", device=runtime.device)
            scores.update(train_seconds=seconds, steps=config.max_steps, vqvae_dir=str(out_dir))
            save_reconstructions(trained, manifest, "test", out_dir / "reconstructions.png")
            if scores_json is not None:
                write_json(scores, scores_json)
        if runtime.distributed:
            dist.barrier()
    finally:
        if owns_group:
            teardown_runtime(runtime)
    logger.info("train_vqvae: %d steps in %.1f s; test %s", config.max_steps, seconds,
                {k: scores.get(k) for k in ("mse", "psnr", "usage", "perplexity")})  # fmt: skip
    return {**history, "scores": scores, "seconds": seconds}


# -- scoring ----------------------------------------------------------------------------------


def code_statistics(counts: torch.Tensor) -> dict[str, float]:
    """Usage (fraction of codes used at least once) and perplexity of a code histogram."""
    total = float(counts.sum())
    if total == 0:
        return {"usage": 0.0, "used_codes": 0, "perplexity": 0.0}
    p = counts.double() / total
    entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
    return {
        "usage": float((counts > 0).double().mean()),
        "used_codes": int((counts > 0).sum()),
        "perplexity": math.exp(entropy),
    }


def _split_images(shards: dict[str, Any], split: str, batch_size: int) -> Iterator[torch.Tensor]:
    stream = ShardStream(shards, split, rank=0, world_size=1)
    loader = DataLoader(stream, batch_size=batch_size, collate_fn=collate_images)
    for batch in loader:
        yield batch["image"]


@torch.no_grad()
def evaluate_vqvae(
    model: VQVAE,
    shards: str | os.PathLike | dict[str, Any],
    split: str = "test",
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
) -> dict[str, Any]:
    """Reconstruction of ``split`` through the codes: MSE and PSNR (pixels in [0, 1]; PSNR of
    the split's mean MSE, and the mean of per-image PSNRs), codebook usage and perplexity."""
    manifest = shards if isinstance(shards, dict) else load_manifest(shards)
    model = model.to(device).eval()
    counts = torch.zeros(model.codebook_size, dtype=torch.long)
    sq_err, n_images, n_values, per_image_psnr = 0.0, 0, 0, 0.0
    for images in _split_images(manifest, split, batch_size):
        images = images.to(device)
        codes = model.encode(images)
        recon = model.decode_codes(codes)
        err = (recon.float() - images.float()).pow(2).flatten(1).mean(1).cpu()
        sq_err += float(err.sum()) * images[0].numel()
        n_values += images.numel()
        n_images += images.shape[0]
        per_image_psnr += float((10 * torch.log10(1.0 / err.clamp_min(1e-10))).sum())
        counts += torch.bincount(codes.flatten().cpu(), minlength=model.codebook_size)
    if n_images == 0:
        raise ValueError(f"split {split!r} has no images to score the VQ-VAE on")
    mse = sq_err / n_values
    return {
        "split": split,
        "n_images": n_images,
        "mse": mse,
        "psnr": 10 * math.log10(1.0 / max(mse, 1e-10)),
        "psnr_mean_per_image": per_image_psnr / n_images,
        **code_statistics(counts),
        "codebook_size": model.codebook_size,
        "grid": list(model.grid),
        "image_size": model.image_size,
    }


def _to_pil(images: torch.Tensor) -> list[Image.Image]:
    arrays = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arrays]


def image_grid(rows: list[list[Image.Image]], scale: int = 1, gap: int = 2) -> Image.Image:
    """Paste rows of equally sized images on a white canvas (pixel-repeated ``scale`` times)."""
    w, h = rows[0][0].size
    w, h = w * scale, h * scale
    cols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (cols * (w + gap) + gap, len(rows) * (h + gap) + gap), "white")
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            img = img.resize((w, h), Image.Resampling.NEAREST)
            canvas.paste(img, (gap + j * (w + gap), gap + i * (h + gap)))
    return canvas


@torch.no_grad()
def save_reconstructions(
    model: VQVAE,
    shards: str | os.PathLike | dict[str, Any],
    split: str,
    path: str | os.PathLike,
    n: int = GRID_IMAGES,
) -> None:
    """The first ``n`` images of ``split`` (top row) above their reconstructions from codes."""
    manifest = shards if isinstance(shards, dict) else load_manifest(shards)
    images = next(_split_images(manifest, split, n))
    device = next(model.parameters()).device
    recon = model.decode_codes(model.encode(images.to(device)))
    grid = image_grid([_to_pil(images), _to_pil(recon)], scale=GRID_SCALE)
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")


# -- encode_images ----------------------------------------------------------------------------


def _decode_batch(blobs: list[bytes]) -> torch.Tensor:
    return torch.stack([image_to_tensor(decode_rgb(b)) for b in blobs])


@torch.no_grad()
def encode_images(
    shards_dir: str | os.PathLike,
    vqvae_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 256,
    device: str = "auto",
) -> dict[str, Any]:
    """Encode every split of ``shards_dir`` with the VQ-VAE in ``vqvae_dir`` into ``out_dir``
    (one Parquet per shard plus ``manifest.json``, see :mod:`vlcore.data.codes`), atomically.
    Returns the manifest."""
    manifest = load_manifest(shards_dir)
    model = load_vqvae(vqvae_dir, device=pick_device(device))
    if int(manifest["image_size"]) != model.image_size:
        raise ValueError(
            f"the VQ-VAE in {vqvae_dir} takes {model.image_size} px images but the shards in "
            f"{shards_dir} hold {manifest['image_size']} px ones: retrain it on these shards"
        )
    dev = next(model.parameters()).device
    columns = ["key", "image_id", "split", "captions", "styled_captions", "image"]
    total = sum(v["rows"] for v in manifest["splits"].values())
    splits: dict[str, Any] = {}
    start = time.perf_counter()
    with (
        atomic_dir(out_dir) as tmp,
        tqdm(total=total, desc="encode", unit="img", disable=None) as bar,
    ):
        for split, info in manifest["splits"].items():
            counts = torch.zeros(model.codebook_size, dtype=torch.long)
            files = []
            for shard in info["shards"]:
                source = Path(manifest["dir"]) / shard["file"]
                parquet = pq.ParquetFile(source)
                parts = []
                for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
                    images = _decode_batch(batch.column("image").to_pylist()).to(dev)
                    codes = model.encode(images).flatten(1).cpu()
                    counts += torch.bincount(codes.flatten(), minlength=model.codebook_size)
                    parts.append(
                        pa.table(
                            {
                                **{c: batch.column(c) for c in columns if c != "image"},
                                "codes": pa.array(
                                    list(codes.numpy().astype(np.int16)),
                                    type=pa.list_(pa.int16()),
                                ),
                            }
                        ).cast(codes_format.SCHEMA)
                    )
                    bar.update(images.shape[0])
                table = pa.concat_tables(parts) if parts else codes_format.SCHEMA.empty_table()
                pq.write_table(table, tmp / shard["file"])
                files.append(
                    {
                        "file": shard["file"],
                        "rows": table.num_rows,
                        "sha256": sha256_file(tmp / shard["file"]),
                        "source_sha256": shard["sha256"],
                    }
                )
            splits[split] = {
                "rows": sum(f["rows"] for f in files),
                "files": files,
                **code_statistics(counts),
            }
        out = {
            "format_version": codes_format.FORMAT_VERSION,
            "grid": list(model.grid),
            "codebook_size": model.codebook_size,
            "image_size": model.image_size,
            "vqvae": {
                "dir": str(vqvae_dir),
                "sha256": sha256_file(Path(vqvae_dir) / "model.safetensors"),
            },
            "shards_manifest_sha256": sha256_file(Path(manifest["dir"]) / "manifest.json"),
            "splits": splits,
        }
        write_json(out, tmp / codes_format.MANIFEST)
    logger.info("encode_images: %d images in %.1f s; train usage %.3f, perplexity %.1f", total,
                time.perf_counter() - start, splits.get("train", {}).get("usage", 0.0),
                splits.get("train", {}).get("perplexity", 0.0))  # fmt: skip
    return out
