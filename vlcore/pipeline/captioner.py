"""Entry points of the captioner stages: ``train_captioner``, ``generate_captions`` and
``answer_questions``, for both captioners (``vit_gpt2``, ``clip_prefix``).

Every training step takes a batch of images and, for each image, a few texts drawn afresh
from ``(seed, epoch, key)``: ``captions_per_image`` neutral captions, ``styled_per_image``
styled captions and ``questions_per_image`` VQA questions with their answer; the loss is the
mean cross-entropy over caption tokens plus ``vqa_weight`` times the mean over answer tokens
(:mod:`vlcore.pipeline.captioner_batches`). The loop is the shared
:func:`vlcore.train.loop.fit`.

    train_captioner("clip_prefix", "results/default/shards", "results/default/tokenizer",
                    "results/default/clip", {"max_steps": 1200}, "results/default/clip_prefix")
    generate_captions("clip_prefix", "results/default/clip_prefix", "results/default/shards",
                      "test", {}, "captions.json", "captions.tsv")
    answer_questions("results/default/clip_prefix", "results/default/shards", "test", {},
                     "answers.json")

A trained captioner is a folder that reloads without knowing how it was made
(:func:`load_captioner`)::

    model.safetensors   weights (the CLIP image tower included, for clip_prefix)
    captioner.json      name, architecture spec (Hugging Face configs), styles, VQA prompt
    tokenizer/          the experiment's tokenizer plus the style tokens it learned
    history.json, train_config.json, loss_curve.png   (from the training loop)
    xe/                 the cross-entropy stage, when self-critical fine-tuning follows it
                        (``scst: {steps: N}``; :mod:`vlcore.train.scst`)
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from vlcore.config import deep_update
from vlcore.data.shard import load_manifest, sha256_file, shards_fingerprint
from vlcore.data.stream import ShardStream, collate, training_streams
from vlcore.io import atomic_dir, atomic_path, read_json, write_json
from vlcore.models.captioner_clip_prefix import ClipPrefixCaptioner, ClipPrefixConfig
from vlcore.models.captioner_vit_gpt2 import ViTGPT2Captioner, ViTGPT2Config
from vlcore.models.generation import (
    VQA_PROMPT,
    DecodingConfig,
    TextIds,
    answer_image_questions,
    caption_images,
    style_token_id,
)
from vlcore.pipeline.captioner_batches import captioner_loss, collate_texts
from vlcore.text import load_tokenizer, style_token
from vlcore.train.checkpoint import load_weights
from vlcore.train.loop import TrainConfig, finished_run, fit, split_settings
from vlcore.train.runtime import pick_device, setup_runtime, teardown_runtime
from vlcore.train.scst import SCSTConfig, fine_tune

logger = logging.getLogger(__name__)

CAPTIONERS = {"vit_gpt2": ViTGPT2Captioner, "clip_prefix": ClipPrefixCaptioner}
MODEL_CONFIGS = {"vit_gpt2": ViTGPT2Config, "clip_prefix": ClipPrefixConfig}
DEFAULT_PRESETS = {"vit_gpt2": "vit_gpt2_tiny", "clip_prefix": "clip_prefix_tiny"}
DEFAULT_QUESTIONS_PER_IMAGE = {"vit_gpt2": 0, "clip_prefix": 4}
PRESET_DIR = Path(__file__).resolve().parent.parent / "presets" / "captioner"
RECORD_FILE = "captioner.json"
TOKENIZER_DIR = "tokenizer"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
# -- settings ---------------------------------------------------------------------------------


@dataclass
class CaptionerSettings:
    """A ``captioners.<name>:`` config section besides its :class:`TrainConfig` fields."""

    # architecture: a preset in vlcore/presets/captioner or a JSON file; null = <name>_tiny
    preset: str | None = None
    # deep-merged into the preset, e.g. {"decoder_pretrained": "gpt2"} or {"decoder": {...}}
    model: dict[str, Any] = field(default_factory=dict)
    # images per process and micro-batch (each brings several texts, see below)
    batch_size: int = 32
    # tokens per text sequence, <bos>, style token and <eos> included (longer ones are cut)
    max_length: int = 40
    # neutral captions per image per step, drawn without replacement
    captions_per_image: int = 2
    # styled captions per image per step; 0 turns style conditioning off
    styled_per_image: int = 1
    # styles to learn tokens for; null = every style of the training split
    styles: list[str] | None = None
    # VQA questions per image per step; null = 4 for clip_prefix, 0 for vit_gpt2
    questions_per_image: int | None = None
    # answer target: the most common human answer, or one of the 10 drawn (by frequency)
    answer_target: Literal["most_common", "sample"] = "most_common"
    # weight of the mean answer-token loss next to the mean caption-token loss
    vqa_weight: float = 1.0
    # the question prompt; {question} is replaced by the question
    vqa_prompt: str = VQA_PROMPT
    # label smoothing of the token cross-entropy
    label_smoothing: float = 0.0
    # DataLoader workers per process (PNG decoding and tokenising); 0 = in the main process
    num_workers: int = 0
    # clip_prefix on a frozen CLIP tower, on CPU: MiB of tower features kept per process, so
    # the tower runs once per distinct training image (vlcore.models.feature_cache); 0 = off
    feature_cache_mb: int = 512
    # decoding: vlcore.models.generation.DecodingConfig fields
    generate: dict[str, Any] = field(default_factory=dict)
    # self-critical CIDEr-D fine-tuning after cross-entropy: vlcore.train.scst.SCSTConfig fields
    scst: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"captioner {name} must be >= 1, got {getattr(self, name)}")
        if self.max_length < 4:
            raise ValueError(f"captioner max_length must be >= 4, got {self.max_length}")
        for name in ("captions_per_image", "styled_per_image", "num_workers", "feature_cache_mb"):
            if getattr(self, name) < 0:
                raise ValueError(f"captioner {name} must be >= 0, got {getattr(self, name)}")
        if self.questions_per_image is not None and self.questions_per_image < 0:
            raise ValueError(
                f"captioner questions_per_image must be >= 0, got {self.questions_per_image}"
            )
        if self.answer_target not in ("most_common", "sample"):
            raise ValueError(
                f"answer_target must be most_common or sample, got {self.answer_target!r}"
            )
        if "{question}" not in self.vqa_prompt:
            raise ValueError(f"vqa_prompt {self.vqa_prompt!r} must contain {{question}}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        DecodingConfig.from_dict(self.generate)  # fail early on a bad generate section
        SCSTConfig.from_dict(self.scst)


def check_name(name: str) -> None:
    if name not in CAPTIONERS:
        raise ValueError(f"captioner {name!r} is unknown; expected one of {sorted(CAPTIONERS)}")


def parse_settings(
    name: str, settings: Mapping[str, Any] | None
) -> tuple[CaptionerSettings, TrainConfig, DecodingConfig]:
    """Split a ``captioners.<name>`` section into own settings, TrainConfig and decoding."""
    check_name(name)
    settings = dict(settings or {})
    settings.pop("enabled", None)  # the workflow's switch, not a model setting
    ours, train = split_settings(name, settings, CaptionerSettings)
    if ours.questions_per_image is None:
        ours.questions_per_image = DEFAULT_QUESTIONS_PER_IMAGE[name]
    return ours, train, DecodingConfig.from_dict(ours.generate)


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name: str, preset: str | None, overrides: Mapping[str, Any] | None = None):
    """The architecture config of captioner ``name``: ``preset`` (a preset name or a JSON
    file; default the tiny one) deep-merged with ``overrides``."""
    check_name(name)
    preset = preset or DEFAULT_PRESETS[name]
    path = Path(preset).expanduser()
    if not path.is_file():
        path = PRESET_DIR / f"{preset}.json"
    if not path.is_file():
        raise ValueError(
            f"captioner preset {preset!r} is neither a JSON file nor a preset "
            f"({', '.join(list_presets())})"
        )
    values = read_json(path)
    if values.get("name", name) != name:
        raise ValueError(f"preset {preset!r} is for {values['name']!r}, not {name!r}")
    values = deep_update(copy.deepcopy(values), dict(overrides or {}))
    return MODEL_CONFIGS[name].from_dict(values)


# -- building, saving, loading ----------------------------------------------------------------


def styles_in_split(shards_dir: str | os.PathLike, split: str = "train") -> list[str]:
    """Every style of the split's styled captions, sorted (reads one column only)."""
    manifest = load_manifest(shards_dir)
    styles: set[str] = set()
    for shard in manifest["splits"][split]["shards"]:
        table = pq.read_table(Path(manifest["dir"]) / shard["file"], columns=["styled_captions"])
        for items in table["styled_captions"].to_pylist():
            styles.update(item["style"] for item in items or ())
    return sorted(styles)


