"""Independent random streams per sample: everything about sample ``i`` comes from ``(seed, i)``.

The scene uses ``np.random.default_rng([seed, i])``; the text and the dirt use their own
streams ``[seed, i, k]``, so changing how captions are written never moves a pixel, and no
stream depends on how many samples are generated.
"""

from __future__ import annotations

import numpy as np

STREAMS = {
    "captions_en": 1,
    "captions_zh": 2,
    "styles": 3,
    "vqa": 4,
    "dirty_draw": 5,
    "dirty_content": 6,
    "duplicate_source": 7,
}


def check_seed_index(seed: int, index: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"sample index must be a non-negative integer, got {index!r}")


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index``'s scene."""
    check_seed_index(seed, index)
    return np.random.default_rng([int(seed), int(index)])


def stream_rng(seed: int, index: int, name: str) -> np.random.Generator:
    """The generator of one named stream (see :data:`STREAMS`) of sample ``index``."""
    check_seed_index(seed, index)
    if name not in STREAMS:
        raise ValueError(f"unknown stream {name!r}; expected one of {sorted(STREAMS)}")
    return np.random.default_rng([int(seed), int(index), STREAMS[name]])
