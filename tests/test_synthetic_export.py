"""Exports of the shapes world parse back in each external format, bytes intact."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from vlcore.synthetic import STYLES, export_dataset, generate, image_hash, source_config
from vlcore.synthetic.__main__ import main

N = 24


@pytest.fixture(scope="module")
def samples():
    return generate(N, seed=2, dirty_rate=0.5)


def file_uri_path(url: str) -> Path:
    assert url.startswith("file://"), url
    return Path(url2pathname(urlparse(url).path))


def test_cc3m_tsv(tmp_path, samples):
    paths = export_dataset(samples, "cc3m_tsv", tmp_path)
    lines = paths["path"].read_text(encoding="utf-8").splitlines()
    assert paths["path"].name == "cc3m.tsv" and len(lines) == N  # no header
    for s, line in zip(samples, lines, strict=True):
        caption, url = line.split("\t")
        assert caption == s.captions_en[0]
        assert file_uri_path(url).read_bytes() == s.image
    assert (paths["images_dir"] / f"{samples[0].key}.png").is_file()
    cfg = source_config("cc3m_tsv", paths)
    assert cfg["format"] == "url_list" and cfg["url_list"]["header"] is False
    assert cfg["url_list"]["allow_file_urls"] is True


def test_wukong_csv_with_base_url(tmp_path, samples):
    paths = export_dataset(samples, "wukong_csv", tmp_path, lang="zh", base_url="http://host:8000/")
    with paths["path"].open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["url", "caption"]
        rows = list(reader)
    assert len(rows) == N
    for s, row in zip(samples, rows, strict=True):
        assert row == {"url": f"http://host:8000/images/{s.key}.png", "caption": s.captions_zh[0]}
        assert (paths["images_dir"] / f"{s.key}.png").read_bytes() == s.image


def test_base64_tsv(tmp_path, samples):
    paths = export_dataset(samples, "base64_tsv", tmp_path)
    lines = paths["path"].read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""  # newline-terminated
    rows = [line.split("\t") for line in lines[:-1]]
    assert len(rows) == sum(len(s.captions_en) for s in samples)
    by_key = {s.key: s for s in samples}
    for idx, b64, caption in rows:
        assert base64.b64decode(b64) == by_key[idx].image
        assert caption in by_key[idx].captions_en


def test_coco(tmp_path, samples):
    paths = export_dataset(samples, "coco", tmp_path)
    captions = json.loads(paths["captions_json"].read_text(encoding="utf-8"))
    assert len(captions["images"]) == N
    for s, img in zip(samples, captions["images"], strict=True):
        assert img["id"] == s.image_id and img["file_name"] == f"COCO_synth_{s.image_id:012d}.png"
        assert (paths["images_dir"] / img["file_name"]).read_bytes() == s.image
    assert len(captions["annotations"]) == sum(len(s.captions_en) for s in samples)
    assert len({a["id"] for a in captions["annotations"]}) == len(captions["annotations"])

    karpathy = json.loads(paths["karpathy_json"].read_text(encoding="utf-8"))
    assert {i["split"] for i in karpathy["images"]} <= {"train", "val", "test"}
    for s, item in zip(samples, karpathy["images"], strict=True):
        assert item["cocoid"] == s.image_id and item["filepath"] == "images"
        assert [x["raw"] for x in item["sentences"]] == s.captions_en
        assert all(isinstance(x["tokens"], list) for x in item["sentences"])

    questions = json.loads(paths["questions_json"].read_text(encoding="utf-8"))["questions"]
    annotations = json.loads(paths["annotations_json"].read_text(encoding="utf-8"))["annotations"]
    n_questions = sum(len(s.questions) for s in samples)
    assert len(questions) == len(annotations) == n_questions
    assert [q["question_id"] for q in questions] == [a["question_id"] for a in annotations]
    for a in annotations:
        assert [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
        assert {x["answer_confidence"] for x in a["answers"]} <= {"yes", "maybe"}
        assert set(a) == {
            "question_type",
            "multiple_choice_answer",
            "answers",
            "image_id",
            "answer_type",
            "question_id",
        }


def test_personality(tmp_path, samples):
    paths = export_dataset(samples, "personality", tmp_path)
    entries = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert isinstance(entries, list)
    assert len(entries) == sum(len(s.styled_captions) for s in samples)
    assert {e["personality"] for e in entries} == set(STYLES)
    for s in samples:
        assert len(image_hash(s.key)) == 32
        assert (paths["images_dir"] / f"{image_hash(s.key)}.png").read_bytes() == s.image


def test_image_folder(tmp_path, samples):
    paths = export_dataset(samples, "image_folder", tmp_path, lang="zh")
    lines = paths["captions_file"].read_text(encoding="utf-8").splitlines()
    assert lines[0] == "file\tcaption"
    assert len(lines) - 1 == sum(len(s.captions_zh) for s in samples)
    by_file = {f"images/{s.key}.png": s for s in samples}
    for line in lines[1:]:
        file, caption = line.split("\t")
        assert (paths["captions_file"].parent / file).read_bytes() == by_file[file].image
        assert caption in by_file[file].captions_zh


def test_bad_format_and_lang(tmp_path, samples):
    with pytest.raises(ValueError, match="format"):
        export_dataset(samples, "parquet", tmp_path)
    with pytest.raises(ValueError, match="lang"):
        export_dataset(samples, "coco", tmp_path, lang="de")


def test_cli_export_and_preview(tmp_path, capsys):
    out = tmp_path / "coco"
    assert main(["export", "--format", "coco", "--n", "6", "--seed", "0", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["source"]["format"] == "coco"
    assert Path(printed["paths"]["captions_json"]).is_file()
    assert len(list((out / "images").iterdir())) == 6
    grid = tmp_path / "grid.png"
    assert main(["preview", "--n", "4", "--out", str(grid)]) == 0 and grid.is_file()
    assert main(["export", "--format", "coco", "--n", "-3", "--out", str(out)]) == 2
    with pytest.raises(SystemExit):
        main(["export", "--format", "nope", "--out", str(out)])
