"""bench/vqa_answers.py: which answers a VQA model gives, per question type."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_bench
from tests.test_captioner import data  # noqa: F401 (that module's fixture)
from vlcore.pipeline.evaluate import split_questions


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