def add_style_tokens(tokenizer: PreTrainedTokenizerBase, styles: list[str]) -> list[str]:
    """Give ``tokenizer`` a ``<style:...>`` token for each style that lacks one (sorted, so the
    same styles always get the same ids); return the tokens added."""
    vocab = tokenizer.get_vocab()
    missing = sorted({style_token(s) for s in styles} - set(vocab))
    if missing:
        tokenizer.add_special_tokens(
            {"extra_special_tokens": missing}, replace_extra_special_tokens=False
        )
        logger.info("added %d style tokens: %s", len(missing), ", ".join(missing))
    return missing


def build_captioner(
    name: str,
    config: ViTGPT2Config | ClipPrefixConfig,
    tokenizer: PreTrainedTokenizerBase,
    *,
    image_size: int,
    clip_dir: str | os.PathLike | None = None,
) -> torch.nn.Module:
    """A new captioner (seed torch first): ``vit_gpt2`` from its config, ``clip_prefix`` on the
    image tower of the CLIP saved in ``clip_dir``."""
    text = TextIds.of(tokenizer)
    if name == "vit_gpt2":
        return ViTGPT2Captioner.build(config, text, image_size)
    if clip_dir is None:
        raise ValueError("clip_prefix needs clip_dir: the folder of a trained CLIP (train_clip)")
    from vlcore.models.clip import load_clip

    return ClipPrefixCaptioner.build(config, text, load_clip(clip_dir))


