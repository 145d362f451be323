"""DALL-E's training stage, ``train_dalle`` (on image codes), its settings and its folder.

``train_dalle`` reads the codes ``encode_images`` wrote (:mod:`vlcore.data.codes`), never
pixels. Each step takes ``batch_size`` images of the train split in a seeded per-epoch order
and, for each, one of its captions drawn afresh from ``(seed, epoch, key)``; the loss is
:meth:`vlcore.models.dalle.Dalle.loss` (image codes, plus ``text_loss_weight`` x caption
tokens). The loop is the shared :func:`vlcore.train.loop.fit` (resume, DDP, bf16 on CUDA).

``generate_images`` (:mod:`vlcore.pipeline.dalle_generate`) draws images from a trained DALL-E
and decodes them with the VQ-VAE.

    train_dalle("results/default/codes", "results/default/tokenizer",
                {"max_steps": 600, "seed": 0}, "results/default/dalle")

A trained DALL-E is a folder that reloads on its own (:func:`load_dalle`)::

    model.safetensors   weights
    dalle.json          architecture spec, vocabulary layout, provenance
    tokenizer/          the experiment's tokenizer
    history.json, train_config.json, loss_curve.png   (from the training loop)
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from transformers import PreTrainedTokenizerBase

from vlcore.config import deep_update
from vlcore.data.codes import CodeSplit, load_codes_manifest, read_codes
from vlcore.ids import seeded_draw
from vlcore.io import atomic_dir, read_json, write_json
from vlcore.models.dalle import Dalle, DalleConfig, SamplingConfig, text_tokens
from vlcore.models.generation import TextIds
from vlcore.text import load_tokenizer
from vlcore.train.checkpoint import load_weights
from vlcore.train.loop import TrainConfig, fit, split_settings
from vlcore.train.runtime import setup_runtime, teardown_runtime

logger = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets" / "dalle"
DEFAULT_PRESET = "tiny"
RECORD_FILE = "dalle.json"
TOKENIZER_DIR = "tokenizer"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
MAX_TEXT_LENGTH = 512  # a longer tokenizer max_length is "unlimited": set text_length


# -- settings ---------------------------------------------------------------------------------


@dataclass
class GenerateSettings:
    """The ``dalle.generate`` section: prompts and sampling."""

    # prompts: the first N images of the split that have a caption; null = all of them
    prompts: int | None = None
    # which caption of an image is its prompt: the longest (it names the most of the scene),
    # the first, or one drawn from (seed, key)
    prompt_caption: Literal["longest", "first", "random"] = "longest"
    # samples per prompt (the DALL-E paper drew 512 and kept 32)
    samples: int = 16
    # sampling: temperature, top-k (0 = off), top-p (1 = off)
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    # samples per forward pass (prompts of equal length: batching never changes a sample)
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.prompts is not None and self.prompts < 1:
            raise ValueError(f"dalle generate.prompts must be >= 1 or null, got {self.prompts}")
        if self.prompt_caption not in ("longest", "first", "random"):
            raise ValueError(
                f"dalle generate.prompt_caption must be longest, first or random, got "
                f"{self.prompt_caption!r}"
            )
        for name in ("samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"dalle generate.{name} must be >= 1, got {getattr(self, name)}")
        self.sampling()  # fail early on bad temperature / top-k / top-p

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_k, self.top_p)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> GenerateSettings:
        values = dict(values or {})
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(
                f"unknown dalle generate option(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**values)


@dataclass
class DalleSettings:
    """The ``dalle:`` config section besides its :class:`TrainConfig` fields."""

    # architecture: a preset in vlcore/presets/dalle or a JSON file
    preset: str = DEFAULT_PRESET
    # deep-merged into the preset, e.g. {"transformer": {"n_layer": 6}}
    model: dict[str, Any] = field(default_factory=dict)
    # images (each with one caption) per process and micro-batch
    batch_size: int = 64
    # weight of the caption-token loss next to the image-code loss (DALL-E: 1/7)
    text_loss_weight: float = 0.0
    # sampling and prompts (generate_images)
    generate: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"dalle batch_size must be >= 1, got {self.batch_size}")
        if self.text_loss_weight < 0:
            raise ValueError(f"dalle text_loss_weight must be >= 0, got {self.text_loss_weight}")
        GenerateSettings.from_dict(self.generate)


def parse_settings(
    settings: Mapping[str, Any] | None,
) -> tuple[DalleSettings, TrainConfig, GenerateSettings]:
    """Split a ``dalle:`` section into own settings, TrainConfig and generate settings."""
    ours, train = split_settings("dalle", settings, DalleSettings)
    return ours, train, GenerateSettings.from_dict(ours.generate)


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(
    preset: str | None,
    overrides: Mapping[str, Any] | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> DalleConfig:
    """A preset name (``vlcore/presets/dalle``) or JSON file, deep-merged with ``overrides``;
    a null ``text_length`` becomes the ``tokenizer``'s ``model_max_length`` when one is given."""
    preset = preset or DEFAULT_PRESET
    path = Path(preset).expanduser()
    if not path.is_file():
        path = PRESET_DIR / f"{preset}.json"
    if not path.is_file():
        raise ValueError(
            f"dalle preset {preset!r} is neither a JSON file nor a preset "
            f"({', '.join(list_presets())})"
        )
    values = deep_update(copy.deepcopy(read_json(path)), dict(overrides or {}))
    config = DalleConfig.from_dict(values)
    if config.text_length is None and tokenizer is not None:
        length = int(tokenizer.model_max_length)
        if length > MAX_TEXT_LENGTH:  # pretrained tokenizers say "unlimited" (1e30)
            raise ValueError(
                f"the tokenizer's max_length is {length}: set dalle model.text_length instead"
            )
        config.text_length = length
    return config


