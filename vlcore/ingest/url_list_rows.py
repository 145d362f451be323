"""Reading a URL list (csv, tsv or parquet with a url and a caption column) into records.

:class:`ListOptions` checks the ``source.url_list`` config; :func:`column_names` checks the
file's columns before anything is fetched; :func:`read_records` yields, in input order, a
``(url, caption, where)`` tuple per good line, or a finished error row (``malformed_row``,
``bad_encoding``) for a line that cannot be read, keyed by the hash of its raw bytes.
:mod:`vlcore.ingest.url_list` fetches the URLs.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlcore.data.raw import make_row
from vlcore.ingest.textio import decode_utf8, describe_bad_utf8, input_path, iter_binary_lines

log = logging.getLogger(__name__)

SOURCE = "url_list"
DEFAULTS: dict[str, Any] = {
    "path": None,
    "input_format": None,
    "header": True,
    "columns": None,
    "url_col": "url",
    "caption_col": "caption",
    "allow_file_urls": False,
    "processes": 2,
    "threads": 16,
    "retries": 2,
    "timeout": 10,
    # Input rows per img2dataset run: each run costs a few seconds of start-up.
    "chunk_rows": 100_000,
    # Rows per img2dataset shard: the most image bytes held in memory when reading back.
    "shard_rows": 5_000,
}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ListOptions:
    path: Path
    input_format: str
    header: bool
    columns: tuple[str, ...] | None
    url_col: str
    caption_col: str
    allow_file_urls: bool
    processes: int
    threads: int
    retries: int
    timeout: float
    chunk_rows: int
    shard_rows: int

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ListOptions:
        unknown = sorted(set(cfg) - set(DEFAULTS))
        if unknown:
            raise ValueError(
                f"source.url_list: unknown key(s) {unknown}; known keys: {list(DEFAULTS)}"
            )
        c = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
        path = input_path(c, "path", SOURCE)
        fmt = str(c["input_format"]).lower() if c["input_format"] else None
        fmt = fmt or FORMATS.get(path.suffix.lower())
        if fmt not in FORMATS.values():
            raise ValueError(
                f"source.url_list.input_format: cannot read {str(path)!r} as {fmt!r}; "
                f"set input_format to one of {sorted(FORMATS.values())} "
                f"(null guesses it from the extension: {', '.join(FORMATS)})"
            )
        columns = c["columns"]
        if columns is not None:
            if isinstance(columns, str) or not all(isinstance(x, str) for x in columns):
                raise ValueError(
                    f"source.url_list.columns must be a list of column names, got {columns!r}"
                )
            columns = tuple(columns)
        if fmt != "parquet" and not c["header"] and columns is None:
            raise ValueError(
                f"source.url_list: {str(path)!r} has no header (header: false), so `columns` "
                "must name its fields in order, e.g. [caption, url] for CC3M"
            )
        if columns is not None and (c["header"] or fmt == "parquet"):
            raise ValueError(
                "source.url_list.columns names the fields of a csv/tsv without a header; "
                "with a header (or parquet) the file names them: set url_col/caption_col"
            )
        for key in ("processes", "threads", "chunk_rows", "shard_rows"):
            _require_int(key, c[key], minimum=1)
        _require_int("retries", c["retries"], minimum=0)
        timeout = c["timeout"]
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"source.url_list.timeout must be seconds > 0, got {timeout!r}")
        return cls(
            path=path,
            input_format=fmt,
            header=bool(c["header"]),
            columns=columns,
            url_col=str(c["url_col"]),
            caption_col=str(c["caption_col"]),
            allow_file_urls=bool(c["allow_file_urls"]),
            processes=c["processes"],
            threads=c["threads"],
            retries=c["retries"],
            timeout=c["timeout"],
            chunk_rows=c["chunk_rows"],
            shard_rows=c["shard_rows"],
        )


def _require_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"source.url_list.{key} must be an integer >= {minimum}, got {value!r}")


# --- reading the list -------------------------------------------------------------------------


def column_names(opts: ListOptions) -> tuple[str, ...]:
    """The file's column names; :class:`ValueError` when the url or caption column is missing."""
    if opts.input_format == "parquet":
        try:
            names = tuple(pq.read_schema(opts.path).names)
        except (pa.ArrowInvalid, OSError) as e:
            raise ValueError(
                f"source.url_list: {str(opts.path)!r} is not a parquet file: {e}"
            ) from None
    elif opts.header:
        lines = iter_binary_lines(opts.path, desc=f"{opts.path.name} (header)")
        first = next(lines, None)
        lines.close()
        if first is None or not first[2].strip():
            raise ValueError(
                f"source.url_list: {str(opts.path)!r} is empty or starts with a blank line; "
                f"expected a header naming {opts.url_col!r} and {opts.caption_col!r} "
                "(set header: false and columns: [...] for a file without one)"
            )
        text = decode_utf8(first[2])
        if text is None:
            raise ValueError(
                f"source.url_list: the header of {str(opts.path)!r} is "
                f"{describe_bad_utf8(first[2])}"
            )
        try:
            names = tuple(name.strip() for name in _parser(opts.input_format)(text))
        except csv.Error as e:
            raise ValueError(
                f"source.url_list: cannot parse the header of {str(opts.path)!r}: {e}"
            ) from None
    else:
        names = opts.columns or ()
    for role, column in (("url_col", opts.url_col), ("caption_col", opts.caption_col)):
        if column not in names:
            where = "given in source.url_list.columns" if opts.columns else "found"
            raise ValueError(
                f"source.url_list: column {column!r} ({role}) not found in "
                f"{str(opts.path)!r}; columns {where}: {list(names)}; "
                f"set source.url_list.{role} to the right column"
            )
    return names


