"""Reading the text side of a source safely: input paths, JSON files, lines, tables.

Two kinds of bad input, two behaviours:

- a whole-file problem (missing file, malformed JSON, missing column) stops the run with a
  :class:`FileNotFoundError` / :class:`ValueError` that names the file and says what to fix;
- a problem in one line or entry never stops the run: line-based readers turn it into an error
  row, entry-based readers (JSON) count it in a :class:`SkipLog` and go on.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

log = logging.getLogger(__name__)

_BOM = b"\xef\xbb\xbf"


def input_path(
    cfg: dict[str, Any], key: str, fmt: str, *, kind: str = "file", required: bool = True
) -> Path | None:
    """``cfg[key]`` as a :class:`Path` that exists, or ``None`` when optional and unset.

    Raises :class:`FileNotFoundError` naming the config key (``source.<fmt>.<key>``) and path.
    """
    value = cfg.get(key)
    if value in (None, ""):
        if required:
            raise ValueError(f"source.{fmt}.{key} is required but not set")
        return None
    path = Path(value)
    ok = path.is_dir() if kind == "dir" else path.is_file()
    if not ok:
        what = "folder" if kind == "dir" else "file"
        found = " (it exists but is not a " + what + ")" if path.exists() else ""
        raise FileNotFoundError(
            f"source.{fmt}.{key}: {what} {str(path)!r} not found{found} "
            f"(paths are relative to {os.getcwd()!r}); fix the path in the experiment's source "
            "config or put the data there"
        )
    return path


def load_json(path: Path, what: str) -> Any:
    """Parse a whole JSON file; a malformed file is a :class:`ValueError` naming it."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{what}: {str(path)!r} is not UTF-8 text (byte {e.start}); "
            "re-download or re-encode the file"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{what}: {str(path)!r} is not valid JSON (line {e.lineno}, column {e.colno}: "
            f"{e.msg}); the file is probably truncated or not the file you meant"
        ) from None


def require_keys(data: Any, keys: tuple[str, ...], path: Path, what: str) -> None:
    """Check that a JSON file's top level is an object with ``keys``; else a clear ValueError."""
    if not isinstance(data, dict):
        raise ValueError(
            f"{what}: {str(path)!r} should hold a JSON object with keys {list(keys)}, "
            f"found a {type(data).__name__}"
        )
    missing = [k for k in keys if not isinstance(data.get(k), list)]
    if missing:
        raise ValueError(
            f"{what}: {str(path)!r} has no list {missing[0]!r} at the top level "
            f"(keys found: {sorted(data)}); is it the right kind of file?"
        )


class SkipLog:
    """Count entries skipped for a reason; log the first few, then one summary per reason."""

    def __init__(self, logger: logging.Logger, what: str, examples: int = 3):
        self.logger = logger
        self.what = what
        self.examples = examples
        self.counts: dict[str, int] = {}

    def add(self, reason: str, detail: Any = None) -> None:
        n = self.counts[reason] = self.counts.get(reason, 0) + 1
        if n <= self.examples:
            self.logger.warning("%s: skipped %s: %s", self.what, reason, _short(detail))

    def summary(self) -> None:
        for reason, n in self.counts.items():
            self.logger.warning("%s: skipped %d in all: %s", self.what, n, reason)


def _short(obj: Any, limit: int = 200) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[:limit] + "..."


def iter_binary_lines(path: Path, desc: str) -> Iterator[tuple[int, int, bytes]]:
    """Stream ``(line_number, byte_offset, line)`` with the line ending removed.

    The file is read in binary so that one badly encoded line cannot stop the others, and
    never whole, so it may be larger than memory. A UTF-8 byte-order mark is dropped.
    """
    with (
        open(path, "rb") as f,
        tqdm(total=path.stat().st_size, desc=desc, unit="B", unit_scale=True, disable=None) as bar,
    ):
        offset = 0
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip(b"\n").rstrip(b"\r")
            if lineno == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            yield lineno, offset, line
            offset += len(raw)
            bar.update(len(raw))


def read_line_at(f, offset: int) -> bytes:
    """The line starting at ``offset`` of the binary file ``f``, line ending removed."""
    f.seek(offset)
    line = f.readline().rstrip(b"\n").rstrip(b"\r")
    return line[len(_BOM) :] if offset == 0 and line.startswith(_BOM) else line


