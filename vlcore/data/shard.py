"""``shard_dataset``: split cleaned rows, resize their images and write fixed-size Parquet shards.

Layout of the output folder (see ``docs/data-design.md``)::

    {split}-{i:05d}.parquet   rows_per_shard rows each (the last one of a split may be shorter)
    manifest.json             schema version, image settings, columns, per-split shards + sha256

The output is a pure function of the input file and the config (no timestamps, no paths),
so the same input gives byte-identical shards. A row's split depends only on its key (or on
its source's ``split_hint``), so adding rows never moves an existing one to another split.

>>> manifest = shard_dataset("clean.parquet", "shards", ShardConfig())  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from vlcore.data.images import (
    IMAGE_FORMATS,
    decode_for_resize,
    encode_image,
    pil_limits,
    resize_square,
)
from vlcore.data.raw import QUESTION_TYPE, RAW_SCHEMA, STYLED_CAPTION_TYPE
from vlcore.ids import stable_unit_interval
from vlcore.io import atomic_dir, read_json, write_json

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
SPLITS = ("train", "val", "test")
# Source split names mapped onto ours; Karpathy's "restval" is training data.
SPLIT_HINTS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
DEFAULT_SPLIT = {"val": 0.1, "test": 0.1}

SHARD_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("image_id", pa.int64()),
        ("image", pa.binary()),  # re-encoded, image_size x image_size
        ("width", pa.int32()),  # of the original image, before resizing
        ("height", pa.int32()),
        ("captions", pa.list_(pa.string())),
        ("styled_captions", pa.list_(STYLED_CAPTION_TYPE)),
        ("questions", pa.list_(QUESTION_TYPE)),
        ("split", pa.string()),
    ]
)
_PASSTHROUGH = ("key", "image_id", "captions", "styled_captions", "questions")


@dataclass
class ShardConfig:
    """How ``shard_dataset`` resizes, splits and packs rows; defaults match config/schema.yaml."""

    # Side of the square images in the shards, in pixels.
    image_size: int = 64
    # center_crop: short side to image_size, then crop; pad: long side, then pad; stretch.
    resize_mode: Literal["center_crop", "pad", "stretch"] = "center_crop"
    # Encoding of the resized images: png (lossless) or jpeg (smaller).
    image_format: Literal["png", "jpeg"] = "png"
    # JPEG quality, used only when image_format is jpeg.
    jpeg_quality: int = 95
    # Rows per shard file; the last shard of a split holds the remainder.
    rows_per_shard: int = 1000
    # Rows per Parquet row group: the unit ShardStream reads and shuffles.
    row_group_rows: int = 256
    # Fractions of keys hashed into val and test; the rest is train. Missing keys use 0.1.
    split: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SPLIT))
    # Use the source's split (Karpathy train/restval/val/test) when a row has one.
    use_split_hint: bool = True
    # Salt for the key hash: a different salt gives a different (still stable) split.
    split_salt: str = ""

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if self.resize_mode not in ("center_crop", "pad", "stretch"):
            raise ValueError(
                f"resize_mode must be center_crop, pad or stretch, got {self.resize_mode!r}"
            )
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(
                f"image_format must be one of {IMAGE_FORMATS}, got {self.image_format!r}"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.rows_per_shard < 1 or self.row_group_rows < 1:
            raise ValueError(
                f"rows_per_shard and row_group_rows must be >= 1, got {self.rows_per_shard} "
                f"and {self.row_group_rows}"
            )
        unknown = set(self.split) - set(DEFAULT_SPLIT)
        if unknown:
            raise ValueError(
                f"split takes fractions for 'val' and 'test' only, got {sorted(unknown)}"
            )
        self.split = {**DEFAULT_SPLIT, **{k: float(v) for k, v in self.split.items()}}
        if min(self.split.values()) < 0 or sum(self.split.values()) > 1:
            raise ValueError(f"split fractions must be >= 0 and sum to at most 1, got {self.split}")


def assign_split(key: str, split_hint: str | None, config: ShardConfig) -> str:
    """``train``/``val``/``test`` for one row: its hint when allowed, else a stable key hash."""
    if config.use_split_hint and split_hint:
        if split_hint not in SPLIT_HINTS:
            raise ValueError(
                f"row {key!r} has split_hint {split_hint!r}; expected one of {sorted(SPLIT_HINTS)}"
            )
        return SPLIT_HINTS[split_hint]
    u = stable_unit_interval(key, config.split_salt)
    if u < config.split["val"]:
        return "val"
    if u < config.split["val"] + config.split["test"]:
        return "test"
    return "train"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class _SplitWriter:
    """Writes one split's rows into consecutive fixed-size shards, row group by row group."""

    def __init__(self, split: str, out_dir: Path, config: ShardConfig):
        self.split, self.out_dir, self.config = split, out_dir, config
        self.buffer: list[dict[str, Any]] = []
        self.writer: pq.ParquetWriter | None = None
        self.shard_rows = 0
        self.shards: list[dict[str, Any]] = []
        self.counts = {"rows": 0, "captions": 0, "styled_captions": 0, "questions": 0}

    def add(self, row: dict[str, Any]) -> None:
        self.buffer.append(row)
        self.counts["rows"] += 1
        for name in ("captions", "styled_captions", "questions"):
            self.counts[name] += len(row[name] or ())
        room = self.config.rows_per_shard - self.shard_rows
        if len(self.buffer) >= min(self.config.row_group_rows, room):
            self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        if self.writer is None:
            name = f"{self.split}-{len(self.shards):05d}.parquet"
            self.shards.append({"file": name})
            self.writer = pq.ParquetWriter(self.out_dir / name, SHARD_SCHEMA, compression="zstd")
        self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=SHARD_SCHEMA))
        self.shard_rows += len(self.buffer)
        self.buffer = []
        if self.shard_rows >= self.config.rows_per_shard:
            self._close_shard()

    def _close_shard(self) -> None:
        assert self.writer is not None
        self.writer.close()
        self.writer = None
        path = self.out_dir / self.shards[-1]["file"]
        self.shards[-1].update(
            rows=self.shard_rows, bytes=path.stat().st_size, sha256=sha256_file(path)
        )
        self.shard_rows = 0

    def close(self) -> dict[str, Any]:
        self._flush()
        if self.writer is not None:
            self._close_shard()
        return {**self.counts, "shards": self.shards}

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _shard_image(data: bytes, config: ShardConfig) -> tuple[bytes, int, int]:
    """Decode, resize and re-encode one image; also return its original (upright) size."""
    img, (width, height) = decode_for_resize(data, config.image_size)
    small = resize_square(img, config.image_size, config.resize_mode)
    return encode_image(small, config.image_format, config.jpeg_quality), width, height


