"""CLIP (Radford et al., 2021, "Learning Transferable Visual Models From Natural Language
Supervision") built with open_clip: from a preset, an open_clip name, or a saved folder.

Where a model comes from (``build_clip(model, ...)``):

- a **preset** name, ``vlcore/presets/clip/<name>.json``, or the path of a ``.json`` file
  like them. Either an architecture in open_clip's model-config format (``embed_dim``,
  ``vision_cfg``, ``text_cfg``, optionally ``preprocess_cfg``, plus vlcore's
  ``vision_conv_stem``: a convolutional stem for the ViT image tower,
  :mod:`vlcore.models.conv_stem`), trained from scratch with the experiment's tokenizer, or
  an alias ``{"open_clip_model": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}`` for a
  pretrained one. ``"block_type": "custom"`` in a tower's config swaps
  ``nn.MultiheadAttention`` for open_clip's own attention on ``scaled_dot_product_attention``
  (a tiny model's CPU step is about a tenth cheaper); a preset trained from scratch
  initialises it as ``nn.MultiheadAttention`` initialises itself, see
  :func:`init_attention_as_torch` (with open_clip's own initialisation, larger, the default
  CLIP retrieved worse: ``bench/clip_variants.py``).
- an **open_clip name** (``ViT-B-32``, ``hf-hub:org/repo``) with ``pretrained`` a tag or a
  local weights file; open_clip's tokenizer and preprocessing come with it.
- a **folder**: one saved by :func:`save_clip` (continue from it), or any open_clip folder
  with ``open_clip_config.json`` and weights.

Text tower of the presets: open_clip's native ``TextTransformer`` over *our* token ids, not the
Hugging Face BERT tower. The embedding gets exactly the tokenizer's rows (a few hundred for the
shapes world, instead of the 49408 of open_clip's BPE that would dwarf a tiny model), and it is
the same code for English (byte-level BPE) and Chinese (CJK-split BPE or WordPiece): only ids
reach the model. It pools at the first ``<eos>`` (``pool_type="eos"``, ``eos_id`` and
``pad_id`` from the tokenizer) under the causal mask, so padding after ``<eos>`` can never
change a caption's embedding, and no assumption is made that ``<eos>`` is the largest id (the
``argmax`` pooling of OpenAI's tokenizer, which is wrong for ours: ``<eos>`` is id 2). The HF
tower would need a config folder per tokenizer, mean-pools over an attention mask our tokens
don't carry through open_clip, and is several times slower on CPU at equal width.

A saved model is a folder that reloads without knowing its name::

    model.safetensors       weights (safetensors; open_clip's local-dir: format reads it too)
    open_clip_config.json   {"model_cfg": ..., "preprocess_cfg": ...} (with vision_conv_stem,
                            only vlcore reads it back: open_clip does not know the key)
    vlcore_clip.json        provenance (source, pretrained) and how to rebuild the tokenizer
    tokenizer/              a copy of the experiment's tokenizer folder (presets)

>>> clip = load_clip("results/default/clip")                         # doctest: +SKIP
>>> image_emb = encode_images(clip, images)   # [N, D], L2-normalised  # doctest: +SKIP
>>> text_emb = encode_texts(clip, ["a red circle"])                   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

from vlcore.io import read_json, write_json
from vlcore.models.clip_encode import encode_images, encode_texts, inference_runtime
from vlcore.models.clip_tokenize import CaptionTokenizer, ClipTokenizer, OpenClipTokenizer
from vlcore.models.conv_stem import VISION_STEM_KEY, add_open_clip_stem
from vlcore.train.checkpoint import load_weights, save_weights

__all__ = [
    "Clip",
    "build_clip",
    "encode_images",
    "encode_texts",
    "inference_runtime",
    "list_presets",
    "load_clip",
    "load_preset",
    "save_clip",
]

logger = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets" / "clip"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "open_clip_config.json"
RECORD_FILE = "vlcore_clip.json"
TOKENIZER_DIR = "tokenizer"
FORMAT_VERSION = 1


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass
class Clip:
    """A CLIP model with everything needed to feed it.

    ``model`` is an open_clip ``CLIP`` / ``CustomTextCLIP`` with ``output_dict=True``;
    ``tokenizer(texts)`` gives ``LongTensor [B, context_length]``; ``preprocess(PIL image)``
    gives ``FloatTensor [3, H, W]`` normalised with the model's mean and std.
    """

    model: torch.nn.Module
    model_cfg: dict[str, Any]  # open_clip model config (embed_dim, vision_cfg, text_cfg)
    preprocess_cfg: dict[str, Any]  # open_clip PreprocessCfg fields (size, mean, std, ...)
    tokenizer: ClipTokenizer
    source: dict[str, Any] = field(default_factory=dict)  # provenance: kind, name, pretrained

    def __post_init__(self) -> None:  # the same values whether built or reloaded from JSON
        self.model_cfg = _jsonable(self.model_cfg)
        self.preprocess_cfg = _jsonable(self.preprocess_cfg)

    @property
    def preprocess(self):
        """open_clip's evaluation transform: resize shortest side, centre crop, normalise.
        The shards are already square at the model's size for the presets: then only the
        normalisation does anything."""
        return image_transform_v2(PreprocessCfg(**self.preprocess_cfg), is_train=False)

    @property
    def embed_dim(self) -> int:
        return int(self.model_cfg["embed_dim"])

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


# -- presets ----------------------------------------------------------------------------------


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def preset_path(name: str) -> Path | None:
    """The JSON file of preset ``name`` (one of :func:`list_presets`, or a path to a
    ``.json`` file in the same format), or None if there is none."""
    if name.endswith(".json") and Path(name).expanduser().is_file():
        return Path(name).expanduser()
    path = PRESET_DIR / f"{name}.json"
    return path if path.is_file() else None


def load_preset(name: str) -> dict[str, Any]:
    path = preset_path(name)
    if path is None:
        raise ValueError(
            f"no CLIP preset {name!r}; presets: {', '.join(list_presets())}, or a .json file"
        )
    return read_json(path)


# -- building ---------------------------------------------------------------------------------


def _instantiate(model_cfg: dict[str, Any], preprocess_cfg: dict[str, Any]) -> torch.nn.Module:
    """The open_clip model class for ``model_cfg``, randomly initialised (as create_model)."""
    cfg = copy.deepcopy(model_cfg)
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg["text_cfg"]
    stem = cfg.pop(VISION_STEM_KEY, None)
    if custom_text:
        cfg["text_cfg"]["hf_model_pretrained"] = False
    cls = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    model = cls(**cfg, output_dict=True)
    if stem is not None:
        add_open_clip_stem(model.visual, stem)
    pp = merge_preprocess_dict(PreprocessCfg(), preprocess_cfg)
    pp["size"] = model.visual.image_size
    open_clip.set_model_preprocess_cfg(model, pp)
    return model


def init_attention_as_torch(model: torch.nn.Module) -> None:
    """Initialise the open_clip ``Attention`` blocks of a CLIP ``model`` as
    ``nn.MultiheadAttention._reset_parameters`` would have: zero biases, and in the image
    tower a Xavier-uniform input projection (the text tower's ``init_parameters`` has already
    drawn its projections, as it does for ``nn.MultiheadAttention``)."""
    visual = set(model.visual.modules())
    for attention in model.modules():
        if not isinstance(attention, open_clip.transformer.Attention):
            continue
        if attention in visual:
            torch.nn.init.xavier_uniform_(attention.in_proj_weight)
        if attention.in_proj_bias is not None:
            torch.nn.init.zeros_(attention.in_proj_bias)
        torch.nn.init.zeros_(attention.out_proj.bias)


def _preset_clip(name: str, preset: dict[str, Any], tokenizer_dir: str | os.PathLike) -> Clip:
    cfg = copy.deepcopy(preset)
    preprocess_cfg = cfg.pop("preprocess_cfg", {})
    text_cfg = cfg["text_cfg"]
    if "hf_model_name" in text_cfg:
        raise ValueError(f"preset {name!r}: presets use the native text tower (no hf_model_name)")
    if text_cfg.get("pool_type", "eos") not in ("eos", "first"):
        raise ValueError(
            f"preset {name!r}: text pool_type {text_cfg['pool_type']!r} does not fit our "
            "tokenizers; use 'eos' (argmax assumes <eos> is the largest id, last hits padding)"
        )
    if text_cfg.get("no_causal_mask") or text_cfg.get("embed_cls"):
        raise ValueError(f"preset {name!r}: keep the causal mask and no embed_cls")
    tokenizer = CaptionTokenizer(tokenizer_dir, text_cfg.get("context_length"))
    text_cfg.update(
        context_length=tokenizer.context_length,
        vocab_size=tokenizer.vocab_size,
        pad_id=tokenizer.pad_id,
        eos_id=tokenizer.eos_id,
        pool_type=text_cfg.get("pool_type", "eos"),
    )
    model = _instantiate(cfg, preprocess_cfg)
    init_attention_as_torch(model)
    pp = open_clip.get_model_preprocess_cfg(model)
    source = {"kind": "preset", "name": name, "pretrained": None}
    return Clip(model, cfg, dict(pp), tokenizer, source)


def _open_clip_clip(name: str, pretrained: str | None) -> Clip:
    """An open_clip name / hf-hub: / local-dir: model with open_clip's tokenizer."""
    schema = name.split(":", 1)[0] if ":" in name else None
    if schema is None and open_clip.get_model_config(name) is None:
        raise ValueError(
            f"CLIP model {name!r} is neither a preset ({', '.join(list_presets())}), a folder "
            "with open_clip_config.json, nor an open_clip model name (open_clip.list_models())"
        )
    try:
        model = open_clip.create_model(name, pretrained=pretrained, output_dict=True)
    except RuntimeError as err:
        if pretrained and not os.path.isfile(pretrained) and os.environ.get("HF_HUB_OFFLINE"):
            raise RuntimeError(
                f"pretrained weights {name!r} / {pretrained!r} are not in the local cache and "
                "HF_HUB_OFFLINE is set: download them once online, or set pretrained to a "
                f"local weights file ({err})"
            ) from err
        raise
    cfg = open_clip.get_model_config(name)
    pp = dict(open_clip.get_model_preprocess_cfg(model))
    source = {"kind": "open_clip", "name": name, "pretrained": pretrained}
    return Clip(model, cfg, pp, OpenClipTokenizer(name), source)


