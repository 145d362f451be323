"""The raw Parquet schema: what every source lands in after ``download_dataset``.

One row per image. A row that could not be ingested keeps its key and gets an ``error``
code (and a human-readable ``error_detail``) instead of image bytes, so nothing is lost
silently: ``clean_pairs`` counts it under that reason.

Columns
-------
key              stable, unique source key (a URL hash, a COCO id, a TSV idx ...);
                 the train/val/test split is a hash of it.
source           source format name (``synthetic``, ``url_list``, ``base64_tsv`` ...).
image_id         integer id used in COCO-style results (source id, or ``stable_int_id(key)``).
image            original encoded image bytes, untouched; null when ``error`` is set.
error            null when ingested, else one of :data:`INGEST_ERRORS`.
error_detail     free text explaining ``error``.
captions         reference captions in the experiment's language.
styled_captions  ``[{style, caption}]`` (Personality-Captions-like), possibly empty.
questions        VQAv2-shaped questions with their 10 human answers, possibly empty.
split_hint       split given by the source (Karpathy ``train``/``val``/``test``), else null.
url              where the image came from, when known.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlcore.ids import stable_int_id
from vlcore.io import atomic_path

SCHEMA_VERSION = 1

QUESTION_TYPE = pa.struct(
    [
        ("question_id", pa.int64()),
        ("question", pa.string()),
        ("question_type", pa.string()),
        ("answer_type", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("multiple_choice_answer", pa.string()),
    ]
)
STYLED_CAPTION_TYPE = pa.struct([("style", pa.string()), ("caption", pa.string())])

RAW_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("source", pa.string()),
        ("image_id", pa.int64()),
        ("image", pa.binary()),
        ("error", pa.string()),
        ("error_detail", pa.string()),
        ("captions", pa.list_(pa.string())),
        ("styled_captions", pa.list_(STYLED_CAPTION_TYPE)),
        ("questions", pa.list_(QUESTION_TYPE)),
        ("split_hint", pa.string()),
        ("url", pa.string()),
    ]
)

# Reasons a row can fail at ingest time (``download_dataset``).
INGEST_ERRORS = {
    "failed_to_download": "the URL could not be fetched (HTTP error, timeout, not an image ...)",
    "refused_url": "the URL was refused before fetching (scheme, .onion host, malformed)",
    "malformed_row": "the input row could not be parsed (wrong number of fields, bad JSON ...)",
    "invalid_base64": "the base64 image field does not decode",
    "bad_encoding": "a text field is not valid UTF-8",
    "missing_image": "the image file named by the row does not exist",
    "duplicate_key": "a row with the same key was already ingested",
}


def make_row(
    key: str,
    source: str,
    *,
    image: bytes | None = None,
    error: str | None = None,
    error_detail: str | None = None,
    captions: Iterable[str] = (),
    styled_captions: Iterable[dict[str, str]] = (),
    questions: Iterable[dict[str, Any]] = (),
    image_id: int | None = None,
    split_hint: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Build one raw row, checking the invariants every source must keep."""
    if error is not None and error not in INGEST_ERRORS:
        raise ValueError(f"unknown ingest error {error!r}; expected one of {sorted(INGEST_ERRORS)}")
    if error is None and image is None:
        raise ValueError(f"row {key!r} has neither image bytes nor an error code")
    return {
        "key": key,
        "source": source,
        "image_id": stable_int_id(key) if image_id is None else int(image_id),
        "image": None if error is not None else image,
        "error": error,
        "error_detail": error_detail,
        "captions": list(captions),
        "styled_captions": [dict(s) for s in styled_captions],
        "questions": [dict(q) for q in questions],
        "split_hint": split_hint,
        "url": url,
    }


class RawWriter:
    """Append raw rows to a Parquet file; the file appears only when closed without error.

    Rows with a key seen before are turned into ``duplicate_key`` errors, so keys are
    unique in every raw file.

    >>> with RawWriter("raw.parquet") as w:          # doctest: +SKIP
    ...     w.write(make_row("k1", "synthetic", image=b"...", captions=["a red circle"]))
    """

    def __init__(self, path: str | os.PathLike, batch_rows: int = 512):
        self.path = Path(path)
        self.batch_rows = batch_rows
        self._rows: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self._stack = contextlib.ExitStack()
        self._writer: pq.ParquetWriter | None = None
        self.counts: dict[str, int] = {"rows": 0, "ok": 0}

    def __enter__(self) -> RawWriter:
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._writer = pq.ParquetWriter(tmp, RAW_SCHEMA, compression="zstd")
        self._stack.callback(self._writer.close)
        return self

    def write(self, row: dict[str, Any]) -> None:
        if row["key"] in self._seen:
            row = {
                **row,
                "image": None,
                "error": "duplicate_key",
                "error_detail": f"key {row['key']!r} appeared before",
            }
        self._seen.add(row["key"])
        self.counts["rows"] += 1
        status = row["error"] or "ok"
        self.counts[status] = self.counts.get(status, 0) + 1
        self._rows.append(row)
        if len(self._rows) >= self.batch_rows:
            self._flush()

    def write_all(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.write(row)

    def _flush(self) -> None:
        if self._rows:
            assert self._writer is not None
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=RAW_SCHEMA))
            self._rows = []

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._flush()
        # Closing the writer, then atomic_path moves the file in place (or drops it on error).
        self._stack.__exit__(exc_type, exc, tb)


def iter_raw_rows(path: str | os.PathLike, batch_size: int = 256) -> Iterator[dict[str, Any]]:
    """Stream rows of a raw Parquet file as dicts, one record batch at a time."""
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_size):
        yield from batch.to_pylist()
