"""URL lists (CC3M TSV, Wukong CSV, any csv/tsv/parquet with url and caption columns), fetched
with img2dataset.

Config (``source.url_list``, see ``docs/data-design.md``)::

    path: data/cc3m.tsv      input_format: null (csv | tsv | parquet; null: from the extension)
    header: false            columns: [caption, url]     # names of the fields when header is false
    url_col: url             caption_col: caption
    allow_file_urls: false   processes: 2    threads: 16    retries: 2    timeout: 10
    chunk_rows: 100000       shard_rows: 5000            # optional: memory / throughput tuning

csv is RFC 4180 (quoted fields); tsv is plain tab-separated (CC3M: ``caption \\t url``, no
header). One line is one record: a field cannot span lines, so a broken quote costs only its
own line.

The list is streamed in chunks of ``chunk_rows`` rows; for each chunk:

1. **read** (:mod:`vlcore.ingest.url_list_rows`): a bad line becomes an error row, never a
   crash nor a lost neighbour: ``malformed_row`` (cannot be parsed, wrong number of fields)
   or ``bad_encoding`` (the url or caption field is not UTF-8). Whole-file problems (no such column, no header) are a
   :class:`ValueError` raised by :func:`read_url_list` itself, before anything is fetched.
2. **vet** each URL (:mod:`vlcore.ingest.urls`): refused ones become ``refused_url`` rows whose
   detail says why.
3. **fetch** the others with ``img2dataset.download`` in a child interpreter (parquet output,
   original bytes: no resizing or re-encoding, so the cleaner sees what the server sent).
4. **read back** img2dataset's parquet shards one at a time (at most one shard of image bytes
   in memory) and yield every row in input order: ``success`` gives the image bytes, anything
   else ``failed_to_download`` with img2dataset's error message. A URL img2dataset returned
   nothing for (a failed shard) is ``failed_to_download`` too, so no row goes missing.

While the rows of one chunk are consumed, the next chunk is already downloading.

Keys: ``url:`` + the first 20 hex digits of ``sha256(url + "\\t" + caption)`` (url without
surrounding whitespace), so a pair keeps its key wherever it sits in whichever list; lines that
cannot be parsed are keyed by the hash of their raw bytes instead.

"Not an image": with re-encoding off img2dataset accepts any body. A body that is empty or is
text (an HTML error page served with status 200, a plain-text file) is ``failed_to_download``
here; a binary body that is no valid image (truncated, random bytes) is passed on as it is,
for the cleaner to call ``corrupt_image`` / ``truncated_image``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlcore.data.raw import make_row
from vlcore.ingest.url_list_rows import (
    SOURCE,
    ListOptions,
    Record,
    column_names,
    read_records,
)
from vlcore.ingest.urls import fetchable_url, refusal_reason

log = logging.getLogger(__name__)

KEY_COLUMN = "vlcore_key"  # carried through img2dataset by save_additional_columns
IMAGE_COLUMN = "jpg"  # img2dataset names the bytes column after encode_format, whatever they are
_READ_BATCH = 256  # rows per record batch when reading parquet back

# img2dataset runs in a child interpreter from this script, not in our process: its worker
# processes are spawned, and spawning re-runs the parent's main script (a Snakemake script
# without a __main__ guard would run the whole job again in every worker). Spawned workers
# re-run this file instead, so its top level also makes their start-up cheap (about 6 s of
# imports per process down to 0.6 s; a run starts 3 or more processes). With the options we
# pass, img2dataset never touches three of its heavy imports:
# - torch, imported by webdataset when it can (we write parquet, not webdataset): None in
#   sys.modules makes `import torch` fail, and webdataset defines stand-ins;
# - wandb (enable_wandb is off) and albumentations (only used to resize, and
#   disable_all_reencoding returns before any resizing): stand-in modules that fail loudly if
#   ever used, which would show as failed shards (warnings, failed_to_download rows).
_RUNNER = '''\
"""Run img2dataset.download(**kwargs from a JSON file); written by vlcore.ingest.url_list."""
import json
import sys
import types


class _Unused(types.ModuleType):
    def __getattr__(self, name):
        raise RuntimeError(f"{self.__name__}.{name}: vlcore runs img2dataset without it")


sys.modules["torch"] = None
sys.modules["wandb"] = _Unused("wandb")
sys.modules["albumentations"] = _Unused("albumentations")

if __name__ == "__main__":
    from img2dataset import download

    with open(sys.argv[1], encoding="utf-8") as f:
        download(**json.load(f))
'''
_WARN_LINE = re.compile(r"Traceback|shard \d+ failed|still failed|Sample \d+ failed")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_IMAGE_SIGNATURES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"RIFF",  # WebP
    b"BM",
    b"II*\x00",  # TIFF
    b"MM\x00*",
    b"\x00\x00\x01\x00",  # ICO
)


def read_url_list(cfg: dict[str, Any], lang: str, workdir: Path) -> Iterator[dict[str, Any]]:
    """Raw rows of a URL list, in input order, images fetched with img2dataset.

    The config and the file's columns are checked now (:class:`ValueError`,
    :class:`FileNotFoundError`); reading and fetching happen as the rows are consumed.
    ``workdir`` holds img2dataset's input and output for one chunk at a time. Captions are
    taken as they are (``lang`` is the list's language; nothing here depends on it).
    """
    opts = ListOptions.from_config(cfg)
    names = column_names(opts)
    log.info(
        "url_list %s (%s, lang=%s): columns %s, url=%r, caption=%r",
        opts.path,
        opts.input_format,
        lang,
        names,
        opts.url_col,
        opts.caption_col,
    )
    return _ingest(read_records(opts, names), opts, Path(workdir))


def url_key(url: str, caption: str) -> str:
    """The stable key of a (url, caption) pair: independent of where the pair sits in a list."""
    return "url:" + hashlib.sha256(f"{url}\t{caption}".encode()).hexdigest()[:20]


def not_an_image(data: bytes) -> str | None:
    """Why a fetched body is certainly not an image (empty, or text), else ``None``.

    Binary data is left to the cleaner, which tells corrupt from truncated images.
    """
    if not data:
        return "not an image: the response body is empty"
    if data.startswith(_IMAGE_SIGNATURES) or data[4:8] == b"ftyp":  # ftyp: AVIF / HEIC
        return None
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:
            return None  # binary
        text = head[: e.start].decode("utf-8")  # a character cut by the 512-byte window
    if _TEXT_CONTROL.search(text):
        return None
    return f"not an image: the server sent text ({len(data)} bytes): {text[:60]!r}"


# --- fetching ---------------------------------------------------------------------------------


def _batched(items: Iterable[Record], n: int) -> Iterator[list[Record]]:
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def _ingest(
    records: Iterable[Record], opts: ListOptions, workdir: Path
) -> Iterator[dict[str, Any]]:
    workdir.mkdir(parents=True, exist_ok=True)
    # absolute: img2dataset runs in the chunk's folder
    run_dir = Path(tempfile.mkdtemp(prefix="url_list-", dir=workdir)).resolve()
    (run_dir / "run_img2dataset.py").write_text(_RUNNER, encoding="utf-8")
    totals = _Stats()
    previous: _Chunk | None = None
    current: _Chunk | None = None
    try:
        for number, batch in enumerate(_batched(records, opts.chunk_rows)):
            current = _Chunk.vet(number, batch, opts, run_dir)
            if previous is not None:
                previous.wait(totals)
            current.start()  # downloads while the previous chunk's rows are consumed
            if previous is not None:
                yield from previous.rows()
                previous.discard()
            previous, current = current, None
        if previous is not None:
            previous.wait(totals)
            yield from previous.rows()
            previous.discard()
            previous = None
        totals.log("url_list: img2dataset in all")
    finally:
        for chunk in (previous, current):
            if chunk is not None:
                chunk.discard()
        shutil.rmtree(run_dir, ignore_errors=True)


@dataclass
class _Stats:
    """img2dataset's counts, summed from its ``*_stats.json`` files."""

    count: int = 0
    successes: int = 0
    failed_to_download: int = 0
    failed_to_resize: int = 0
    seconds: float = 0.0
    statuses: Counter | None = None

    def add(self, other: _Stats) -> None:
        self.count += other.count
        self.successes += other.successes
        self.failed_to_download += other.failed_to_download
        self.failed_to_resize += other.failed_to_resize
        self.seconds += other.seconds
        self.statuses = (self.statuses or Counter()) + (other.statuses or Counter())

    @classmethod
    def read(cls, out_dir: Path) -> _Stats:
        stats = cls(statuses=Counter())
        for path in sorted(out_dir.glob("*_stats.json")):
            s = json.loads(path.read_text(encoding="utf-8"))
            stats.count += s["count"]
            stats.successes += s["successes"]
            stats.failed_to_download += s["failed_to_download"]
            stats.failed_to_resize += s["failed_to_resize"]
            stats.statuses.update(s.get("status_dict", {}))
        return stats

    def log(self, what: str) -> None:
        errors = [(k, v) for k, v in (self.statuses or Counter()).most_common() if k != "success"]
        log.info(
            "%s: %d URLs, %d success, %d failed_to_download, %d failed_to_resize "
            "(%.1f s); most common errors: %s",
            what,
            self.count,
            self.successes,
            self.failed_to_download,
            self.failed_to_resize,
            self.seconds,
            "; ".join(f"{n} x {k}" for k, n in errors[:5]) or "none",
        )


class _Chunk:
    """One chunk of the list: its rows in input order, and one img2dataset run for its URLs."""

    def __init__(
        self,
        number: int,
        entries: list[dict[str, Any] | int],
        fetch: list[tuple[str, str, str]],
        opts: ListOptions,
        run_dir: Path,
    ):
        self.number = number
        self.entries = entries  # a finished row, or an index into fetch
        self.fetch = fetch  # (key, url, caption) of the URLs to download
        self.opts = opts
        self.dir = run_dir / f"chunk-{number:05d}"
        self.out_dir = self.dir / "out"
        self.proc: subprocess.Popen | None = None
        self.started = 0.0

    @classmethod
    def vet(cls, number: int, records: list[Record], opts: ListOptions, run_dir: Path) -> _Chunk:
        entries: list[dict[str, Any] | int] = []
        fetch: list[tuple[str, str, str]] = []
        for record in records:
            if isinstance(record, dict):
                entries.append(record)
                continue
            url, caption, where = record
            url = url.strip()
            key = url_key(url, caption)
            reason = refusal_reason(url, allow_file_urls=opts.allow_file_urls)
            if reason is not None:
                entries.append(
                    make_row(
                        key,
                        SOURCE,
                        error="refused_url",
                        error_detail=f"{where}: {reason}",
                        captions=[caption],
                        url=url or None,
                    )
                )
                continue
            entries.append(len(fetch))
            fetch.append((key, url, caption))
        return cls(number, entries, fetch, opts, run_dir)

    def start(self) -> None:
        """Start img2dataset on this chunk's URLs in the background (nothing to do if none)."""
        if not self.fetch:
            return
        self.dir.mkdir(parents=True)
        urls = self.dir / "urls.parquet"
        pq.write_table(
            pa.table(
                {
                    "url": [fetchable_url(url) for _, url, _ in self.fetch],
                    KEY_COLUMN: [key for key, _, _ in self.fetch],
                }
            ),
            urls,
        )
        o = self.opts
        kwargs = {
            "url_list": str(urls),
            "input_format": "parquet",
            "url_col": "url",
            "caption_col": None,  # captions stay here; only the key travels
            "save_additional_columns": [KEY_COLUMN],
            "output_folder": str(self.out_dir),
            "output_format": "parquet",
            "number_sample_per_shard": o.shard_rows,
            "processes_count": o.processes,
            "thread_count": o.threads,
            "retries": o.retries,
            "timeout": o.timeout,
            "disable_all_reencoding": True,  # the original bytes, no resize
            "encode_format": "jpg",
            "extract_exif": False,
            "compute_hash": None,  # the cleaner hashes what it keeps
            "enable_wandb": False,
            # The output folder is new and empty, so there is nothing to resume: img2dataset's
            # "overwrite" mode (1.47) would delete its own _tmp folder and fail.
            "incremental_mode": "incremental",
        }
        (self.dir / "kwargs.json").write_text(json.dumps(kwargs, indent=1), encoding="utf-8")
        env = {
            **os.environ,
            "NO_ALBUMENTATIONS_UPDATE": "1",
            "WANDB_MODE": "disabled",
            "WANDB_SILENT": "true",
            "TQDM_DISABLE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        log.info(
            "url_list chunk %d: fetching %d URLs with img2dataset (%d processes x %d threads)",
            self.number,
            len(self.fetch),
            o.processes,
            o.threads,
        )
        self.started = time.monotonic()
        with open(self.dir / "img2dataset.log", "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(self.dir.parent / "run_img2dataset.py"), "kwargs.json"],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its workers form one group, ended together by discard()
            )

    def wait(self, totals: _Stats) -> None:
        """Wait for img2dataset, pass its output to our log, count its stats."""
        if self.proc is None:
            return
        rc = self.proc.wait()
        self.proc = None
        lines = (self.dir / "img2dataset.log").read_text(encoding="utf-8", errors="replace")
        lines = [line for line in lines.splitlines() if line.strip()]
        for line in lines:
            level = logging.WARNING if _WARN_LINE.search(line) else logging.DEBUG
            log.log(level, "img2dataset: %s", line)
        if rc != 0:
            tail = "\n".join(lines[-20:])
            raise RuntimeError(
                f"img2dataset failed (exit status {rc}) on chunk {self.number} of "
                f"{self.opts.path}; its last lines:\n{tail}"
            )
        stats = _Stats.read(self.out_dir)
        stats.seconds = time.monotonic() - self.started
        stats.log(f"url_list chunk {self.number}: img2dataset")
        if stats.count < len(self.fetch):
            log.warning(
                "url_list chunk %d: img2dataset reported %d of %d URLs; the others become "
                "failed_to_download",
                self.number,
                stats.count,
                len(self.fetch),
            )
        totals.add(stats)

    def rows(self) -> Iterator[dict[str, Any]]:
        """This chunk's rows in input order (call after :meth:`wait`)."""
        yield from _rows_in_order(self.entries, self.fetch, self.out_dir, self.opts.shard_rows)

    def discard(self) -> None:
        """Stop img2dataset if it still runs; delete this chunk's files."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _rows_in_order(
    entries: list[dict[str, Any] | int],
    fetch: list[tuple[str, str, str]],
    out_dir: Path,
    shard_rows: int,
) -> Iterator[dict[str, Any]]:
    """Join img2dataset's results (by key) to the chunk's rows, one shard in memory at a time.

    img2dataset shard ``s`` holds the URLs ``fetch[s * shard_rows : (s + 1) * shard_rows]``;
    fetch indices grow along ``entries``, so each shard is read once.
    """
    shards = {int(p.stem): p for p in out_dir.glob("*.parquet") if p.stem.isdigit()}
    loaded, results = None, {}
    for entry in entries:
        if isinstance(entry, dict):
            yield entry
            continue
        shard = entry // shard_rows
        if shard != loaded:
            results = {}  # let the previous shard's bytes go first
            results = _read_shard(shards.get(shard))
            loaded = shard
        key, url, caption = fetch[entry]
        yield _result_row(key, url, caption, results.get(key))


def _read_shard(path: Path | None) -> dict[str, tuple[str | None, str | None, bytes | None]]:
    if path is None:
        return {}
    results = {}
    columns = [KEY_COLUMN, "status", "error_message", IMAGE_COLUMN]
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_READ_BATCH, columns=columns):
        keys, statuses, messages, images = (batch.column(c).to_pylist() for c in columns)
        for key, status, message, image in zip(keys, statuses, messages, images, strict=True):
            results[key] = (status, message, image)
    return results


def _result_row(
    key: str, url: str, caption: str, result: tuple[str | None, str | None, bytes | None] | None
) -> dict[str, Any]:
    if result is None:
        detail = "img2dataset returned no result for this URL (its shard failed)"
    else:
        status, message, image = result
        if status == "success" and image is not None:
            detail = not_an_image(image)
            if detail is None:
                return make_row(key, SOURCE, image=image, captions=[caption], url=url)
        else:
            detail = message or f"img2dataset status {status!r}"
    return make_row(
        key, SOURCE, error="failed_to_download", error_detail=detail, captions=[caption], url=url
    )
