"""The shapes world data set: deterministic samples with captions, styles, questions and dirt.

Sample ``i`` depends only on ``(seed, i)`` (see :mod:`vlcore.synthetic.streams`), never on
how many samples are generated, so growing the data set keeps every existing sample
byte-identical.

>>> samples = generate(3000, seed=0)                        # doctest: +SKIP
>>> row = to_raw_row(samples[0], lang="en")                 # a RAW_SCHEMA row
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vlcore.data.raw import make_row
from vlcore.synthetic import dirty
from vlcore.synthetic.captions_en import captions_en
from vlcore.synthetic.captions_zh import captions_zh
from vlcore.synthetic.render import render_png
from vlcore.synthetic.scene import Scene, sample_scene
from vlcore.synthetic.streams import check_seed_index, scene_rng, stream_rng
from vlcore.synthetic.styles import styled_captions
from vlcore.synthetic.vqa import QUESTIONS_PER_IMAGE, make_questions

logger = logging.getLogger(__name__)

SOURCE = "synthetic"
LANGS = ("en", "zh")
MIN_IMAGE_SIZE = 32


@dataclass
class SyntheticSample:
    """One generated image with everything known about it."""

    index: int
    key: str  # synth-{index:07d}
    image_id: int  # = index
    image: bytes  # encoded image (PNG; random bytes for a corrupt_image sample)
    objects: list[dict[str, Any]]  # [{shape, color, size, x, y}], x/y in [0, 1]
    captions_en: list[str]  # 5 reference captions
    captions_zh: list[str]  # 5 reference captions
    styled_captions: list[dict[str, str]]  # [{style, caption}], one per style
    questions: list[dict[str, Any]] = field(default_factory=list)  # VQAv2-shaped
    dirty_reason: str | None = None  # None, or the one cleaning reason this sample fails


def sample_key(index: int) -> str:
    return f"synth-{index:07d}"


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_args(image_size: int, dirty_rate: float) -> None:
    if not _is_int(image_size) or image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if not 0.0 <= float(dirty_rate) <= 1.0:
        raise ValueError(f"dirty_rate must be in [0, 1], got {dirty_rate!r}")


def _clean_sample(index: int, seed: int, image_size: int) -> tuple[SyntheticSample, Scene]:
    scene = sample_scene(scene_rng(seed, index))
    sample = SyntheticSample(
        index=index,
        key=sample_key(index),
        image_id=index,
        image=render_png(scene, image_size),
        objects=[o.as_dict() for o in scene.objects],
        captions_en=captions_en(scene, stream_rng(seed, index, "captions_en")),
        captions_zh=captions_zh(scene, stream_rng(seed, index, "captions_zh")),
        styled_captions=styled_captions(scene, stream_rng(seed, index, "styles")),
        questions=make_questions(scene, index, stream_rng(seed, index, "vqa")),
    )
    return sample, scene


def _duplicate(source: SyntheticSample, index: int) -> SyntheticSample:
    """A copy of ``source`` (bytes, objects, captions, questions) under sample ``index``."""
    questions = [
        {**q, "question_id": index * QUESTIONS_PER_IMAGE + k, "answers": list(q["answers"])}
        for k, q in enumerate(source.questions)
    ]
    return dataclasses.replace(
        copy.deepcopy(source),
        index=index,
        key=sample_key(index),
        image_id=index,
        questions=questions,
        dirty_reason="duplicate_image",
    )


def _spoil(
    sample: SyntheticSample, scene: Scene, reason: str, seed: int, image_size: int
) -> SyntheticSample:
    """``sample`` made faulty for ``reason`` (any reason but ``duplicate_image``)."""
    rng = stream_rng(seed, sample.index, "dirty_content")
    n_en, n_zh = len(sample.captions_en), len(sample.captions_zh)
    styled = sample.styled_captions
    if reason == "corrupt_image":
        changes: dict[str, Any] = {"image": dirty.corrupt_bytes(rng)}
    elif reason == "truncated_image":
        changes = {"image": dirty.truncate_png(sample.image, rng)}
    elif reason == "too_small":
        changes = {"image": render_png(scene, dirty.TOO_SMALL_SIZE)}
    elif reason == "bad_aspect_ratio":
        changes = {"image": render_png(scene, image_size, aspect=dirty.BAD_ASPECT_RATIO)}
    elif reason == "empty_caption":
        changes = {
            "captions_en": dirty.blank_captions(n_en),
            "captions_zh": dirty.blank_captions(n_zh),
            "styled_captions": dirty.blank_styled(styled),
        }
    elif reason == "caption_too_long":
        changes = {
            "captions_en": dirty.long_en(sample.captions_en, rng),
            "captions_zh": dirty.long_zh(sample.captions_zh, rng),
            "styled_captions": dirty.long_styled(styled, sample.captions_en, rng),
        }
    elif reason == "special_characters":
        changes = {
            "captions_en": dirty.special_en(sample.captions_en, rng),
            "captions_zh": dirty.special_zh(scene, rng, n_zh),
            "styled_captions": dirty.special_styled(styled, rng),
        }
    elif reason == "off_domain":
        changes = {
            "captions_en": dirty.off_domain_en(rng, n_en),
            "captions_zh": dirty.off_domain_zh(rng, n_zh),
            "styled_captions": dirty.off_domain_styled(styled, rng),
        }
    else:
        raise ValueError(f"cannot spoil a sample for {reason!r}")
    if reason in dirty.CAPTION_FAULTS:
        changes["questions"] = []  # a usable question would keep the row
    return dataclasses.replace(sample, dirty_reason=reason, **changes)


def generate_sample(
    index: int,
    seed: int,
    image_size: int = 64,
    dirty_rate: float = 0.05,
    *,
    earlier: Sequence[SyntheticSample] | None = None,
) -> SyntheticSample:
    """Sample ``index`` of the data set ``(seed, image_size, dirty_rate)``.

    ``earlier`` (samples ``0 .. index-1`` of the same data set, as :func:`generate` has them)
    only saves re-rendering the clean sample a ``duplicate_image`` sample copies.
    """
    check_seed_index(seed, index)
    _check_args(image_size, dirty_rate)
    reason = dirty.draw_reason(seed, index, dirty_rate)
    if reason == "duplicate_image":
        j = dirty.duplicate_source(seed, index, dirty_rate)
        if j is not None:
            if earlier is not None and j < len(earlier):
                source = earlier[j]
            else:
                source, _ = _clean_sample(j, seed, image_size)
            return _duplicate(source, index)
        reason = dirty.fallback_reason(seed, index)  # nothing clean to copy yet
    sample, scene = _clean_sample(index, seed, image_size)
    if reason is None:
        return sample
    return _spoil(sample, scene, reason, seed, image_size)


def generate(
    n_images: int, seed: int, image_size: int = 64, dirty_rate: float = 0.05
) -> list[SyntheticSample]:
    """Samples ``0 .. n_images-1``; the first ``k`` are the same for every ``n_images >= k``."""
    if not _is_int(n_images) or n_images < 0:
        raise ValueError(f"n_images must be a non-negative integer, got {n_images!r}")
    check_seed_index(seed, 0)
    _check_args(image_size, dirty_rate)
    samples: list[SyntheticSample] = []
    for index in tqdm(range(n_images), desc="synthetic", unit="img", disable=None):
        samples.append(generate_sample(index, seed, image_size, dirty_rate, earlier=samples))
    n_dirty = sum(s.dirty_reason is not None for s in samples)
    logger.info("generated %d synthetic samples (%d dirty), seed %d", n_images, n_dirty, seed)
    return samples


def captions_for(sample: SyntheticSample, lang: str) -> list[str]:
    """The sample's reference captions in ``lang`` ("en" or "zh")."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")
    return sample.captions_en if lang == "en" else sample.captions_zh


def to_raw_row(
    sample: SyntheticSample, lang: str, *, include_styled: bool = True
) -> dict[str, Any]:
    """The raw row (``vlcore.data.raw.RAW_SCHEMA``) of ``sample`` for a ``lang`` experiment.

    Styled captions and questions are English whatever ``lang`` is; ``include_styled=False``
    leaves the styled captions out.
    """
    return make_row(
        sample.key,
        SOURCE,
        image=sample.image,
        captions=captions_for(sample, lang),
        styled_captions=sample.styled_captions if include_styled else (),
        questions=sample.questions,
        image_id=sample.image_id,
    )
