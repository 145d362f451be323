"""shard_dataset: byte-identical output, stable splits, manifest and atomic folder."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

import vlcore.data.shard as shard_module
from vlcore.data.raw import RawWriter, make_row
from vlcore.data.shard import (
    MANIFEST_VERSION,
    SHARD_SCHEMA,
    ShardConfig,
    assign_split,
    load_manifest,
    shard_dataset,
    verify_shards,
)


def image_bytes(i: int, width: int = 40, height: int = 30, fmt: str = "PNG") -> bytes:
    img = Image.new("RGB", (width, height), (i % 256, (7 * i) % 256, (13 * i) % 256))
    img.putpixel((0, 0), (255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def row(i: int, **kwargs):
    return make_row(
        f"key-{i:05d}",
        "test",
        image=kwargs.pop("image", None) or image_bytes(i),
        captions=[f"caption {i}", f"another caption {i}"],
        styled_captions=[{"style": "happy", "caption": f"happy {i}"}],
        **kwargs,
    )


def write_clean(path, rows) -> None:
    with RawWriter(path) as writer:
        writer.write_all(rows)


def read_split(out_dir, manifest, split):
    rows = []
    for shard in manifest["splits"][split]["shards"]:
        rows += pq.read_table(out_dir / shard["file"]).to_pylist()
    return rows


def test_layout_and_manifest(tmp_path):
    write_clean(tmp_path / "clean.parquet", [row(i) for i in range(250)])
    config = ShardConfig(image_size=16, rows_per_shard=40, row_group_rows=15)
    out = tmp_path / "shards"
    manifest = shard_dataset(tmp_path / "clean.parquet", out, config)
    assert {k: v for k, v in load_manifest(out).items() if k != "dir"} == manifest
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["schema_version"] == MANIFEST_VERSION
    assert manifest["image_size"] == 16 and manifest["image_format"] == "png"
    assert manifest["columns"] == SHARD_SCHEMA.names
    assert set(manifest["splits"]) == {"train", "val", "test"}
    assert manifest["total"]["rows"] == 250
    files = sorted(p.name for p in out.iterdir())
    listed = sorted(s["file"] for v in manifest["splits"].values() for s in v["shards"])
    assert files == sorted([*listed, "manifest.json"])
    for split, info in manifest["splits"].items():
        rows = read_split(out, manifest, split)
        assert len(rows) == info["rows"] == sum(s["rows"] for s in info["shards"])
        assert info["captions"] == 2 * info["rows"] and info["styled_captions"] == info["rows"]
        for n, shard in enumerate(info["shards"]):
            assert shard["file"] == f"{split}-{n:05d}.parquet"
            pf = pq.ParquetFile(out / shard["file"])
            assert pf.schema_arrow.equals(SHARD_SCHEMA, check_metadata=False)
            is_last = n == len(info["shards"]) - 1
            assert shard["rows"] == (info["rows"] - 40 * n if is_last else 40)
            sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
            assert all(s <= 15 for s in sizes) and sum(sizes) == shard["rows"]
        # rows keep the input order within a split
        keys = [r["key"] for r in rows]
        assert keys == sorted(keys)
        for r in rows:
            assert r["split"] == split
            assert (r["width"], r["height"]) == (40, 30)
            assert Image.open(io.BytesIO(r["image"])).size == (16, 16)
    assert 150 < manifest["splits"]["train"]["rows"] < 250
    assert verify_shards(out)["total"] == manifest["total"]


def test_same_input_gives_byte_identical_output(tmp_path):
    write_clean(tmp_path / "clean.parquet", [row(i) for i in range(60)])
    config = ShardConfig(image_size=12, rows_per_shard=16, row_group_rows=5, image_format="jpeg")
    a = shard_dataset(tmp_path / "clean.parquet", tmp_path / "a", config)
    b = shard_dataset(tmp_path / "clean.parquet", tmp_path / "b", config, threads=4)
    assert a == b
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_adding_rows_never_moves_a_key(tmp_path):
    config = ShardConfig(image_size=8, rows_per_shard=50, split={"val": 0.2, "test": 0.2})
    splits = []
    for n in (300, 450):
        write_clean(tmp_path / f"clean{n}.parquet", [row(i) for i in range(n)])
        out = tmp_path / f"shards{n}"
        manifest = shard_dataset(tmp_path / f"clean{n}.parquet", out, config)
        splits.append(
            {r["key"]: s for s in manifest["splits"] for r in read_split(out, manifest, s)}
        )
    small, big = splits
    assert len(small) == 300 and len(big) == 450
    assert all(big[key] == split for key, split in small.items())
    assert {"train", "val", "test"} == set(small.values())


def test_split_hints_and_salt():
    config = ShardConfig()
    assert assign_split("k", "restval", config) == "train"
    assert assign_split("k", "val", config) == "val"
    assert assign_split("k", "test", config) == "test"
    hashed = assign_split("k", None, config)
    assert assign_split("k", "val", ShardConfig(use_split_hint=False)) == hashed
    with pytest.raises(ValueError, match="split_hint"):
        assign_split("k", "validation", config)
    keys = [f"k{i}" for i in range(2000)]
    salted = [assign_split(k, None, ShardConfig(split_salt="x")) for k in keys]
    plain = [assign_split(k, None, config) for k in keys]
    assert salted != plain
    assert 120 < plain.count("val") < 280 and 120 < plain.count("test") < 280
    everything_val = ShardConfig(split={"val": 1.0, "test": 0.0})
    assert {assign_split(k, None, everything_val) for k in keys} == {"val"}


def test_split_hint_used_in_shards(tmp_path):
    hints = ["train", "restval", "val", "test"] * 5
    write_clean(tmp_path / "clean.parquet", [row(i, split_hint=h) for i, h in enumerate(hints)])
    manifest = shard_dataset(
        tmp_path / "clean.parquet", tmp_path / "out", ShardConfig(image_size=8)
    )
    assert {s: v["rows"] for s, v in manifest["splits"].items()} == {
        "train": 10,
        "val": 5,
        "test": 5,
    }


@pytest.mark.parametrize("mode", ["center_crop", "pad", "stretch"])
def test_resize_modes(tmp_path, mode):
    # a wide image: red left half, blue right half, with a green bar in the centre third
    img = Image.new("RGB", (90, 30), (255, 0, 0))
    img.paste((0, 0, 255), (45, 0, 90, 30))
    img.paste((0, 255, 0), (30, 0, 60, 30))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    write_clean(tmp_path / "clean.parquet", [row(0, image=buf.getvalue(), split_hint="train")])
    out = tmp_path / "out"
    manifest = shard_dataset(
        tmp_path / "clean.parquet", out, ShardConfig(image_size=12, resize_mode=mode)
    )
    (r,) = read_split(out, manifest, "train")
    small = Image.open(io.BytesIO(r["image"])).convert("RGB")
    assert small.size == (12, 12) and (r["width"], r["height"]) == (90, 30)
    left, middle = small.getpixel((0, 6)), small.getpixel((6, 6))
    assert middle[1] > 200  # green centre in every mode
    if mode == "center_crop":
        assert left[1] > 200  # the crop keeps only the green centre third
    elif mode == "pad":
        assert small.getpixel((6, 0)) == (0, 0, 0) and left[0] > 200
    else:
        assert left[0] > 200 and small.getpixel((6, 0))[1] > 200


def test_exif_rotation_and_jpeg_sources(tmp_path):
    img = Image.new("RGB", (80, 40), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    write_clean(tmp_path / "clean.parquet", [row(0, image=buf.getvalue(), split_hint="train")])
    manifest = shard_dataset(
        tmp_path / "clean.parquet", tmp_path / "out", ShardConfig(image_size=16)
    )
    (r,) = read_split(tmp_path / "out", manifest, "train")
    assert (r["width"], r["height"]) == (40, 80)


def test_a_failing_job_leaves_no_folder_and_keeps_the_old_one(tmp_path, monkeypatch):
    write_clean(tmp_path / "clean.parquet", [row(i) for i in range(100)])
    out = tmp_path / "shards"
    shard_dataset(tmp_path / "clean.parquet", out, ShardConfig(image_size=8, rows_per_shard=10))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []
    original = shard_module._shard_image

    def dies_midway(data, config):
        calls.append(1)
        if len(calls) > 50:
            raise KeyboardInterrupt("killed")
        return original(data, config)

    monkeypatch.setattr(shard_module, "_shard_image", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        shard_dataset(
            tmp_path / "clean.parquet", out, ShardConfig(image_size=16, rows_per_shard=10)
        )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.parquet", "shards"]
    with pytest.raises(KeyboardInterrupt):
        calls.clear()
        shard_dataset(
            tmp_path / "clean.parquet", tmp_path / "fresh", ShardConfig(rows_per_shard=10)
        )
    assert not (tmp_path / "fresh").exists()


def test_manifest_errors_and_verification(tmp_path):
    with pytest.raises(FileNotFoundError, match="shard_dataset"):
        load_manifest(tmp_path)
    write_clean(tmp_path / "clean.parquet", [row(i) for i in range(30)])
    out = tmp_path / "out"
    manifest = shard_dataset(
        tmp_path / "clean.parquet", out, ShardConfig(image_size=8, rows_per_shard=7)
    )
    assert load_manifest(out / "manifest.json")["dir"] == str(out)
    shard = out / manifest["splits"]["train"]["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        verify_shards(out)
    shard.unlink()
    with pytest.raises(ValueError, match="missing"):
        verify_shards(out)
    (out / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(ValueError, match="schema_version 99"):
        load_manifest(out)


def test_empty_input_gives_empty_splits(tmp_path):
    write_clean(tmp_path / "clean.parquet", [])
    manifest = shard_dataset(tmp_path / "clean.parquet", tmp_path / "out", ShardConfig())
    assert manifest["total"] == {"rows": 0, "shards": 0, "bytes": 0}
    assert all(v["shards"] == [] for v in manifest["splits"].values())


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"resize_mode": "squash"}, "resize_mode"),
        ({"image_format": "webp"}, "image_format"),
        ({"split": {"val": 0.6, "test": 0.6}}, "sum"),
        ({"split": {"dev": 0.1}}, "dev"),
        ({"rows_per_shard": 0}, "rows_per_shard"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
    ],
)
def test_config_errors_are_clear(bad, match):
    with pytest.raises(ValueError, match=match):
        ShardConfig(**bad)


def test_partial_split_dict_keeps_defaults():
    assert ShardConfig(split={"val": 0.05}).split == {"val": 0.05, "test": 0.1}
