"""Ingesters: the data formats people have, turned into raw Parquet rows (``download_dataset``).

Each format has ``read_<format>(cfg, lang, workdir) -> Iterator[raw row]`` in
``vlcore/ingest/<format>.py`` (see ``docs/data-design.md``); :func:`run_ingest` picks one
from the source config, writes the raw file and ``download_stats.json``::

    run_ingest({"format": "base64_tsv", "base64_tsv": {"path": "data.tsv"}},
               "results/exp/data/raw.parquet", "results/exp/data/download_stats.json",
               lang="en", seed=0)
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vlcore.data.raw import INGEST_ERRORS, RawWriter
from vlcore.ingest.base64_tsv import read_base64_tsv
from vlcore.ingest.coco import read_coco
from vlcore.ingest.image_folder import read_image_folder
from vlcore.ingest.personality import read_personality
from vlcore.ingest.synthetic import read_synthetic
from vlcore.ingest.textio import input_path
from vlcore.io import write_json

log = logging.getLogger(__name__)

ERROR_EXAMPLES = 3  # per error code, in download_stats.json
WARNING_EXAMPLES = 20


def read_url_list(cfg: dict[str, Any], lang: str, workdir: Path) -> Iterator[dict[str, Any]]:
    """Fetch a URL list with img2dataset (imported only when used: it is heavy)."""
    from vlcore.ingest.url_list import read_url_list as read

    return read(cfg, lang, workdir)


Ingester = Callable[[dict[str, Any], str, Path], Iterator[dict[str, Any]]]

INGESTERS: dict[str, Ingester] = {
    "synthetic": read_synthetic,
    "url_list": read_url_list,
    "base64_tsv": read_base64_tsv,
    "coco": read_coco,
    "personality": read_personality,
    "image_folder": read_image_folder,
}

# Config keys naming input files ("file") or folders ("dir"), checked before anything runs.
INPUT_PATHS: dict[str, dict[str, str]] = {
    "url_list": {"path": "file"},
    "base64_tsv": {"path": "file"},
    "coco": {
        "images_dir": "dir",
        "captions_json": "file",
        "karpathy_json": "file",
        "questions_json": "file",
        "annotations_json": "file",
    },
    "personality": {"json": "file", "images_dir": "dir"},
    "image_folder": {"captions_file": "file", "images_dir": "dir"},
}


def check_inputs(fmt: str, cfg: dict[str, Any]) -> None:
    """Raise :class:`FileNotFoundError` naming the config key and path of a missing input."""
    for key, kind in INPUT_PATHS.get(fmt, {}).items():
        input_path(cfg, key, fmt, kind=kind, required=False)


def run_ingest(
    source_cfg: dict[str, Any],
    out_path: str | os.PathLike,
    stats_path: str | os.PathLike,
    *,
    lang: str,
    seed: int,
) -> dict[str, Any]:
    """Ingest ``source_cfg`` into ``out_path`` (raw Parquet) and ``stats_path`` (JSON stats).

    Both files appear only when the whole source was read. Returns the stats: ``rows``,
    ``ok``, ``errors`` (count per ingest error code, zero included), ``error_examples`` and
    the warnings the ingester logged (skipped entries ...).
    """
    fmt = source_cfg.get("format")
    if fmt not in INGESTERS:
        raise ValueError(f"unknown source format {fmt!r}; known formats: {', '.join(INGESTERS)}")
    cfg = dict(source_cfg.get(fmt) or {})
    if fmt == "synthetic":
        cfg["seed"] = seed
    check_inputs(fmt, cfg)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.work-", dir=out_path.parent))
    examples: dict[str, list[dict[str, str]]] = {}
    collector = _WarningCollector()
    log.addHandler(collector)  # ``log`` is the parent of every ingester's logger
    try:
        log.info("ingesting %s source (lang=%s)", fmt, lang)
        with RawWriter(out_path) as writer:
            for row in INGESTERS[fmt](cfg, lang, workdir):
                duplicates = writer.counts.get("duplicate_key", 0)
                writer.write(row)
                if writer.counts.get("duplicate_key", 0) > duplicates:
                    error, detail = "duplicate_key", f"key {row['key']!r} appeared before"
                else:
                    error, detail = row["error"], row["error_detail"]
                if error is not None and len(examples.setdefault(error, [])) < ERROR_EXAMPLES:
                    examples[error].append({"key": row["key"], "detail": detail})
    finally:
        log.removeHandler(collector)
        shutil.rmtree(workdir, ignore_errors=True)

    counts = writer.counts
    stats = {
        "format": fmt,
        "lang": lang,
        "rows": counts["rows"],
        "ok": counts["ok"],
        "errors": {code: counts.get(code, 0) for code in INGEST_ERRORS},
        "error_examples": examples,
        "warnings": collector.count,
        "warning_examples": collector.messages,
    }
    write_json(stats, stats_path)
    log.info(
        "%s: %d rows, %d ok, errors %s",
        fmt,
        stats["rows"],
        stats["ok"],
        {k: v for k, v in stats["errors"].items() if v} or "none",
    )
    return stats


class _WarningCollector(logging.Handler):
    """Keep the ingesters' warnings (skipped entries ...) for ``download_stats.json``."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.count = 0
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.messages) < WARNING_EXAMPLES:
            self.messages.append(f"{record.name}: {record.getMessage()}")