def decode_utf8(raw: bytes) -> str | None:
    """``raw`` decoded as UTF-8, or ``None`` when it is not valid UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def describe_bad_utf8(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not valid UTF-8 at byte {e.start}: {raw[max(0, e.start - 10) : e.end + 10]!r}"
    return "valid UTF-8"


# --- tables: csv / tsv / jsonl --------------------------------------------------------------

TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}


@dataclass
class TableRecord:
    """One logical record of a table.

    ``error`` (an ingest error code) and ``detail`` are set when it is unusable; ``fields``
    is set whenever the record could be parsed at all (possibly with an error).
    """

    lineno: int
    fields: dict[str, Any] | None = None
    error: str | None = None
    detail: str | None = None


def table_format(path: Path, what: str) -> str:
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{what}: cannot tell the format of {str(path)!r} from its extension; "
            f"use one of {', '.join(TABLE_FORMATS)}"
        )
    return fmt


def iter_table(path: Path, required: tuple[str, ...], what: str) -> Iterator[TableRecord]:
    """Records of a csv (quoted, RFC 4180), tsv (plain tab-separated) or jsonl file.

    The csv/tsv header must hold every column in ``required``, else a :class:`ValueError`
    naming the column, the file and the columns found. Bad lines come back as records with
    an ``error``: ``bad_encoding`` (not UTF-8) or ``malformed_row`` (wrong number of fields,
    bad JSON, missing key).
    """
    fmt = table_format(path, what)
    if fmt == "jsonl":
        yield from _iter_jsonl(path, required, what)
    else:
        yield from _iter_delimited(path, fmt, required, what)


class _DecodedLines:
    """Feed decoded lines to :mod:`csv`, setting aside those that are not UTF-8."""

    def __init__(self, lines: Iterator[tuple[int, int, bytes]]):
        self.lines = lines
        self.lineno = 0
        self.bad: list[TableRecord] = []

    def __iter__(self) -> _DecodedLines:
        return self

    def __next__(self) -> str:
        while True:
            self.lineno, _, raw = next(self.lines)
            text = decode_utf8(raw)
            if text is not None:
                return text + "\n"
            self.bad.append(
                TableRecord(self.lineno, error="bad_encoding", detail=describe_bad_utf8(raw))
            )


def _iter_delimited(
    path: Path, fmt: str, required: tuple[str, ...], what: str
) -> Iterator[TableRecord]:
    lines = _DecodedLines(iter_binary_lines(path, desc=path.name))
    if fmt == "csv":
        reader = csv.reader(lines)
    else:
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    yield from _drain(lines)
    if header is None:
        raise ValueError(f"{what}: {str(path)!r} is empty; expected a header with {list(required)}")
    header = [h.strip() for h in header]
    for column in required:
        if column not in header:
            raise ValueError(
                f"{what}: column {column!r} not found in {str(path)!r}; "
                f"columns found: {header} (the first line must be a header naming {list(required)})"
            )
    for values in reader:
        yield from _drain(lines)
        if not values or values == [""]:
            continue  # blank line
        if len(values) != len(header):
            yield TableRecord(
                lines.lineno,
                error="malformed_row",
                detail=f"{len(values)} fields, the header has {len(header)}: {_short(values)}",
            )
            continue
        yield TableRecord(lines.lineno, fields=dict(zip(header, values, strict=True)))
    yield from _drain(lines)


def _drain(lines: _DecodedLines) -> Iterator[TableRecord]:
    while lines.bad:
        yield lines.bad.pop(0)


def _iter_jsonl(path: Path, required: tuple[str, ...], what: str) -> Iterator[TableRecord]:
    checked = False
    for lineno, _, raw in iter_binary_lines(path, desc=path.name):
        if not raw.strip():
            continue
        text = decode_utf8(raw)
        if text is None:
            yield TableRecord(lineno, error="bad_encoding", detail=describe_bad_utf8(raw))
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            yield TableRecord(lineno, error="malformed_row", detail=f"bad JSON: {e.msg}")
            continue
        if not isinstance(obj, dict):
            yield TableRecord(
                lineno,
                error="malformed_row",
                detail=f"expected a JSON object, got {type(obj).__name__}",
            )
            continue
        missing = [k for k in required if k not in obj]
        if missing and not checked:
            # The first record decides whether the file uses our names at all.
            raise ValueError(
                f"{what}: column {missing[0]!r} not found in {str(path)!r}; "
                f"columns found: {sorted(obj)} (each line must be an object with {list(required)})"
            )
        checked = True
        if missing:
            yield TableRecord(
                lineno, fields=obj, error="malformed_row", detail=f"no key {missing[0]!r}"
            )
            continue
        yield TableRecord(lineno, fields=obj)
