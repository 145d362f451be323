"""personality ingester: one row per image hash, styled captions, image lookup, bad entries."""

from __future__ import annotations

import io
import json
import logging

import pytest
from PIL import Image

from vlcore.ingest.personality import read_personality


def image_bytes(fmt: str, color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buf, format=fmt)
    return buf.getvalue()


def setup(tmp_path, entries) -> dict:
    (tmp_path / "images").mkdir()
    path = tmp_path / "personality_captions.json"
    path.write_text(json.dumps(entries))
    return {"json": str(path), "images_dir": str(tmp_path / "images")}


def test_entries_group_by_hash_into_styled_captions(tmp_path, caplog):
    cfg = setup(
        tmp_path,
        [
            {"image_hash": "aa11", "personality": "Happy", "comment": "What a day!"},
            {"image_hash": "bb22", "personality": "Gloomy", "comment": "Grey again."},
            {
                "image_hash": "aa11",
                "personality": "Sarcastic",
                "comment": "Oh great, a square.",
                "additional_comments": ["Wow. Red.", "Thrilling."],
            },
            {"image_hash": "cc33", "personality": "Calm", "comment": "No file for me."},
            {"image_hash": "dd44", "comment": "no personality"},  # skipped
            {"image_hash": "../evil", "personality": "Calm", "comment": "path"},  # skipped
            "not an object",  # skipped
        ],
    )
    jpg, png = image_bytes("JPEG"), image_bytes("PNG", (0, 0, 255))
    (tmp_path / "images" / "aa11.jpg").write_bytes(jpg)
    (tmp_path / "images" / "bb22.png").write_bytes(png)
    with caplog.at_level(logging.WARNING):
        rows = {r["key"]: r for r in read_personality(cfg, "en", tmp_path)}
    assert list(rows) == ["pc:aa11", "pc:bb22", "pc:cc33"]
    a = rows["pc:aa11"]
    assert a["image"] == jpg and a["captions"] == [] and a["source"] == "personality"
    assert a["styled_captions"] == [
        {"style": "Happy", "caption": "What a day!"},
        {"style": "Sarcastic", "caption": "Oh great, a square."},
        {"style": "Sarcastic", "caption": "Wow. Red."},
        {"style": "Sarcastic", "caption": "Thrilling."},
    ]
    assert rows["pc:bb22"]["image"] == png
    missing = rows["pc:cc33"]
    assert missing["error"] == "missing_image" and missing["image"] is None
    assert missing["styled_captions"] == [{"style": "Calm", "caption": "No file for me."}]
    assert "without a personality" in caplog.text and "valid image_hash" in caplog.text


def test_not_a_list_or_not_json_is_a_clear_error(tmp_path):
    cfg = setup(tmp_path, {"data": []})
    with pytest.raises(ValueError, match=r"personality_captions\.json.*JSON list"):
        list(read_personality(cfg, "en", tmp_path))
    (tmp_path / "personality_captions.json").write_text("[{")
    with pytest.raises(ValueError, match=r"personality_captions\.json.*not valid JSON"):
        list(read_personality(cfg, "en", tmp_path))


def test_missing_images_dir_names_the_key(tmp_path):
    cfg = setup(tmp_path, [])
    with pytest.raises(FileNotFoundError, match=r"source\.personality\.images_dir"):
        list(read_personality({**cfg, "images_dir": str(tmp_path / "x")}, "en", tmp_path))
