"""Batched, gradient-free CLIP embeddings: L2-normalised, on the model's device, bf16 autocast
on a GPU. ``clip`` is a :class:`vlcore.models.clip.Clip` (re-exported there)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from PIL import Image

from vlcore.train.runtime import Runtime

if TYPE_CHECKING:
    from vlcore.models.clip import Clip


def inference_runtime(clip: Clip) -> Runtime:
    """Single-process runtime on the model's device: bf16 autocast there if it is a GPU."""
    device = clip.device
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return Runtime(device, precision="bf16" if bf16 else "fp32")


@torch.no_grad()
def _encode(clip: Clip, chunks, fn, runtime: Runtime | None) -> torch.Tensor:
    runtime = runtime or inference_runtime(clip)
    was_training = clip.model.training
    clip.model.eval()
    out = []
    try:
        for chunk in chunks:
            with runtime.autocast():
                features = fn(chunk.to(runtime.device, non_blocking=True))
            out.append(F.normalize(features.float(), dim=-1).cpu())
    finally:
        clip.model.train(was_training)
    if not out:
        return torch.empty(0, clip.embed_dim)
    return torch.cat(out)


def encode_images(
    clip: Clip,
    images: torch.Tensor | Sequence[Image.Image],
    *,
    batch_size: int = 256,
    runtime: Runtime | None = None,
) -> torch.Tensor:
    """L2-normalised image embeddings ``[N, embed_dim]`` (float32, on the CPU).

    ``images``: preprocessed ``FloatTensor [N, 3, H, W]`` (``clip.preprocess`` already applied,
    as :class:`~vlcore.data.stream.ShardStream` does with ``transform=clip.preprocess``), or
    PIL images, preprocessed here.
    """
    if not isinstance(images, torch.Tensor):
        preprocess = clip.preprocess
        tensors = [preprocess(img) for img in images]
        images = torch.stack(tensors) if tensors else torch.empty(0, 3, 1, 1)
    chunks = images.split(batch_size)
    return _encode(clip, chunks, clip.model.encode_image, runtime)


def encode_texts(
    clip: Clip, texts: Sequence[str], *, batch_size: int = 256, runtime: Runtime | None = None
) -> torch.Tensor:
    """L2-normalised text embeddings ``[N, embed_dim]`` (float32, on the CPU)."""
    if isinstance(texts, str):
        raise ValueError("encode_texts takes a list of texts, not a single string")
    texts = list(texts)
    chunks = (clip.tokenizer(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size))
    return _encode(clip, chunks, clip.model.encode_text, runtime)
