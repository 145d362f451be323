"""ShardStream: disjoint equal partitions over ranks and workers, reproducible epoch order."""

from __future__ import annotations

import io
from collections import Counter

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vlcore.data.raw import RawWriter, make_row
from vlcore.data.shard import ShardConfig, shard_dataset
from vlcore.data.stream import RowGroup, ShardStream, collate, plan_range, training_streams

N_ROWS = 203  # not a multiple of anything used below: remainders get exercised


def image_bytes(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (i % 256, 255 - i % 256, 128)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    question = {
        "question_id": 1,
        "question": "what color?",
        "question_type": "what color",
        "answer_type": "other",
        "answers": ["red"] * 10,
        "multiple_choice_answer": "red",
    }
    with RawWriter(root / "clean.parquet") as writer:
        for i in range(N_ROWS):
            writer.write(
                make_row(
                    f"k{i:04d}",
                    "test",
                    image=image_bytes(i),
                    captions=[f"caption {i}"],
                    styled_captions=[{"style": "calm", "caption": f"calm {i}"}],
                    questions=[question] if i % 2 else [],
                    image_id=i,
                    split_hint="train",
                )
            )
    config = ShardConfig(image_size=8, rows_per_shard=50, row_group_rows=16)
    shard_dataset(root / "clean.parquet", root / "shards", config)
    return root / "shards"


def keys(ds) -> list[str]:
    return [sample["key"] for sample in ds]


def loader_keys(ds, num_workers: int = 2) -> list[str]:
    loader = DataLoader(ds, batch_size=5, num_workers=num_workers, collate_fn=collate)
    return [k for batch in loader for k in batch["key"]]


def test_samples_have_the_documented_fields(shards):
    ds = ShardStream(shards, "train")
    assert len(ds) == N_ROWS
    sample = next(iter(ds))
    assert set(sample) == {"key", "image_id", "image", "captions", "styled_captions", "questions"}
    assert sample["key"] == "k0000" and sample["image_id"] == 0
    assert sample["image"].shape == (3, 8, 8) and sample["image"].dtype == torch.float32
    assert sample["image"].min() >= 0.0 and sample["image"].max() <= 1.0
    assert sample["captions"] == ["caption 0"]
    assert sample["styled_captions"] == [{"style": "calm", "caption": "calm 0"}]
    assert keys(ds) == [f"k{i:04d}" for i in range(N_ROWS)]  # no shuffle: shard order


def test_transform_gets_a_pil_image(shards):
    ds = ShardStream(shards, "train", transform=lambda img: img.size)
    assert next(iter(ds))["image"] == (8, 8)


def test_collate_stacks_images_and_keeps_lists(shards):
    batch = collate([s for s, _ in zip(ShardStream(shards, "train"), range(4), strict=False)])
    assert batch["image"].shape == (4, 3, 8, 8)
    assert batch["image_id"].tolist() == [0, 1, 2, 3]
    assert batch["key"] == ["k0000", "k0001", "k0002", "k0003"]
    assert batch["captions"] == [["caption 0"], ["caption 1"], ["caption 2"], ["caption 3"]]
    assert batch["questions"][0] == [] and len(batch["questions"][1]) == 1


@pytest.mark.parametrize("shuffle", [False, True])
def test_two_ranks_two_workers_see_every_row_once(shards, shuffle):
    per_rank = N_ROWS // 2
    seen = []
    for rank in range(2):
        ds = ShardStream(
            shards, "train", shuffle=shuffle, seed=3, shuffle_buffer=20, rank=rank, world_size=2
        )
        ds.set_epoch(1)
        assert len(ds) == per_rank
        got = loader_keys(ds)
        assert len(got) == per_rank  # exactly equal per rank: DDP never hangs
        seen += got
    counts = Counter(seen)
    assert max(counts.values()) == 1
    assert len(counts) == 2 * per_rank == N_ROWS - 1  # the remainder (one row) is dropped


def test_worker_ranges_are_disjoint_contiguous_and_cover_each_rank(shards):
    world, workers = 3, 4
    ranges = []
    for rank in range(world):
        ds = ShardStream(shards, "train", rank=rank, world_size=world)
        ranges += [ds.worker_range(w, workers) for w in range(workers)]
    assert ranges[0][0] == 0 and ranges[-1][1] == (N_ROWS // world) * world
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    sizes = [sum(b - a for a, b in ranges[r * workers : (r + 1) * workers]) for r in range(world)]
    assert sizes == [N_ROWS // world] * world


def test_plan_range_touches_only_overlapping_row_groups():
    groups = [RowGroup(0, 0, 10), RowGroup(0, 1, 10), RowGroup(1, 0, 5), RowGroup(2, 0, 10)]
    assert plan_range(groups, 12, 23) == [(groups[1], 2, 10), (groups[2], 0, 3)]
    assert plan_range(groups, 0, 10) == [(groups[0], 0, 10)]
    assert plan_range(groups, 25, 35) == [(groups[3], 0, 10)]
    assert plan_range(groups, 7, 7) == []


def test_reads_only_the_row_groups_of_its_range(shards, monkeypatch):
    import pyarrow.parquet as pq

    reads = []
    original = pq.ParquetFile.read_row_group

    def spy(self, i, *args, **kwargs):
        reads.append(i)
        return original(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    ds = ShardStream(shards, "train", rank=1, world_size=8)  # rows 25..50 of shard 0
    assert keys(ds) == [f"k{i:04d}" for i in range(25, 50)]
    assert reads == [1, 2, 3]  # row groups 16-31, 32-47, 48-49


def test_same_seed_and_epoch_same_order_other_epoch_differs(shards):
    def order(epoch, seed=0):
        ds = ShardStream(shards, "train", shuffle=True, seed=seed, shuffle_buffer=32)
        ds.set_epoch(epoch)
        return keys(ds)

    first = order(0)
    assert first == order(0)
    assert sorted(first) == [f"k{i:04d}" for i in range(N_ROWS)]
    assert first != [f"k{i:04d}" for i in range(N_ROWS)]
    assert order(1) != first and sorted(order(1)) == sorted(first)
    assert order(0, seed=1) != first


def test_dataloader_with_workers_is_reproducible(shards):
    def run(epoch):
        ds = ShardStream(shards, "train", shuffle=True, seed=7, shuffle_buffer=16)
        ds.set_epoch(epoch)
        return loader_keys(ds, num_workers=2)

    a, b, c = run(0), run(0), run(1)
    assert a == b and a != c
    assert sorted(a) == sorted(c) == [f"k{i:04d}" for i in range(N_ROWS)]


def test_bad_arguments(shards):
    with pytest.raises(ValueError, match="split"):
        ShardStream(shards, "dev")
    with pytest.raises(ValueError, match="rank"):
        ShardStream(shards, "train", rank=2, world_size=2)


def test_empty_split_yields_nothing(shards):
    ds = ShardStream(shards, "val")
    assert len(ds) == 0 and keys(ds) == []


def test_training_streams_shuffle_train_only_and_take_this_ranks_share(shards):
    streams = training_streams(shards, seed=3, rank=1, world_size=2, transform=lambda img: img.size)
    assert set(streams) == {"train", "val"}
    train = ShardStream(shards, "train", shuffle=True, seed=3, rank=1, world_size=2)
    assert keys(streams["train"]) == keys(train) != sorted(keys(train))
    assert len(streams["train"]) == N_ROWS // 2
    assert not streams["val"].shuffle and streams["val"].rank == 1
    assert next(iter(streams["train"]))["image"] == (8, 8)  # the transform reaches the rows
    assert set(training_streams(shards, seed=0, rank=0, world_size=1, splits=("test",))) == {"test"}


def samples(ds) -> list[dict]:
    return list(ds)


def assert_same_samples(a: list[dict], b: list[dict]) -> None:
    assert [s["key"] for s in a] == [s["key"] for s in b]
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for name in x:
            if isinstance(x[name], torch.Tensor):
                assert x[name].dtype == y[name].dtype and torch.equal(x[name], y[name]), name
            else:
                assert x[name] == y[name], name


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("transform", [None, lambda img: torch.tensor(img.getpixel((0, 0)))])
def test_cache_gives_the_same_samples_and_later_epochs_read_nothing(
    shards, monkeypatch, transform, world_size
):
    import pyarrow.parquet as pq

    def stream(cache_mb):
        return ShardStream(
            shards, "train", shuffle=True, seed=5, shuffle_buffer=16, transform=transform,
            rank=world_size - 1, world_size=world_size, cache_mb=cache_mb,
        )  # fmt: skip

    reads = []
    real = pq.ParquetFile.read_row_group

    def spy(self, index, **kwargs):
        reads.append(index)
        return real(self, index, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    plain, cached = stream(0), stream(64)
    orders, cached_reads = [], []
    for epoch in range(4):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        reads.clear()
        got = samples(cached)
        cached_reads.append(len(reads))
        assert_same_samples(got, samples(plain))
        orders.append([s["key"] for s in got])
    assert len({tuple(order) for order in orders}) == 4  # the epochs' orders differ
    if world_size == 1:  # the first epoch read the whole split; the others read nothing
        assert cached_reads == [len(plain.groups), 0, 0, 0]
    else:  # a rank's share moves between epochs, but no row group is read twice
        assert 0 < sum(cached_reads) <= len(plain.groups) and cached_reads[-1] < cached_reads[0]
    if transform is None:
        assert next(iter(cached))["image"].dtype == torch.float32


def test_cache_hands_out_copies(shards):
    ds = ShardStream(shards, "train", cache_mb=64)
    before = samples(ds)[0]["image"].clone()
    for sample in ds:  # a consumer that edits in place
        sample["image"].mul_(0)
        sample["captions"] = []
    again = samples(ds)[0]
    assert torch.equal(again["image"], before) and again["captions"] == ["caption 0"]


def test_cache_stops_at_its_budget_and_the_rest_is_read_as_before(shards, monkeypatch):
    group_bytes = 16 * 3 * 8 * 8  # 16 rows of uint8 8x8 images
    ds = ShardStream(shards, "train", cache_mb=2.5 * group_bytes / 2**20)
    first = samples(ds)
    assert len(ds._cache) == 2 and ds._cached_bytes == 2 * group_bytes
    assert_same_samples(first, samples(ShardStream(shards, "train")))
    assert_same_samples(samples(ds), first)
    with pytest.raises(ValueError, match="cache_mb"):
        ShardStream(shards, "train", cache_mb=-1)


def test_cache_with_dataloader_workers_gives_the_same_batches(shards):
    def run(cache_mb):
        ds = ShardStream(shards, "train", shuffle=True, seed=2, shuffle_buffer=8, cache_mb=cache_mb)
        # new workers each epoch (so set_epoch reaches them), each filling a cache of its own
        loader = DataLoader(ds, batch_size=7, num_workers=2, collate_fn=collate)
        out = []
        for epoch in range(2):
            ds.set_epoch(epoch)
            out += [(batch["key"], batch["image"]) for batch in loader]
        return out

    for (ka, ia), (kb, ib) in zip(run(0), run(64), strict=True):
        assert ka == kb and torch.equal(ia, ib)
