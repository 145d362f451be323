"""Caption metrics: pycocoevalcap through our wrapper, English (PTB) and Chinese (jieba / char)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from vlcore.metrics import METRICS, human_agreement, meteor_for, score_captions, segment_chinese
from vlcore.metrics.captions import METEOR_ZH_REASON, SPICE_REASON

SUBJECTS = ["dog", "cat", "man", "woman", "boy", "girl", "horse", "bird", "cow", "sheep",
            "child", "player", "surfer", "skier", "chef", "baby", "couple", "giraffe", "bear", "zebra"]  # fmt: skip
ACTIONS = ["standing", "sitting", "walking", "running", "lying", "playing", "eating", "jumping",
           "resting", "waiting", "looking", "smiling", "posing", "sleeping", "riding", "holding",
           "reading", "drinking", "watching", "climbing"]  # fmt: skip
PLACES = ["grass", "beach", "street", "field", "snow", "kitchen", "park", "road", "table", "water",
          "bench", "sofa", "bed", "hill", "wall", "fence", "tree", "boat", "train", "bridge"]  # fmt: skip


def _english_set() -> dict[int, list[str]]:
    """20 images x 5 references over a shared vocabulary, so document frequencies matter."""
    refs = {}
    for i, (subject, action, place) in enumerate(zip(SUBJECTS, ACTIONS, PLACES, strict=True)):
        other = PLACES[(i + 7) % 20]
        refs[i] = [
            f"A {subject} {action} on the {place}.",
            f"The {subject} is {action} near the {place}.",
            f"A small {subject} {action} by a {place} and a {other}.",
            f"There is a {subject} {action} on a {place}",
            f"a {subject} that is {action} next to the {place} ",
        ]
    return refs


REFS = _english_set()
PREDICTIONS = {i: f"a {SUBJECTS[i]} {ACTIONS[i]} in the {PLACES[i]}" for i in REFS}
PREDICTIONS[0] = REFS[0][0]  # a perfect copy of one reference
PREDICTIONS[1] = "a plate of pasta with forks"  # unrelated
PREDICTIONS[2] = "."  # empty after tokenization


def _java_children() -> list[int]:
    """Live (non-zombie) java processes whose parent is this test process."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and "java" in comm:
            pids.append(int(stat.parent.name))
    return pids


@pytest.fixture(scope="module")
def english() -> dict:
    """The one METEOR run of this file (its JVM takes ~10 s to start)."""
    return score_captions(PREDICTIONS, REFS, lang="en")


def test_english_end_to_end(english):
    names = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE_L", "CIDEr"]
    for name in names:
        assert isinstance(english[name], float), name
    for name in ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE_L"]:
        assert 0.0 <= english[name] <= 1.0
        assert all(0.0 <= scores[name] <= 1.0 + 1e-9 for scores in english["per_image"].values())
    per = english["per_image"]
    assert set(per) == set(REFS) and set(per[0]) == set(names)
    assert per[0]["CIDEr"] > 2.0 and per[0]["BLEU-4"] > 0.99 and per[0]["METEOR"] == 1.0
    assert per[1]["CIDEr"] < 0.05 and per[1]["BLEU-4"] < 1e-3
    assert per[2]["CIDEr"] == 0.0
    assert per[0]["CIDEr"] > per[5]["CIDEr"] > per[1]["CIDEr"]
    assert english["SPICE"] == {"available": False, "reason": SPICE_REASON}
    assert "PTBTokenizer" in english["tokenization"] and english["segmenter"] is None
    assert english["n_images"] == 20 and english["n_references"] == 100
    assert "CIDEr-D" in english["cider_note"]


def test_meteor_process_is_closed(english):
    assert english["METEOR"] > 0
    assert _java_children() == []