# -- training batches -------------------------------------------------------------------------


@dataclass
class CaptionedCodes:
    """The rows of a codes split that have captions, with every caption tokenised once."""

    codes: torch.Tensor  # N x (h * w)
    keys: list[str]
    texts: list[torch.Tensor]  # per row: n_captions x text_length

    @classmethod
    def build(
        cls, split: CodeSplit, tokenizer: PreTrainedTokenizerBase, text_length: int
    ) -> CaptionedCodes:
        rows = [i for i, caps in enumerate(split.captions) if caps]
        flat = [c for i in rows for c in split.captions[i]]
        ids = text_tokens(tokenizer, flat, text_length) if flat else torch.empty(0, text_length)
        texts, start = [], 0
        for i in rows:
            n = len(split.captions[i])
            texts.append(ids[start : start + n])
            start += n
        return cls(split.codes[rows], [split.keys[i] for i in rows], texts)

    def __len__(self) -> int:
        return len(self.keys)

    def batches(
        self,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        shuffle: bool,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """``{"text": B x text_length, "codes": B x (h * w)}`` batches of this rank's share.

        Rows run in a (seed, epoch) order when ``shuffle`` (training; each row with a caption
        drawn from (seed, epoch, key)), else in order with their first caption. Step ``i``
        takes global batch ``i`` of ``batch_size * world_size`` rows and rank ``r`` its
        ``r``-th slice of ``batch_size``, so ``world_size`` processes see exactly the rows one
        process sees with ``batch_size * world_size``. ``drop_last`` drops a final partial
        global batch (training: every rank takes the same number of steps).
        """
        n = len(self)
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        size = batch_size * world_size
        stop = n - n % size if drop_last else n
        for start in range(0, stop, size):
            idx = order[start : start + size][rank * batch_size : (rank + 1) * batch_size]
            if len(idx) == 0:
                continue
            texts = []
            for i in idx:
                caps = self.texts[i]
                pick = seeded_draw(seed, epoch, self.keys[i]) % len(caps) if shuffle else 0
                texts.append(caps[pick])
            yield {"text": torch.stack(texts), "codes": self.codes[torch.as_tensor(idx)]}


# -- saving and loading -----------------------------------------------------------------------


@dataclass
class LoadedDalle:
    model: Dalle
    tokenizer: PreTrainedTokenizerBase
    record: dict[str, Any]  # dalle.json


def load_dalle(model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedDalle:
    """Rebuild a DALL-E saved by :func:`train_dalle` (eval mode, on ``device``)."""
    model_dir = Path(model_dir)
    for name in (RECORD_FILE, WEIGHTS_FILE):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"{model_dir} is not a DALL-E folder: {name} is missing")
    record = read_json(model_dir / RECORD_FILE)
    if record.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{model_dir / RECORD_FILE}: unknown format_version {record.get('format_version')}"
        )
    tokenizer = load_tokenizer(model_dir / TOKENIZER_DIR)
    model = Dalle.from_spec(record["spec"])
    if TextIds.of(tokenizer) != model.vocab.text:
        raise ValueError(f"{model_dir}: the tokenizer does not match the model's vocabulary")
    load_weights(model, model_dir / WEIGHTS_FILE)
    return LoadedDalle(model.to(device).eval(), tokenizer, record)


