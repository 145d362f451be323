"""Image decode, resize and encode helpers shared by ``clean_pairs``, ``shard_dataset`` and
``ShardStream``.

PIL keeps two safety switches in module globals (``Image.MAX_IMAGE_PIXELS`` and
``ImageFile.LOAD_TRUNCATED_IMAGES``). :func:`pil_limits` sets them for the length of a block
and restores them afterwards, so our checks neither depend on nor leak global state.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator

from PIL import Image, ImageFile, ImageOps

RESIZE_MODES = ("center_crop", "pad", "stretch")
IMAGE_FORMATS = ("png", "jpeg")

# PIL's own decompression-bomb signals; inside pil_limits the warning is raised as an error.
BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)
EXIF_ORIENTATION = 0x0112


@contextlib.contextmanager
def pil_limits(max_pixels: int | None, *, bomb_warning_is_error: bool = True) -> Iterator[None]:
    """Run a block with PIL's pixel limit set to ``max_pixels`` and truncated images refused.

    ``max_pixels=None`` disables PIL's check (for images that were vetted already). With
    ``bomb_warning_is_error`` PIL's ``DecompressionBombWarning`` is raised instead of printed.
    Not thread-safe: enter it once around a whole loop, not inside worker threads.
    """
    old_pixels = Image.MAX_IMAGE_PIXELS
    old_truncated = ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS = max_pixels
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            if bomb_warning_is_error:
                warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = old_pixels
        ImageFile.LOAD_TRUNCATED_IMAGES = old_truncated


def open_image(data: bytes) -> Image.Image:
    """Open encoded image bytes lazily (header only; pixels are read by ``load()``)."""
    return Image.open(io.BytesIO(data))


def to_rgb(img: Image.Image) -> Image.Image:
    """Upright RGB: apply the EXIF orientation; composite transparency onto white."""
    img = ImageOps.exif_transpose(img)
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_rgb(data: bytes) -> Image.Image:
    """Decode bytes to an upright RGB image."""
    return to_rgb(open_image(data))


def decode_for_resize(data: bytes, size: int) -> tuple[Image.Image, tuple[int, int]]:
    """Decode bytes bound for a ``size`` x ``size`` image; also return the upright original size.

    JPEG decoding downscales by a power of two on the fly while keeping both sides at least
    ``size`` (much faster for big photos bound for small tensors).
    """
    img = open_image(data)
    width, height = img.size
    if img.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
        width, height = height, width
    if img.format == "JPEG":
        img.draft("RGB", (size, size))
    return to_rgb(img), (width, height)


def resize_square(img: Image.Image, size: int, mode: str = "center_crop") -> Image.Image:
    """Resize to ``size`` x ``size``.

    ``center_crop`` scales the short side to ``size`` and crops the centre; ``pad`` scales the
    long side to ``size`` and pads with black; ``stretch`` ignores the aspect ratio.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {mode!r}")
    resample = Image.Resampling.BICUBIC
    if mode == "center_crop":
        return ImageOps.fit(img, (size, size), method=resample, centering=(0.5, 0.5))
    if mode == "pad":
        return ImageOps.pad(img, (size, size), method=resample, color=(0, 0, 0))
    return img.resize((size, size), resample=resample)


def encode_image(img: Image.Image, image_format: str = "png", jpeg_quality: int = 95) -> bytes:
    """Encode with fixed settings and no metadata: the same pixels give the same bytes."""
    buf = io.BytesIO()
    if image_format == "png":
        img.save(buf, format="PNG", optimize=False, compress_level=6)
    elif image_format == "jpeg":
        img.save(buf, format="JPEG", quality=jpeg_quality, optimize=False, progressive=False)
    else:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    return buf.getvalue()