def _iter_rows(clean_path: str | os.PathLike, batch_rows: int) -> Iterator[list[dict[str, Any]]]:
    pf = pq.ParquetFile(clean_path)
    missing = [
        n for n in ("key", "image", "split_hint", *_PASSTHROUGH) if n not in pf.schema_arrow.names
    ]
    if missing:
        raise ValueError(
            f"{clean_path} lacks columns {missing}; expected the clean (raw) schema "
            f"{RAW_SCHEMA.names}"
        )
    columns = ["image", "split_hint", *_PASSTHROUGH]
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        yield batch.to_pylist()


def shard_dataset(
    clean_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: ShardConfig | None = None,
    *,
    threads: int = 1,
) -> dict[str, Any]:
    """Write the shards and ``manifest.json`` of ``clean_path`` into ``out_dir``; return it.

    Rows keep the order of the clean file within each split. The folder is built aside and
    swapped in whole, so a killed job leaves the previous folder (or nothing), never a partial
    one. ``threads`` decodes and resizes images in parallel without changing the output.
    """
    config = config or ShardConfig()
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    total = pq.ParquetFile(clean_path).metadata.num_rows
    with atomic_dir(out_dir) as tmp, pil_limits(None), ThreadPoolExecutor(threads) as pool:
        writers = {split: _SplitWriter(split, tmp, config) for split in SPLITS}
        try:
            with tqdm(total=total, desc="shard_dataset", unit="row", disable=None) as bar:
                for rows in _iter_rows(clean_path, batch_rows=max(64, 16 * threads)):
                    images = pool.map(
                        _shard_image, [r["image"] for r in rows], [config] * len(rows)
                    )
                    for row, (image, width, height) in zip(rows, images, strict=True):
                        split = assign_split(row["key"], row["split_hint"], config)
                        out = {name: row[name] for name in _PASSTHROUGH}
                        out.update(image=image, width=width, height=height, split=split)
                        writers[split].add(out)
                    bar.update(len(rows))
            splits = {split: writer.close() for split, writer in writers.items()}
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        manifest = {
            "schema_version": MANIFEST_VERSION,
            "image_size": config.image_size,
            "image_format": config.image_format,
            "resize_mode": config.resize_mode,
            "columns": SHARD_SCHEMA.names,
            "config": dataclasses.asdict(config),
            "splits": splits,
            "total": {
                "rows": sum(s["rows"] for s in splits.values()),
                "shards": sum(len(s["shards"]) for s in splits.values()),
                "bytes": sum(sh["bytes"] for s in splits.values() for sh in s["shards"]),
            },
        }
        write_json(manifest, tmp / MANIFEST_NAME)
    logger.info(
        "shard_dataset wrote %s",
        ", ".join(f"{s}: {v['rows']} rows in {len(v['shards'])} shards" for s, v in splits.items()),
    )
    return manifest


