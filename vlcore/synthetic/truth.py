"""Ground truth of the shapes world: the scene each synthetic image shows, from ``(seed, id)``.

The synthetic source stores ``image_id = index`` (see :mod:`vlcore.synthetic.generate`), and
sample ``index``'s scene depends only on ``(seed, index)``, so the objects of any shard row
are regenerated here, without rendering a pixel and without storing labels in the shards.
A ``duplicate_image`` sample shows the scene of the earlier sample it copies; with
``dirty_rate`` given, that sample's scene is returned.

>>> scene_truth(0, [0])        # doctest: +SKIP
[[{'shape': 'star', 'color': 'cyan', 'size': 'small', 'x': 0.4204, 'y': 0.8504, 'cell': [2, 1]},
  ...]]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vlcore.synthetic import dirty
from vlcore.synthetic.lexicon import COLORS
from vlcore.synthetic.scene import sample_scene
from vlcore.synthetic.streams import check_seed_index, scene_rng


def truth_settings(source: int | Mapping[str, Any]) -> tuple[int, float | None]:
    """``(seed, dirty_rate)`` from a seed, a ``{seed, dirty_rate}`` mapping, or an experiment
    section (``seed`` plus ``source.synthetic.dirty_rate``)."""
    if isinstance(source, Mapping):
        seed = source.get("seed")
        rate = source.get("dirty_rate")
        synthetic = (source.get("source") or {}).get("synthetic")
        if rate is None and isinstance(synthetic, Mapping):
            rate = synthetic.get("dirty_rate")
        if isinstance(source.get("source"), Mapping) and source["source"].get("format") not in (
            None,
            "synthetic",
        ):
            raise ValueError(
                f"scene truth exists for the synthetic source only, not {source['source']['format']!r}"
            )
    else:
        seed, rate = source, None
    check_seed_index(seed, 0)
    return int(seed), None if rate is None else float(rate)


def scene_index(seed: int, image_id: int, dirty_rate: float | None = None) -> int:
    """The sample whose scene image ``image_id`` shows (itself, or the one a duplicate copies)."""
    check_seed_index(seed, image_id)
    if (
        dirty_rate is not None
        and dirty.draw_reason(seed, image_id, dirty_rate) == "duplicate_image"
    ):
        source = dirty.duplicate_source(seed, image_id, dirty_rate)
        if source is not None:
            return source
    return int(image_id)


def scene_truth(
    source: int | Mapping[str, Any], image_ids: Iterable[int]
) -> list[list[dict[str, Any]]]:
    """The objects of each image: ``[{shape, color, size, x, y, cell: [row, col]}]`` per id.

    ``source``: the experiment seed, ``{"seed", "dirty_rate"}``, or the experiment's config
    section (the synthetic generator's seed is the experiment seed).
    """
    seed, rate = truth_settings(source)
    out = []
    for image_id in image_ids:
        scene = sample_scene(scene_rng(seed, scene_index(seed, int(image_id), rate)))
        out.append([{**o.as_dict(), "cell": list(o.cell)} for o in scene.objects])
    return out


def check_truth_matches(
    scenes: Sequence[Sequence[Mapping[str, Any]]],
    captions: Sequence[Sequence[str]],
    *,
    minimum: float = 0.95,
) -> None:
    """Raise ``ValueError`` unless the images' own (English) captions name the colours of
    the regenerated ``scenes``: truth regenerated with another experiment's seed or
    ``dirty_rate`` would make every count that reads it sit at chance. ``captions[i]`` are
    image ``i``'s references; captions without English colour words are not checked."""
    named = right = 0
    for scene, texts in zip(scenes, captions, strict=True):
        present = {o["color"] for o in scene}
        for text in texts:
            for word in re.findall(r"[a-z]+", text.lower()):
                if word in COLORS:
                    named += 1
                    right += word in present
    if named and right < minimum * named:
        raise ValueError(
            f"only {100 * right / named:.0f}% of the colour words of the captions are in the "
            "regenerated scenes: the seed or dirty_rate is not the experiment's that made "
            "these images (pass its config's seed and source.synthetic.dirty_rate)"
        )