def _parser(fmt: str):
    if fmt == "tsv":
        return lambda text: text.split("\t")  # plain TSV: no quoting (CC3M captions hold quotes)
    return lambda text: next(csv.reader([text], strict=True))


# A record is a finished error row (dict) or a parsed (url, caption, where) tuple.
Record = dict[str, Any] | tuple[str, str, str]


def read_records(opts: ListOptions, names: tuple[str, ...]) -> Iterator[Record]:
    if opts.input_format == "parquet":
        return _parquet_records(opts)
    return _text_records(opts, names)


def _raw_key(raw: bytes) -> str:
    return "url:" + hashlib.sha256(raw).hexdigest()[:20]


def _text_records(opts: ListOptions, names: tuple[str, ...]) -> Iterator[Record]:
    parse = _parser(opts.input_format)
    url_i, cap_i = names.index(opts.url_col), names.index(opts.caption_col)
    blank = 0
    lines = iter_binary_lines(opts.path, desc=opts.path.name)
    if opts.header:
        next(lines)
    for lineno, _, raw in lines:
        if not raw.strip():
            blank += 1
            continue
        where = f"line {lineno}"
        text = decode_utf8(raw)
        utf8 = text is not None
        if not utf8:
            text = raw.decode("utf-8", "surrogateescape")
        try:
            fields = parse(text)
            problem = (
                None
                if len(fields) == len(names)
                else (f"{len(fields)} fields, expected {len(names)} {list(names)}")
            )
        except csv.Error as e:
            problem = f"cannot be parsed as csv ({e})"
        if problem is not None:
            error, detail = (
                ("malformed_row", problem) if utf8 else ("bad_encoding", describe_bad_utf8(raw))
            )
            yield make_row(_raw_key(raw), SOURCE, error=error, error_detail=f"{where}: {detail}")
            continue
        url, caption = fields[url_i], fields[cap_i]
        if not utf8:
            bad = [
                (n, f)
                for n, f in ((opts.url_col, url), (opts.caption_col, caption))
                if decode_utf8(f.encode("utf-8", "surrogateescape")) is None
            ]
            if bad:
                column, value = bad[0]
                detail = describe_bad_utf8(value.encode("utf-8", "surrogateescape"))
                yield make_row(
                    _raw_key(raw),
                    SOURCE,
                    error="bad_encoding",
                    error_detail=f"{where}: the {column!r} field is {detail}",
                )
                continue
            # else: only a column we do not use is badly encoded; the row is fine
        yield (url, caption, where)
    if blank:
        log.info("%s: ignored %d blank line(s)", opts.path, blank)


def _parquet_records(opts: ListOptions) -> Iterator[Record]:
    pf = pq.ParquetFile(opts.path)
    columns = list(dict.fromkeys([opts.url_col, opts.caption_col]))
    row = 0
    for batch in pf.iter_batches(batch_size=65_536, columns=columns):
        urls = batch.column(opts.url_col).to_pylist()
        captions = batch.column(opts.caption_col).to_pylist()
        for url, caption in zip(urls, captions, strict=True):
            row += 1
            where = f"row {row}"
            bad = [
                (n, v)
                for n, v in ((opts.url_col, url), (opts.caption_col, caption))
                if isinstance(v, bytes) and decode_utf8(v) is None
            ]
            if bad:
                column, value = bad[0]
                yield make_row(
                    _raw_key(repr((url, caption)).encode()),
                    SOURCE,
                    error="bad_encoding",
                    error_detail=f"{where}: the {column!r} field is {describe_bad_utf8(value)}",
                )
                continue
            yield (_as_text(url), _as_text(caption), where)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value if isinstance(value, str) else str(value)
