"""image_folder ingester: csv / tsv / jsonl captions, merging, lookup order, bad lines."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from vlcore.ingest.image_folder import read_image_folder


def png(color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
    """``data/imgs/a.png`` next to the captions file, ``b.png`` only in a separate images_dir."""
    (tmp_path / "data" / "imgs").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    a, b = png(), png((0, 0, 255))
    (tmp_path / "data" / "imgs" / "a.png").write_bytes(a)
    (tmp_path / "other" / "b.png").write_bytes(b)
    return tmp_path, a, b


def ingest(tmp_path, name: str, content: bytes) -> dict[str, dict]:
    path = tmp_path / "data" / name
    path.write_bytes(content)
    cfg = {"captions_file": str(path), "images_dir": str(tmp_path / "other")}
    rows = list(read_image_folder(cfg, "en", tmp_path))
    assert len({r["key"] for r in rows}) == len(rows)
    return {r["key"]: r for r in rows}


def test_csv_merges_lines_and_finds_images_in_both_places(folder):
    tmp_path, a, b = folder
    content = (
        b'caption,file\n"a red square, small",imgs/a.png\nsecond one,./imgs/a.png\n'
        b'"multi\nline",b.png\nghost,c.png\n'
    )
    rows = ingest(tmp_path, "captions.csv", content)
    assert list(rows) == ["folder:imgs/a.png", "folder:b.png", "folder:c.png"]
    assert rows["folder:imgs/a.png"]["image"] == a
    assert rows["folder:imgs/a.png"]["captions"] == ["a red square, small", "second one"]
    assert rows["folder:b.png"]["image"] == b and rows["folder:b.png"]["captions"] == [
        "multi\nline"
    ]
    ghost = rows["folder:c.png"]
    assert ghost["error"] == "missing_image" and ghost["captions"] == ["ghost"]
    assert ghost["source"] == "image_folder"


def test_tsv_is_plain_text_with_bad_lines_as_error_rows(folder):
    tmp_path, a, b = folder
    content = b"".join(
        [
            b"\xef\xbb\xbffile\tcaption\r\n",
            b'imgs/a.png\t"quoted" words stay\r\n',
            b"imgs/a.png\tcaf\xe9\n",  # line 3: not UTF-8
            b"b.png\ttoo\tmany\n",  # line 4: wrong field count
            b"\tno file\n",  # line 5: empty file
            b"b.png\t\n",  # an empty caption is the cleaner's business
        ]
    )
    rows = ingest(tmp_path, "captions.tsv", content)
    assert {k: r["error"] for k, r in rows.items()} == {
        "folder:imgs/a.png": None,
        "folder:b.png": None,
        "folder:@line3": "bad_encoding",
        "folder:@line4": "malformed_row",
        "folder:@line5": "malformed_row",
    }
    assert rows["folder:imgs/a.png"]["captions"] == ['"quoted" words stay']
    assert rows["folder:b.png"]["captions"] == [""]


def test_jsonl(folder):
    tmp_path, a, b = folder
    lines = [
        json.dumps({"file": "imgs/a.png", "caption": "one"}),
        json.dumps({"file": "imgs/a.png", "caption": ["two", "three"]}),
        "{not json",
        json.dumps({"file": "b.png"}),
        json.dumps({"file": "b.png", "caption": 5}),
    ]
    rows = ingest(tmp_path, "captions.jsonl", "\n".join(lines).encode())
    assert rows["folder:imgs/a.png"]["captions"] == ["one", "two", "three"]
    assert rows["folder:@line3"]["error"] == "malformed_row"
    # b.png has only bad lines: the first takes its key, the next its line number.
    assert rows["folder:b.png"]["error"] == "malformed_row"
    assert rows["folder:b.png@line5"]["error"] == "malformed_row"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("captions.csv", b"filename,caption\na.png,x\n"),
        ("captions.tsv", b"file\ttext\na.png\tx\n"),
        ("captions.jsonl", b'{"image": "a.png", "caption": "x"}\n'),
    ],
)
def test_missing_column_names_column_file_and_columns_found(folder, name, content):
    tmp_path, _, _ = folder
    with pytest.raises(ValueError) as err:
        ingest(tmp_path, name, content)
    message = str(err.value)
    assert "column" in message and name in message
    assert ("'file'" in message or "'caption'" in message) and "columns found" in message


def test_unknown_extension(folder):
    tmp_path, _, _ = folder
    with pytest.raises(ValueError, match=r"\.csv, \.tsv, \.jsonl"):
        ingest(tmp_path, "captions.txt", b"file,caption\n")


def test_missing_captions_file_names_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"source\.image_folder\.captions_file.*nope"):
        list(read_image_folder({"captions_file": str(tmp_path / "nope.csv")}, "en", tmp_path))
