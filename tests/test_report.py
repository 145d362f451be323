"""The report's figures and tables from small hand-made inputs (no Snakemake, no browser)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.clip_fixtures import make_shards
from vlcore.data.shard import read_split
from vlcore.io import write_json
from vlcore.report.cleaning import cleaning_bars, plot_cleaning
from vlcore.report.compare import compare_experiments
from vlcore.report.html import image_data_uri
from vlcore.report.samples import caption_grid, vqa_grid
from vlcore.report.tables import fmt, render_table

CLEAN_REPORT = {
    "rows_in": 100,
    "rows_kept": 90,
    "dropped": {"corrupt_image": 4, "too_small": 0, "off_domain": 6},
    "captions_dropped": {"empty_caption": 3, "off_domain": 0},
}


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return make_shards(tmp_path_factory.mktemp("report"), 40, split={"val": 0.1, "test": 0.3})


def caption_row(value: float) -> dict:
    return {"BLEU-4": value / 4, "CIDEr": value, "SPICE": {"available": False, "reason": "offline"}}


def tables(tmp: Path, names: list[str]) -> dict[str, Path]:
    """Top-level tables shaped like the workflow's, with an experiment ``a`` of every kind and
    an experiment ``b`` without clip_prefix and without VQA."""
    cider = {
        name: {
            "lang": "en", "split": "test", "n_images": 10, "tokenization": "ptb",
            "rows": {
                "vit_gpt2": caption_row(0.5), "human": caption_row(2.0),
                "nearest_neighbour": caption_row(0.7), "most_frequent": caption_row(0.3),
                **({"clip_prefix": caption_row(0.6)} if name == "a" else {}),
            },
        }
        for name in names
    }  # fmt: skip
    recall = {"R@1": 20.0, "R@5": 50.0, "R@10": 70.0, "mean_rank": 6.0}
    chance = {"R@1": 10.0, "R@5": 50.0, "R@10": 100.0, "mean_rank": 5.5}
    retrieval = {
        name: {"image_to_text": recall, "text_to_image": recall, "ks": [1, 5, 10],
               "chance": {"image_to_text": chance, "text_to_image": chance},
               "n_images": 10, "n_texts": 50, "model": {"name": "tiny"}}
        for name in names
    }  # fmt: skip
    block = {"overall": 40.0, "per_answer_type": {"yes/no": 60.0}, "per_question_type": {"is the": 60.0}}  # fmt: skip
    vqa = {"a": {"captioner": "clip_prefix", "model": block, "prior": block, "n_questions": 30,
                 "split": "test"}}  # fmt: skip
    t2i = {
        name: {"prompts": 3, "clip_score": {"random": 0.1, "top1": 0.2},
               "attribute_accuracy": {"random": 20.0, "real": 90.0, "unit": "percent"}}
        for name in names
    }  # fmt: skip
    other = {name: {"n": 1, "block": {"x": 0.5, "note": "text"}} for name in names}
    paths = {}
    tables = (("cider", cider), ("retrieval", retrieval), ("vqa", vqa), ("t2i", t2i), ("other", other))  # fmt: skip
    for table_name, content in tables:
        paths[table_name] = tmp / f"{table_name}.json"
        write_json({"experiments": content}, paths[table_name])
    return paths


def test_cleaning_bars_keep_order_and_leave_zeros_out():
    rows, captions = cleaning_bars(CLEAN_REPORT)
    assert rows == [("kept", 90), ("dropped: corrupt_image", 4), ("dropped: off_domain", 6)]
    assert captions == [("empty_caption", 3)]
    with pytest.raises(ValueError, match="'rows_kept' is missing"):
        cleaning_bars({"rows_in": 3, "dropped": {}})


def test_plot_cleaning_writes_a_png(tmp_path: Path):
    write_json(CLEAN_REPORT, tmp_path / "clean_report.json")
    plot_cleaning(tmp_path / "clean_report.json", tmp_path / "cleaning.png", "exp")
    with Image.open(tmp_path / "cleaning.png") as img:
        assert img.format == "PNG" and img.width > 300 and len(img.getcolors(1 << 20)) > 20


def test_image_data_uri_names_the_type():
    assert image_data_uri(b"\x89PNG\r\n\x1a\n...").startswith("data:image/png;base64,")
    assert image_data_uri(b"\xff\xd8\xff\xe0...").startswith("data:image/jpeg;base64,")
    with pytest.raises(ValueError, match="neither PNG"):
        image_data_uri(b"GIF89a")


def test_caption_grid_shows_images_captions_and_references(shards: Path, tmp_path: Path):
    rows = sorted(read_split(shards, "test"), key=lambda r: r["image_id"])
    results = [{"image_id": r["image_id"], "caption": f"a <b>caption</b> {i}"} for i, r in enumerate(rows)]  # fmt: skip
    (tmp_path / "vit_gpt2.json").write_text(json.dumps(results))
    (tmp_path / "clip_prefix.json").write_text(json.dumps([{"image_id": rows[0]["image_id"], "caption": ""}]))  # fmt: skip
    shown = caption_grid(
        shards, "test",
        {"vit_gpt2": tmp_path / "vit_gpt2.json", "clip_prefix": tmp_path / "clip_prefix.json"},
        tmp_path / "grid.html", "Captions", n=3,
    )  # fmt: skip
    page = (tmp_path / "grid.html").read_text()
    assert shown == 3 and page.count("<img ") == 3
    assert "a &lt;b&gt;caption&lt;/b&gt; 0" in page  # generated text is escaped
    assert page.count("(empty)") == 3  # clip_prefix: one empty caption, two missing
    for row in rows[:3]:
        assert all(ref.replace("'", "&#x27;") in page for ref in row["captions"])
    assert rows[3]["captions"][0] not in page


def test_vqa_grid_colours_answers_by_accuracy(shards: Path, tmp_path: Path):
    rows = sorted(read_split(shards, "test", columns=("image_id", "questions")), key=lambda r: r["image_id"])  # fmt: skip
    first = rows[0]["questions"][0]
    answers = [{"question_id": first["question_id"], "answer": first["multiple_choice_answer"]}]
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    scores = {"captioner": "vit_gpt2", "per_question": {str(first["question_id"]): 100.0}}
    write_json(scores, tmp_path / "vqa.json")
    shown = vqa_grid(shards, "test", tmp_path / "answers.json", tmp_path / "vqa.json",
                     tmp_path / "vqa.html", "VQA", n=2, questions_per_image=2)  # fmt: skip
    page = (tmp_path / "vqa.html").read_text()
    assert shown == 4 and page.count("<img ") == 2
    assert page.count('class="right"') == 1 and "not answered" in page
    assert "×" in page  # human answers are counted
    assert page.count(">vit_gpt2<") == 4 and ">model<" not in page  # who answered


def test_fmt():
    assert fmt(3) == "3" and fmt(0.12345) == "0.123" and fmt(45.67) == "45.7"
    assert fmt(45.67, 2) == "45.67" and "–" in fmt(None) and "–" in fmt(float("nan"))


def test_every_table_renders_with_reference_rows(tmp_path: Path):
    paths = tables(tmp_path, ["a", "b"])
    for name, path in paths.items():
        render_table(name, path, tmp_path / f"{name}.html")
    cider = (tmp_path / "cider.html").read_text()
    assert cider.count('class="reference"') == 6 and "n/a" in cider  # 3 reference rows x 2
    assert cider.index(">vit_gpt2<") < cider.index(">human<")  # models first
    assert (tmp_path / "retrieval.html").read_text().count('class="reference"') == 2
    vqa = (tmp_path / "vqa.html").read_text()
    assert "question-type prior" in vqa
    assert vqa.count(">clip_prefix<") == 2  # the answering captioner's row, in both tables
    unnamed = json.loads(paths["vqa"].read_text())  # scores from before the name was kept
    del unnamed["experiments"]["a"]["captioner"]
    write_json(unnamed, tmp_path / "unnamed.json")
    render_table("vqa", tmp_path / "unnamed.json", tmp_path / "unnamed.html")
    assert (tmp_path / "unnamed.html").read_text().count(">model<") == 2
    t2i = (tmp_path / "t2i.html").read_text()  # the generic layout: every block of numbers
    assert "clip_score" in t2i and "attribute_accuracy" in t2i and "percent" not in t2i
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ValueError, match="no 'experiments' key"):
        render_table("bad", tmp_path / "bad.json", tmp_path / "bad.html")


def test_compare_puts_experiments_side_by_side(shards: Path, tmp_path: Path):
    paths = tables(tmp_path, ["a", "b"])
    report = shards.parent / "clean_report.json"
    data = {e: {"clean_report": report, "manifest": shards / "manifest.json"} for e in "ab"}
    result = compare_experiments(["a", "b"], paths, data, tmp_path / "compare.md",
                                 tmp_path / "compare.json", {"a": "first", "b": "second"})  # fmt: skip
    assert json.loads((tmp_path / "compare.json").read_text()) == result
    names = [s["name"] for s in result["sections"]]
    assert [n.split()[0] for n in names] == ["data", "captioning", "retrieval", "VQA", "text", "text", "text", "other"]  # fmt: skip
    rows = {r["metric"]: r for s in result["sections"] for r in s["rows"]}
    assert rows["CIDEr clip_prefix"]["values"] == {"a": 0.6, "b": None}
    assert rows["CIDEr human"]["reference"] and not rows["CIDEr vit_gpt2"]["reference"]
    assert rows["accuracy clip_prefix"]["values"] == {"a": 40.0, "b": None}
    assert rows["top-1 reranked"]["values"] == {"a": 0.2, "b": 0.2}  # CLIP score
    assert rows["real images"]["reference"] and rows["real images"]["values"]["a"] == 90.0
    assert rows["prompts"]["values"] == {"a": 3, "b": 3}
    assert rows["block.x"]["values"] == {"a": 0.5, "b": 0.5} and "block.note" not in rows
    assert rows["rows in"]["values"] == {"a": 40, "b": 40}
    md = (tmp_path / "compare.md").read_text()
    assert "| | a | b |" in md and "| description | first | second |" in md
    assert re.search(r"^\| CIDEr clip_prefix \| 0\.600 \|  \|$", md, re.MULTILINE)
    assert re.search(r"^\| \*CIDEr human\* \| 2\.000 \| 2\.000 \|$", md, re.MULTILINE)
    render_table("compare", tmp_path / "compare.json", tmp_path / "compare.html")
    assert "second" in (tmp_path / "compare.html").read_text()
    with pytest.raises(ValueError, match="no clean report"):
        compare_experiments(["a", "c"], paths, data, tmp_path / "x.md", tmp_path / "x.json")
