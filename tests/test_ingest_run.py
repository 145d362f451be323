"""run_ingest: dispatch, atomic raw file + download_stats.json, clear config errors."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

import vlcore.ingest as ingest
from vlcore.data.raw import INGEST_ERRORS, iter_raw_rows, make_row
from vlcore.ingest import INGESTERS, run_ingest


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_base64_tsv_end_to_end_with_stats(tmp_path):
    image = png()
    b64 = base64.b64encode(image)
    tsv = tmp_path / "data.tsv"
    tsv.write_bytes(
        b"a\t" + b64 + b"\tone\n" + b"a\t" + b64 + b"\ttwo\n" + b"b\t***\tbad\n" + b"c\tx\n"
    )
    out = tmp_path / "results" / "raw.parquet"
    stats_path = tmp_path / "results" / "download_stats.json"
    source = {"format": "base64_tsv", "base64_tsv": {"path": str(tsv)}}
    stats = run_ingest(source, out, stats_path, lang="en", seed=0)

    rows = {r["key"]: r for r in iter_raw_rows(out)}
    assert rows["tsv:a"]["image"] == image and rows["tsv:a"]["captions"] == ["one", "two"]
    assert stats == json.loads(stats_path.read_text())
    assert stats["format"] == "base64_tsv" and stats["rows"] == 3 and stats["ok"] == 1
    assert set(stats["errors"]) == set(INGEST_ERRORS)
    assert stats["errors"]["invalid_base64"] == 1 and stats["errors"]["malformed_row"] == 1
    assert stats["error_examples"]["invalid_base64"][0]["key"] == "tsv:b"
    # Only the two outputs remain: no temporary files, no work folder.
    assert sorted(p.name for p in out.parent.iterdir()) == ["download_stats.json", "raw.parquet"]


def test_duplicates_and_warnings_are_reported(tmp_path, monkeypatch):
    def fake(cfg, lang, workdir):
        assert workdir.is_dir() and workdir.parent == tmp_path
        ingest.log.getChild("fake").warning("skipped something")
        yield make_row("k", "fake", image=b"x")
        yield make_row("k", "fake", image=b"y")

    monkeypatch.setitem(INGESTERS, "base64_tsv", fake)
    stats = run_ingest(
        {"format": "base64_tsv", "base64_tsv": {}},
        tmp_path / "raw.parquet",
        tmp_path / "stats.json",
        lang="en",
        seed=0,
    )
    assert stats["rows"] == 2 and stats["ok"] == 1 and stats["errors"]["duplicate_key"] == 1
    assert stats["error_examples"]["duplicate_key"] == [
        {"key": "k", "detail": "key 'k' appeared before"}
    ]
    assert stats["warnings"] == 1 and "skipped something" in stats["warning_examples"][0]


def test_a_failing_ingester_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(cfg, lang, workdir):
        yield make_row("k", "fake", image=b"x")
        raise ValueError("source.fake: the file is bad")

    monkeypatch.setitem(INGESTERS, "base64_tsv", broken)
    with pytest.raises(ValueError, match="the file is bad"):
        run_ingest(
            {"format": "base64_tsv", "base64_tsv": {}},
            tmp_path / "raw.parquet",
            tmp_path / "stats.json",
            lang="en",
            seed=0,
        )
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"'webdataset'.*synthetic, url_list, base64_tsv, coco"):
        run_ingest({"format": "webdataset"}, tmp_path / "r", tmp_path / "s", lang="en", seed=0)


@pytest.mark.parametrize(
    ("fmt", "cfg", "key"),
    [
        ("url_list", {"path": "no/such/urls.csv"}, "path"),
        ("base64_tsv", {"path": "no/such/data.tsv"}, "path"),
        ("coco", {"images_dir": ".", "captions_json": "no/such/c.json"}, "captions_json"),
        ("personality", {"json": "no/such/p.json", "images_dir": "."}, "json"),
        ("image_folder", {"images_dir": "no/such/dir", "captions_file": "x.csv"}, "captions_file"),
    ],
)
def test_missing_input_names_the_config_key_and_path(tmp_path, fmt, cfg, key):
    with pytest.raises(FileNotFoundError) as err:
        run_ingest({"format": fmt, fmt: cfg}, tmp_path / "r", tmp_path / "s", lang="en", seed=0)
    assert f"source.{fmt}.{key}" in str(err.value) and str(cfg[key]) in str(err.value)
    assert not (tmp_path / "r").exists()


def test_synthetic_through_run_ingest(tmp_path):
    source = {
        "format": "synthetic",
        "synthetic": {"n_images": 12, "image_size": 32, "dirty_rate": 0},
    }
    stats = run_ingest(source, tmp_path / "raw.parquet", tmp_path / "s.json", lang="en", seed=3)
    rows = list(iter_raw_rows(tmp_path / "raw.parquet"))
    assert stats["rows"] == 12 == stats["ok"]
    assert [r["key"] for r in rows] == [f"synth-{i:07d}" for i in range(12)]
    assert all(r["image"] and r["captions"] for r in rows)
