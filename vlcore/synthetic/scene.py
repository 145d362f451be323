"""Scene sampling for the shapes world: what is in an image, before any pixel is drawn.

A scene is 1-3 objects, each a distinct (shape, colour) pair of a given size, placed in
distinct cells of a 3x3 grid (so "in the top left" is never a close call) without
overlapping, on a neutral background (a grey level, optionally a gentle gradient, always
light noise). Small jitter on colour, position, size and rotation keeps the pixels varied.

Coordinates are in [0, 1] with the origin in the top left corner (``x`` right, ``y`` down).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from vlcore.synthetic.lexicon import COLORS, POSITIONS, SHAPES, SIZES

logger = logging.getLogger(__name__)

# Saturated colours, far from grey and from each other.
COLOR_RGB = {
    "red": (225, 30, 35),
    "orange": (255, 135, 0),
    "yellow": (255, 220, 0),
    "green": (30, 175, 60),
    "cyan": (0, 205, 225),
    "blue": (35, 75, 235),
    "purple": (145, 55, 205),
    "pink": (255, 110, 185),
}
# Nominal radius of each size, as a fraction of the image side.
SIZE_RADIUS = {"small": 0.095, "large": 0.16}
# How far each shape reaches from its centre, in units of its radius (for placement).
SHAPE_EXTENT = {
    "circle": 1.0,
    "square": 1.2,
    "triangle": 1.35,
    "star": 1.3,
    "diamond": 1.3,
    "hexagon": 1.1,
}
# Background grey levels (0-255) per tone; far enough apart to be named reliably.
TONE_LEVELS = {"dark": (30.0, 70.0), "gray": (105.0, 150.0), "light": (190.0, 232.0)}

MAX_OBJECTS = 3
_CELL_JITTER = 0.08  # max offset of a centre from its grid cell's centre
_MARGIN = 0.02  # gap kept between a shape and the image border
_COLOR_JITTER = 12  # per channel
_ROTATION_JITTER = 12.0  # degrees
_RADIUS_JITTER = 0.06  # relative


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    size: str
    x: float
    y: float
    radius: float  # fraction of the image side
    rotation: float  # degrees, counter-clockwise
    rgb: tuple[int, int, int]

    @property
    def cell(self) -> tuple[int, int]:
        """(row, column) of the 3x3 grid cell holding the centre."""
        return min(int(self.y * 3), 2), min(int(self.x * 3), 2)

    @property
    def position(self) -> str:
        """Grid position name: "top left", "center", "bottom" ..."""
        return POSITIONS[self.cell]

    def as_dict(self) -> dict[str, object]:
        """The public description: ``{shape, color, size, x, y}``."""
        return {
            "shape": self.shape,
            "color": self.color,
            "size": self.size,
            "x": round(self.x, 4),
            "y": round(self.y, 4),
        }


@dataclass(frozen=True)
class Background:
    tone: str  # "dark" | "gray" | "light"
    level: float  # mean grey level, 0-255
    gradient: bool
    delta: float  # gradient amplitude (grey levels from one side to the other)
    angle: float  # gradient direction, radians
    noise: float  # standard deviation of the grey noise
    tint: tuple[float, float, float]  # tiny per-channel offsets (stays neutral)
    noise_seed: int


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: Background

    def count(self, color: str | None = None, shape: str | None = None) -> int:
        return sum(
            (color is None or o.color == color) and (shape is None or o.shape == shape)
            for o in self.objects
        )


def relation(a: SceneObject, b: SceneObject) -> str:
    """Where ``a`` is relative to ``b``: "left", "right", "above" or "below" (dominant axis)."""
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        return "left" if dx > 0 else "right"
    return "above" if dy > 0 else "below"


def sample_background(rng: np.random.Generator) -> Background:
    tone = str(rng.choice(list(TONE_LEVELS)))
    low, high = TONE_LEVELS[tone]
    return Background(
        tone=tone,
        level=float(rng.uniform(low, high)),
        gradient=bool(rng.random() < 0.4),
        delta=float(rng.uniform(15.0, 35.0)),
        angle=float(rng.uniform(0.0, 2 * np.pi)),
        noise=float(rng.uniform(1.0, 5.0)),
        tint=tuple(float(t) for t in rng.uniform(-4.0, 4.0, size=3)),
        noise_seed=int(rng.integers(2**31)),
    )


def _pick_kinds(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    kinds: list[tuple[str, str]] = []
    while len(kinds) < n:
        kind = (str(rng.choice(SHAPES)), str(rng.choice(COLORS)))
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def _place(rng: np.random.Generator, extents: list[float]) -> list[tuple[float, float]] | None:
    """Centres in distinct grid cells, inside the image, not overlapping; None if no luck."""
    for _ in range(100):
        cells = rng.choice(9, size=len(extents), replace=False)
        centres = []
        for cell, ext in zip(cells, extents, strict=True):
            row, col = divmod(int(cell), 3)
            lo, hi = ext + _MARGIN, 1.0 - ext - _MARGIN
            x = float(np.clip((col + 0.5) / 3 + rng.uniform(-_CELL_JITTER, _CELL_JITTER), lo, hi))
            y = float(np.clip((row + 0.5) / 3 + rng.uniform(-_CELL_JITTER, _CELL_JITTER), lo, hi))
            centres.append((x, y))
        if all(
            np.hypot(centres[i][0] - centres[j][0], centres[i][1] - centres[j][1])
            >= extents[i] + extents[j] + _MARGIN
            for i in range(len(centres))
            for j in range(i)
        ):
            return centres
    return None


def sample_scene(rng: np.random.Generator, n_objects: int | None = None) -> Scene:
    """Draw a scene; the result depends only on the state of ``rng``."""
    if n_objects is None:
        n_objects = int(rng.integers(1, MAX_OBJECTS + 1))
    if not 1 <= n_objects <= MAX_OBJECTS:
        raise ValueError(f"n_objects must be in 1..{MAX_OBJECTS}, got {n_objects}")
    kinds = _pick_kinds(rng, n_objects)
    sizes = [str(rng.choice(SIZES)) for _ in kinds]
    radii = [SIZE_RADIUS[s] * (1.0 + rng.uniform(-_RADIUS_JITTER, _RADIUS_JITTER)) for s in sizes]
    centres = _place(
        rng, [r * SHAPE_EXTENT[shape] for r, (shape, _) in zip(radii, kinds, strict=True)]
    )
    if centres is None:  # crowded: fall back to small shapes, which always fit
        sizes = ["small"] * n_objects
        radii = [SIZE_RADIUS["small"]] * n_objects
        centres = _place(
            rng, [r * SHAPE_EXTENT[shape] for r, (shape, _) in zip(radii, kinds, strict=True)]
        )
        if centres is None:  # cannot happen with at most 3 small shapes in 9 cells
            raise RuntimeError(f"could not place {n_objects} small shapes")
    objects = []
    for (shape, color), size, radius, (x, y) in zip(kinds, sizes, radii, centres, strict=True):
        base = np.array(COLOR_RGB[color])
        rgb = np.clip(base + rng.integers(-_COLOR_JITTER, _COLOR_JITTER + 1, size=3), 0, 255)
        rotation = (
            0.0 if shape == "circle" else float(rng.uniform(-_ROTATION_JITTER, _ROTATION_JITTER))
        )
        objects.append(
            SceneObject(
                shape=shape,
                color=color,
                size=size,
                x=x,
                y=y,
                radius=float(radius),
                rotation=rotation,
                rgb=(int(rgb[0]), int(rgb[1]), int(rgb[2])),
            )
        )
    return Scene(objects=tuple(objects), background=sample_background(rng))