def test_same_numbers_as_cocoevalcap_pipeline(english):
    """COCOEvalCap: tokenize references and predictions in two PTB calls, then the scorers."""
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in refs] for i, refs in REFS.items()})
    res = tokenizer.tokenize({i: [{"caption": PREDICTIONS[i]}] for i in REFS})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert [english[f"BLEU-{n}"] for n in range(1, 5)] == pytest.approx(bleu, abs=1e-12)
    assert english["ROUGE_L"] == pytest.approx(Rouge().compute_score(gts, res)[0], abs=1e-12)
    cider, per_image = Cider().compute_score(gts, res)
    assert english["CIDEr"] == pytest.approx(cider, abs=1e-12)
    assert [english["per_image"][i]["CIDEr"] for i in REFS] == pytest.approx(list(per_image))


def test_cider_depends_on_the_set_scored_together():
    subset = [0, 3]
    small = score_captions(
        {i: PREDICTIONS[i] for i in subset}, {i: REFS[i] for i in subset}, metrics=("CIDEr",)
    )
    full = score_captions(PREDICTIONS, REFS, metrics=("CIDEr", "ROUGE_L"))
    assert small["per_image"][0]["CIDEr"] != pytest.approx(full["per_image"][0]["CIDEr"])
    assert "METEOR" not in small and "BLEU-1" not in small and "ROUGE_L" not in small
    assert set(full["per_image"][0]) == {"CIDEr", "ROUGE_L"}


def test_line_breaks_cannot_shift_captions():
    refs = {i: REFS[i] for i in range(4)}
    plain = {i: PREDICTIONS[i] for i in refs} | {3: "a boy jumping on the field"}
    broken = plain | {3: "a boy\r\njumping\u2028on the\x0cfield"}
    a = score_captions(plain, refs, metrics=("CIDEr",))
    b = score_captions(broken, refs, metrics=("CIDEr",))
    assert a["per_image"] == b["per_image"]


# ------------------------------------------------------------------------------ human row


def test_human_agreement_is_leave_one_out():
    report = human_agreement(REFS, metrics=("BLEU", "CIDEr"))
    assert report["rounds"] == 5 and len(report["per_round"]) == 5
    round0 = score_captions(
        {i: refs[0] for i, refs in REFS.items()},
        {i: refs[1:] for i, refs in REFS.items()},
        metrics=("BLEU", "CIDEr"),
    )
    assert report["per_round"][0]["CIDEr"] == pytest.approx(round0["CIDEr"], abs=1e-12)
    assert report["per_round"][0]["BLEU-4"] == pytest.approx(round0["BLEU-4"], abs=1e-12)
    mean = sum(r["CIDEr"] for r in report["per_round"]) / 5
    assert report["CIDEr"] == pytest.approx(mean)
    assert 0.0 < report["BLEU-4"] < 1.0 and report["CIDEr"] > 0.5
    assert report["SPICE"]["available"] is False


def test_one_meteor_session_serves_several_scorings(english):
    """The second (and last) METEOR run of this file: one JVM for every round of the human
    row and for a model's scores, kept open between the calls and closed after the block."""
    refs = {i: REFS[i][:3] for i in range(4)}
    with meteor_for(METRICS, "en") as session:
        report = human_agreement(refs, meteor=session)
        assert session.meteor_p.poll() is None  # the caller's session stays open
        again = score_captions(PREDICTIONS, REFS, lang="en", meteor=session)
        assert _java_children() == [session.meteor_p.pid]
    assert report["rounds"] == 3
    assert all(0.0 < r["METEOR"] < 1.0 for r in report["per_round"])
    assert report["METEOR"] == pytest.approx(sum(r["METEOR"] for r in report["per_round"]) / 3)
    # the same numbers as with a session of its own (the fixture's)
    assert again["METEOR"] == english["METEOR"]
    assert again["per_image"] == english["per_image"]
    assert _java_children() == []


def test_meteor_for_is_none_where_meteor_is_not_scored():
    with meteor_for(["BLEU", "CIDEr"], "en") as session:
        assert session is None
    with meteor_for(METRICS, "zh") as session:
        assert session is None
    assert _java_children() == []


def test_human_agreement_needs_two_references():
    with pytest.raises(ValueError, match="at least 2 needed"):
        human_agreement({1: ["a cat"], 2: ["a dog", "a puppy"]})


# ------------------------------------------------------------------------------ Chinese