def build_clip(
    model: str = "tiny",
    *,
    tokenizer_dir: str | os.PathLike | None = None,
    pretrained: str | None = None,
) -> Clip:
    """Build a CLIP from a preset, an open_clip name or a folder (see the module docstring).

    Args:
        model: preset name or ``.json`` file, open_clip name (``ViT-B-32``, ``hf-hub:...``,
            ``local-dir:...``) or a folder path.
        tokenizer_dir: the experiment's tokenizer folder; required for architecture presets.
        pretrained: with an open_clip name, a tag (``laion2b_s34b_b79k``; needs the hub once)
            or a local weights file. Presets that alias a pretrained model bring their own.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if pretrained:
            raise ValueError(f"pretrained={pretrained!r} cannot be combined with folder {model}")
        clip = load_clip(path)
        clip.source["init_from"] = str(path.resolve())
        return clip
    if preset_path(model) is not None:
        preset = load_preset(model)
        if "open_clip_model" in preset:  # an alias of a pretrained open_clip model
            clip = _open_clip_clip(
                preset["open_clip_model"], pretrained or preset.get("pretrained")
            )
            clip.source["preset"] = model
            return clip
        if pretrained:
            raise ValueError(
                f"preset {model!r} trains from scratch; to start from weights, give a saved "
                "CLIP folder as the model, or an open_clip name with pretrained="
            )
        if tokenizer_dir is None:
            raise ValueError(f"preset {model!r} needs the experiment's tokenizer_dir")
        return _preset_clip(model, preset, tokenizer_dir)
    return _open_clip_clip(model, pretrained)


# -- saving and loading -----------------------------------------------------------------------


def save_clip(clip: Clip, out_dir: str | os.PathLike, *, weights: bool = True) -> Path:
    """Write ``clip`` as a self-contained folder (see the module docstring); return it.

    ``weights=False`` writes only the configs and tokenizer (when the trainer has written
    ``model.safetensors`` itself).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer: dict[str, Any] = clip.tokenizer.reference()
    if isinstance(clip.tokenizer, CaptionTokenizer):
        if (out_dir / TOKENIZER_DIR).resolve() != clip.tokenizer.path.resolve():
            shutil.rmtree(out_dir / TOKENIZER_DIR, ignore_errors=True)
            shutil.copytree(clip.tokenizer.path, out_dir / TOKENIZER_DIR)
        tokenizer.update(dir=TOKENIZER_DIR, copied_from=str(clip.tokenizer.path))
    else:
        inner = getattr(clip.tokenizer.tokenizer, "tokenizer", None)  # open_clip HFTokenizer
        if hasattr(inner, "save_pretrained"):  # local-dir: reads HF tokenizer files from here
            inner.save_pretrained(out_dir)
            tokenizer["name"] = None
        else:
            name = clip.tokenizer.model_name
            tokenizer["name"] = None if name.startswith("local-dir:") else name
    config = {"model_cfg": clip.model_cfg, "preprocess_cfg": clip.preprocess_cfg}
    write_json(config, out_dir / CONFIG_FILE)
    record = {"format_version": FORMAT_VERSION, "source": clip.source, "tokenizer": tokenizer}
    write_json(record, out_dir / RECORD_FILE)
    if weights:
        save_weights(clip.model, out_dir / WEIGHTS_FILE)
    return out_dir


