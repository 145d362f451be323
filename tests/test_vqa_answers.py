"""bench/vqa_answers.py: which answers a VQA model gives, per question type."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_bench
from tests.test_captioner import data  # noqa: F401 (that module's fixture)
from vlcore.data.shard import read_split
from vlcore.pipeline.evaluate import split_questions
from vlcore.synthetic.lexicon import POSITIONS
from vlcore.synthetic.truth import scene_truth


@pytest.fixture(scope="module")
def bench():
    return load_bench("vqa_answers")


@pytest.fixture(scope="module")
def questions(data):  # noqa: F811
    return split_questions(str(data["shards"]), "test")


def test_right_answers_fill_the_diagonal_and_a_wrong_one_is_counted(bench, questions):
    kind = questions[0]["question_type"]
    of_kind = [q for q in questions if q["question_type"] == kind]
    answers = {int(q["question_id"]): q["multiple_choice_answer"] for q in questions}
    table = bench.answer_table(answers, questions, kind)
    assert sum(n for given in table.values() for n in given.values()) == len(of_kind)
    assert all(set(given) == {truth} for truth, given in table.items())

    first = of_kind[0]
    answers[int(first["question_id"])] = "Purple."  # normalised to "purple"
    table = bench.answer_table(answers, questions, kind)
    truth = bench.normalize_answer(first["multiple_choice_answer"])
    assert table[truth]["purple"] == 1


def test_a_missing_answer_is_named(bench, questions):
    with pytest.raises(ValueError, match="no answer for question_id"):
        bench.answer_table({}, questions, questions[0]["question_type"])


def test_command_line_prints_each_type(bench, data, questions, tmp_path, capsys):  # noqa: F811
    answers = [{"question_id": q["question_id"], "answer": "1"} for q in questions]
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(answers))
    assert bench.main([str(path), "--shards", str(data["shards"]), "--type", "how many"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [str(path), " how many"]
    assert all("'1' " in line for line in lines[2:]) and len(lines) > 2
    with pytest.raises(SystemExit):
        bench.main([str(path), "--shards", str(data["shards"]), "--type", "why"])


@pytest.fixture(scope="module")
def where(data):  # noqa: F811
    """The test split's rows and their scenes (the fixture's data: seed 0, no dirty rows)."""
    rows = read_split(data["shards"], "test", columns=("image_id", "captions", "questions"))
    scenes = scene_truth({"seed": 0, "dirty_rate": 0.0}, [r["image_id"] for r in rows])
    return rows, scenes


def test_where_answers_are_right_another_objects_cell_or_an_empty_one(bench, where):
    rows, scenes = where
    answers = {int(q["question_id"]): q["multiple_choice_answer"]
               for r in rows for q in r["questions"]}  # fmt: skip
    table = bench.where_verdicts(answers, rows, scenes)
    assert all(set(verdicts) == {"right"} for verdicts in table.values())
    assert sum(sum(v.values()) for v in table.values()) == sum(
        q["question_type"] == "where is the" for r in rows for q in r["questions"]
    )

    row, scene = next((r, s) for r, s in zip(rows, scenes, strict=True) if len(s) >= 2)
    question = next(q for q in row["questions"] if q["question_type"] == "where is the")
    cells = [POSITIONS[tuple(o["cell"])] for o in scene]
    other = next(c for c in cells if c != question["multiple_choice_answer"])
    empty = next(c for c in POSITIONS.values() if c not in cells)
    for given, verdict in (
        (other.upper() + ".", "another object's cell"),
        (empty, "an empty cell"),
    ):
        answers[int(question["question_id"])] = given
        table = bench.where_verdicts(answers, rows, scenes)
        assert table[len(scene)][verdict] == 1


def test_command_line_where_needs_the_experiments_truth(bench, data, where, tmp_path, capsys):  # noqa: F811
    rows, _ = where
    answers = [{"question_id": q["question_id"], "answer": q["multiple_choice_answer"]}
               for r in rows for q in r["questions"]]  # fmt: skip
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(answers))
    shards = str(data["shards"])
    assert bench.main([str(path), "--shards", shards, "--type", "how many", "--where",
                       "--dirty-rate", "0"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert " where is the, by objects in the image" in out
    assert ", another object's cell 0, an empty cell 0" in out
    with pytest.raises(SystemExit):  # another seed's scenes do not match the captions
        bench.main([str(path), "--shards", shards, "--where", "--seed", "7", "--dirty-rate", "0"])
    assert "colour words" in capsys.readouterr().err
