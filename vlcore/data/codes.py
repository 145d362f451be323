"""Image codes: every shard's images as VQ-VAE code indices, written once by ``encode_images``.

DALL-E trains on tokens, not pixels: ``results/<exp>/codes/`` mirrors the shard folder with one
Parquet file per shard (same name, same rows, same order) holding::

    key: str, image_id: int64, split: str, captions: list<str>,
    styled_captions: list<{style, caption}>, codes: list<int16> (h * w, row-major)

and ``manifest.json``::

    {format_version, grid: [h, w], codebook_size, image_size, vqvae: {dir, sha256},
     shards_manifest_sha256, splits: {train|val|test: {rows, files: [{file, rows, sha256,
     source_sha256}]}}}

Read a split with :func:`read_codes`::

    split = read_codes("results/default/codes", "train")
    split.codes          # LongTensor N x (h * w)
    split.keys, split.image_ids, split.captions, split.styled_captions   # lists of N
    split.grid, split.codebook_size                                        # (8, 8), 512
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from vlcore.data.raw import STYLED_CAPTION_TYPE
from vlcore.io import read_json

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("image_id", pa.int64()),
        ("split", pa.string()),
        ("captions", pa.list_(pa.string())),
        ("styled_captions", pa.list_(STYLED_CAPTION_TYPE)),
        ("codes", pa.list_(pa.int16())),
    ]
)


@dataclass
class CodeSplit:
    """One split of a codes folder, rows in shard order."""

    codes: torch.Tensor  # LongTensor N x (h * w), row-major over the grid
    keys: list[str]
    image_ids: list[int]
    captions: list[list[str]]
    styled_captions: list[list[dict[str, str]]]
    grid: tuple[int, int]
    codebook_size: int

    def __len__(self) -> int:
        return len(self.keys)


def load_codes_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a codes folder (with ``dir`` set to the folder)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a codes folder: {MANIFEST} is missing")
    manifest = read_json(path)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unknown format_version {manifest.get('format_version')}")
    return {**manifest, "dir": str(folder)}


def read_codes(folder: str | os.PathLike, split: str) -> CodeSplit:
    """Every row of ``split`` (see the module docstring)."""
    manifest = load_codes_manifest(folder)
    if split not in manifest["splits"]:
        raise ValueError(f"split must be one of {sorted(manifest['splits'])}, got {split!r}")
    grid = tuple(manifest["grid"])
    length = grid[0] * grid[1]
    files = manifest["splits"][split]["files"]
    tables = [pq.read_table(Path(folder) / f["file"], schema=SCHEMA) for f in files]
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    flat = table["codes"].combine_chunks()
    if len(flat) and len(flat.flatten()) != len(flat) * length:
        raise ValueError(f"{folder}: split {split!r} has code rows whose length is not {length}")
    values = flat.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    return CodeSplit(
        codes=torch.from_numpy(values.reshape(len(table), length)),
        keys=table["key"].to_pylist(),
        image_ids=table["image_id"].to_pylist(),
        captions=table["captions"].to_pylist(),
        styled_captions=table["styled_captions"].to_pylist(),
        grid=(int(grid[0]), int(grid[1])),
        codebook_size=int(manifest["codebook_size"]),
    )
