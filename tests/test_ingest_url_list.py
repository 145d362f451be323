"""url_list ingester: CC3M TSV, Wukong CSV and parquet lists, fetched by the real img2dataset
from a local HTTP server (no network). Each img2dataset run costs seconds, so one module-scoped
fixture runs every list once and the tests share the results."""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.http_server import serve_folder
from vlcore.ingest.url_list import (
    _rows_in_order,
    not_an_image,
    read_url_list,
    url_key,
)
from vlcore.ingest.urls import MAX_URL_LENGTH, fetchable_url, refusal_reason

FETCH = {"processes": 1, "threads": 4, "retries": 0, "timeout": 5}


def image_bytes(fmt: str, size: tuple[int, int], seed: int) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    for _ in range(20):
        xy = (rng.randrange(size[0]), rng.randrange(size[1]))
        img.putpixel(xy, tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Files served over HTTP: images (one with a non-ASCII name), a truncated PNG, text."""
    root = tmp_path_factory.mktemp("site")
    (root / "images").mkdir()
    files = {
        "red.png": image_bytes("PNG", (40, 30), 1),
        "photo.jpg": image_bytes("JPEG", (50, 40), 2),
        "blue.png": image_bytes("PNG", (30, 30), 3),
        "猫.png": image_bytes("PNG", (24, 36), 4),
    }
    files["truncated.png"] = files["red.png"][:60]
    for name, data in files.items():
        (root / "images" / name).write_bytes(data)
    (root / "notes.txt").write_text("just some notes, not a picture\n")
    with serve_folder(root) as base:
        yield base, root, files


@pytest.fixture(scope="module")
def ingested(site, tmp_path_factory):
    """Read the three lists once: {name: (rows, keys)}."""
    base, root, _ = site
    data = tmp_path_factory.mktemp("lists")
    work = tmp_path_factory.mktemp("work")
    img = f"{base}/images"

    cc3m = data / "cc3m.tsv"
    cc3m.write_bytes(
        "\n".join(
            [
                f"a red square\t{img}/red.png",
                f"a photo\t{img}/photo.jpg",
                f"gone\t{img}/missing.png",
                f"some text\t{base}/notes.txt",
                "hidden\thttp://abcdefghijklmnop.onion/cat.jpg",
                "ftp\tftp://example.com/cat.jpg",
                "js\tjavascript:alert(1)",
                "local\tfile:///etc/hosts",
                "only one field",
                f"a blue square\t{img}/blue.png",
                "",
                f'a "quoted" caption\t  {img}/red.png  ',
                f"too\tmany\t{img}/red.png",
                f"a cat\t{img}/猫.png",
                f"truncated\t{img}/truncated.png",
                f"spaced\t{img}/a b.png",
                f"long\t{img}/{'a' * MAX_URL_LENGTH}.png",
            ]
        ).encode()
        + f"\ncaf\xe9 latin-1\t{img}/red.png\r\n".encode("latin-1")
        + f"last one\t{img}/photo.jpg\n".encode()
    )
    wukong = data / "wukong.csv"
    wukong.write_text(
        "url,caption\n"
        f'{img}/blue.png,"new, with a comma"\n'
        f"{img}/red.png,a red square\n"
        f'{img}/blue.png,"unterminated\n'
        f"{img}/猫.png,一只猫\n"
        f"{img}/photo.jpg,a photo\n",
        encoding="utf-8",
    )
    plist = data / "list.parquet"
    pq.write_table(
        pa.table(
            {
                "image_url": [
                    (root / "images" / "red.png").as_uri(),
                    f"{img}/photo.jpg",
                    f"{img}/missing.png",
                    f"{img}/blue.png",
                    "ftp://example.com/x.png",
                    None,
                ],
                "text": pa.array(
                    [b"a local file", b"a photo", b"gone", b"caf\xe9", b"ftp", b"no url"],
                    pa.binary(),
                ),
                "other": [1, 2, 3, 4, 5, 6],
            }
        ),
        plist,
    )
    runs = {
        # 19 records in chunks of 10: two img2dataset runs, shards of 3 over 2 processes
        "cc3m": {
            "path": str(cc3m),
            "header": False,
            "columns": ["caption", "url"],
            **FETCH,
            "processes": 2,
            "retries": 1,
            "chunk_rows": 10,
            "shard_rows": 3,
        },
        "wukong": {"path": str(wukong), **FETCH},
        "parquet": {
            "path": str(plist),
            "url_col": "image_url",
            "caption_col": "text",
            "allow_file_urls": True,
            **FETCH,
        },
    }
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # a relative workdir, as run_ingest may pass
        for name, cfg in runs.items():
            out[name] = list(read_url_list(cfg, "en", Path(name)))
    out["workdirs"] = [work / name for name in runs]
    return out


def by_caption(rows):
    return {r["captions"][0] if r["captions"] else r["error_detail"]: r for r in rows}


CC3M_CAPTIONS = [
    "a red square", "a photo", "gone", "some text", "hidden", "ftp", "js", "local", None,
    "a blue square", 'a "quoted" caption', None, "a cat", "truncated", "spaced", "long", None,
    "last one",
]  # fmt: skip
FAILED, REFUSED = "failed_to_download", "refused_url"
CC3M_ERRORS = [
    None, None, FAILED, FAILED, REFUSED, REFUSED, REFUSED, REFUSED, "malformed_row",
    None, None, "malformed_row", None, None, REFUSED, REFUSED, "bad_encoding",
    None,
]  # fmt: skip


def test_cc3m_rows_come_back_in_input_order_with_every_line_accounted_for(ingested):
    rows = ingested["cc3m"]
    # one row per non-blank line, in file order, across two chunks and several shards
    assert [r["captions"][0] if r["captions"] else None for r in rows] == CC3M_CAPTIONS
    assert [r["error"] for r in rows] == CC3M_ERRORS
    assert {r["source"] for r in rows} == {"url_list"}
    assert len({r["key"] for r in rows}) == len(rows)


def test_good_images_are_byte_identical_with_their_captions(ingested, site):
    _, _, files = site
    rows = by_caption(ingested["cc3m"])
    assert rows["a red square"]["image"] == files["red.png"]
    assert rows["a photo"]["image"] == files["photo.jpg"]
    assert rows["a blue square"]["image"] == files["blue.png"]
    assert rows["a cat"]["image"] == files["猫.png"]  # non-ASCII path, percent-encoded to fetch
    assert rows["last one"]["image"] == files["photo.jpg"]
    quoted = rows['a "quoted" caption']  # TSV: quotes are plain text; URL whitespace trimmed
    assert quoted["image"] == files["red.png"] and quoted["url"].endswith("/red.png")
    for caption in ("a red square", "a cat", "last one"):
        row = rows[caption]
        assert row["error"] is None and row["error_detail"] is None
        assert row["captions"] == [caption]
        assert row["key"] == url_key(row["url"], caption)


def test_damaged_binary_is_passed_on_for_the_cleaner(ingested, site):
    row = by_caption(ingested["cc3m"])["truncated"]
    assert row["error"] is None and row["image"] == site[2]["truncated.png"]


def test_404_and_text_bodies_are_failed_to_download_with_a_detail(ingested):
    rows = by_caption(ingested["cc3m"])
    gone, text = rows["gone"], rows["some text"]
    assert gone["error"] == "failed_to_download" and "404" in gone["error_detail"]
    assert text["error"] == "failed_to_download" and "not an image" in text["error_detail"]
    assert gone["image"] is None and text["image"] is None
    assert gone["captions"] == ["gone"] and gone["url"].endswith("/missing.png")


def test_refused_urls_say_why(ingested):
    rows = by_caption(ingested["cc3m"])
    expected = {
        "hidden": ".onion",
        "ftp": "scheme 'ftp'",
        "js": "scheme 'javascript'",
        "local": "file:// URLs are not allowed",
        "spaced": "whitespace",
        "long": "characters long",
    }
    for caption, why in expected.items():
        row = rows[caption]
        assert row["error"] == "refused_url", caption
        assert why in row["error_detail"], row["error_detail"]
        assert row["image"] is None


def test_bad_lines_become_error_rows_without_costing_neighbours(ingested):
    rows = ingested["cc3m"]
    malformed = [r for r in rows if r["error"] == "malformed_row"]
    assert [r["error_detail"] for r in malformed] == [
        "line 9: 1 fields, expected 2 ['caption', 'url']",
        "line 13: 3 fields, expected 2 ['caption', 'url']",
    ]
    (bad,) = [r for r in rows if r["error"] == "bad_encoding"]
    assert bad["error_detail"].startswith("line 18: the 'caption' field is not valid UTF-8")
    assert bad["key"].startswith("url:") and bad["captions"] == []
    # the neighbours of bad lines are intact
    captions = [r["captions"][0] if r["captions"] else None for r in rows]
    assert captions[9] == "a blue square" and rows[9]["image"] is not None
    assert captions[12] == "a cat" and rows[12]["image"] is not None
    assert captions[-1] == "last one" and rows[-1]["image"] is not None


def test_wukong_csv_quotes_and_keys_independent_of_position(ingested, site):
    _, _, files = site
    rows = ingested["wukong"]
    assert [r["error"] for r in rows] == [None, None, "malformed_row", None, None]
    assert rows[0]["captions"] == ["new, with a comma"] and rows[0]["image"] == files["blue.png"]
    assert rows[3]["captions"] == ["一只猫"] and rows[3]["image"] == files["猫.png"]
    assert "cannot be parsed as csv" in rows[2]["error_detail"]
    # the same (url, caption) pairs as in the TSV, at other positions: the same keys
    cc3m = by_caption(ingested["cc3m"])
    assert rows[1]["key"] == cc3m["a red square"]["key"]
    assert rows[4]["key"] == cc3m["a photo"]["key"]


def test_parquet_named_columns_and_file_urls_when_allowed(ingested, site):
    _, root, files = site
    rows = ingested["parquet"]
    assert [r["error"] for r in rows] == [
        None, None, "failed_to_download", "bad_encoding", "refused_url", "refused_url",
    ]  # fmt: skip
    assert rows[0]["image"] == files["red.png"] and rows[0]["captions"] == ["a local file"]
    assert rows[0]["url"] == (root / "images" / "red.png").as_uri()
    assert rows[1]["image"] == files["photo.jpg"]
    assert "'text' field is not valid UTF-8" in rows[3]["error_detail"]
    assert "scheme 'ftp'" in rows[4]["error_detail"]
    assert rows[5]["error_detail"] == "row 6: empty URL"


def test_work_files_are_removed(ingested):
    for workdir in ingested["workdirs"]:
        assert not any(workdir.iterdir())


# --- no download needed -----------------------------------------------------------------------


def test_keys_stay_when_rows_are_prepended(tmp_path):
    lines = ["a\tftp://x/1.png", "b\tftp://x/2.png", "c\tjavascript:void(0)"]
    cfg = {"header": False, "columns": ["caption", "url"]}

    def keys(name, content):
        path = tmp_path / name
        path.write_text("\n".join(content) + "\n")
        rows = list(read_url_list({**cfg, "path": str(path)}, "en", tmp_path / "work"))
        return {r["captions"][0]: r["key"] for r in rows}

    before = keys("before.tsv", lines)
    after = keys("after.tsv", ["new\tftp://x/0.png", "newer\tgopher://y", *lines])
    assert {k: after[k] for k in before} == before
    assert before["a"] == url_key("ftp://x/1.png", "a")


def test_lists_with_nothing_to_fetch_do_not_start_img2dataset(tmp_path, caplog):
    path = tmp_path / "refused.csv"
    path.write_text('caption,url\nx,"data:image/png;base64,AAAA"\ny,http:///nohost.png\n')
    with caplog.at_level(logging.INFO, logger="vlcore.ingest.url_list"):
        rows = list(read_url_list({"path": str(path)}, "en", tmp_path / "work"))
    assert [r["error"] for r in rows] == ["refused_url", "refused_url"]
    assert "scheme 'data'" in rows[0]["error_detail"]
    assert rows[1]["error_detail"] == "line 3: URL has no host"
    assert "img2dataset in all: 0 URLs" in caplog.text


def test_missing_column_is_a_clear_value_error(tmp_path):
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("url,text\nhttp://x/a.png,a\n")
    with pytest.raises(ValueError, match=r"column 'caption' \(caption_col\) not found in .*list\.csv"
                       r".*columns found: \['url', 'text'\]"):  # fmt: skip
        read_url_list({"path": str(csv_path)}, "en", tmp_path)
    parquet = tmp_path / "list.parquet"
    pq.write_table(pa.table({"caption": ["a"], "link": ["http://x/a.png"]}), parquet)
    with pytest.raises(ValueError, match=r"column 'url' \(url_col\).*\['caption', 'link'\]"):
        read_url_list({"path": str(parquet)}, "en", tmp_path)
    tsv = tmp_path / "cc3m.tsv"
    tsv.write_text("a\thttp://x/a.png\n")
    with pytest.raises(ValueError, match="columns` must name its fields"):
        read_url_list({"path": str(tsv), "header": False}, "en", tmp_path)
    with pytest.raises(ValueError, match=r"column 'url' \(url_col\).*\['caption', 'link'\]"):
        read_url_list(
            {"path": str(tsv), "header": False, "columns": ["caption", "link"]}, "en", tmp_path
        )
    with pytest.raises(ValueError, match="timeout must be seconds > 0"):
        read_url_list({"path": str(csv_path), "timeout": 0}, "en", tmp_path)
    with pytest.raises(ValueError, match="unknown key"):
        read_url_list({"path": str(tsv), "caption_column": "x"}, "en", tmp_path)
    with pytest.raises(ValueError, match="cannot read"):
        read_url_list({"path": str(tmp_path / "list.csv"), "input_format": "json"}, "en", tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_url_list({"path": str(tmp_path / "nope.tsv")}, "en", tmp_path)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://example.com/a.jpg", None),
        ("HTTPS://Example.com:8443/a.jpg?x=1", None),
        ("http://example.onion/a.jpg", ".onion"),
        ("http://sub.example.ONION./a.jpg", ".onion"),
        ("ftp://example.com/a.jpg", "scheme 'ftp'"),
        ("data:image/png;base64,AAAA", "scheme 'data'"),
        ("javascript:alert(1)", "scheme 'javascript'"),
        ("file:///tmp/a.png", "file:// URLs are not allowed"),
        ("//example.com/a.jpg", "no scheme"),
        ("example.com/a.jpg", "no scheme"),
        ("http:///a.jpg", "no host"),
        ("http://example.com:99999/a.jpg", "malformed URL"),
        ("http://[::1/a.jpg", "malformed URL"),
        ("http://example.com/a b.jpg", "whitespace"),
        ("http://example.com/a\tb.jpg", "whitespace"),
        ("http://example.com/a\x00b.jpg", "control character"),
        ("http://example.com/" + "a" * MAX_URL_LENGTH, "characters long"),
        ("", "empty URL"),
    ],
)
def test_refusal_reason(url, why):
    reason = refusal_reason(url)
    if why is None:
        assert reason is None
    else:
        assert reason is not None and why in reason


def test_file_urls_only_when_allowed():
    assert refusal_reason("file:///tmp/a.png", allow_file_urls=True) is None
    assert "remote host" in refusal_reason("file://server/a.png", allow_file_urls=True)
    assert "scheme 'ftp'" in refusal_reason("ftp://x/a.png", allow_file_urls=True)


def test_fetchable_url_encodes_only_non_ascii():
    assert fetchable_url("http://x.com/a%20b.png?q=1") == "http://x.com/a%20b.png?q=1"
    assert fetchable_url("http://x.com/猫.png?q=猫") == "http://x.com/%E7%8C%AB.png?q=%E7%8C%AB"
    assert fetchable_url("http://例子.cn/a.png") == "http://xn--fsqu00a.cn/a.png"


def test_not_an_image():
    assert not_an_image(image_bytes("PNG", (4, 4), 0)) is None
    assert not_an_image(bytes(range(256)) * 4) is None  # binary junk: the cleaner's call
    assert "empty" in not_an_image(b"")
    assert "text" in not_an_image(b"<!DOCTYPE html><html>Not found</html>")
    assert "text" in not_an_image("页面不存在".encode() * 200)  # cut mid-character at 512 bytes


def test_rows_img2dataset_dropped_still_come_back(tmp_path):
    """Join by key: a URL missing from img2dataset's output (or a missing shard) is failed."""
    out = tmp_path / "out"
    out.mkdir()
    fetch = [("k0", "http://x/0", "c0"), ("k1", "http://x/1", "c1"), ("k2", "http://x/2", "c2")]
    png = image_bytes("PNG", (4, 4), 0)
    pq.write_table(  # shard 0 holds k1 only (k0 dropped); shard 1 (k2) is missing
        pa.table(
            {
                "vlcore_key": ["k1"],
                "status": ["success"],
                "error_message": [None],
                "jpg": pa.array([png], pa.binary()),
            }
        ),
        out / "00000.parquet",
    )
    refused = {"key": "r", "error": "refused_url"}
    rows = list(_rows_in_order([0, refused, 1, 2], fetch, out, shard_rows=2))
    assert [r["key"] for r in rows] == ["k0", "r", "k1", "k2"]
    assert [r["error"] for r in rows] == ["failed_to_download", "refused_url", None,
                                          "failed_to_download"]  # fmt: skip
    assert "no result" in rows[0]["error_detail"] and rows[2]["image"] == png
