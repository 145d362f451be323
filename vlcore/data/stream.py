"""``ShardStream``: the streaming torch dataset every trainer reads.

It reads one split of a ``shard_dataset`` folder row group by row group (images live inside
the Parquet files: no per-image file I/O) and yields one dict per image::

    {"key": str, "image_id": int, "image": FloatTensor[3, H, W] in [0, 1] (or transform(PIL)),
     "captions": [str], "styled_captions": [{style, caption}], "questions": [VQAv2 dict]}

Partitioning. The split's row groups are concatenated, in a seeded per-epoch order when
``shuffle`` is on. Each rank takes a contiguous range of ``total // world_size`` rows of that
concatenation (the remainder is dropped, so every rank yields exactly as many rows and DDP
never waits on a rank that ran out), and each DataLoader worker takes a contiguous part of its
rank's range. A worker reads only the row groups overlapping its range, then (when shuffling)
mixes rows through a seeded shuffle buffer.

Caching. With ``cache_mb`` > 0 a stream keeps the decoded (and transformed) rows of the row
groups it reads, up to that many MiB of images, and serves later epochs from memory: a
trainer's epochs after the first skip reading the Parquet files, decoding the PNGs and running
the transform (6-8% of the default captioners' training step; docs/time.md).
The rows and their order are the same either way, so the transform must be deterministic (no
random augmentation). Samples share their caption and question lists with the cache: read
them, do not edit them in place. The budget counts tensors only (a transform that returns
something else is cached without a limit). Each DataLoader worker keeps its own cache, which
lasts as long as the worker: with ``num_workers`` > 0 that is one epoch (the trainers' loaders
start new workers each epoch, which is how ``set_epoch`` reaches them).

>>> ds = ShardStream("results/default/shards", "train", shuffle=True, seed=0)  # doctest: +SKIP
>>> loader = DataLoader(ds, batch_size=32, num_workers=4, collate_fn=collate)   # doctest: +SKIP
>>> for epoch in range(epochs):                                                 # doctest: +SKIP
...     ds.set_epoch(epoch)          # with persistent_workers=False (the default)
...     for batch in loader: ...
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from vlcore.data.images import decode_rgb
from vlcore.data.shard import load_manifest

logger = logging.getLogger(__name__)

COLUMNS = ("key", "image_id", "image", "captions", "styled_captions", "questions")
_STORED = "_stored_image"  # a cache entry's decoded image, in place of the "image" bytes


def _nbytes(value: Any) -> int:
    return value.nbytes if isinstance(value, torch.Tensor) else 0


@dataclass(frozen=True)
class RowGroup:
    """One Parquet row group of one shard: the unit of reading and of epoch shuffling."""

    shard: int  # index into ShardStream.files
    index: int  # row group index inside that shard
    rows: int


def plan_range(groups: list[RowGroup], start: int, stop: int) -> list[tuple[RowGroup, int, int]]:
    """The row groups overlapping rows ``[start, stop)`` of the concatenation of ``groups``.

    Returns ``(group, lo, hi)``: rows ``lo:hi`` of each overlapping group, in order.
    """
    out, offset = [], 0
    for group in groups:
        lo, hi = max(start - offset, 0), min(stop - offset, group.rows)
        if lo < hi:
            out.append((group, lo, hi))
        offset += group.rows
        if offset >= stop:
            break
    return out


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB image -> float tensor ``3 H W`` with values in [0, 1]."""
    array = np.array(img, dtype=np.uint8)  # a writable copy; torch refuses read-only arrays
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def _default_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardStream(IterableDataset):
    """Stream one split of a shard folder (see the module docstring for the partitioning).

    Args:
        shards: a shard folder, its ``manifest.json``, or a manifest from ``load_manifest``.
        split: ``train``, ``val`` or ``test``.
        transform: called on each decoded RGB ``PIL.Image``; default: float tensor in [0, 1].
        shuffle: shuffle row groups per epoch and rows through a buffer (training).
        seed: base seed; the order depends only on (seed, epoch, rank, world_size, workers).
        shuffle_buffer: rows held for mixing when shuffling (<= 1: row groups shuffled only).
        rank, world_size: this process's share; default from ``torch.distributed`` when it
            is initialised, else 0 and 1.
        epoch: starting epoch; change it with :meth:`set_epoch`.
        cache_mb: MiB of decoded images to keep for later epochs (0: none); see the module
            docstring. Images without a transform are kept as uint8 (a quarter of the size).
    """

    def __init__(
        self,
        shards: str | os.PathLike | dict[str, Any],
        split: str = "train",
        *,
        transform: Callable[[Image.Image], Any] | None = None,
        shuffle: bool = False,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        rank: int | None = None,
        world_size: int | None = None,
        epoch: int = 0,
        cache_mb: float = 0,
    ):
        super().__init__()
        manifest = shards if isinstance(shards, dict) else load_manifest(shards)
        if split not in manifest["splits"]:
            raise ValueError(f"split must be one of {sorted(manifest['splits'])}, got {split!r}")
        default_rank, default_world = _default_rank_world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={self.rank}, world_size={self.world_size}"
            )
        self.split = split
        self.transform = transform
        self.shuffle = shuffle
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.epoch = epoch
        folder = Path(manifest["dir"])
        self.files = [folder / s["file"] for s in manifest["splits"][split]["shards"]]
        self.groups = self._read_layout(manifest["splits"][split]["shards"])
        self.total_rows = sum(g.rows for g in self.groups)
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
        self.cache_bytes = int(cache_mb * 2**20)
        self._cache: dict[tuple[int, int], list[dict[str, Any]]] = {}
        self._cached_bytes = 0
        self._cache_full = self.cache_bytes == 0

    def _read_layout(self, shards: list[dict[str, Any]]) -> list[RowGroup]:
        """Row group sizes from each shard's footer (no row data is read)."""
        groups = []
        for i, (file, info) in enumerate(zip(self.files, shards, strict=True)):
            meta = pq.ParquetFile(file).metadata
            if meta.num_rows != info["rows"]:
                raise ValueError(
                    f"{file} has {meta.num_rows} rows but the manifest says {info['rows']}"
                )
            groups += [
                RowGroup(i, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)
            ]
        return groups

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shuffle order (call before iterating, on every rank)."""
        self.epoch = epoch

    def __len__(self) -> int:
        """Rows this rank yields per epoch (the same on every rank)."""
        return self.total_rows // self.world_size

    def epoch_groups(self) -> list[RowGroup]:
        """Row groups in this epoch's order: shuffled by (seed, epoch) when ``shuffle``."""
        if not self.shuffle:
            return list(self.groups)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.groups))
        return [self.groups[i] for i in order]

    def worker_range(self, worker: int = 0, num_workers: int = 1) -> tuple[int, int]:
        """Rows ``[start, stop)`` of the epoch's concatenation read by (this rank, ``worker``)."""
        per_rank = len(self)
        base = self.rank * per_rank
        return base + per_rank * worker // num_workers, base + per_rank * (
            worker + 1
        ) // num_workers

    def _iter_rows(self, start: int, stop: int) -> Iterator[dict[str, Any]]:
        """Rows ``[start, stop)`` of the epoch's concatenation: as read from the shard, or
        already decoded (cache entries, see :meth:`_store`) while the cache has room."""
        files: dict[int, pq.ParquetFile] = {}
        for group, lo, hi in plan_range(self.epoch_groups(), start, stop):
            cached = self._cache.get((group.shard, group.index))
            if cached is not None:
                yield from cached[lo:hi]
                continue
            if group.shard not in files:
                files[group.shard] = pq.ParquetFile(self.files[group.shard])
            table = files[group.shard].read_row_group(group.index, columns=list(COLUMNS))
            if self._cache_full:
                yield from table.slice(lo, hi - lo).to_pylist()
                continue
            entries = [self._store(row) for row in table.to_pylist()]
            size = sum(_nbytes(entry[_STORED]) for entry in entries)
            if self._cached_bytes + size <= self.cache_bytes:
                self._cache[(group.shard, group.index)] = entries
                self._cached_bytes += size
            else:  # read the rest as it comes
                self._cache_full = True
            yield from entries[lo:hi]

    def _shuffled(
        self, rows: Iterator[dict[str, Any]], rng: np.random.Generator
    ) -> Iterator[dict[str, Any]]:
        buffer: list[dict[str, Any]] = []
        for row in rows:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(row)
                continue
            j = int(rng.integers(len(buffer)))
            yield buffer[j]
            buffer[j] = row
        for j in rng.permutation(len(buffer)):
            yield buffer[j]

    def _store(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row as read -> a cache entry: its image decoded and transformed, or without a
        transform kept as uint8 ``3 H W``, under the key ``_STORED``."""
        img = decode_rgb(row["image"])
        if self.transform is not None:
            stored = self.transform(img)
        else:
            stored = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
        entry = {k: v for k, v in row.items() if k != "image"}
        entry[_STORED] = stored
        return entry

    def _decode(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row as read, or a cache entry -> a new sample dict with the image decoded."""
        if _STORED not in row:
            img = decode_rgb(row["image"])
            image = self.transform(img) if self.transform is not None else image_to_tensor(img)
            return {**row, "image": image}
        stored = row[_STORED]
        if self.transform is None:
            image = stored.float().div_(255.0)
        else:  # a copy, so that nobody's in-place edit reaches the cache
            image = stored.clone() if isinstance(stored, torch.Tensor) else stored
        sample = {k: v for k, v in row.items() if k != _STORED}
        sample["image"] = image
        return sample

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        start, stop = self.worker_range(worker, num_workers)
        rows = self._iter_rows(start, stop)
        if self.shuffle and self.shuffle_buffer > 1:
            rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, num_workers])
            rows = self._shuffled(rows, rng)
        for row in rows:
            yield self._decode(row)


