"""Image-text retrieval recall (R@K) with several captions per image, and its chance level.

The protocol of the Flickr30k / COCO 5k retrieval benchmarks (Karpathy and Fei-Fei 2015;
Faghri et al., "VSE++", 2018; Radford et al., "CLIP", 2021):

- image -> text: an image is a hit at K if *any* of its captions is among the K texts most
  similar to it; its rank is the rank of its best-ranked caption;
- text -> image: a text is a hit at K if its one image is among the K most similar images.

Similarity is the dot product of L2-normalised embeddings (cosine), computed in chunks so that
10k images x 50k texts never holds the full similarity matrix. Ties are counted against the
query (a competitor scoring exactly as high as the best positive ranks ahead of it), so
degenerate embeddings, e.g. all equal, cannot score above zero.

Chance levels are exact for random rankings of the same setting: text -> image R@K = K / N_images;
image -> text R@K = 1 - C(N_texts - n_i, K) / C(N_texts, K) for an image with n_i captions,
averaged over images; expected mean ranks (N_images + 1) / 2 and (N_texts + 1) / (n_i + 1).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
# Similarity entries per block: 2**24 float32 = 64 MiB (peak about 3x that with masks).
BLOCK_ELEMENTS = 2**24


def _as_tensor(name: str, value: torch.Tensor | np.ndarray) -> torch.Tensor:
    tensor = torch.as_tensor(value)
    if tensor.ndim != 2 or tensor.shape[0] == 0 or tensor.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty 2-D array (n, dim), got shape {tuple(tensor.shape)}"
        )
    if not tensor.is_floating_point():
        tensor = tensor.float()
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"ks must not repeat, got {ks!r}")
    return tuple(sorted(ks))


def _check_mapping(text_to_image, n_images: int, n_texts: int) -> torch.Tensor:
    mapping = torch.as_tensor(text_to_image).cpu()
    if mapping.ndim != 1 or mapping.shape[0] != n_texts:
        raise ValueError(
            f"text_to_image must list one image index per text ({n_texts}), "
            f"got shape {tuple(mapping.shape)}"
        )
    if mapping.dtype.is_floating_point or mapping.dtype == torch.bool:
        raise ValueError(f"text_to_image must hold integer image indices, got {mapping.dtype}")
    mapping = mapping.long()
    if n_texts and (int(mapping.min()) < 0 or int(mapping.max()) >= n_images):
        raise ValueError(
            f"text_to_image values must be image indices in [0, {n_images}), "
            f"got range [{int(mapping.min())}, {int(mapping.max())}]"
        )
    orphans = n_images - int(torch.unique(mapping).numel())
    if orphans:
        raise ValueError(
            f"{orphans} image(s) have no text in text_to_image; image -> text recall needs at "
            "least one caption per image"
        )
    return mapping


def _summary(ranks: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """R@K (percent), mean and median of 1-based ranks."""
    ranks = ranks.double()
    out = {f"R@{k}": 100.0 * float((ranks <= k).double().mean()) for k in ks}
    out["mean_rank"] = float(ranks.mean())
    out["median_rank"] = float(np.median(ranks.numpy()))
    return out


@torch.no_grad()
def _text_to_image_ranks(
    images: torch.Tensor, texts: torch.Tensor, mapping: torch.Tensor, chunk: int
) -> torch.Tensor:
    ranks = torch.empty(texts.shape[0], dtype=torch.long)
    for start in range(0, texts.shape[0], chunk):
        sims = texts[start : start + chunk] @ images.T  # (chunk, n_images)
        target = mapping[start : start + chunk].to(sims.device)
        positive = sims.gather(1, target[:, None])
        # competitors at least as similar as the true image; the true image counts itself once
        ranks[start : start + sims.shape[0]] = (sims >= positive).sum(1).cpu()
    return ranks


@torch.no_grad()
def _image_to_text_ranks(
    images: torch.Tensor, texts: torch.Tensor, mapping: torch.Tensor, chunk: int
) -> torch.Tensor:
    ranks = torch.empty(images.shape[0], dtype=torch.long)
    owner = mapping.to(images.device)
    for start in range(0, images.shape[0], chunk):
        sims = images[start : start + chunk] @ texts.T  # (chunk, n_texts)
        rows = torch.arange(start, start + sims.shape[0], device=sims.device)
        positive = owner[None, :] == rows[:, None]
        best = sims.masked_fill(~positive, float("-inf")).max(1).values
        ahead = ((sims >= best[:, None]) & ~positive).sum(1)
        ranks[start : start + sims.shape[0]] = (ahead + 1).cpu()
    return ranks


def _hit_probability(n_total: int, n_positive: int, k: int) -> float:
    """P(at least one of n_positive items in a random top-k of n_total) = 1 - C(N-n,k)/C(N,k)."""
    k = min(k, n_total)
    if k > n_total - n_positive:
        return 1.0
    miss = 1.0
    for j in range(k):
        miss *= (n_total - n_positive - j) / (n_total - j)
    return 1.0 - miss


def chance_recall(
    n_images: int, captions_per_image: Sequence[int], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, dict[str, float]]:
    """Exact R@K (percent) and mean rank of a random ranking, for both directions."""
    ks = _check_ks(ks)
    counts = Counter(int(n) for n in captions_per_image)
    n_texts = sum(n * c for n, c in counts.items())
    if n_images < 1 or not counts or sum(counts.values()) != n_images or min(counts) < 1:
        raise ValueError("captions_per_image must give a positive count for each of the n_images")
    image_to_text = {
        f"R@{k}": 100.0
        * sum(c * _hit_probability(n_texts, n, k) for n, c in counts.items())
        / n_images
        for k in ks
    }
    image_to_text["mean_rank"] = (
        sum(c * (n_texts + 1) / (n + 1) for n, c in counts.items()) / n_images
    )
    text_to_image = {f"R@{k}": 100.0 * min(k, n_images) / n_images for k in ks}
    text_to_image["mean_rank"] = (n_images + 1) / 2
    return {"image_to_text": image_to_text, "text_to_image": text_to_image}


def retrieval_recall(
    image_emb: torch.Tensor | np.ndarray,
    text_emb: torch.Tensor | np.ndarray,
    text_to_image: Sequence[int] | torch.Tensor | np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int | None = None,
    normalize: bool = True,
) -> dict:
    """Image <-> text retrieval recall with several captions per image.

    Args:
        image_emb: ``(n_images, dim)`` tensor or array; on a GPU the work stays there.
        text_emb: ``(n_texts, dim)``, same ``dim``.
        text_to_image: for each text, the index of its image; every image needs >= 1 text.
        ks: the K of R@K.
        chunk_size: query rows per similarity block; ``None`` sizes blocks to about
            2**24 similarities (64 MiB in float32), so 10k x 50k runs in bounded memory.
        normalize: L2-normalise embeddings first (cosine similarity, as CLIP).

    Returns:
        ``{"image_to_text": {"R@K"..., "mean_rank", "median_rank"}, "text_to_image": {...},
        "chance": {"image_to_text": {"R@K"..., "mean_rank"}, "text_to_image": {...}},
        "rsum", "n_images", "n_texts", "ks"}``; recalls in percent, ranks 1-based.
    """
    ks = _check_ks(ks)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    images = _as_tensor("image_emb", image_emb)
    texts = _as_tensor("text_emb", text_emb).to(device=images.device)
    if images.shape[1] != texts.shape[1]:
        raise ValueError(
            f"image_emb and text_emb dims differ: {images.shape[1]} vs {texts.shape[1]}"
        )
    dtype = torch.promote_types(torch.promote_types(images.dtype, texts.dtype), torch.float32)
    images, texts = images.to(dtype), texts.to(dtype)
    if normalize:
        images = torch.nn.functional.normalize(images, dim=1)
        texts = torch.nn.functional.normalize(texts, dim=1)
    n_images, n_texts = images.shape[0], texts.shape[0]
    mapping = _check_mapping(text_to_image, n_images, n_texts)

    i2t_chunk = chunk_size or max(1, BLOCK_ELEMENTS // n_texts)
    t2i_chunk = chunk_size or max(1, BLOCK_ELEMENTS // n_images)
    i2t = _summary(_image_to_text_ranks(images, texts, mapping, i2t_chunk), ks)
    t2i = _summary(_text_to_image_ranks(images, texts, mapping, t2i_chunk), ks)
    chance = chance_recall(n_images, torch.bincount(mapping, minlength=n_images).tolist(), ks)
    result = {
        "image_to_text": i2t,
        "text_to_image": t2i,
        "chance": chance,
        "rsum": sum(i2t[f"R@{k}"] + t2i[f"R@{k}"] for k in ks),
        "n_images": n_images,
        "n_texts": n_texts,
        "ks": list(ks),
    }
    logger.info(
        "retrieval over %d images / %d texts: i2t R@%d %.2f, t2i R@%d %.2f",
        n_images, n_texts, ks[0], i2t[f"R@{ks[0]}"], ks[0], t2i[f"R@{ks[0]}"],
    )  # fmt: skip
    return result
