"""ViT-GPT2: a vision transformer encoder and a GPT-2 decoder that cross-attends to its patches.

The Hugging Face ``VisionEncoderDecoderModel`` layout (Li et al., "TrOCR", 2021; the
"vit-gpt2 image captioning" models): ViT (Dosovitskiy et al., 2021) encodes the image into
patch embeddings, GPT-2 (Radford et al., 2019) with a cross-attention block in every layer
writes the caption. By default both are tiny and randomly initialised (``vit_gpt2_tiny``
preset); ``encoder_pretrained`` / ``decoder_pretrained`` name a Hugging Face model or a local
folder instead (``google/vit-base-patch16-224-in21k`` + ``gpt2``, or a Chinese GPT-2), as the
``vit_gpt2_base`` preset does.

A from-scratch ViT may take a convolutional stem instead of its linear patch projection
(``conv_stem`` channels, ``conv_stem_downsample``, ``conv_stem_norm``, ``conv_stem_depth``; see
:mod:`vlcore.models.conv_stem`). The tiny preset uses stride-2 convolutions and BatchNorm: with
GroupNorm its shape words stay at chance for 800 steps, with BatchNorm they leave chance
within 400 (docs/shapes.md, "Training curves and the stem").

Shapes: images ``B 3 H W`` in [0, 1] (resized to the encoder's ``image_size`` and normalised
here), text ``S L`` token ids, ``image_index`` ``S`` (which image each text belongs to, so one
encoded image serves several captions), logits ``S L V``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, PreTrainedModel, VisionEncoderDecoderModel

from vlcore.models.conv_stem import ConvStem
from vlcore.models.cross_attention import (
    set_image_index,
    use_per_image_attention,
    uses_per_image_attention,
)
from vlcore.models.generation import (
    TeacherForcedCaptioner,
    TextIds,
    decoder_from_config,
    from_pretrained,
    text_decoder,
)

logger = logging.getLogger(__name__)


@dataclass
class ViTGPT2Config:
    """The ``vit_gpt2`` architecture (a preset JSON, plus the experiment's overrides)."""

    # ViTConfig fields for a random-init encoder; image_size null = the shards' image size
    encoder: dict[str, Any] = field(default_factory=dict)
    # GPT2Config fields for a random-init decoder; vocab and special ids come from the tokenizer
    decoder: dict[str, Any] = field(default_factory=dict)
    # a hub name or local folder of a pretrained vision encoder (replaces `encoder`)
    encoder_pretrained: str | None = None
    # a hub name or local folder of a pretrained causal LM (replaces `decoder`); it gains
    # cross-attention layers (randomly initialised) and is resized to the tokenizer
    decoder_pretrained: str | None = None
    # channels of a convolutional stem replacing the patch projection (log2(patch_size) - 1
    # entries, e.g. [32, 64] for patch 8); null keeps ViT's linear patch projection
    conv_stem: list[int] | None = None
    # how each stem stage halves the resolution: "stride" (a stride-2 convolution, as Xiao et
    # al.; a quarter of the work) or "maxpool" (a stride-1 convolution, then 2x2 max-pooling)
    conv_stem_downsample: str = "maxpool"
    # normalisation after each stem convolution: "group" (GroupNorm) or "batch" (BatchNorm)
    conv_stem_norm: str = "group"
    # convolutions per stem stage: 1, or more for a deeper stem (stride-1 blocks added)
    conv_stem_depth: int = 1
    # start the random-init ViT's learned position embeddings at 2-D sin-cos values (MAE)
    sincos_init: bool = True
    # per-channel normalisation of [0, 1] images; ViT in21k uses 0.5 / 0.5
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ViTGPT2Config:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed - {"name", "description"})
        if unknown:
            raise ValueError(
                f"unknown vit_gpt2 model option(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**{k: v for k, v in values.items() if k in allowed})


def _vision_encoder(config: Any = None, pretrained: str | None = None) -> PreTrainedModel:
    """A vision encoder without a pooling head (its weights would get no gradient under DDP)."""
    for kwargs in ({"add_pooling_layer": False}, {}):
        try:
            if pretrained is not None:
                return from_pretrained(AutoModel, pretrained, "vision encoder", **kwargs)
            return AutoModel.from_config(config, **kwargs)
        except TypeError:  # this encoder class takes no add_pooling_layer
            continue
    raise AssertionError("unreachable")


# The stem keys of a saved architecture (spec) and their values in records written before
# conv_stem_downsample, conv_stem_norm and conv_stem_depth existed.
STEM_DEFAULTS: dict[str, Any] = {
    "conv_stem": [],
    "conv_stem_downsample": "maxpool",
    "conv_stem_norm": "group",
    "conv_stem_depth": 1,
}


def _add_conv_stem(encoder: PreTrainedModel, stem: Mapping[str, Any]) -> PreTrainedModel:
    """Give ``encoder`` the stem described by ``stem`` (the :data:`STEM_DEFAULTS` keys); no
    channels keep ViT's linear patch projection."""
    if stem["conv_stem"]:
        patches = getattr(getattr(encoder, "embeddings", None), "patch_embeddings", None)
        if patches is None or not hasattr(patches, "projection"):
            raise ValueError(f"conv_stem works with ViT encoders, not {type(encoder).__name__}")
        cfg = encoder.config
        patches.projection = ConvStem(
            cfg.num_channels,
            cfg.hidden_size,
            int(cfg.patch_size),
            list(stem["conv_stem"]),
            stem["conv_stem_downsample"],
            stem["conv_stem_norm"],
            int(stem["conv_stem_depth"]),
        )
    return encoder


def sincos_position_embeddings(grid: int, dim: int) -> torch.Tensor:
    """2-D sine-cosine position embeddings ``grid*grid D`` (MAE, He et al., 2022): half the
    channels encode the row, half the column, at geometrically spaced frequencies."""
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {dim}")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    parts = []
    for axis in (rows.flatten(), cols.flatten()):
        angles = axis[:, None] * freqs[None, :]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


def _init_sincos(encoder: PreTrainedModel) -> None:
    """Start a random-init ViT's (learned) position embeddings at 2-D sin-cos values, so
    where-things-are is visible from the first step instead of learned from noise."""
    table = getattr(getattr(encoder, "embeddings", None), "position_embeddings", None)
    if table is None:
        return
    tokens, dim = table.shape[1], table.shape[2]
    grid = round((tokens - 1) ** 0.5)
    if grid * grid != tokens - 1 or dim % 4:
        return
    with torch.no_grad():
        table[0, 0].zero_()  # the [CLS] token
        table[0, 1:] = sincos_position_embeddings(grid, dim)


def normalize_images(
    pixel_values: torch.Tensor, image_size: int, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """``B 3 H W`` in [0, 1] -> resized to ``image_size`` and normalised per channel."""
    if pixel_values.shape[-1] != image_size or pixel_values.shape[-2] != image_size:
        pixel_values = F.interpolate(
            pixel_values,
            size=(image_size, image_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
    return (pixel_values - mean) / std


class ViTGPT2Captioner(TeacherForcedCaptioner):
    """``VisionEncoderDecoderModel`` (ViT + GPT-2 with cross-attention) with image
    preprocessing, the shared token loss, and generation from a prompt (``<bos>`` [+ style])."""

    name = "vit_gpt2"

    def __init__(self, model: VisionEncoderDecoderModel, image_mean, image_std):
        super().__init__()
        self.model = model
        self.stem: dict[str, Any] = dict(STEM_DEFAULTS)  # the convolutional stem, if any
        self.register_buffer("image_mean", torch.tensor(image_mean).view(1, 3, 1, 1), False)
        self.register_buffer("image_std", torch.tensor(image_std).view(1, 3, 1, 1), False)

    # -- construction --------------------------------------------------------------------

    @classmethod
    def build(cls, config: ViTGPT2Config, text: TextIds, image_size: int) -> ViTGPT2Captioner:
        """A new model (random init, or the named pretrained parts); seed torch first."""
        stem = {key: getattr(config, key) for key in STEM_DEFAULTS}
        stem["conv_stem"] = list(config.conv_stem or [])
        if config.encoder_pretrained is not None:
            if config.conv_stem:
                raise ValueError(
                    f"conv_stem {config.conv_stem} is for a random-init encoder; with "
                    f"encoder_pretrained {config.encoder_pretrained!r} set conv_stem to null "
                    "(or start from the vit_gpt2_base preset)"
                )
            encoder = _vision_encoder(pretrained=config.encoder_pretrained)
        else:
            enc = {"model_type": "vit", **config.encoder}
            if enc.get("image_size") is None:
                enc["image_size"] = image_size
            encoder = _vision_encoder(AutoConfig.for_model(**enc))
            _add_conv_stem(encoder, stem)
            if config.sincos_init:
                _init_sincos(encoder)
        decoder = text_decoder(
            text, config.decoder, config.decoder_pretrained, cross_attention=True
        )
        model = cls(cls._join(encoder, decoder, text), config.image_mean, config.image_std)
        model.stem = stem
        return model

    @staticmethod
    def _join(encoder, decoder, text: TextIds) -> VisionEncoderDecoderModel:
        model = VisionEncoderDecoderModel(encoder=encoder, decoder=decoder)
        use_per_image_attention(model.decoder)  # each image's states read once per batch
        for cfg in (model.config, model.generation_config):
            cfg.decoder_start_token_id = text.bos
            cfg.bos_token_id = text.bos
            cfg.eos_token_id = text.eos
            cfg.pad_token_id = text.pad
        return model

    def spec(self) -> dict[str, Any]:
        """Everything :meth:`from_spec` needs to rebuild this architecture (no hub access)."""
        return {
            "encoder_config": self.model.config.encoder.to_dict(),
            "decoder_config": self.model.config.decoder.to_dict(),
            **self.stem,
            "image_mean": self.image_mean.flatten().tolist(),
            "image_std": self.image_std.flatten().tolist(),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], text: TextIds) -> ViTGPT2Captioner:
        """The architecture saved by :meth:`spec`, randomly initialised (load weights next)."""
        encoder = _vision_encoder(AutoConfig.for_model(**spec["encoder_config"]))
        stem = {key: spec.get(key) or default for key, default in STEM_DEFAULTS.items()}
        encoder = _add_conv_stem(encoder, stem)
        decoder = decoder_from_config(spec["decoder_config"])
        model = cls(cls._join(encoder, decoder, text), spec["image_mean"], spec["image_std"])
        model.stem = stem
        return model

    # -- forward ------------------------------------------------------------------------

    @property
    def image_size(self) -> int:
        return int(self.model.config.encoder.image_size)

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Images ``B 3 H W`` in [0, 1] -> encoder states ``B N D`` in the decoder's width."""
        x = normalize_images(pixel_values, self.image_size, self.image_mean, self.image_std)
        states = self.model.encoder(pixel_values=x).last_hidden_state
        proj = getattr(self.model, "enc_to_dec_proj", None)
        return proj(states) if proj is not None else states

    def text_logits(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_index: torch.Tensor,
    ) -> torch.Tensor:
        """Next-token logits ``S L V`` for texts ``S L`` about images ``image_index``."""
        states = self.encode(pixel_values)
        decoder = self.model.decoder
        per_image = uses_per_image_attention(decoder)
        if per_image:
            set_image_index(decoder, image_index)
        else:  # a decoder that needs the states repeated per text
            states = states[image_index]
        try:
            out = decoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                encoder_hidden_states=states,
                use_cache=False,
            )
        finally:
            if per_image:
                set_image_index(decoder, None)
        return out.logits

    @torch.no_grad()
    def generate_tokens(
        self, pixel_values: torch.Tensor, prompt_ids: torch.Tensor, **generate_kwargs
    ) -> torch.Tensor:
        """Continue ``prompt_ids`` (``B K``, e.g. ``<bos> <style:Happy>``) for each image;
        returns only the new tokens ``B T``."""
        x = normalize_images(pixel_values, self.image_size, self.image_mean, self.image_std)
        out = self.model.generate(
            pixel_values=x,
            decoder_input_ids=prompt_ids,
            attention_mask=None,
            decoder_attention_mask=torch.ones_like(prompt_ids),
            **generate_kwargs,
        )
        return out[:, prompt_ids.shape[1] :]
