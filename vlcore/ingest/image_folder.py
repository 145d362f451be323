"""A folder of images plus a captions file (csv, tsv or jsonl) with ``file`` and ``caption``.

Lines naming the same ``file`` merge into one row (key ``folder:{file}``) with their
captions in file order. ``file`` is looked up relative to the captions file's folder first,
then relative to ``images_dir``; a missing image gives a ``missing_image`` row.

The csv is read as RFC 4180 (quoted fields), the tsv as plain tab-separated text (no quoting;
text holds no tabs or newlines), the jsonl as one object per line (``caption`` may also be a
list of strings). A captions file without a ``file`` or ``caption`` column stops the run with
a :class:`ValueError`; a bad line becomes an error row (``malformed_row``, ``bad_encoding``)
keyed ``folder:{file}`` when no good line names that file, else ``folder:{file}@line{n}``
(``folder:@line{n}`` when the file name cannot be read).
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vlcore.data.raw import make_row
from vlcore.ingest.textio import input_path, iter_table

log = logging.getLogger(__name__)

SOURCE = "image_folder"
COLUMNS = ("file", "caption")


@dataclass
class _Entry:
    captions: list[str] = field(default_factory=list)
    good: bool = False
    bad: list[tuple[int, str, str]] = field(default_factory=list)


def read_image_folder(cfg: dict[str, Any], lang: str, workdir: Path) -> Iterator[dict[str, Any]]:
    captions_file = input_path(cfg, "captions_file", SOURCE)
    images_dir = input_path(cfg, "images_dir", SOURCE, kind="dir", required=False)
    roots = [captions_file.parent] + ([images_dir] if images_dir is not None else [])

    entries: dict[str, _Entry] = {}
    unnamed: list[tuple[int, str, str]] = []
    for rec in iter_table(captions_file, COLUMNS, "source.image_folder.captions_file"):
        name = _file_name(rec.fields.get("file")) if rec.fields else None
        captions = _captions(rec.fields.get("caption")) if rec.fields else None
        if rec.error is None and name is None:
            rec.error, rec.detail = "malformed_row", f"empty or invalid file field: {rec.fields}"
        elif rec.error is None and captions is None:
            rec.error, rec.detail = "malformed_row", f"caption is not text: {rec.fields}"
        if name is None:
            unnamed.append((rec.lineno, rec.error, rec.detail))
            continue
        entry = entries.setdefault(name, _Entry())
        if rec.error is not None:
            entry.bad.append((rec.lineno, rec.error, rec.detail))
        else:
            entry.good = True
            entry.captions.extend(captions)

    for name, entry in tqdm(entries.items(), desc="image folder", unit="img", disable=None):
        key = f"folder:{name}"
        if entry.good:
            yield _image_row(key, name, roots, entry.captions)
        for i, (lineno, error, detail) in enumerate(entry.bad):
            line_key = key if (i == 0 and not entry.good) else f"{key}@line{lineno}"
            yield make_row(line_key, SOURCE, error=error, error_detail=f"line {lineno}: {detail}")
    for lineno, error, detail in unnamed:
        yield make_row(
            f"folder:@line{lineno}", SOURCE, error=error, error_detail=f"line {lineno}: {detail}"
        )


def _file_name(value: Any) -> str | None:
    """The ``file`` field, normalised (``./a.png`` and ``a.png`` are one image)."""
    if not isinstance(value, str) or not value.strip():
        return None
    return posixpath.normpath(value.strip().replace("\\", "/"))


def _captions(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return value
    return None


def _image_row(key: str, name: str, roots: list[Path], captions: list[str]) -> dict[str, Any]:
    path = next((p for root in roots if (p := root / name).is_file()), None)
    if path is None:
        where = " or ".join(repr(str(r)) for r in roots)
        return make_row(
            key,
            SOURCE,
            error="missing_image",
            captions=captions,
            error_detail=f"no file {name!r} under {where}",
        )
    try:
        return make_row(key, SOURCE, image=path.read_bytes(), captions=captions)
    except OSError as e:
        return make_row(
            key,
            SOURCE,
            error="missing_image",
            captions=captions,
            error_detail=f"cannot read {str(path)!r}: {e}",
        )
