"""EasyNLP-style base64 TSV: ``idx \\t base64(image) \\t text`` lines, no header.

One row per ``idx`` (key ``tsv:{idx}``): lines sharing an ``idx`` are merged, the image comes
from the first good line and the captions from every good line, in file order. The file is
streamed twice (it can be many GB): a quick first pass finds ``idx`` values that come back
after other lines, so that they too merge into one row instead of becoming duplicate keys.

Every bad line becomes an error row, and never costs a good line its row:
``malformed_row`` (not 3 tab-separated fields), ``bad_encoding`` (not UTF-8),
``invalid_base64`` (the image field does not decode; standard and URL-safe alphabets are
accepted, with or without padding). An error row takes the key ``tsv:{idx}`` when no good
line has that idx, else ``tsv:{idx}@line{n}``; lines without any tab get ``tsv:@line{n}``.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlcore.data.raw import make_row
from vlcore.ingest.textio import (
    decode_utf8,
    describe_bad_utf8,
    input_path,
    iter_binary_lines,
    read_line_at,
)

log = logging.getLogger(__name__)

SOURCE = "base64_tsv"
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def decode_base64(text: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not; :class:`ValueError` if it is not."""
    data = text.strip().encode("ascii").translate(_URLSAFE_TO_STANDARD).rstrip(b"=")
    if not data:
        raise ValueError("empty image field")
    if len(data) % 4 == 1:
        raise ValueError(f"{len(data)} base64 characters cannot encode whole bytes")
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except binascii.Error as e:
        raise ValueError(str(e)) from None


@dataclass
class _Group:
    """The lines of one idx: good (image, caption) pairs and bad (line, error, detail)."""

    idx: bytes
    image: bytes | None = None
    captions: list[str] = field(default_factory=list)
    bad: list[tuple[int, str, str]] = field(default_factory=list)
    other_images: int = 0

    def add(self, lineno: int, line: bytes) -> None:
        try:
            image, caption = _parse(line)
        except _BadLine as e:
            self.bad.append((lineno, e.error, e.detail))
            return
        if self.image is None:
            self.image = image
        elif image != self.image:
            self.other_images += 1
        self.captions.append(caption)

    def rows(self) -> Iterator[dict[str, Any]]:
        idx = self.idx.decode("utf-8", errors="backslashreplace")
        key = f"tsv:{idx}"
        if self.other_images:
            log.warning(
                "%s: %d line(s) carry a different image than the first; kept the first",
                key,
                self.other_images,
            )
        if self.image is not None:
            yield make_row(key, SOURCE, image=self.image, captions=self.captions)
        for i, (lineno, error, detail) in enumerate(self.bad):
            line_key = key if (i == 0 and self.image is None) else f"{key}@line{lineno}"
            yield make_row(line_key, SOURCE, error=error, error_detail=f"line {lineno}: {detail}")


class _BadLine(Exception):
    def __init__(self, error: str, detail: str):
        super().__init__(detail)
        self.error, self.detail = error, detail


def _parse(line: bytes) -> tuple[bytes, str]:
    """``(image, caption)`` of a line; :class:`_BadLine` with the ingest error code if bad."""
    text = decode_utf8(line)
    if text is None:
        raise _BadLine("bad_encoding", describe_bad_utf8(line))
    fields = text.split("\t")
    if len(fields) != 3:
        raise _BadLine(
            "malformed_row", f"{len(fields)} tab-separated fields, expected 3 (idx, base64, text)"
        )
    _, b64, caption = fields
    try:
        image = decode_base64(b64)
    except ValueError as e:
        raise _BadLine("invalid_base64", f"image field does not decode as base64: {e}") from None
    return image, caption


def _blank(line: bytes) -> bool:
    return not line or line.isspace()  # no copy of a line that may hold megabytes


def _idx_of(line: bytes) -> bytes | None:
    tab = line.find(b"\t")
    return None if tab < 0 else line[:tab]


def _find_late_lines(path: Path) -> dict[bytes, list[tuple[int, int]]]:
    """First pass: ``idx -> [(line, offset)]`` for lines whose idx appeared before another idx."""
    seen: set[bytes] = set()
    late: dict[bytes, list[tuple[int, int]]] = {}
    prev, prev_late = None, False
    for lineno, offset, line in iter_binary_lines(path, desc=f"{path.name} (index)"):
        idx = None if _blank(line) else _idx_of(line)
        if idx is None:
            continue
        if idx != prev:
            prev, prev_late = idx, idx in seen
            seen.add(idx)
        if prev_late:
            late.setdefault(idx, []).append((lineno, offset))
    return late


def read_base64_tsv(cfg: dict[str, Any], lang: str, workdir: Path) -> Iterator[dict[str, Any]]:
    path = input_path(cfg, "path", SOURCE)
    late = _find_late_lines(path)
    if late:
        log.info("%s: %d idx value(s) reappear after other lines; merging them", path, len(late))
    started: set[bytes] = set()
    group: _Group | None = None
    prev, late_run = None, False
    blank = 0
    with open(path, "rb") as again:

        def finish(g: _Group) -> Iterator[dict[str, Any]]:
            for lineno, offset in late.get(g.idx, ()):
                g.add(lineno, read_line_at(again, offset))
            yield from g.rows()

        for lineno, _, line in iter_binary_lines(path, desc=path.name):
            if _blank(line):
                blank += 1
                continue
            idx = _idx_of(line)
            if idx is None:
                yield make_row(
                    f"tsv:@line{lineno}",
                    SOURCE,
                    error="malformed_row",
                    error_detail=f"line {lineno}: no tab; expected idx, base64 and text "
                    f"separated by tabs: {line[:80]!r}",
                )
                continue
            if idx != prev:  # a new run of lines; the same test as the first pass
                prev, late_run = idx, idx in started
                if not late_run:
                    if group is not None:
                        yield from finish(group)
                    group = _Group(idx)
                    started.add(idx)
            if not late_run:  # late lines were merged when their idx's first run ended
                group.add(lineno, line)
        if group is not None:
            yield from finish(group)
    if blank:
        log.info("%s: ignored %d blank line(s)", path, blank)