ZH_REFS = {
    0: [
        "一个穿着红色T恤的男人在骑自行车。",
        "男人骑着一辆自行车在路上",
        "穿红衣服的人在马路上骑车",
    ],
    1: ["两只猫躺在沙发上，旁边有３个遥控器", "沙发上有两只猫在睡觉", "两只小猫在沙发上休息"],
    2: ["草地上有一只小狗在奔跑", "一只狗在草地上跑", "小狗在绿色的草地上玩耍"],
    3: ["一个女人在厨房里做饭", "厨房里有个女人正在烹饪", "女人在厨房准备食物"],
}
ZH_PREDICTIONS = {
    0: "一个男人在路上骑自行车",
    1: "两只猫在沙发上睡觉",
    2: "一只狗在草地上奔跑",
    3: "一个男人在吃饭",
}


def test_chinese_segmenters_are_deterministic_and_recorded():
    assert (
        segment_chinese("一个穿着红色T恤的男人在骑自行车。", "jieba")
        == "一个 穿着 红色 t恤 的 男人 在 骑 自行车"
    )
    assert segment_chinese("两只猫，３个", "char") == "两 只 猫 3 个"
    jieba_report = score_captions(ZH_PREDICTIONS, ZH_REFS, lang="zh", segmenter="jieba")
    char_report = score_captions(ZH_PREDICTIONS, ZH_REFS, lang="zh", segmenter="char")
    again = score_captions(ZH_PREDICTIONS, ZH_REFS, lang="zh", segmenter="jieba")
    assert again["CIDEr"] == jieba_report["CIDEr"]
    assert jieba_report["segmenter"] == "jieba" and "jieba" in jieba_report["tokenization"]
    assert char_report["segmenter"] == "char" and "character" in char_report["tokenization"]
    assert jieba_report["CIDEr"] != pytest.approx(char_report["CIDEr"])
    assert jieba_report["BLEU-4"] != pytest.approx(char_report["BLEU-4"])
    for report in (jieba_report, char_report):
        assert report["METEOR"] == {"available": False, "reason": METEOR_ZH_REASON}
        assert report["SPICE"]["available"] is False
        assert 0.0 <= report["BLEU-4"] <= 1.0 and 0.0 <= report["ROUGE_L"] <= 1.0
        assert report["per_image"][2]["CIDEr"] > report["per_image"][3]["CIDEr"]
    assert _java_children() == []


# ------------------------------------------------------------------------------ input checks


@pytest.mark.parametrize(
    ("predictions", "references", "kwargs", "match"),
    [
        ({1: "a"}, {1: ["a"]}, {}, "document frequencies"),
        ({1: "a", 2: "b"}, {1: ["a"], 3: ["b"]}, {}, "same ids"),
        ({1: ["a", "b"], 2: "b"}, {1: ["a"], 2: ["b"]}, {}, "exactly one caption"),
        ({1: "a", 2: "b"}, {1: [], 2: ["b"]}, {}, "at least 1 needed"),
        ({1: "a", 2: "b"}, {1: ["a"], 2: "b"}, {}, "list of captions"),
        ({1: "a", 2: "b"}, {1: ["  "], 2: ["b"]}, {}, "empty or non-string"),
        ({1: "a", 2: "b"}, {1: ["a"], 2: ["b"]}, {"lang": "fr"}, "lang"),
        ({1: "a", 2: "b"}, {1: ["a"], 2: ["b"]}, {"segmenter": "pkuseg"}, "segmenter"),
        ({1: "a", 2: "b"}, {1: ["a"], 2: ["b"]}, {"metrics": ("BLEU", "WER")}, "unknown metric"),
        ({1: "a", 2: "b"}, {1: ["a"], 2: ["b"]}, {"metrics": ()}, "at least one"),
        ({1: "a", 2: "b"}, {1: ["a"], 2: ["b"]}, {"metrics": "CIDEr"}, "list of metric"),
    ],
)
def test_bad_input_raises(predictions, references, kwargs, match):
    with pytest.raises(ValueError, match=match):
        score_captions(predictions, references, **kwargs)
