"""Rendering scenes to pixels: PIL polygons drawn at 4x, box-downscaled for clean edges.

The background (grey level, gradient, noise) is computed at the output resolution and
upsampled by pixel repetition, so the box downscale gives it back exactly; only the shape
edges are antialiased. Rendering is a pure function of the scene and the size, and PNG
encoding uses fixed settings, so the same scene always gives the same bytes.
"""

from __future__ import annotations

import io
import logging
import math

import numpy as np
from PIL import Image, ImageDraw

from vlcore.synthetic.scene import Background, Scene, SceneObject

logger = logging.getLogger(__name__)

SUPERSAMPLE = 4
_OUTLINE_DARKEN = 0.55  # outline colour = fill * this
_OUTLINE_WIDTH = 0.8 / 64  # outline width, fraction of the image side (0.8 px at 64 px)


def _background(bg: Background, width: int, height: int) -> np.ndarray:
    """(height, width, 3) float32 grey background."""
    values = np.full((height, width), bg.level, dtype=np.float32)
    if bg.gradient:
        ys = (np.arange(height, dtype=np.float32) + 0.5) / height - 0.5
        xs = (np.arange(width, dtype=np.float32) + 0.5) / width - 0.5
        proj = math.cos(bg.angle) * xs[None, :] + math.sin(bg.angle) * ys[:, None]
        values = values + bg.delta * proj
    noise = np.random.default_rng(bg.noise_seed).standard_normal((height, width), dtype=np.float32)
    values = values + bg.noise * noise
    return values[:, :, None] + np.asarray(bg.tint, dtype=np.float32)[None, None, :]


def _rotate(points: list[tuple[float, float]], degrees: float) -> list[tuple[float, float]]:
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    # y points down, so a counter-clockwise turn on screen is (x, y) -> (x c + y s, -x s + y c)
    return [(x * c + y * s, -x * s + y * c) for x, y in points]


def _regular(n: int, radius: float, start_deg: float) -> list[tuple[float, float]]:
    return [
        (
            radius * math.cos(math.radians(start_deg + 360.0 * k / n)),
            radius * math.sin(math.radians(start_deg + 360.0 * k / n)),
        )
        for k in range(n)
    ]


def shape_outline(shape: str, r: float) -> list[tuple[float, float]]:
    """Polygon vertices of ``shape`` with nominal radius ``r``, centred on (0, 0), y down."""
    if shape == "square":
        return _regular(4, 1.2 * r, 45.0)
    if shape == "triangle":
        big = 1.35 * r
        # shift down by a quarter of the circumradius so the bounding box is centred
        return [(x, y + big / 4) for x, y in _regular(3, big, -90.0)]
    if shape == "star":
        outer, inner = 1.3 * r, 0.55 * r
        return [
            (
                (outer if k % 2 == 0 else inner) * math.cos(math.radians(-90.0 + 36.0 * k)),
                (outer if k % 2 == 0 else inner) * math.sin(math.radians(-90.0 + 36.0 * k)),
            )
            for k in range(10)
        ]
    if shape == "diamond":
        return [(0.0, -1.3 * r), (0.9 * r, 0.0), (0.0, 1.3 * r), (-0.9 * r, 0.0)]
    if shape == "hexagon":
        return _regular(6, 1.1 * r, -90.0)
    raise ValueError(f"no polygon for shape {shape!r}")


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, width: int, height: int) -> None:
    side = min(width, height)
    cx, cy, r = obj.x * width, obj.y * height, obj.radius * side
    fill = obj.rgb
    outline = tuple(int(c * _OUTLINE_DARKEN) for c in obj.rgb)
    line = max(1, round(side * _OUTLINE_WIDTH))
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=line)
        return
    points = [(cx + x, cy + y) for x, y in _rotate(shape_outline(obj.shape, r), obj.rotation)]
    draw.polygon(points, fill=fill, outline=outline, width=line)


def render_scene(scene: Scene, size: int = 64, aspect: float = 1.0) -> Image.Image:
    """An RGB image of ``scene``: ``size`` pixels high, ``round(size * aspect)`` wide."""
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if aspect <= 0:
        raise ValueError(f"aspect must be positive, got {aspect}")
    width, height = round(size * aspect), size
    bg = np.clip(_background(scene.background, width, height), 0, 255).astype(np.uint8)
    img = Image.fromarray(bg).resize(
        (width * SUPERSAMPLE, height * SUPERSAMPLE), Image.Resampling.NEAREST
    )
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        _draw_object(draw, obj, width * SUPERSAMPLE, height * SUPERSAMPLE)
    return img.reduce(SUPERSAMPLE)


def encode_png(img: Image.Image) -> bytes:
    """PNG bytes with fixed settings and no metadata (same pixels, same bytes)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def render_png(scene: Scene, size: int = 64, aspect: float = 1.0) -> bytes:
    return encode_png(render_scene(scene, size, aspect))