def load_clip(path: str | os.PathLike, device: str | torch.device = "cpu") -> Clip:
    """Load a folder written by :func:`save_clip`, or any open_clip ``local-dir`` folder."""
    path = Path(path).expanduser().resolve()
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a CLIP folder: {CONFIG_FILE} is missing")
    if not (path / RECORD_FILE).is_file():  # a plain open_clip folder: weights, open_clip tokens
        clip = _open_clip_clip(f"local-dir:{path}", None)
        clip.source = {"kind": "open_clip", "name": str(path), "pretrained": None}
        return _to(clip, device)
    record = read_json(path / RECORD_FILE)
    if record.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path / RECORD_FILE}: unknown format_version {record.get('format_version')}"
        )
    config = read_json(path / CONFIG_FILE)
    ref = record["tokenizer"]
    if ref["kind"] == CaptionTokenizer.kind:
        tokenizer: ClipTokenizer = CaptionTokenizer(path / ref["dir"], ref["context_length"])
    else:
        tokenizer = OpenClipTokenizer(ref.get("name") or f"local-dir:{path}", ref["context_length"])
    model = _instantiate(config["model_cfg"], config["preprocess_cfg"])
    load_weights(model, path / WEIGHTS_FILE)
    clip = Clip(model, config["model_cfg"], config["preprocess_cfg"], tokenizer, record["source"])
    return _to(clip, device)


def _to(clip: Clip, device: str | torch.device) -> Clip:
    clip.model.to(device).eval()
    return clip