def _data_fingerprint(codes_dir: str | os.PathLike) -> dict[str, list[str]]:
    manifest = load_codes_manifest(codes_dir)
    return {s: [f["sha256"] for f in v["files"]] for s, v in manifest["splits"].items()}


# -- train_dalle ------------------------------------------------------------------------------


def train_dalle(
    codes_dir: str | os.PathLike,
    tokenizer_dir: str | os.PathLike,
    settings: Mapping[str, Any] | None,
    out_dir: str | os.PathLike,
) -> dict[str, Any]:
    """Train DALL-E on the codes of the ``train`` split (validation loss on ``val``) and save
    it to ``out_dir`` (see the module docstring). Under torchrun every process calls this; the
    main one writes. Returns the training history plus a timing summary."""
    own, config, _ = parse_settings(settings)
    out_dir = Path(out_dir)
    owns_group = not (dist.is_available() and dist.is_initialized())
    runtime = setup_runtime(config.device, config.precision)
    manifest = load_codes_manifest(codes_dir)
    tokenizer = load_tokenizer(tokenizer_dir)
    model_config = load_preset(own.preset, own.model, tokenizer)

    torch.manual_seed(config.seed)  # the same initial weights on every process
    grid = tuple(manifest["grid"])
    model = Dalle.build(model_config, TextIds.of(tokenizer), manifest["codebook_size"], grid)
    data = {
        split: CaptionedCodes.build(
            read_codes(codes_dir, split), tokenizer, model_config.text_length
        )
        for split in ("train", "val")
        if split in manifest["splits"]
    }
    if len(data["train"]) // runtime.world_size < own.batch_size:
        raise ValueError(
            f"the train split has {len(data['train'])} captioned images: fewer than one batch "
            f"of {own.batch_size} per process; lower dalle batch_size"
        )
    n_params = sum(p.numel() for p in model.parameters())
    record = {
        "format_version": FORMAT_VERSION,
        "spec": model.spec(),
        "model_config": dataclasses.asdict(model_config),
        "codes_source": str(codes_dir),
        "vqvae": manifest.get("vqvae"),
        "tokenizer_source": str(tokenizer_dir),
        "parameters": n_params,
    }
    logger.info(
        "train_dalle: %.2fM parameters, vocabulary %d text + <boi> + %d codes, sequence %d, "
        "%d train / %d val captioned images, batch %d x %d",
        n_params / 1e6,
        model.vocab.text.vocab_size,
        model.vocab.codebook_size,
        model.sequence_length,
        len(data["train"]),
        len(data["val"]) if "val" in data else 0,
        own.batch_size,
        runtime.world_size,
    )

    def train_batches(epoch: int):
        return data["train"].batches(
            own.batch_size,
            seed=config.seed,
            epoch=epoch,
            shuffle=True,
            rank=runtime.rank,
            world_size=runtime.world_size,
        )

    def val_batches():
        return data["val"].batches(
            own.batch_size,
            seed=config.seed,
            epoch=0,
            shuffle=False,
            rank=runtime.rank,
            world_size=runtime.world_size,
            drop_last=False,
        )

    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(batch["text"], batch["codes"], own.text_loss_weight)

    has_val = "val" in data and len(data["val"]) >= runtime.world_size
    meta = {
        "name": "train_dalle",
        "dalle": record,
        "settings": {k: v for k, v in dataclasses.asdict(own).items() if k != "generate"},
        "data": _data_fingerprint(codes_dir),
    }
    if runtime.is_main:  # the tokenizer and record first: model.safetensors comes last
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_dir(out_dir / TOKENIZER_DIR) as tmp:
            tokenizer.save_pretrained(tmp)
        write_json(record, out_dir / RECORD_FILE)
    start = time.perf_counter()
    try:
        history = fit(
            model,
            loss_fn,
            train_batches,
            val_batches if has_val else None,
            config,
            out_dir,
            meta=meta,
            runtime=runtime,
        )
    finally:
        if owns_group:
            teardown_runtime(runtime)
    seconds = time.perf_counter() - start
    summary = {
        "steps": config.max_steps,
        "seconds": seconds,
        "steps_per_second": config.max_steps / seconds if seconds > 0 else None,
        "world_size": runtime.world_size,
        "parameters": n_params,
    }
    logger.info(
        "train_dalle: %d steps in %.1f s (%.2f steps/s)",
        config.max_steps,
        seconds,
        summary["steps_per_second"] or 0.0,
    )
    return {**history, "summary": summary}
