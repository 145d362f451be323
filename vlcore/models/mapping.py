"""Prefix mapping networks: image features -> ``prefix_length`` embeddings a language model reads
before the text.

From ClipCap (Mokady, Hertz and Bermano, "ClipCap: CLIP Prefix for Image Captioning", 2021),
both variants:

- ``mlp``: the pooled CLIP embedding through a two-layer MLP (tanh) straight to
  ``prefix_length x dim`` values. Cheap; ClipCap pairs it with a fine-tuned GPT-2.
- ``transformer``: the image features become ``clip_length`` tokens (a pooled embedding by
  a linear map, patch tokens one by one), ``prefix_length`` learned constant tokens are
  appended, a transformer encoder mixes them, and the constants' outputs are the prefix.
  ClipCap pairs it with a frozen GPT-2. On patch tokens it can add a learned embedding per
  token position (``n_positions``; on the shapes world it changed nothing, docs/shapes.md).

Inputs are ``B D`` (a pooled embedding) or ``B N D`` (patch tokens, as in GIT); for tokens the
``mlp`` variant maps every token on its own (the LLaVA projector), so the prefix has ``N``
embeddings. Output: ``B P E`` with ``E`` the decoder's embedding width.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

MAPPINGS = ("mlp", "transformer")


class MLPMapping(nn.Module):
    """ClipCap's MLP: ``B D -> B P E`` (pooled input), or ``B N D -> B N E`` (token input)."""

    def __init__(self, in_dim: int, out_dim: int, prefix_length: int, tokens: bool = False):
        super().__init__()
        self.prefix_length = prefix_length
        self.out_dim = out_dim
        self.tokens = tokens
        if tokens:  # per token: in -> out -> out
            sizes = (in_dim, out_dim, out_dim)
        else:  # ClipCap: in -> (P*E)/2 -> P*E
            sizes = (in_dim, out_dim * prefix_length // 2, out_dim * prefix_length)
        self.net = nn.Sequential(
            nn.Linear(sizes[0], sizes[1]), nn.Tanh(), nn.Linear(sizes[1], sizes[2])
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.tokens:
            return self.net(features)
        return self.net(features).view(features.shape[0], self.prefix_length, self.out_dim)


class TransformerMapping(nn.Module):
    """ClipCap's transformer mapper: ``B D`` or ``B N D`` -> ``B P E``."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        prefix_length: int,
        clip_length: int = 10,
        num_layers: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        tokens: bool = False,
        n_positions: int = 0,
    ):
        super().__init__()
        if n_positions and not tokens:
            raise ValueError("mapping position embeddings need token features ('tokens')")
        self.prefix_length = prefix_length
        self.clip_length = clip_length
        self.out_dim = out_dim
        self.tokens = tokens
        # a pooled embedding becomes clip_length tokens; patch tokens are projected one by one
        self.project = nn.Linear(in_dim, out_dim if tokens else clip_length * out_dim)
        self.prefix_const = nn.Parameter(torch.randn(prefix_length, out_dim) * 0.02)
        # one learned embedding per patch position, added after the projection (0: none)
        self.positions = (
            nn.Parameter(torch.randn(n_positions, out_dim) * 0.02) if n_positions else None
        )
        layer = nn.TransformerEncoderLayer(
            out_dim,
            num_heads,
            dim_feedforward=int(out_dim * mlp_ratio),
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(out_dim), enable_nested_tensor=False
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch = features.shape[0]
        x = self.project(features)
        if self.positions is not None:
            if x.shape[1] != len(self.positions):
                raise ValueError(
                    f"the mapping has {len(self.positions)} position embeddings but got "
                    f"{x.shape[1]} tokens"
                )
            x = x + self.positions
        if not self.tokens:
            x = x.view(batch, self.clip_length, self.out_dim)
        prefix = self.prefix_const.unsqueeze(0).expand(batch, -1, -1)
        out = self.transformer(torch.cat([x, prefix], dim=1))
        return out[:, -self.prefix_length :]


def pool_token_grid(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """Average-pool the square grid of patch tokens ``B N D`` to ``B grid*grid D`` (row-major,
    as a ViT orders its patches): fewer, coarser tokens that still say where they are."""
    batch, n, dim = tokens.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{n} patch tokens do not form a square grid")
    x = tokens.transpose(1, 2).reshape(batch, dim, side, side)
    return F.adaptive_avg_pool2d(x, grid).flatten(2).transpose(1, 2)


def build_mapping(
    kind: str,
    in_dim: int,
    out_dim: int,
    prefix_length: int,
    *,
    tokens: bool = False,
    clip_length: int = 10,
    num_layers: int = 2,
    num_heads: int = 4,
    mlp_ratio: float = 2.0,
    n_positions: int = 0,
) -> nn.Module:
    """The ``mlp`` or ``transformer`` mapping (see the module docstring); ``n_positions``
    > 0 gives the transformer mapping a learned embedding per input token."""
    if kind == "mlp":
        if n_positions:
            raise ValueError("position embeddings are for the transformer mapping only")
        return MLPMapping(in_dim, out_dim, prefix_length, tokens=tokens)
    if kind == "transformer":
        if out_dim % num_heads:
            raise ValueError(f"mapping_heads {num_heads} must divide the decoder width {out_dim}")
        return TransformerMapping(
            in_dim,
            out_dim,
            prefix_length,
            clip_length,
            num_layers,
            num_heads,
            mlp_ratio,
            tokens,
            n_positions,
        )
    raise ValueError(f"mapping {kind!r} is unknown; expected one of {MAPPINGS}")
