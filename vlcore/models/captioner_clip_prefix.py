"""CLIP-prefix captioning and VQA: a CLIP image encoder, a mapping network and a GPT-2 decoder.

ClipCap (Mokady et al., "ClipCap: CLIP Prefix for Image Captioning", 2021), in the family of
GIT (Wang et al., 2022) and EasyNLP's CLIP+GPT captioner: the experiment's trained CLIP encodes
the image (frozen, or tuned with ``train_clip``), a mapping network (:mod:`vlcore.models.mapping`)
turns its features into ``prefix_length`` embeddings, and a GPT-2 reads them as if they were
the first tokens of the text::

    [prefix_1 .. prefix_P] <bos> [<style:Happy>] a red circle ... <eos>
    [prefix_1 .. prefix_P] <bos> question: how many shapes are there? answer: 2 <eos>

The second line is how it answers VQA questions: the question is a text prompt and the loss
covers only the answer. The decoder is a tiny random-init GPT-2 by default, or a pretrained
one (``decoder_pretrained``: hub name or local folder), tuned or frozen (``train_decoder``;
ClipCap's frozen-GPT-2 variant goes with the ``transformer`` mapping).

With patch tokens (``features: tokens``) the tower's grid can be average-pooled to a coarser
one first (``token_grid``; with the ``mlp`` mapping every pooled token is a prefix embedding,
which the decoder then reads question by question), and the ``transformer`` mapping can add a
learned embedding per token position (``token_positions``); docs/shapes.md measures both.
The default experiment uses GIT's form: every patch token of the frozen tower is one prefix
embedding (``mapping: mlp``). In teacher forcing an image's texts are packed one after the
other behind a single copy of its prefix (``pack_texts``; :mod:`vlcore.models.packed_prefix`).

Shapes: images ``B 3 H W`` in [0, 1], prefix ``B P E``, texts ``S L``, ``image_index`` ``S``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from open_clip.model import _build_vision_tower
from torch import nn

from vlcore.models.captioner_vit_gpt2 import normalize_images
from vlcore.models.conv_stem import VISION_STEM_KEY, add_open_clip_stem
from vlcore.models.feature_cache import FeatureCache
from vlcore.models.generation import (
    TeacherForcedCaptioner,
    TextIds,
    decoder_from_config,
    text_decoder,
)
from vlcore.models.mapping import MAPPINGS, build_mapping, pool_token_grid
from vlcore.models.packed_prefix import packed_text_logits

logger = logging.getLogger(__name__)

FEATURES = ("pooled", "tokens")


@dataclass
class ClipPrefixConfig:
    """The ``clip_prefix`` architecture (a preset JSON, plus the experiment's overrides)."""

    # embeddings the mapping writes in front of the text (ignored by mlp on tokens: one per patch)
    prefix_length: int = 10
    # mlp (ClipCap MLP) or transformer (ClipCap transformer mapper)
    mapping: Literal["mlp", "transformer"] = "transformer"
    # transformer mapping: depth, heads, and tokens a pooled embedding is spread over
    mapping_layers: int = 2
    mapping_heads: int = 4
    clip_length: int = 10
    # pooled: CLIP's image embedding (ClipCap); tokens: its patch tokens (GIT) - where is what
    features: Literal["pooled", "tokens"] = "pooled"
    # transformer mapping on patch tokens: add a learned position embedding to each token
    token_positions: bool = False
    # patch tokens: average-pool their square grid to token_grid x token_grid first (0: keep
    # them all); with the mlp mapping each pooled token is one prefix embedding
    token_grid: int = 0
    # tune the CLIP image encoder too (else frozen, as in ClipCap)
    train_clip: bool = False
    # a tuned encoder's learning rate, relative to the rest: below 1 it adapts the trained
    # CLIP without first losing what it knows (docs/shapes.md)
    clip_lr_scale: float = 1.0
    # tune the decoder (ClipCap's frozen-GPT-2 variant sets this false)
    train_decoder: bool = True
    # teacher forcing: an image's texts share one pass behind its prefix, packed one after
    # the other (vlcore/models/packed_prefix.py; the same logits as one pass per text)
    pack_texts: bool = True
    # GPT2Config fields for a random-init decoder; vocab and special ids come from the tokenizer
    decoder: dict[str, Any] = field(default_factory=dict)
    # a hub name or local folder of a pretrained causal LM (replaces `decoder`)
    decoder_pretrained: str | None = None

    def __post_init__(self) -> None:
        if self.mapping not in MAPPINGS:
            raise ValueError(f"mapping {self.mapping!r} is unknown; expected one of {MAPPINGS}")
        if self.features not in FEATURES:
            raise ValueError(f"features {self.features!r} is unknown; expected one of {FEATURES}")
        if self.token_positions and (self.features, self.mapping) != ("tokens", "transformer"):
            raise ValueError(
                "token_positions needs features 'tokens' and mapping 'transformer', got "
                f"{self.features!r} and {self.mapping!r}"
            )
        if self.token_grid < 0 or (self.token_grid and self.features != "tokens"):
            raise ValueError(
                f"token_grid needs features 'tokens' and must be >= 0 (0: no pooling), got "
                f"{self.token_grid} with features {self.features!r}"
            )
        if self.clip_lr_scale <= 0 or (self.clip_lr_scale != 1.0 and not self.train_clip):
            raise ValueError(
                f"clip_lr_scale must be > 0 and scales a tuned tower (train_clip: true), got "
                f"{self.clip_lr_scale} with train_clip {self.train_clip}"
            )
        for name in ("prefix_length", "mapping_layers", "mapping_heads", "clip_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"clip_prefix {name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ClipPrefixConfig:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed - {"name", "description"})
        if unknown:
            raise ValueError(
                f"unknown clip_prefix model option(s) {unknown}; allowed: "
                f"{', '.join(sorted(allowed))}"
            )
        return cls(**{k: v for k, v in values.items() if k in allowed})


def clip_vision_spec(clip) -> dict[str, Any]:
    """What rebuilds the image tower of a :class:`vlcore.models.clip.Clip` without its folder."""
    size = clip.model.visual.image_size
    size = list(size) if isinstance(size, (tuple, list)) else [size, size]
    return {
        "embed_dim": int(clip.model_cfg["embed_dim"]),
        "vision_cfg": clip.model_cfg["vision_cfg"],
        "quick_gelu": bool(clip.model_cfg.get("quick_gelu", False)),
        VISION_STEM_KEY: clip.model_cfg.get(VISION_STEM_KEY),
        "image_size": [int(s) for s in size],
        "mean": [float(v) for v in clip.preprocess_cfg["mean"]],
        "std": [float(v) for v in clip.preprocess_cfg["std"]],
        "source": clip.source,
    }


def patch_grid(clip_spec: Mapping[str, Any]) -> int:
    """The side of the square patch grid the image tower of ``clip_spec`` puts out."""
    patch = clip_spec["vision_cfg"]["patch_size"]
    patch_h, patch_w = (patch, patch) if isinstance(patch, int) else patch
    height, width = clip_spec["image_size"]
    if height // patch_h != width // patch_w:
        raise ValueError(f"the patch grid must be square, got {height}x{width} / {patch}")
    return height // patch_h


class ClipPrefixCaptioner(TeacherForcedCaptioner):
    """CLIP image tower -> mapping -> prefix -> GPT-2 (see the module docstring)."""

    name = "clip_prefix"

    def __init__(
        self, visual: nn.Module, decoder: nn.Module, config: ClipPrefixConfig, clip_spec: dict
    ):
        super().__init__()
        self.config = config
        self.clip_spec = clip_spec
        self.visual = visual
        self.decoder = decoder
        tokens = config.features == "tokens"
        if tokens and not hasattr(visual, "output_tokens"):
            raise ValueError(
                f"features 'tokens' needs an open_clip VisionTransformer image tower; this CLIP "
                f"has {type(visual).__name__}: use features 'pooled'"
            )
        n_positions = 0
        if tokens:
            visual.output_tokens = True
            in_dim = int(clip_spec["vision_cfg"]["width"])
            grid = patch_grid(clip_spec)
            if config.token_grid > grid:
                raise ValueError(
                    f"token_grid {config.token_grid} is finer than the tower's {grid}x{grid} "
                    "patch grid"
                )
            if config.token_positions:
                n_positions = (config.token_grid or grid) ** 2
        else:
            in_dim = int(clip_spec["embed_dim"])
        self.mapping = build_mapping(
            config.mapping,
            in_dim,
            decoder.get_input_embeddings().embedding_dim,
            config.prefix_length,
            tokens=tokens,
            clip_length=config.clip_length,
            num_layers=config.mapping_layers,
            num_heads=config.mapping_heads,
            n_positions=n_positions,
        )
        self.register_buffer("image_mean", torch.tensor(clip_spec["mean"]).view(1, 3, 1, 1), False)
        self.register_buffer("image_std", torch.tensor(clip_spec["std"]).view(1, 3, 1, 1), False)
        self.visual.requires_grad_(config.train_clip)
        self.decoder.requires_grad_(config.train_decoder)
        # features of the frozen tower, per distinct image (cache_image_features turns it on)
        self.feature_cache: FeatureCache | None = None
        self.train()

    # -- construction --------------------------------------------------------------------

    @classmethod
    def build(cls, config: ClipPrefixConfig, text: TextIds, clip) -> ClipPrefixCaptioner:
        """A new captioner on the image tower of ``clip`` (a loaded
        :class:`vlcore.models.clip.Clip`; its weights are kept); seed torch first."""
        decoder = text_decoder(text, config.decoder, config.decoder_pretrained)
        return cls(clip.model.visual, decoder, config, clip_vision_spec(clip))

    def spec(self) -> dict[str, Any]:
        """Everything :meth:`from_spec` needs to rebuild this architecture (no hub access)."""
        return {
            "config": dataclasses.asdict(self.config),
            "clip": self.clip_spec,
            "decoder_config": self.decoder.config.to_dict(),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], text: TextIds) -> ClipPrefixCaptioner:
        """The architecture saved by :meth:`spec`, randomly initialised (load weights next)."""
        clip = spec["clip"]
        visual = _build_vision_tower(clip["embed_dim"], clip["vision_cfg"], clip["quick_gelu"])
        if clip.get(VISION_STEM_KEY) is not None:
            add_open_clip_stem(visual, clip[VISION_STEM_KEY])
        decoder = decoder_from_config(spec["decoder_config"])
        return cls(visual, decoder, ClipPrefixConfig.from_dict(spec["config"]), dict(clip))

    def train(self, mode: bool = True) -> ClipPrefixCaptioner:
        """As ``nn.Module.train``, but a frozen image tower always stays in eval mode."""
        super().train(mode)
        if not self.config.train_clip:
            self.visual.eval()
        return self

    def learning_rate_scales(self) -> dict[int, float]:
        """``id(parameter) -> factor`` on the learning rate (the training loop's optimizer
        reads it): the tuned tower's ``clip_lr_scale``."""
        if not self.config.train_clip or self.config.clip_lr_scale == 1.0:
            return {}
        return {id(p): self.config.clip_lr_scale for p in self.visual.parameters()}

    def cache_image_features(self, max_bytes: int) -> bool:
        """Compute the frozen tower's features once per distinct image, keeping up to
        ``max_bytes`` of them (:mod:`vlcore.models.feature_cache`); a tuned tower (or 0
        bytes) keeps no cache. Returns whether a cache is on."""
        on = not self.config.train_clip and max_bytes > 0
        self.feature_cache = FeatureCache(max_bytes) if on else None
        return on

    @property
    def prefix_size(self) -> int:
        """How many embeddings the prefix has (with the mlp mapping on patch tokens: one per
        token of the, maybe pooled, grid)."""
        if self.config.features == "tokens" and self.config.mapping == "mlp":
            return (self.config.token_grid or patch_grid(self.clip_spec)) ** 2
        return self.config.prefix_length

    @property
    def decoder_positions(self) -> int:
        """How many positions the decoder has (GPT-2's ``n_positions``, or the HF name)."""
        cfg = self.decoder.config
        return getattr(cfg, "n_positions", None) or cfg.max_position_embeddings

    def check_text_length(self, max_length: int) -> None:
        """Raise if the prefix and a text of ``max_length`` tokens do not fit the decoder's
        positions (else the position embedding fails with an index error mid-training)."""
        positions = self.decoder_positions
        if self.prefix_size + max_length > positions:
            raise ValueError(
                f"clip_prefix: the prefix has {self.prefix_size} embeddings and texts up to "
                f"{max_length} tokens, but the decoder has {positions} positions: set "
                f"model: {{decoder: {{n_positions: {self.prefix_size + max_length}}}}} or more, "
                "or a shorter max_length or prefix (token_grid, prefix_length)"
            )

    # -- forward ------------------------------------------------------------------------

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``B 3 H W`` in [0, 1] -> pooled ``B D`` or patch tokens ``B N W``."""
        if self.feature_cache is not None:  # only ever set for a frozen tower
            return self.feature_cache(pixel_values, self._tower_features)
        return self._tower_features(pixel_values)

    def _tower_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        height, width = self.clip_spec["image_size"]
        if height != width:
            raise ValueError(f"CLIP image size must be square, got {height}x{width}")
        x = normalize_images(pixel_values, height, self.image_mean, self.image_std)
        with torch.set_grad_enabled(self.config.train_clip and torch.is_grad_enabled()):
            out = self.visual(x)
        return out[1] if self.config.features == "tokens" else out

    def prefix(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The decoder-space prefix ``B P E`` of each image."""
        features = self.image_features(pixel_values)
        if self.config.token_grid:
            features = pool_token_grid(features, self.config.token_grid)
        return self.mapping(features)

    def _embed(self, prefix: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        tokens = self.decoder.get_input_embeddings()(input_ids)
        return torch.cat([prefix.to(tokens.dtype), tokens], dim=1)

    def text_logits(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_index: torch.Tensor,
    ) -> torch.Tensor:
        """Next-token logits ``S L V`` at the text positions (the prefix's are dropped)."""
        prefix = self.prefix(pixel_values)
        if self.config.pack_texts:
            return packed_text_logits(self.decoder, prefix, input_ids, attention_mask, image_index)
        prefix = prefix[image_index]
        n_prefix = prefix.shape[1]
        mask = torch.cat([attention_mask.new_ones(len(input_ids), n_prefix), attention_mask], 1)
        out = self.decoder(
            inputs_embeds=self._embed(prefix, input_ids), attention_mask=mask, use_cache=False
        )
        return out.logits[:, n_prefix:]

    @torch.no_grad()
    def generate_tokens(
        self, pixel_values: torch.Tensor, prompt_ids: torch.Tensor, **generate_kwargs
    ) -> torch.Tensor:
        """Continue prefix + ``prompt_ids`` (``B K``: ``<bos>`` [+ style], or ``<bos>`` +
        question) with the KV cache; returns only the new tokens ``B T``."""
        embeds = self._embed(self.prefix(pixel_values), prompt_ids)
        cfg = self.decoder.config
        positions = self.decoder_positions
        longest = embeds.shape[1] + int(generate_kwargs.get("max_new_tokens", 0))
        if longest > positions:
            raise ValueError(
                f"clip_prefix: prefix ({self.prefix_size}) + prompt ({prompt_ids.shape[1]}) + "
                f"max_new_tokens ({generate_kwargs.get('max_new_tokens')}) exceed the "
                f"decoder's {positions} positions: lower max_new_tokens or shorten the prompt"
            )
        return self.decoder.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device),
            bos_token_id=cfg.bos_token_id,
            eos_token_id=cfg.eos_token_id,
            pad_token_id=cfg.pad_token_id,
            **generate_kwargs,
        )