def load_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read ``manifest.json`` from a shard folder (or the file itself), checking its version.

    The returned dict has an extra ``"dir"`` entry: the folder holding the shards.
    """
    path = Path(path)
    file = path / MANIFEST_NAME if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no shard manifest at {file}; run shard_dataset first")
    manifest = read_json(file)
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if version != MANIFEST_VERSION:
        raise ValueError(
            f"{file} has manifest schema_version {version!r}; this vlcore reads version "
            f"{MANIFEST_VERSION}: re-run shard_dataset"
        )
    return {**manifest, "dir": str(file.parent)}


def shards_fingerprint(path: str | os.PathLike) -> dict[str, list[str]]:
    """The sha256 of every shard per split, from the manifest: what a training run records so
    that a checkpoint made on other data is not resumed."""
    manifest = load_manifest(path)
    return {s: [sh["sha256"] for sh in v["shards"]] for s, v in manifest["splits"].items()}


def verify_shards(path: str | os.PathLike) -> dict[str, Any]:
    """Re-check every shard's size and sha256 against the manifest; raise ValueError on mismatch."""
    manifest = load_manifest(path)
    folder = Path(manifest["dir"])
    problems = []
    for split, info in manifest["splits"].items():
        for shard in info["shards"]:
            file = folder / shard["file"]
            if not file.is_file():
                problems.append(f"{split}: {shard['file']} is missing")
            elif file.stat().st_size != shard["bytes"]:
                problems.append(
                    f"{split}: {shard['file']} has {file.stat().st_size} bytes, "
                    f"manifest says {shard['bytes']}"
                )
            elif sha256_file(file) != shard["sha256"]:
                problems.append(f"{split}: {shard['file']} sha256 differs from the manifest")
    if problems:
        raise ValueError(f"shards in {folder} do not match {MANIFEST_NAME}: " + "; ".join(problems))
    return manifest


def read_split(
    path: str | os.PathLike, split: str, columns: Sequence[str] = ("key", "image_id", "captions")
) -> list[dict[str, Any]]:
    """All rows of one split as dicts, reading only ``columns`` (leave out ``image`` for text)."""
    manifest = load_manifest(path)
    if split not in manifest["splits"]:
        raise ValueError(f"unknown split {split!r}; the manifest has {sorted(manifest['splits'])}")
    rows: list[dict[str, Any]] = []
    for shard in manifest["splits"][split]["shards"]:
        table = pq.read_table(Path(manifest["dir"]) / shard["file"], columns=list(columns))
        rows.extend(table.to_pylist())
    return rows