@dataclass
class LoadedCaptioner:
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    record: dict[str, Any]  # captioner.json

    @property
    def name(self) -> str:
        return self.record["name"]

    @property
    def styles(self) -> list[str]:
        return list(self.record["styles"])


def load_captioner(
    model_dir: str | os.PathLike, device: str | torch.device = "cpu"
) -> LoadedCaptioner:
    """Rebuild a captioner saved by :func:`train_captioner` (no hub or CLIP folder needed)."""
    model_dir = Path(model_dir)
    if not (model_dir / RECORD_FILE).is_file():
        raise FileNotFoundError(f"{model_dir} is not a captioner folder: {RECORD_FILE} is missing")
    record = read_json(model_dir / RECORD_FILE)
    if record.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{model_dir / RECORD_FILE}: unknown format_version {record.get('format_version')}"
        )
    check_name(record["name"])
    tokenizer = load_tokenizer(model_dir / TOKENIZER_DIR)
    model = CAPTIONERS[record["name"]].from_spec(record["spec"], TextIds.of(tokenizer))
    load_weights(model, model_dir / WEIGHTS_FILE)
    return LoadedCaptioner(model.to(device).eval(), tokenizer, record)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def _weights_fingerprint(model_dir: str | os.PathLike) -> dict[str, str]:
    """sha256 of every weights file of a model folder (a trained CLIP or an open_clip one):
    a checkpoint or finished stage made on other weights is then not taken for this run."""
    files = sorted(p for p in Path(model_dir).iterdir() if p.suffix in WEIGHT_SUFFIXES)
    return {p.name: sha256_file(p) for p in files if p.is_file()}


