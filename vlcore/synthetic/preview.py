"""A contact sheet of samples, to look at the data (and at what the dirt looks like)."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

_GAP = 2
_SHEET_COLOR = (255, 255, 255)
_BROKEN_COLOR = (200, 0, 0)


def _tile(data: bytes, cell: int) -> Image.Image:
    """The decoded image fitted into ``cell`` x ``cell``, or a red cross if it does not decode."""
    tile = Image.new("RGB", (cell, cell), (235, 235, 235))
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
    except Exception:
        draw = ImageDraw.Draw(tile)
        draw.line((0, 0, cell - 1, cell - 1), fill=_BROKEN_COLOR, width=2)
        draw.line((0, cell - 1, cell - 1, 0), fill=_BROKEN_COLOR, width=2)
        return tile
    scale = cell / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    img = img.resize(size, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX)
    tile.paste(img, ((cell - size[0]) // 2, (cell - size[1]) // 2))
    return tile


def contact_sheet(
    images: Sequence[bytes], cols: int = 8, cell: int = 64, zoom: int = 1
) -> Image.Image:
    """A grid of ``images`` (encoded bytes), ``cols`` per row, each in a ``cell`` px square."""
    if cols < 1 or cell < 1 or zoom < 1:
        raise ValueError(f"cols, cell and zoom must be >= 1, got {cols}, {cell}, {zoom}")
    rows = max(1, -(-len(images) // cols))
    sheet = Image.new(
        "RGB", (cols * (cell + _GAP) + _GAP, rows * (cell + _GAP) + _GAP), _SHEET_COLOR
    )
    for k, data in enumerate(images):
        r, c = divmod(k, cols)
        sheet.paste(_tile(data, cell), (_GAP + c * (cell + _GAP), _GAP + r * (cell + _GAP)))
    if zoom > 1:
        sheet = sheet.resize((sheet.width * zoom, sheet.height * zoom), Image.Resampling.NEAREST)
    return sheet
