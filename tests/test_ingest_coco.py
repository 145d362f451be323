"""coco ingester: captions, Karpathy split hints, VQAv2 questions, image lookup, bad files."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from vlcore.ingest.coco import read_coco


def png(color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(color=(20, 30, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buf, format="JPEG")
    return buf.getvalue()


def write_json(path: Path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def vqa_ann(qid: int, image_id: int, answer: str) -> dict:
    return {
        "question_id": qid,
        "image_id": image_id,
        "question_type": "what color",
        "answer_type": "other",
        "multiple_choice_answer": answer,
        "answers": [
            {"answer": answer, "answer_confidence": "yes", "answer_id": i + 1} for i in range(10)
        ],
    }


@pytest.fixture
def coco(tmp_path):
    """Images 1, 2 (files), 3 (no file) in captions.json; 4 only in VQA, in a subfolder."""
    images = tmp_path / "images"
    (images / "val2014").mkdir(parents=True)
    img = {1: png(), 2: jpeg(), 4: png((0, 255, 0))}
    (images / "COCO_val2014_000000000001.png").write_bytes(img[1])
    (images / "COCO_val2014_000000000002.jpg").write_bytes(img[2])
    (images / "val2014" / "COCO_val2014_000000000004.png").write_bytes(img[4])
    captions = {
        "images": [
            {"id": 1, "file_name": "COCO_val2014_000000000001.png", "width": 20, "height": 20},
            {"id": 2, "file_name": "COCO_val2014_000000000002.jpg", "coco_url": "http://x/2.jpg"},
            {"id": 3, "file_name": "COCO_val2014_000000000003.jpg"},
            {"file_name": "no id.jpg"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": "a red square"},
            {"id": 11, "image_id": 2, "caption": "a blue square"},
            {"id": 12, "image_id": 1, "caption": "red, on black"},
            {"id": 13, "image_id": 3, "caption": "lost image"},
            {"id": 14, "image_id": 2},  # no caption: skipped
            {"id": 15, "image_id": 99, "caption": "unknown image"},  # skipped
        ],
    }
    karpathy = {
        "images": [
            {
                "cocoid": 1,
                "split": "restval",
                "filepath": "val2014",
                "filename": "x",
                "sentences": [],
            },
            {"cocoid": 2, "split": "test", "sentences": []},
            {"cocoid": 4, "split": "val", "sentences": []},
        ]
    }
    questions = {
        "questions": [
            {"image_id": 1, "question": "What color is the square?", "question_id": 100},
            {"image_id": 4, "question": "What shape?", "question_id": 400},
            {"image_id": 4, "question": "No answers for me?", "question_id": 401},
        ]
    }
    annotations = {"annotations": [vqa_ann(100, 1, "red"), vqa_ann(400, 4, "circle")]}
    cfg = {
        "images_dir": str(images),
        "captions_json": write_json(tmp_path / "captions.json", captions),
        "karpathy_json": write_json(tmp_path / "dataset_coco.json", karpathy),
        "questions_json": write_json(tmp_path / "questions.json", questions),
        "annotations_json": write_json(tmp_path / "annotations.json", annotations),
    }
    return cfg, img


def rows_by_key(cfg, tmp_path) -> dict[str, dict]:
    rows = list(read_coco(cfg, "en", tmp_path))
    assert len({r["key"] for r in rows}) == len(rows)
    return {r["key"]: r for r in rows}


def test_captions_karpathy_and_vqa_land_on_image_rows(coco, tmp_path, caplog):
    cfg, img = coco
    with caplog.at_level(logging.WARNING):
        rows = rows_by_key(cfg, tmp_path)
    assert list(rows) == ["coco:1", "coco:2", "coco:3", "coco:4"]
    r1, r2, r3, r4 = rows.values()
    assert r1["image"] == img[1] and r1["image_id"] == 1 and r1["source"] == "coco"
    assert r1["captions"] == ["a red square", "red, on black"]
    assert r1["split_hint"] == "train"  # restval
    assert r1["questions"] == [
        {
            "question_id": 100,
            "question": "What color is the square?",
            "question_type": "what color",
            "answer_type": "other",
            "answers": ["red"] * 10,
            "multiple_choice_answer": "red",
        }
    ]
    assert r2["image"] == img[2] and r2["split_hint"] == "test" and r2["url"] == "http://x/2.jpg"
    assert r2["captions"] == ["a blue square"] and r2["questions"] == []
    assert r3["error"] == "missing_image" and r3["image"] is None
    assert r3["captions"] == ["lost image"] and "000000000003" in r3["error_detail"]
    # VQA-only image: found by id in a subfolder; its unanswered question is skipped.
    assert r4["image"] == img[4] and r4["captions"] == [] and r4["split_hint"] == "val"
    assert [q["question_id"] for q in r4["questions"]] == [400]
    text = caplog.text
    assert "question without an annotation" in text
    assert "annotation without a valid image_id and caption" in text
    assert "image_id not in its images list" in text


def test_vqa_only(coco, tmp_path):
    cfg, img = coco
    cfg = {**cfg, "captions_json": None, "karpathy_json": None}
    rows = rows_by_key(cfg, tmp_path)
    assert list(rows) == ["coco:1", "coco:4"]
    assert rows["coco:1"]["image"] == img[1] and rows["coco:1"]["captions"] == []
    assert rows["coco:4"]["image"] == img[4] and rows["coco:1"]["split_hint"] is None


def test_karpathy_sentences_are_captions_without_captions_json(tmp_path):
    (tmp_path / "val2014").mkdir()
    data = png()
    (tmp_path / "val2014" / "COCO_val2014_000000000007.jpg").write_bytes(data)
    karpathy = {
        "images": [
            {
                "filepath": "val2014",
                "filename": "COCO_val2014_000000000007.jpg",
                "imgid": 0,
                "cocoid": 7,
                "split": "val",
                "sentences": [{"raw": "A cat.", "tokens": ["a", "cat"]}, {"raw": "A pet."}],
            }
        ]
    }
    cfg = {"images_dir": str(tmp_path), "karpathy_json": write_json(tmp_path / "k.json", karpathy)}
    (row,) = read_coco(cfg, "en", tmp_path)
    assert row["key"] == "coco:7" and row["image"] == data
    assert row["captions"] == ["A cat.", "A pet."] and row["split_hint"] == "val"


def test_malformed_json_names_the_file(coco, tmp_path):
    cfg, _ = coco
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [{"id": 1, ')
    with pytest.raises(ValueError, match=r"captions_json.*broken\.json.*not valid JSON"):
        list(read_coco({**cfg, "captions_json": str(bad)}, "en", tmp_path))
    bad.write_bytes(b'{"images": "\xff"}')
    with pytest.raises(ValueError, match=r"broken\.json.*not UTF-8"):
        list(read_coco({**cfg, "captions_json": str(bad)}, "en", tmp_path))


def test_wrong_kind_of_json_file_is_a_clear_error(coco, tmp_path):
    cfg, _ = coco
    with pytest.raises(ValueError, match=r"annotations\.json.*no list 'images'"):
        list(read_coco({**cfg, "captions_json": cfg["annotations_json"]}, "en", tmp_path))


def test_questions_need_annotations(coco, tmp_path):
    cfg, _ = coco
    with pytest.raises(ValueError, match="go together"):
        list(read_coco({**cfg, "annotations_json": None}, "en", tmp_path))


def test_nothing_to_read(tmp_path):
    with pytest.raises(ValueError, match="nothing to read"):
        list(read_coco({"images_dir": str(tmp_path)}, "en", tmp_path))


def test_missing_inputs_name_the_key(coco, tmp_path):
    cfg, _ = coco
    with pytest.raises(FileNotFoundError, match=r"source\.coco\.images_dir.*nowhere"):
        list(read_coco({**cfg, "images_dir": str(tmp_path / "nowhere")}, "en", tmp_path))
    with pytest.raises(FileNotFoundError, match=r"source\.coco\.karpathy_json.*gone\.json"):
        list(read_coco({**cfg, "karpathy_json": str(tmp_path / "gone.json")}, "en", tmp_path))