# -- train_captioner --------------------------------------------------------------------------


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_captioner(
    name: str,
    shards_dir: str | os.PathLike,
    tokenizer_dir: str | os.PathLike,
    clip_dir: str | os.PathLike | None,
    settings: Mapping[str, Any] | None,
    out_dir: str | os.PathLike,
) -> dict[str, Any]:
    """Train captioner ``name`` on the ``train`` split (validation loss on ``val``) and save
    it to ``out_dir`` (see the module docstring); ``clip_dir`` is needed by ``clip_prefix``.

    ``settings``: :class:`CaptionerSettings` and :class:`~vlcore.train.loop.TrainConfig`
    fields. Under torchrun every process calls this; the main one writes. Returns the training
    history plus a timing summary.
    """
    own, config, _ = parse_settings(name, settings)
    out_dir = Path(out_dir)
    owns_group = not (dist.is_available() and dist.is_initialized())
    runtime = setup_runtime(config.device, config.precision)
    manifest = load_manifest(shards_dir)

    tokenizer = load_tokenizer(tokenizer_dir)
    styles = own.styles if own.styles is not None else styles_in_split(shards_dir)
    styles = sorted(set(styles)) if own.styled_per_image > 0 else []
    add_style_tokens(tokenizer, styles)

    _seed_everything(config.seed)  # the same initial weights on every process
    model_config = load_preset(name, own.preset, own.model)
    model = build_captioner(
        name, model_config, tokenizer, image_size=int(manifest["image_size"]), clip_dir=clip_dir
    )
    if isinstance(model, ClipPrefixCaptioner):
        model.check_text_length(own.max_length)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    cache = getattr(model, "cache_image_features", None)
    # on a GPU the tower is cheap and the pixels would have to come back to the CPU for keys
    on_cpu = runtime.device.type == "cpu"
    if cache is not None and on_cpu and cache(own.feature_cache_mb * 2**20):
        logger.info("frozen image tower: features cached, up to %d MiB", own.feature_cache_mb)
    record = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "spec": model.spec(),
        "model_config": dataclasses.asdict(model_config),
        "styles": styles,
        "vqa_prompt": own.vqa_prompt,
        "trained_vqa": bool(own.questions_per_image),
        "max_length": own.max_length,
        "tokenizer_source": str(tokenizer_dir),
        "clip_source": None if clip_dir is None else str(clip_dir),
        "parameters": n_params,
        "trainable_parameters": n_train,
    }

    streams = training_streams(
        manifest,
        seed=config.seed,
        rank=runtime.rank,
        world_size=runtime.world_size,
        splits=tuple(split for split in ("train", "val") if split in manifest["splits"]),
        cache_mb=config.data_cache_mb,
    )
    frozen_styles = frozenset(styles)

    def loader(split: str, epoch: int) -> DataLoader:
        stream = streams[split]
        stream.set_epoch(epoch)
        fn = functools.partial(
            collate_texts,
            tokenizer=tokenizer,
            settings=own,
            styles=frozen_styles,
            seed=config.seed,
            epoch=epoch,
        )
        return DataLoader(
            stream,
            batch_size=own.batch_size,
            num_workers=own.num_workers,
            collate_fn=fn,
            drop_last=split == "train",
        )

    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return captioner_loss(model, batch, own.vqa_weight, own.label_smoothing)

    has_val = "val" in streams and len(streams["val"]) > 0
    logger.info(
        "train_captioner %s: %.2fM parameters (%.2fM trained), %d train / %d val rows per "
        "process, batch %d x %d, styles %s, %d questions per image",
        name,
        n_params / 1e6,
        n_train / 1e6,
        len(streams["train"]),
        len(streams["val"]) if has_val else 0,
        own.batch_size,
        runtime.world_size,
        styles or "none",
        own.questions_per_image,
    )
    meta = {
        "name": f"train_captioner {name}",
        "captioner": record,
        "settings": dataclasses.asdict(own),
        "data": shards_fingerprint(shards_dir),
    }
    if name == "clip_prefix":  # its image tower starts from these weights
        meta["clip_weights"] = _weights_fingerprint(clip_dir)
    if runtime.is_main:  # the tokenizer and record first: model.safetensors comes last
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_dir(out_dir / TOKENIZER_DIR) as tmp:
            tokenizer.save_pretrained(tmp)
        write_json(record, out_dir / RECORD_FILE)
    scst = SCSTConfig.from_dict(own.scst)
    # with self-critical fine-tuning, cross-entropy training is a stage of its own (xe/): a
    # job killed during fine-tuning resumes there instead of training from scratch
    xe_dir = out_dir / "xe" if scst.steps else out_dir
    start = time.perf_counter()
    try:
        if scst.steps and finished_run(xe_dir, meta, config, runtime.world_size):
            logger.info("cross-entropy stage already done: %s", xe_dir)
            load_weights(model, xe_dir / WEIGHTS_FILE)
            history = read_json(xe_dir / "history.json")
        else:
            history = fit(
                model,
                loss_fn,
                lambda epoch: loader("train", epoch),
                (lambda: loader("val", 0)) if has_val else None,
                config,
                xe_dir,
                meta=meta,
                runtime=runtime,
            )
        if scst.steps:
            history = fine_tune(
                model, tokenizer, shards_dir, streams["train"], scst, config, meta, history,
                out_dir, runtime, batch_size=own.batch_size, num_workers=own.num_workers,
            )  # fmt: skip
    finally:
        if owns_group:
            teardown_runtime(runtime)
    seconds = time.perf_counter() - start
    feature_cache = getattr(model, "feature_cache", None)
    if feature_cache is not None:
        logger.info(
            "feature cache: %d images (%.1f MiB), %d hits, %d misses",
            len(feature_cache),
            feature_cache.used_bytes / 2**20,
            feature_cache.hits,
            feature_cache.misses,
        )
    summary = {
        "steps": config.max_steps,
        "scst_steps": scst.steps,
        "seconds": seconds,
        "steps_per_second": (config.max_steps + scst.steps) / seconds if seconds > 0 else None,
        "world_size": runtime.world_size,
        "parameters": n_params,
        "trainable_parameters": n_train,
    }
    logger.info(
        "train_captioner %s: %d steps (+ %d self-critical) in %.1f s",
        name,
        config.max_steps,
        scst.steps,
        seconds,
    )
    return {**history, "summary": summary}


