"""base64_tsv ingester: both base64 alphabets, idx merging, and every bad line as an error row."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from vlcore.ingest.base64_tsv import decode_base64, read_base64_tsv


def png(color=(200, 30, 30), size=(24, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(color=(20, 30, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 24), color).save(buf, format="JPEG")
    return buf.getvalue()


STD = base64.b64encode
URLSAFE_NOPAD = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")  # noqa: E731


def ingest(tmp_path: Path, content: bytes) -> dict[str, dict]:
    path = tmp_path / "data.tsv"
    path.write_bytes(content)
    rows = list(read_base64_tsv({"path": str(path)}, "en", tmp_path))
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)), f"duplicate keys: {keys}"
    return {r["key"]: r for r in rows}


# Bytes whose base64 has '+', '/' (standard) or '-', '_' (URL-safe) and needs padding.
TRICKY = bytes(range(256)) + b"\xfb\xff"


@pytest.mark.parametrize(
    "encoded",
    [
        base64.b64encode(TRICKY),
        base64.b64encode(TRICKY).rstrip(b"="),
        base64.urlsafe_b64encode(TRICKY),
        base64.urlsafe_b64encode(TRICKY).rstrip(b"="),
    ],
    ids=["standard", "standard-unpadded", "urlsafe", "urlsafe-unpadded"],
)
def test_decode_base64_accepts_both_alphabets_with_or_without_padding(encoded):
    assert decode_base64(encoded.decode()) == TRICKY


@pytest.mark.parametrize("text", ["", "abcde", "ab$d", "ab c d", "ab==cd", "ééé"])
def test_decode_base64_rejects_garbage(text):
    with pytest.raises(ValueError):
        decode_base64(text)


def test_good_lines_merge_by_idx_with_captions_in_order(tmp_path):
    a, b = png(), jpeg()
    content = b"".join(
        [
            b"a\t" + STD(a) + b"\tfirst caption\n",
            b"a\t" + STD(a) + b"\tsecond caption\n",
            b"b\t" + URLSAFE_NOPAD(b) + "\t一只红色的圆\r\n".encode(),
            b"a\t" + URLSAFE_NOPAD(a) + b"\tthird, after b\n",  # comes back: still merged
            b"\n",
        ]
    )
    rows = ingest(tmp_path, content)
    assert set(rows) == {"tsv:a", "tsv:b"}
    assert rows["tsv:a"]["image"] == a and rows["tsv:b"]["image"] == b
    assert rows["tsv:a"]["captions"] == ["first caption", "second caption", "third, after b"]
    assert rows["tsv:b"]["captions"] == ["一只红色的圆"]
    assert rows["tsv:a"]["source"] == "base64_tsv" and rows["tsv:a"]["error"] is None
    assert rows["tsv:a"]["split_hint"] is None


def test_interleaved_idx_runs_merge_each_line_once(tmp_path):
    a, b = png(), jpeg()
    order = ["a", "b", "a", "a", "b", "c", "b", "a"]
    images = {"a": a, "b": b, "c": png((1, 2, 3))}
    content = b"".join(
        f"{idx}\t".encode() + STD(images[idx]) + f"\t{idx}{n}\n".encode()
        for n, idx in enumerate(order)
    )
    rows = ingest(tmp_path, content)
    assert list(rows) == ["tsv:a", "tsv:b", "tsv:c"]
    assert rows["tsv:a"]["captions"] == ["a0", "a2", "a3", "a7"]
    assert rows["tsv:b"]["captions"] == ["b1", "b4", "b6"]
    assert rows["tsv:c"]["captions"] == ["c5"] and rows["tsv:b"]["image"] == b


def test_bad_lines_become_error_rows_without_losing_good_ones(tmp_path):
    a, c = png(), png((0, 200, 0))
    content = b"".join(
        [
            b"a\t" + STD(a) + b"\tgood\n",  # 1
            b"a\t" + STD(a) + b"\n",  # 2: two fields only
            b"m\t" + STD(c) + b"\tx\textra\n",  # 3: four fields
            b"s\t!!notbase64!!\tstd garbage\n",  # 4
            b"u\t" + URLSAFE_NOPAD(c) + b"-_~\tbroken urlsafe\n",  # 5
            b"e\t" + STD(c) + b"\tcaf\xe9 latin-1\n",  # 6: not UTF-8
            b"just one field, no tab\n",  # 7
            b"c\t" + STD(c) + b"\tgood c\n",  # 8
            b"a\t" + STD(a) + b"\tlate \xff bad\n",  # 9: late and bad, idx has a good row
        ]
    )
    rows = ingest(tmp_path, content)
    errors = {k: r["error"] for k, r in rows.items()}
    assert errors == {
        "tsv:a": None,
        "tsv:a@line2": "malformed_row",
        "tsv:m": "malformed_row",
        "tsv:s": "invalid_base64",
        "tsv:u": "invalid_base64",
        "tsv:e": "bad_encoding",
        "tsv:@line7": "malformed_row",
        "tsv:c": None,
        "tsv:a@line9": "bad_encoding",
    }
    assert rows["tsv:a"]["captions"] == ["good"] and rows["tsv:a"]["image"] == a
    assert rows["tsv:c"]["captions"] == ["good c"] and rows["tsv:c"]["image"] == c
    for row in rows.values():
        if row["error"]:
            assert row["image"] is None
            assert row["error_detail"].startswith("line ")
    assert "4 tab-separated fields" in rows["tsv:m"]["error_detail"]
    assert "UTF-8" in rows["tsv:e"]["error_detail"]


def test_bad_idx_bytes_still_give_a_key(tmp_path):
    rows = ingest(tmp_path, b"\xff\xfe\t" + STD(png()) + b"\tcaption\n")
    (row,) = rows.values()
    assert row["error"] == "bad_encoding" and row["key"] == "tsv:\\xff\\xfe"


def test_bom_and_crlf_are_not_part_of_the_data(tmp_path):
    a = png()
    rows = ingest(tmp_path, b"\xef\xbb\xbfa\t" + STD(a) + b"\tcap\r\n")
    assert rows["tsv:a"]["image"] == a and rows["tsv:a"]["captions"] == ["cap"]


def test_missing_file_names_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"source\.base64_tsv\.path.*nope\.tsv"):
        list(read_base64_tsv({"path": str(tmp_path / "nope.tsv")}, "en", tmp_path))
