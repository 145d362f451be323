"""A convolutional stem for vision transformers (Xiao et al., "Early Convolutions Help
Transformers See Better", 2021): 3x3 convolutions with a norm and GELU, halving the resolution
per stage down to the patch grid, in place of the linear patch projection.

Used by vit_gpt2's ViT (``conv_stem``, ``conv_stem_downsample``, ``conv_stem_norm``) and by
CLIP presets' open_clip ViT image tower (``vision_conv_stem``). On the shapes world, BatchNorm
in the stem is what lets the tiny models tell shapes apart within a CPU budget (docs/shapes.md,
"Training curves and the stem"); stride-2 convolutions do a quarter of max-pooling's work per stage.
BatchNorm's statistics are per process under DDP (no SyncBatchNorm), as in torchvision's
recipes without ``--sync-bn``; a 2-process run is then not bit-equal to a 1-process one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

# the vlcore key of a CLIP preset's model config that gives its ViT image tower this stem
VISION_STEM_KEY = "vision_conv_stem"
STEM_DOWNSAMPLING = ("maxpool", "stride")
STEM_NORMS = ("group", "batch")
# the keys of a CLIP preset's vision_conv_stem mapping
OPEN_CLIP_STEM_KEYS = ("channels", "downsample", "norm", "depth")


def _conv_block(c_in: int, c_out: int, stride: int, norm: str) -> list[nn.Module]:
    groups = 8 if c_out % 8 == 0 else 1
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1),
        nn.GroupNorm(groups, c_out) if norm == "group" else nn.BatchNorm2d(c_out),
        nn.GELU(),
    ]


class ConvStem(nn.Sequential):
    """``B 3 H W -> B hidden H/p W/p``: ``log2(p)`` stages of (3x3 conv, norm, GELU), each
    halving the resolution (``downsample``: a stride-2 conv, or 2x2 max-pooling after a
    stride-1 conv), the last one widening to ``hidden``. ``depth`` > 1 adds ``depth - 1``
    stride-1 (3x3 conv, norm, GELU) blocks at the end of every stage (a deeper stem with a
    wider receptive field, as in ResNet stages). Replaces a ViT's patch projection."""

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        patch_size: int,
        channels: list[int],
        downsample: str = "maxpool",
        norm: str = "group",
        depth: int = 1,
    ):
        if depth < 1:
            raise ValueError(f"conv_stem_depth must be at least 1, got {depth}")
        if norm not in STEM_NORMS:
            raise ValueError(f"conv_stem_norm must be one of {STEM_NORMS}, got {norm!r}")
        if downsample not in STEM_DOWNSAMPLING:
            raise ValueError(
                f"conv_stem_downsample must be one of {STEM_DOWNSAMPLING}, got {downsample!r}"
            )
        stages = patch_size.bit_length() - 1
        if patch_size < 2 or 1 << stages != patch_size or len(channels) != stages - 1:
            raise ValueError(
                f"conv_stem needs a power-of-two patch_size and log2(patch_size) - 1 channel "
                f"counts; got patch_size {patch_size} and conv_stem {channels}"
            )
        stride = 2 if downsample == "stride" else 1
        layers: list[nn.Module] = []
        for c_in, c_out in zip([in_channels, *channels], [*channels, hidden], strict=True):
            layers += _conv_block(c_in, c_out, stride, norm)
            if downsample == "maxpool":
                layers.append(nn.MaxPool2d(2))
            for _ in range(depth - 1):
                layers += _conv_block(c_out, c_out, 1, norm)
        super().__init__(*layers)

    @property
    def weight(self) -> torch.Tensor:  # ViTModel reads projection.weight.dtype
        return self[0].weight


def add_open_clip_stem(visual: nn.Module, stem: Mapping[str, Any]) -> nn.Module:
    """Replace the patch projection (``conv1``) of an open_clip ``VisionTransformer`` by a
    :class:`ConvStem`; ``stem``: ``{"channels": [...], "downsample": ..., "norm": ...}``
    (downsample and norm default to "stride" and "batch", the stem that learns shapes;
    ``"depth"``, convolutions per stage, to 1)."""
    unknown = sorted(set(stem) - set(OPEN_CLIP_STEM_KEYS))
    if unknown:
        raise ValueError(
            f"vision_conv_stem: unknown key(s) {unknown}; allowed: {', '.join(OPEN_CLIP_STEM_KEYS)}"
        )
    patch = getattr(visual, "conv1", None)
    if not isinstance(patch, nn.Conv2d) or patch.kernel_size != patch.stride:
        raise ValueError(
            "vision_conv_stem works with open_clip's VisionTransformer (a patch projection "
            f"conv1), not {type(visual).__name__}"
        )
    visual.conv1 = ConvStem(
        patch.in_channels,
        patch.out_channels,
        patch.kernel_size[0],
        list(stem.get("channels", [])),
        stem.get("downsample", "stride"),
        stem.get("norm", "batch"),
        int(stem.get("depth", 1)),
    )
    return visual
