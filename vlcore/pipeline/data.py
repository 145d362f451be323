"""Entry points of the data stages: download_dataset, clean_pairs, shard_dataset."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from vlcore.data.clean import CleanConfig, clean_pairs
from vlcore.data.shard import ShardConfig, shard_dataset
from vlcore.ingest import run_ingest

logger = logging.getLogger(__name__)


def download(
    source: dict[str, Any], raw_path: str, stats_path: str, *, lang: str, seed: int
) -> dict:
    """Ingest the experiment's source into the raw Parquet file."""
    stats = run_ingest(source, raw_path, stats_path, lang=lang, seed=seed)
    logger.info("ingested %s rows (%s ok)", stats.get("rows"), stats.get("ok"))
    return stats


def read_keywords(paths: list[str | os.PathLike]) -> list[str]:
    """Keywords from text files: one per line, blank lines and ``#`` comments ignored."""
    words = []
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                words.append(line)
    return words


def _build(cls: type, settings: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in settings.items() if k in names})


def clean(
    settings: dict[str, Any],
    raw_path: str,
    clean_path: str,
    report_path: str,
    keyword_files: list[str],
) -> dict:
    """Filter the raw rows; write the kept rows and the per-reason report."""
    keywords = list(settings.get("keywords", [])) + read_keywords(keyword_files)
    config = _build(CleanConfig, {**settings, "keywords": keywords})
    report = clean_pairs(raw_path, clean_path, report_path, config)
    logger.info("kept %s of %s rows", report["rows_kept"], report["rows_in"])
    return report


def shard(settings: dict[str, Any], clean_path: str, out_dir: str, threads: int = 1) -> dict:
    """Resize, split and write the Parquet shards with their manifest."""
    manifest = shard_dataset(clean_path, out_dir, _build(ShardConfig, settings), threads=threads)
    splits = manifest["splits"]
    logger.info("shards: %s", {name: split["rows"] for name, split in splits.items()})
    return manifest
