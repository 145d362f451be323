"""A convolutional VQ-VAE: the image tokenizer of the text-to-image half (DALL-E's first stage).

van den Oord et al., "Neural Discrete Representation Learning" (2017). An encoder of residual
blocks and stride-2 convolutions maps an image to a ``h x w`` grid of vectors; each vector is
replaced by its nearest codebook entry (vector-quantize-pytorch's ``VectorQuantize``: EMA
codebook updates, k-means initialisation on the first batch, dead codes replaced by batch
vectors, a commitment loss); a mirrored decoder draws the image back. DALL-E then models the
grid of code indices as a sequence of ``h * w`` image tokens.

Public API (what ``train_dalle`` / ``generate_images`` use)::

    model = load_vqvae("results/default/vqvae", device="cpu")   # eval mode
    codes = model.encode(images)          # images B 3 H W float in [0, 1] -> LongTensor B h w
    images = model.decode_codes(codes)    # LongTensor B h w -> B 3 H W float in [0, 1]
    model.codebook_size, model.grid, model.image_size      # 512, (8, 8), 64
    out = model(images)                   # training: VQVAEOutput(reconstruction, codes, commit_loss)
    save_vqvae(model, "some/folder")      # model.safetensors + vqvae.json

Invariant (tested): in eval mode ``decode_codes(encode(x))`` equals ``model(x).reconstruction``
clamped to [0, 1]: the codes hold everything the decoder sees.

Architectures are data: presets are JSON files in ``vlcore/presets/vqvae`` (:func:`load_preset`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from vlcore.config import deep_update
from vlcore.io import atomic_path, read_json, write_json
from vlcore.train.checkpoint import load_weights, save_weights

logger = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets" / "vqvae"
DEFAULT_PRESET = "tiny"
RECORD_FILE = "vqvae.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


# -- building blocks --------------------------------------------------------------------------


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    """Pre-norm residual block: x + conv(silu(norm(conv(silu(norm(x))))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """``B 3 H W`` in [0, 1] -> ``B D h w`` with ``h = H / 2**len(channels)``.

    Stride-2 4x4 convolutions down to the grid, then the residual blocks at the grid's
    resolution (where they are cheap): the cost stays small enough for CPU training.
    """

    def __init__(self, channels: list[int], res_blocks: int, embed_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        prev = 3
        for i, ch in enumerate(channels):
            if i:
                layers.append(nn.SiLU())
            layers.append(nn.Conv2d(prev, ch, 4, stride=2, padding=1))
            prev = ch
        layers += [ResBlock(prev) for _ in range(res_blocks)]
        layers += [_norm(prev), nn.SiLU(), nn.Conv2d(prev, embed_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images * 2.0 - 1.0)


class Decoder(nn.Module):
    """``B D h w`` -> ``B 3 H W`` (unclamped; about [0, 1] once trained): residual blocks at
    the grid's resolution, then stride-2 transposed convolutions back to the image."""

    def __init__(self, channels: list[int], res_blocks: int, embed_dim: int):
        super().__init__()
        rev = list(reversed(channels))
        layers: list[nn.Module] = [nn.Conv2d(embed_dim, rev[0], 3, padding=1)]
        layers += [ResBlock(rev[0]) for _ in range(res_blocks)]
        layers += [_norm(rev[0]), nn.SiLU()]
        outs = [*rev[1:], 3]
        for i, (cin, cout) in enumerate(zip(rev, outs, strict=True)):
            layers.append(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1))
            if i < len(outs) - 1:
                layers.append(nn.SiLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z) * 0.5 + 0.5


# -- configuration ----------------------------------------------------------------------------


@dataclass
class VQVAEConfig:
    """A VQ-VAE architecture (a preset JSON, plus the experiment's overrides)."""

    # side of the square input images; must match the shards' image_size
    image_size: int = 64
    # encoder widths, one stride-2 stage each: the code grid is image_size / 2**len(channels)
    channels: list[int] = field(default_factory=lambda: [32, 64, 96])
    # residual blocks per stage (encoder and decoder)
    res_blocks: int = 1
    # width of the latent vectors that are quantized
    embed_dim: int = 64
    # number of codes: DALL-E's image vocabulary
    codebook_size: int = 512
    # lookup in a low-dimensional projection (ViT-VQGAN's factorized codes: higher usage); null = embed_dim
    codebook_dim: int | None = 16
    # EMA decay of the codebook updates
    decay: float = 0.9
    # weight of ||z - sg(q)||^2, which keeps the encoder near its codes
    commitment_weight: float = 0.25
    # initialise the codebook with k-means on the first batch
    kmeans_init: bool = True
    # codes whose EMA cluster size falls below this are replaced by batch vectors (0: never)
    threshold_ema_dead_code: float = 2.0

    def __post_init__(self) -> None:
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(
                f"vqvae channels must be a non-empty list of widths, got {self.channels}"
            )
        factor = 2 ** len(self.channels)
        if self.image_size % factor:
            raise ValueError(
                f"vqvae image_size {self.image_size} is not divisible by 2**len(channels) = {factor}"
            )
        if self.codebook_size < 2:
            raise ValueError(f"vqvae codebook_size must be >= 2, got {self.codebook_size}")
        if self.codebook_size > 32767:
            raise ValueError(
                f"vqvae codebook_size {self.codebook_size} does not fit the int16 codes of encode_images"
            )
        if self.embed_dim < 1 or self.res_blocks < 0:
            raise ValueError("vqvae embed_dim must be >= 1 and res_blocks >= 0")
        if not 0 < self.decay < 1:
            raise ValueError(f"vqvae decay must be in (0, 1), got {self.decay}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> VQVAEConfig:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed - {"name", "description"})
        if unknown:
            raise ValueError(
                f"unknown vqvae model option(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**{k: v for k, v in values.items() if k in allowed})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(
    preset: str | None = None, overrides: Mapping[str, Any] | None = None
) -> VQVAEConfig:
    """A preset name (``vlcore/presets/vqvae``) or a JSON file, deep-merged with ``overrides``."""
    preset = preset or DEFAULT_PRESET
    path = Path(preset).expanduser()
    if not path.is_file():
        path = PRESET_DIR / f"{preset}.json"
    if not path.is_file():
        raise ValueError(
            f"vqvae preset {preset!r} is neither a JSON file nor a preset "
            f"({', '.join(list_presets())})"
        )
    values = deep_update(read_json(path), dict(overrides or {}))
    return VQVAEConfig.from_dict(values)


# -- the model --------------------------------------------------------------------------------


@dataclass
class VQVAEOutput:
    """What :meth:`VQVAE.forward` returns.

    reconstruction: ``B 3 H W`` (unclamped); codes: ``B h w`` long; commit_loss: scalar.
    """

    reconstruction: torch.Tensor
    codes: torch.Tensor
    commit_loss: torch.Tensor


class VQVAE(nn.Module):
    """Encoder -> VectorQuantize -> decoder (see the module docstring)."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config.channels, config.res_blocks, config.embed_dim)
        self.quantizer = VectorQuantize(
            dim=config.embed_dim,
            codebook_size=config.codebook_size,
            codebook_dim=config.codebook_dim,
            decay=config.decay,
            commitment_weight=config.commitment_weight,
            kmeans_init=config.kmeans_init,
            threshold_ema_dead_code=config.threshold_ema_dead_code,
            accept_image_fmap=True,  # B D h w in, B h w indices out
        )
        self.decoder = Decoder(config.channels, config.res_blocks, config.embed_dim)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def grid(self) -> tuple[int, int]:
        side = self.config.image_size // 2 ** len(self.config.channels)
        return side, side

    def _check_images(self, images: torch.Tensor) -> None:
        size = self.config.image_size
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
            raise ValueError(
                f"expected images of shape B 3 {size} {size}, got {tuple(images.shape)}"
            )

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Nearest-code search and EMA updates in fp32, also under bf16 autocast.
        with torch.autocast(device_type=z.device.type, enabled=False):
            return self.quantizer(z.float())

    def forward(self, images: torch.Tensor) -> VQVAEOutput:
        """Encode, quantize (updating the codebook in training mode) and decode."""
        self._check_images(images)
        quantized, codes, commit_loss = self._quantize(self.encoder(images))
        return VQVAEOutput(self.decoder(quantized), codes, commit_loss.sum())

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``B 3 H W`` float in [0, 1] -> code indices ``B h w`` (long); never updates the codebook."""
        self._check_images(images)
        was_training = self.quantizer.training
        self.quantizer.eval()
        try:
            _, codes, _ = self._quantize(self.encoder(images))
        finally:
            self.quantizer.train(was_training)
        return codes.long()

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Code indices ``B h w`` -> images ``B 3 H W`` clamped to [0, 1]."""
        if codes.ndim != 3 or tuple(codes.shape[1:]) != self.grid:
            raise ValueError(
                f"expected codes of shape B {self.grid[0]} {self.grid[1]}, got {tuple(codes.shape)}"
            )
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, {int(codes.max())}]"
            )
        # get_output_from_indices mis-orders channels with accept_image_fmap: look up directly
        vectors = self.quantizer.codebook[codes.long()]  # B h w d (codebook_dim)
        quantized = self.quantizer.project_out(vectors).permute(0, 3, 1, 2)  # B D h w
        return self.decoder(quantized).clamp(0.0, 1.0)

    def spec(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "config": self.config.to_dict()}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> VQVAE:
        if spec.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unknown vqvae format_version {spec.get('format_version')}")
        return cls(VQVAEConfig.from_dict(spec["config"]))


def chroma(images: torch.Tensor) -> torch.Tensor:
    """Each pixel's colour minus its grey level (the mean of its channels): ``B 3 H W``."""
    return images - images.mean(dim=1, keepdim=True)


def reconstruction_loss(
    out: VQVAEOutput, images: torch.Tensor, chroma_weight: float = 0.0
) -> torch.Tensor:
    """Training loss: pixel MSE, plus ``chroma_weight`` times the MSE of the pixels' chroma
    (:func:`chroma`), plus the quantizer's commitment loss.

    On mostly grey pictures (the shapes world) plain MSE is first lowered by grey blobs where
    the coloured shapes are; the chroma term makes colour errors count from the first steps.
    """
    recon, images = out.reconstruction.float(), images.float()
    loss = F.mse_loss(recon, images) + out.commit_loss
    if chroma_weight:
        loss = loss + chroma_weight * F.mse_loss(chroma(recon), chroma(images))
    return loss


def save_vqvae(
    model: VQVAE,
    folder: str | os.PathLike,
    extra: Mapping[str, Any] | None = None,
    *,
    weights: bool = True,
) -> None:
    """Write ``model.safetensors`` (weights and codebook buffers) and ``vqvae.json`` (spec plus
    ``extra`` provenance) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if weights:
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            save_weights(model, tmp)
    write_json({**dict(extra or {}), **model.spec()}, folder / RECORD_FILE)


def load_vqvae(folder: str | os.PathLike, device: str | torch.device = "cpu") -> VQVAE:
    """Rebuild a VQ-VAE saved by :func:`save_vqvae`, in eval mode on ``device``."""
    folder = Path(folder)
    for name in (RECORD_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a VQ-VAE folder: {name} is missing")
    model = VQVAE.from_spec(read_json(folder / RECORD_FILE))
    load_weights(model, folder / WEIGHTS_FILE)
    return model.to(device).eval()
