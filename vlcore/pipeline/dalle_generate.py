"""DALL-E's generation stage: ``generate_images``, N sampled images per prompt.

``generate_images`` takes one caption per image of the evaluation split as the prompt (the
first ``prompts`` images; which caption: ``prompt_caption``), draws ``samples`` code grids per
prompt with a trained DALL-E (:mod:`vlcore.pipeline.dalle`) and decodes them with the VQ-VAE.
Sample ``j`` of the prompt of image ``key`` is drawn from its own seed ``hash(seed, key, j)``:
the result does not depend on the batch size, the number of prompts or the device layout.

    generate_images("results/default/dalle", "results/default/vqvae", "results/default/shards",
                    "test", {"generate": {"samples": 16}, "seed": 0},
                    "results/default/t2i/samples.parquet")

``samples.parquet`` has one row per sample (prompt-major, then sample index)::

    prompt: int32 (index of the prompt), key: str, image_id: int64, caption: str,
    sample: int32, seed: int64, codes: list<int16> (h * w, row-major), image: binary (PNG)
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from tqdm.auto import tqdm

from vlcore.data.shard import load_manifest
from vlcore.ids import seeded_draw
from vlcore.io import atomic_path
from vlcore.models.dalle import sample_codes, text_tokens
from vlcore.pipeline.dalle import load_dalle, parse_settings
from vlcore.train.runtime import Runtime, pick_device

logger = logging.getLogger(__name__)

SAMPLES_SCHEMA = pa.schema(
    [
        ("prompt", pa.int32()),
        ("key", pa.string()),
        ("image_id", pa.int64()),
        ("caption", pa.string()),
        ("sample", pa.int32()),
        ("seed", pa.int64()),
        ("codes", pa.list_(pa.int16())),
        ("image", pa.binary()),
    ]
)


@dataclass
class Prompt:
    index: int
    key: str
    image_id: int
    caption: str


def choose_caption(captions: Sequence[str], how: str, seed: int, key: str) -> str:
    """The prompt among an image's captions: the longest (first of equal length), the first,
    or one drawn from (seed, key)."""
    if how == "first":
        return captions[0]
    if how == "random":
        return captions[seeded_draw(seed, "prompt", key) % len(captions)]
    return max(captions, key=len)


def read_prompts(
    shards_dir: str | os.PathLike,
    split: str,
    limit: int | None = None,
    how: str = "longest",
    seed: int = 0,
) -> list[Prompt]:
    """One prompt per image of ``split`` that has a caption, in shard order (first ``limit``)."""
    manifest = load_manifest(shards_dir)
    if split not in manifest["splits"]:
        raise ValueError(f"split must be one of {sorted(manifest['splits'])}, got {split!r}")
    prompts: list[Prompt] = []
    for shard in manifest["splits"][split]["shards"]:
        table = pq.read_table(
            Path(manifest["dir"]) / shard["file"], columns=["key", "image_id", "captions"]
        )
        for row in table.to_pylist():
            if limit is not None and len(prompts) >= limit:
                return prompts
            if row["captions"]:
                caption = choose_caption(row["captions"], how, seed, row["key"])
                prompts.append(Prompt(len(prompts), row["key"], int(row["image_id"]), caption))
    if not prompts:
        raise ValueError(f"split {split!r} of {shards_dir} has no image with a caption")
    return prompts


def sample_seed(seed: int, key: str, sample: int) -> int:
    """The seed of sample ``sample`` of the prompt of image ``key`` (63 bits)."""
    return seeded_draw(seed, "sample", key, sample) >> 1


def png_bytes(image: torch.Tensor) -> bytes:
    """``3 H W`` float in [0, 1] -> PNG bytes."""
    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _inference_runtime(device: torch.device) -> Runtime:
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return Runtime(device, precision="bf16" if bf16 else "fp32")


def generate_images(
    dalle_dir: str | os.PathLike,
    vqvae_dir: str | os.PathLike,
    shards_dir: str | os.PathLike,
    split: str,
    settings: Mapping[str, Any] | None,
    out_parquet: str | os.PathLike,
) -> dict[str, Any]:
    """Draw ``samples`` images per prompt of ``split`` and write ``out_parquet`` (see the
    module docstring). ``settings``: the ``dalle`` section (its ``generate`` part and
    ``seed``). Returns a summary (prompts, samples, seconds)."""
    from vlcore.models.vqvae import load_vqvae

    _, config, gen = parse_settings(settings)
    device = pick_device(config.device)
    runtime = _inference_runtime(device)
    loaded = load_dalle(dalle_dir, device)
    vqvae = load_vqvae(vqvae_dir, device)
    model = loaded.model
    if tuple(vqvae.grid) != model.grid or vqvae.codebook_size != model.vocab.codebook_size:
        raise ValueError(
            f"the VQ-VAE in {vqvae_dir} ({vqvae.grid}, {vqvae.codebook_size} codes) is not the "
            f"one DALL-E was trained on ({model.grid}, {model.vocab.codebook_size} codes)"
        )
    prompts = read_prompts(shards_dir, split, gen.prompts, gen.prompt_caption, config.seed)
    text = text_tokens(loaded.tokenizer, [p.caption for p in prompts], model.config.text_length)
    jobs = [(p, j) for p in prompts for j in range(gen.samples)]
    sampling = gen.sampling()
    columns: dict[str, list] = {name: [] for name in SAMPLES_SCHEMA.names}
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), desc="generate_images", disable=None, dynamic_ncols=True)
    for lo in range(0, len(jobs), gen.batch_size):
        batch = jobs[lo : lo + gen.batch_size]
        seeds = [sample_seed(config.seed, p.key, j) for p, j in batch]
        ids = text[[p.index for p, _ in batch]]
        codes = sample_codes(model, ids, seeds, sampling, autocast=runtime.autocast)
        with runtime.autocast():
            images = vqvae.decode_codes(codes.view(-1, *model.grid)).float().cpu()
        for (p, j), seed, c, image in zip(batch, seeds, codes.cpu(), images, strict=True):
            columns["prompt"].append(p.index)
            columns["key"].append(p.key)
            columns["image_id"].append(p.image_id)
            columns["caption"].append(p.caption)
            columns["sample"].append(j)
            columns["seed"].append(seed)
            columns["codes"].append(c.numpy().astype(np.int16))
            columns["image"].append(png_bytes(image))
        bar.update(len(batch))
        logger.info("generate_images: %d/%d samples", lo + len(batch), len(jobs))
    bar.close()
    seconds = time.perf_counter() - start
    table = pa.table(columns, schema=SAMPLES_SCHEMA)
    with atomic_path(out_parquet) as tmp:
        pq.write_table(table, tmp)
    summary = {
        "prompts": len(prompts),
        "samples_per_prompt": gen.samples,
        "samples": len(jobs),
        "seconds": seconds,
        "sampling": dataclasses.asdict(sampling),
    }
    logger.info(
        "generate_images: %d prompts x %d samples in %.1f s (%s)",
        len(prompts),
        gen.samples,
        seconds,
        summary["sampling"],
    )
    return summary


def read_samples(path: str | os.PathLike) -> pa.Table:
    """The samples written by :func:`generate_images`, in their order."""
    return pq.read_table(path, schema=SAMPLES_SCHEMA)
