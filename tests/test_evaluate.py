"""Scoring entry points: reference rows, VQA prior, and the top-level tables."""

from __future__ import annotations

import contextlib
import json

import pytest

import vlcore.metrics.captions as captions
from tests.clip_fixtures import make_shards
from vlcore.data.shard import read_split
from vlcore.pipeline.evaluate import (
    caption_baselines,
    collect_caption_table,
    most_frequent_caption,
    read_caption_results,
    references,
    score_model_captions,
    score_vqa,
    vqa_prior_answers,
)

SETTINGS = {"split": "test", "segmenter": "jieba", "metrics": ["BLEU", "ROUGE_L", "CIDEr"]}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("eval"), 60, split={"val": 0.1, "test": 0.3})


def test_most_frequent_caption_is_deterministic():
    assert most_frequent_caption([["A b", "c"], ["a b ", "c"], ["d"]]) == "a b"
    assert most_frequent_caption([["z"], ["y"]]) == "y"  # ties break alphabetically
    with pytest.raises(ValueError, match="no caption"):
        most_frequent_caption([[]])


def test_vqa_prior_takes_most_common_answer_per_type():
    train = [
        {"question_type": "how many", "multiple_choice_answer": "two"},
        {"question_type": "how many", "multiple_choice_answer": "2"},
        {"question_type": "how many", "multiple_choice_answer": "1"},
        {"question_type": "is there a", "multiple_choice_answer": "yes"},
    ]
    questions = [
        {"question_id": 1, "question_type": "how many"},
        {"question_id": 2, "question_type": "is there a"},
        {"question_id": 3, "question_type": "what color is the"},
    ]
    assert vqa_prior_answers(train, questions) == {1: "2", 2: "yes", 3: "2"}


def test_model_rows_sit_beside_reference_rows(shards, tmp_path):
    refs = references(shards)
    # A "model" that copies the second reference of each image; the human row scores
    # references against the others, so the copy must sit at about human level.
    results = [{"image_id": k, "caption": caps[1]} for k, caps in refs.items()]
    (tmp_path / "copy.json").write_text(json.dumps(results))
    assert read_caption_results(tmp_path / "copy.json") == {k: c[1] for k, c in refs.items()}
    detail = score_model_captions(
        str(tmp_path / "copy.json"), str(shards), "en", SETTINGS, str(tmp_path / "s" / "copy.json")
    )
    base = caption_baselines(str(shards), None, "en", SETTINGS, str(tmp_path / "s" / "base.json"))
    rows = base["rows"]
    assert set(rows) == {"human", "most_frequent"}
    assert rows["most_frequent"]["CIDEr"] < 0.5 * rows["human"]["CIDEr"]
    # The copy is one of the references: against all five it is inflated, leave-one-out it is
    # at least human level.
    assert detail["row"]["CIDEr"] > detail["row"]["CIDEr_loo"] >= rows["human"]["CIDEr"] - 1e-9
    table = collect_caption_table(
        {"tiny": {"lang": "en", "scores": [str(tmp_path / "s" / "copy.json")],
                  "baselines": str(tmp_path / "s" / "base.json")}},
        str(tmp_path / "cider.json"),
    )  # fmt: skip
    assert set(table["experiments"]["tiny"]["rows"]) == {"copy", "human", "most_frequent"}


class _FakeMeteor:
    """Stands in for METEOR's JVM: a constant score, and a count of the calls."""

    def __init__(self):
        self.calls = 0

    def score(self, gts, res):
        self.calls += 1
        return 0.25, [0.25] * len(res)


def test_reference_rows_share_one_meteor_session(shards, tmp_path, monkeypatch):
    """The human row (one scoring per round) and both baselines are scored in one METEOR
    session: its JVM start-up (about 5 s) is paid once per rule, not once per row."""
    sessions = []

    @contextlib.contextmanager
    def fake_session():
        sessions.append(_FakeMeteor())
        yield sessions[-1]

    monkeypatch.setattr(captions, "meteor_session", fake_session)
    settings = {**SETTINGS, "metrics": ["BLEU", "METEOR", "ROUGE_L", "CIDEr"]}
    out = tmp_path / "base.json"
    rows = caption_baselines(str(shards), None, "en", settings, str(out))["rows"]
    assert len(sessions) == 1
    rounds = min(len(caps) for caps in references(shards).values())
    assert sessions[0].calls == rounds + 1  # the human row's rounds, then most_frequent
    assert rows["human"]["METEOR"] == rows["most_frequent"]["METEOR"] == 0.25


def test_missing_predictions_are_an_error(shards, tmp_path):
    refs = references(shards)
    first = next(iter(refs))
    (tmp_path / "partial.json").write_text(json.dumps([{"image_id": first, "caption": "x"}]))
    with pytest.raises(ValueError, match="have no prediction"):
        score_model_captions(
            str(tmp_path / "partial.json"), str(shards), "en", SETTINGS, str(tmp_path / "o.json")
        )


def test_score_vqa_with_perfect_and_prior_answers(shards, tmp_path):
    questions = [q for row in read_split(shards, "test", ("questions",)) for q in row["questions"]]
    answers = [
        {"question_id": q["question_id"], "answer": q["multiple_choice_answer"]} for q in questions
    ]
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    result = score_vqa(
        str(tmp_path / "answers.json"), str(shards), "test", str(tmp_path / "v.json"), "vit_gpt2"
    )
    assert json.loads((tmp_path / "v.json").read_text())["captioner"] == "vit_gpt2"
    assert result["n_questions"] == len(questions)
    assert result["model"]["overall"] > 90
    assert result["prior"]["overall"] < result["model"]["overall"]