def training_streams(
    shards: str | os.PathLike | dict[str, Any],
    *,
    seed: int,
    rank: int,
    world_size: int,
    transform: Callable[[Image.Image], Any] | None = None,
    splits: tuple[str, ...] = ("train", "val"),
    cache_mb: float = 0,
) -> dict[str, ShardStream]:
    """A trainer's streams, one per split of ``splits``: train shuffled by ``seed``, the
    others in shard order, each this rank's share, each caching up to ``cache_mb`` MiB of
    decoded images (``transform`` must then be deterministic)."""
    manifest = shards if isinstance(shards, dict) else load_manifest(shards)
    return {
        split: ShardStream(
            manifest,
            split,
            transform=transform,
            shuffle=split == "train",
            seed=seed,
            rank=rank,
            world_size=world_size,
            cache_mb=cache_mb,
        )
        for split in splits
    }


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch ShardStream samples: images stacked (when tensors), ``image_id`` a long tensor,
    everything else (keys, captions, styled captions, questions) kept as Python lists."""
    if not batch:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {}
    for name in batch[0]:
        values = [sample[name] for sample in batch]
        if name == "image" and all(isinstance(v, torch.Tensor) for v in values):
            out[name] = torch.stack(values)
        elif name == "image_id":
            out[name] = torch.tensor(values, dtype=torch.long)
        else:
            out[name] = values
    return out
