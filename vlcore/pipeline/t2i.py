"""Text-to-image evaluation: ``rerank_images``, ``score_images`` and the ``results/t2i.json``
table.

``rerank_images`` scores every sample of ``generate_images`` against its prompt with a scorer
chosen by config (``rerank.scorer``; :data:`SCORERS`: ``clip``, the experiment's trained CLIP,
as DALL-E reranked its samples with CLIP) and keeps the ``keep`` best of each prompt.

``score_images`` gives the honest numbers:

- **CLIP score** (cosine of the CLIP image and caption embeddings) of the reranked top-1 and
  top-k against a *random pick* from the same samples. The random pick is scored exactly, as
  its expectation: the mean over all samples of the prompt. References: the real test image of
  the prompt, and its VQ-VAE reconstruction (``reconstruction``: the best DALL-E can draw
  through the codes).
- **Attribute accuracy** by the independent judge (synthetic experiments;
  :mod:`vlcore.models.judge`): how well the objects of an image match the scene the prompt's
  caption was written for, in percent, for a random sample (expectation over all samples),
  the reranked top-1, the top-k, the real test image and its reconstruction, plus the best
  sample of each prompt by the judge itself (``best_of_n``: what a perfect reranker would
  reach). Gains come with the standard error of the mean of the per-prompt differences.
- an image grid (``grid.png``): per prompt, its caption, the real image, ``keep`` random
  samples (samples are i.i.d., so the first ``keep`` are a random pick) and the ``keep``
  reranked ones, best first.

    rerank_images("results/default/t2i/samples.parquet", "results/default/clip",
                  {"scorer": "clip", "keep": 4}, "results/default/t2i/rerank.json")
    score_images("results/default/t2i/samples.parquet", "results/default/t2i/rerank.json",
                 "results/default/shards", "test", "results/default/clip",
                 "results/default/vqvae", "results/default/judge", {"seed": 0}, {},
                 "results/default/scores/t2i.json", "results/default/t2i/grid.png")
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image, ImageDraw

from vlcore.data.images import decode_rgb
from vlcore.data.shard import load_manifest
from vlcore.data.stream import image_to_tensor
from vlcore.io import atomic_path, read_json, write_json
from vlcore.pipeline.dalle_generate import read_samples
from vlcore.train.runtime import pick_device

logger = logging.getLogger(__name__)


# -- settings ---------------------------------------------------------------------------------


@dataclass
class RerankSettings:
    """The ``rerank:`` config section (rerank_images and score_images)."""

    # what scores a sample against its prompt (a key of SCORERS)
    scorer: str = "clip"
    # samples kept per prompt, best first
    keep: int = 4
    # images per scoring forward pass
    batch_size: int = 256
    # prompts drawn in grid.png
    grid_prompts: int = 8

    def __post_init__(self) -> None:
        if self.scorer not in SCORERS:
            raise ValueError(
                f"rerank scorer {self.scorer!r} is unknown; expected one of {sorted(SCORERS)}"
            )
        for name in ("keep", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"rerank {name} must be >= 1, got {getattr(self, name)}")
        if self.grid_prompts < 0:
            raise ValueError(f"rerank grid_prompts must be >= 0, got {self.grid_prompts}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> RerankSettings:
        values = dict(values or {})
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(
                f"unknown rerank option(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**values)


# -- scorers ----------------------------------------------------------------------------------

#: ``scorer(images, captions) -> scores``: images ``N 3 H W`` in [0, 1], one caption each.
Scorer = Callable[[torch.Tensor, Sequence[str]], torch.Tensor]


def clip_scorer(
    model_dir: str | os.PathLike, device: str = "auto", batch_size: int = 256
) -> Scorer:
    """Cosine similarity of the CLIP image and caption embeddings (the experiment's CLIP)."""
    from torchvision.transforms.functional import to_pil_image

    from vlcore.models.clip import encode_images, encode_texts, load_clip

    clip = load_clip(model_dir, device=pick_device(device))

    def score(images: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        unique = sorted(set(captions))
        text = encode_texts(clip, unique, batch_size=batch_size)
        row = {c: i for i, c in enumerate(unique)}
        out = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            pil = [to_pil_image(img) for img in chunk]
            emb = encode_images(clip, pil, batch_size=batch_size)
            idx = torch.tensor([row[c] for c in captions[start : start + batch_size]])
            out.append((emb * text[idx]).sum(-1))
        return torch.cat(out) if out else torch.empty(0)

    return score


#: Scorer factories by name: ``factory(model_dir, device, batch_size) -> Scorer``.
SCORERS: dict[str, Callable[..., Scorer]] = {"clip": clip_scorer}


# -- reading samples --------------------------------------------------------------------------


def decode_images(blobs: Sequence[bytes]) -> torch.Tensor:
    """PNG/JPEG bytes -> ``N 3 H W`` float in [0, 1]."""
    return torch.stack([image_to_tensor(decode_rgb(b)) for b in blobs])


@dataclass
class Samples:
    """``generate_images`` output grouped by prompt: ``rows[p]`` are the row numbers of prompt
    ``p``'s samples, in sample order."""

    table: list[dict[str, Any]]
    rows: list[list[int]]

    @classmethod
    def read(cls, path: str | os.PathLike) -> Samples:
        table = read_samples(path).to_pylist()
        rows: dict[int, list[int]] = {}
        for i, row in enumerate(table):
            rows.setdefault(row["prompt"], []).append(i)
        if sorted(rows) != list(range(len(rows))):
            raise ValueError(f"{path}: prompt indices are not 0..{len(rows) - 1}")
        grouped = [sorted(rows[p], key=lambda i: table[i]["sample"]) for p in range(len(rows))]
        if len({len(g) for g in grouped}) > 1:
            raise ValueError(f"{path}: prompts have different numbers of samples")
        return cls(table, grouped)

    def prompt(self, p: int) -> dict[str, Any]:
        first = self.table[self.rows[p][0]]
        return {k: first[k] for k in ("prompt", "key", "image_id", "caption")}

    def images(self, rows: Sequence[int] | None = None) -> torch.Tensor:
        rows = range(len(self.table)) if rows is None else rows
        return decode_images([self.table[i]["image"] for i in rows])


def score_samples(samples: Samples, scorer: Scorer, batch_size: int) -> torch.Tensor:
    """The scorer's score of every sample row against its caption (``N``)."""
    out = []
    n = len(samples.table)
    for start in range(0, n, batch_size):
        rows = range(start, min(start + batch_size, n))
        captions = [samples.table[i]["caption"] for i in rows]
        out.append(scorer(samples.images(rows), captions).float().cpu())
        logger.info("scored %d/%d samples", rows[-1] + 1, n)
    return torch.cat(out) if out else torch.empty(0)


def top_k(scores: Sequence[float], k: int) -> list[int]:
    """Indices of the ``k`` highest scores, best first; ties go to the lower index."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return order[:k]


# -- rerank_images ----------------------------------------------------------------------------


def rerank_images(
    samples_path: str | os.PathLike,
    scorer_dir: str | os.PathLike,
    settings: Mapping[str, Any] | None,
    out_json: str | os.PathLike,
    *,
    device: str = "auto",
) -> dict[str, Any]:
    """Score every sample against its prompt and keep the ``keep`` best per prompt; write
    ``{scorer, scorer_dir, keep, samples_per_prompt, prompts: [{prompt, key, image_id,
    caption, scores: [per sample], kept: [sample indices, best first]}]}``."""
    own = RerankSettings.from_dict(settings)
    samples = Samples.read(samples_path)
    start = time.perf_counter()
    scorer = SCORERS[own.scorer](scorer_dir, device, own.batch_size)
    scores = score_samples(samples, scorer, own.batch_size)
    n = len(samples.rows[0]) if samples.rows else 0
    if own.keep > n:
        logger.warning("rerank keep %d > %d samples per prompt: keeping all", own.keep, n)
    prompts = []
    for p, rows in enumerate(samples.rows):
        values = [float(scores[i]) for i in rows]
        prompts.append({**samples.prompt(p), "scores": values, "kept": top_k(values, own.keep)})
    result = {
        "scorer": own.scorer,
        "scorer_dir": str(scorer_dir),
        "keep": min(own.keep, n),
        "samples_per_prompt": n,
        "prompts": prompts,
    }
    write_json(result, out_json, sort_keys=False)
    logger.info("rerank_images: %d prompts x %d samples scored by %s in %.1f s", len(prompts),
                n, own.scorer, time.perf_counter() - start)  # fmt: skip
    return result


# -- score_images -----------------------------------------------------------------------------


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    if len(array) == 0:
        return math.nan, math.nan
    se = float(array.std(ddof=1) / math.sqrt(len(array))) if len(array) > 1 else math.nan
    return float(array.mean()), se


def pick_summary(
    per_sample: Sequence[Sequence[float]],
    kept: Sequence[Sequence[int]],
    references: Mapping[str, Sequence[float]] | None = None,
    scale: float = 1.0,
) -> dict[str, Any]:
    """Random pick (expectation over the samples), reranked top-1 and top-k and the best
    sample of each prompt, averaged over prompts (x ``scale``), plus the gains of the reranked
    picks over a random one with their standard errors; ``references`` are per-prompt values
    of other images (the real one, its VQ-VAE reconstruction), averaged the same way."""
    random = [float(np.mean(s)) for s in per_sample]
    top1 = [s[k[0]] for s, k in zip(per_sample, kept, strict=True)]
    topk = [float(np.mean([s[i] for i in k])) for s, k in zip(per_sample, kept, strict=True)]
    best = [max(s) for s in per_sample]
    out: dict[str, Any] = {}
    for name, values in (("random", random), ("top1", top1), ("topk", topk), ("best_of_n", best)):
        out[name] = _mean_se(values)[0] * scale
    for name, values in (references or {}).items():
        out[name] = _mean_se(values)[0] * scale
    for name, values in (("top1", top1), ("topk", topk)):
        mean, se = _mean_se([a - b for a, b in zip(values, random, strict=True)])
        out[f"gain_{name}"] = mean * scale
        out[f"gain_{name}_se"] = se * scale
    return out


def real_images(shards_dir: str | os.PathLike, split: str, keys: Sequence[str]) -> torch.Tensor:
    """The images of ``keys`` from ``split`` of the shards, ``N 3 H W`` in [0, 1]."""
    manifest = load_manifest(shards_dir)
    wanted = set(keys)
    found: dict[str, bytes] = {}
    for shard in manifest["splits"][split]["shards"]:
        table = pq.read_table(Path(manifest["dir"]) / shard["file"], columns=["key", "image"])
        for key, blob in zip(table["key"].to_pylist(), table["image"].to_pylist(), strict=True):
            if key in wanted:
                found[key] = blob
    missing = [k for k in keys if k not in found]
    if missing:
        raise ValueError(f"{len(missing)} prompt images are not in split {split!r}: {missing[:3]}")
    return decode_images([found[k] for k in keys])


@torch.no_grad()
def reconstruct(
    vqvae_dir: str | os.PathLike, images: torch.Tensor, batch_size: int, device: str = "auto"
) -> torch.Tensor:
    """``decode_codes(encode(images))`` with the VQ-VAE of ``vqvae_dir`` (on the CPU after)."""
    from vlcore.models.vqvae import load_vqvae

    vqvae = load_vqvae(vqvae_dir, device=pick_device(device))
    dev = next(vqvae.parameters()).device
    out = [
        vqvae.decode_codes(vqvae.encode(chunk.to(dev))).float().cpu()
        for chunk in images.split(batch_size)
    ]
    return torch.cat(out) if out else images.clone()


def _pil(image: torch.Tensor, scale: int) -> Image.Image:
    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    pil = Image.fromarray(array)
    return pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)


def draw_grid(rows: Sequence[dict[str, Any]], out_png: str | os.PathLike, scale: int = 2) -> None:
    """Per row: the caption above the real image, random samples and reranked picks (no rows:
    a blank image, so the rule still has its output)."""
    if not rows:
        with atomic_path(out_png) as tmp:
            Image.new("RGB", (1, 1), "white").save(tmp, format="PNG")
        return
    gap, text_h = 4, 14
    first = rows[0]
    side = first["real"].shape[-1] * scale
    n = 1 + len(first["random"]) + len(first["reranked"])
    width = n * side + (n + 2) * gap + 2 * gap
    height = len(rows) * (side + text_h + 2 * gap) + text_h + gap
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    k = len(first["random"])
    x_random, x_rerank = side + 3 * gap, side + 3 * gap + k * (side + gap) + 2 * gap
    draw.text((gap, 2), "real", fill="black")
    draw.text((x_random, 2), "random samples", fill="black")
    draw.text((x_rerank, 2), "reranked (best first)", fill="black")
    y = text_h + gap
    for row in rows:
        draw.text((gap, y), row["caption"][:160], fill="black")
        y += text_h
        canvas.paste(_pil(row["real"], scale), (gap, y))
        for i, image in enumerate(row["random"]):
            canvas.paste(_pil(image, scale), (x_random + i * (side + gap), y))
        for i, image in enumerate(row["reranked"]):
            canvas.paste(_pil(image, scale), (x_rerank + i * (side + gap), y))
        y += side + 2 * gap
    with atomic_path(out_png) as tmp:
        buf = io.BytesIO()
        canvas.save(buf, format="PNG")
        tmp.write_bytes(buf.getvalue())


def score_images(
    samples_path: str | os.PathLike,
    rerank_json: str | os.PathLike,
    shards_dir: str | os.PathLike,
    split: str,
    clip_dir: str | os.PathLike,
    vqvae_dir: str | os.PathLike | None,
    judge_dir: str | os.PathLike | None,
    truth_source: Any,
    settings: Mapping[str, Any] | None,
    out_json: str | os.PathLike,
    grid_png: str | os.PathLike,
    *,
    device: str = "auto",
) -> dict[str, Any]:
    """CLIP scores and judge attribute accuracies of random vs reranked samples (see the
    module docstring). ``vqvae_dir`` adds the VQ-VAE reconstructions of the real images as a
    reference (the best DALL-E could draw through its codes); ``judge_dir`` None skips the
    judge (non-synthetic data).
    ``truth_source``: what :func:`vlcore.synthetic.truth.scene_truth` takes (the experiment's
    config section or its seed)."""
    own = RerankSettings.from_dict(settings)
    samples = Samples.read(samples_path)
    rerank = read_json(rerank_json)
    if len(rerank["prompts"]) != len(samples.rows):
        raise ValueError(f"{rerank_json} ranks {len(rerank['prompts'])} prompts, "
                         f"{samples_path} has {len(samples.rows)}")  # fmt: skip
    kept = [p["kept"] for p in rerank["prompts"]]
    prompts = [samples.prompt(p) for p in range(len(samples.rows))]
    captions = [p["caption"] for p in prompts]
    real = real_images(shards_dir, split, [p["key"] for p in prompts])
    start = time.perf_counter()
    references = {"real": real}
    if vqvae_dir is not None:
        references["reconstruction"] = reconstruct(vqvae_dir, real, own.batch_size, device)

    if rerank["scorer"] == "clip" and Path(rerank["scorer_dir"]) == Path(clip_dir):
        clip_samples = [p["scores"] for p in rerank["prompts"]]
        logger.info("score_images: the samples' CLIP scores come from %s", rerank_json)
        scorer = clip_scorer(clip_dir, device, own.batch_size)
    else:
        scorer = clip_scorer(clip_dir, device, own.batch_size)
        scores = score_samples(samples, scorer, own.batch_size)
        clip_samples = [[float(scores[i]) for i in rows] for rows in samples.rows]
    clip_refs = {name: scorer(images, captions).tolist() for name, images in references.items()}
    result: dict[str, Any] = {
        "prompts": len(prompts),
        "samples_per_prompt": len(samples.rows[0]),
        "keep": rerank["keep"],
        "reranker": rerank["scorer"],
        "split": split,
        "clip_score": pick_summary(clip_samples, kept, clip_refs),
    }
    if judge_dir is not None:
        from vlcore.models.judge import judge_scores, load_judge, scene_truth

        judge = load_judge(judge_dir, device=pick_device(device))
        scenes = scene_truth(truth_source, [p["image_id"] for p in prompts])
        per_sample = []
        for p, rows in enumerate(samples.rows):
            acc = judge_scores(judge, samples.images(rows), [scenes[p]] * len(rows))
            per_sample.append(acc.tolist())
        refs = {name: judge_scores(judge, images, scenes).tolist()
                for name, images in references.items()}  # fmt: skip
        result["attribute_accuracy"] = pick_summary(per_sample, kept, refs, scale=100.0)
        result["attribute_accuracy"]["unit"] = "percent"
    else:
        result["attribute_accuracy"] = None
    logger.info("score_images: scored in %.1f s", time.perf_counter() - start)

    rows = []
    for p in range(min(own.grid_prompts, len(prompts))):
        ids = samples.rows[p]
        rows.append(
            {
                "caption": captions[p],
                "real": real[p],
                "random": samples.images(ids[: rerank["keep"]]),
                "reranked": samples.images([ids[i] for i in kept[p]]),
            }
        )
    draw_grid(rows, grid_png)
    write_json(result, out_json, sort_keys=False)
    logger.info("score_images: CLIP %s; attributes %s", result["clip_score"],
                result["attribute_accuracy"])  # fmt: skip
    return result
