"""Personality-Captions: a JSON list of ``{image_hash, personality, comment}``.

Entries are grouped by ``image_hash`` into one row (key ``pc:{hash}``) whose
``styled_captions`` are ``{style: personality, caption: comment}``; the val/test files'
``additional_comments`` are styled captions too, with the same personality. ``captions`` is
empty. The image is ``images_dir/{hash}.jpg`` (or ``.jpeg``, ``.png``); a missing one gives a
``missing_image`` row. An entry missing fields is skipped, counted and logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vlcore.data.raw import make_row
from vlcore.ingest.textio import SkipLog, input_path, load_json

log = logging.getLogger(__name__)

SOURCE = "personality"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
_SAFE_HASH = re.compile(r"^[A-Za-z0-9_-]+$")  # used as a file name: no separators, no dots


def read_personality(cfg: dict[str, Any], lang: str, workdir: Path) -> Iterator[dict[str, Any]]:
    json_path = input_path(cfg, "json", SOURCE)
    images_dir = input_path(cfg, "images_dir", SOURCE, kind="dir")
    if lang != "en":
        log.warning("Personality-Captions are English but the experiment language is %r", lang)
    what = "source.personality.json"
    data = load_json(json_path, what)
    if not isinstance(data, list):
        raise ValueError(
            f"{what}: {str(json_path)!r} should hold a JSON list of "
            f"{{image_hash, personality, comment}} objects, found a {type(data).__name__}"
        )

    skips = SkipLog(log, "personality")
    styled: dict[str, list[dict[str, str]]] = {}
    for entry in data:
        parsed = _parse(entry)
        if isinstance(parsed, str):
            skips.add(parsed, entry)
            continue
        image_hash, items = parsed
        styled.setdefault(image_hash, []).extend(items)
    skips.summary()

    for image_hash, items in tqdm(
        styled.items(), desc="personality images", unit="img", disable=None
    ):
        key = f"pc:{image_hash}"
        path = next(
            (p for s in IMAGE_SUFFIXES if (p := images_dir / f"{image_hash}{s}").is_file()), None
        )
        if path is None:
            yield make_row(
                key,
                SOURCE,
                error="missing_image",
                styled_captions=items,
                error_detail=f"no {image_hash}.jpg/.jpeg/.png in {str(images_dir)!r}",
            )
            continue
        try:
            yield make_row(key, SOURCE, image=path.read_bytes(), styled_captions=items)
        except OSError as e:
            yield make_row(
                key,
                SOURCE,
                error="missing_image",
                styled_captions=items,
                error_detail=f"cannot read {str(path)!r}: {e}",
            )


def _parse(entry: Any) -> tuple[str, list[dict[str, str]]] | str:
    """``(image_hash, styled captions)`` of one entry, or why it is skipped."""
    if not isinstance(entry, dict):
        return "entry that is not a JSON object"
    image_hash, style = entry.get("image_hash"), entry.get("personality")
    if not isinstance(image_hash, str) or not _SAFE_HASH.match(image_hash):
        return "entry without a valid image_hash"
    if not isinstance(style, str):
        return "entry without a personality string"
    comments = [entry.get("comment")]
    extra = entry.get("additional_comments")
    comments += extra if isinstance(extra, list) else []
    comments = [c for c in comments if isinstance(c, str)]
    if not comments:
        return "entry without a comment string"
    return image_hash, [{"style": style, "caption": c} for c in comments]