# -- generate_captions and answer_questions ---------------------------------------------------


def _open(name: str | None, model_dir, settings) -> tuple[LoadedCaptioner, DecodingConfig, Any]:
    check = name if name is not None else read_json(Path(model_dir) / RECORD_FILE)["name"]
    _, config, decoding = parse_settings(check, settings)
    device = pick_device(config.device)
    loaded = load_captioner(model_dir, device)
    if name is not None and loaded.name != name:
        raise ValueError(f"{model_dir} holds a {loaded.name!r} captioner, not {name!r}")
    return loaded, decoding, device


def _images(shards_dir, split: str, batch_size: int):
    stream = ShardStream(shards_dir, split, shuffle=False, rank=0, world_size=1)
    loader = DataLoader(stream, batch_size=batch_size, collate_fn=collate)
    total = -(-len(stream) // batch_size)
    return tqdm(loader, total=total, desc=split, disable=None, dynamic_ncols=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def generate_captions(
    name: str,
    model_dir: str | os.PathLike,
    shards_dir: str | os.PathLike,
    split: str,
    settings: Mapping[str, Any] | None,
    out_json: str | os.PathLike,
    out_tsv: str | os.PathLike,
    style: str | None = None,
) -> list[dict[str, Any]]:
    """Caption every image of ``split`` by beam search (``settings["generate"]``), in
    ``style`` when given; write COCO results (``[{"image_id", "caption"}]``) to ``out_json``
    and EasyNLP's ``idx\\tgen_text`` lines (``idx`` = the image key) to ``out_tsv``."""
    loaded, decoding, _ = _open(name, model_dir, settings)
    if style is not None:
        style_token_id(loaded.tokenizer, style)  # a clear error before any work
    results, lines = [], []
    start = time.perf_counter()
    for batch in _images(shards_dir, split, decoding.batch_size):
        captions = caption_images(loaded.model, loaded.tokenizer, batch["image"], decoding, style)
        for image_id, key, caption in zip(batch["image_id"].tolist(), batch["key"], captions,
                                          strict=True):  # fmt: skip
            results.append({"image_id": int(image_id), "caption": caption})
            lines.append(f"{_one_line(key)}\t{_one_line(caption)}\n")
    logger.info(
        "generate_captions %s: %d images of %s in %.1f s (style %s)",
        loaded.name,
        len(results),
        split,
        time.perf_counter() - start,
        style,
    )
    write_json(results, out_json)
    with atomic_path(out_tsv) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")
    return results


def answer_questions(
    model_dir: str | os.PathLike,
    shards_dir: str | os.PathLike,
    split: str,
    settings: Mapping[str, Any] | None,
    out_json: str | os.PathLike,
) -> list[dict[str, Any]]:
    """Answer every question of ``split`` greedily; write VQA results
    ``[{"question_id", "answer"}]`` (sorted by question id) to ``out_json``."""
    loaded, decoding, _ = _open(None, model_dir, settings)
    if not loaded.record.get("trained_vqa"):
        logger.warning("%s was trained without VQA questions: expect poor answers", model_dir)
    template = loaded.record.get("vqa_prompt", VQA_PROMPT)
    results = []
    start = time.perf_counter()
    for batch in _images(shards_dir, split, decoding.batch_size):
        qids, texts, index = [], [], []
        for i, questions in enumerate(batch["questions"]):
            for q in questions or ():
                qids.append(int(q["question_id"]))
                texts.append(q["question"])
                index.append(i)
        if not texts:
            continue
        answers = answer_image_questions(
            loaded.model,
            loaded.tokenizer,
            batch["image"],
            texts,
            index,
            decoding,
            template,
            max_length=loaded.record.get("max_length"),
        )
        results += [{"question_id": q, "answer": a} for q, a in zip(qids, answers, strict=True)]
    results.sort(key=lambda r: r["question_id"])
    logger.info(
        "answer_questions: %d questions of %s in %.1f s",
        len(results),
        split,
        time.perf_counter() - start,
    )
    write_json(results, out_json)
    return results
