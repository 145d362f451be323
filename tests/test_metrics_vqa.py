"""VQA v2 accuracy: the tricky cases of docs/metrics.md, and a cross-check against the official code."""

from __future__ import annotations

import random
import re

import pytest

from vlcore.metrics.vqa import (
    CONTRACTIONS,
    MAX_PERIOD_REMOVALS,
    PUNCTUATION,
    normalize_answer,
    process_punctuation,
    question_accuracy,
    vqa_accuracy,
)


def _question(
    qid: int, answers: list[str], answer_type: str = "other", qtype: str = "what"
) -> dict:
    return {
        "question_id": qid,
        "answers": answers,
        "answer_type": answer_type,
        "question_type": qtype,
    }


def _acc(prediction: str, answers: list[str]) -> float:
    return vqa_accuracy({1: prediction}, [_question(1, answers)])["overall"]


# --------------------------------------------------------------------------------------------
# TEST ORACLE ONLY: a line-by-line transliteration of the official evaluation, GT-Vision-Lab/VQA
# master, PythonEvaluationTools/vqaEvaluation/vqaEval.py ("Fixed processing answers bug"),
# reduced to one question at a time. Kept deliberately close to the original (names, dict-based
# answers with answer_id, the `item != gtAnsDatum` leave-one-out, `re.UNICODE` passed as count).
# It is not used by vlcore; it exists to check vlcore.metrics.vqa against the original logic.
# --------------------------------------------------------------------------------------------
class _OfficialVQAEvalOracle:
    # copied verbatim from the official file, independently of vlcore.metrics.vqa.CONTRACTIONS
    contractions = {"aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've"}  # fmt: skip
    manualMap = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                 "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}  # fmt: skip
    articles = ["a", "an", "the"]
    periodStrip = re.compile(r"(?!<=\d)(\.)(?!\d)")
    commaStrip = re.compile(r"(\d)(\,)(\d)")
    punct = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
             ">", "<", "@", "`", ",", "?", "!"]  # fmt: skip

    def processPunctuation(self, inText):
        outText = inText
        for p in self.punct:
            if (p + " " in inText or " " + p in inText) or (
                re.search(self.commaStrip, inText) is not None
            ):
                outText = outText.replace(p, "")
            else:
                outText = outText.replace(p, " ")
        outText = self.periodStrip.sub("", outText, re.UNICODE)
        return outText

    def processDigitArticle(self, inText):
        outText = []
        tempText = inText.lower().split()
        for word in tempText:
            word = self.manualMap.setdefault(word, word)
            if word not in self.articles:
                outText.append(word)
            else:
                pass
        for wordId, word in enumerate(outText):
            if word in self.contractions:
                outText[wordId] = self.contractions[word]
        outText = " ".join(outText)
        return outText

    def question_acc(self, res_answer, gt_answers):
        answers = [
            {"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
            for i, a in enumerate(gt_answers)
        ]
        for ansDic in answers:
            ansDic["answer"] = ansDic["answer"].replace("\n", " ")
            ansDic["answer"] = ansDic["answer"].replace("\t", " ")
            ansDic["answer"] = ansDic["answer"].strip()
        resAns = res_answer
        resAns = resAns.replace("\n", " ")
        resAns = resAns.replace("\t", " ")
        resAns = resAns.strip()
        gtAcc = []
        gtAnswers = [ans["answer"] for ans in answers]
        if len(set(gtAnswers)) > 1:
            for ansDic in answers:
                ansDic["answer"] = self.processPunctuation(ansDic["answer"])
                ansDic["answer"] = self.processDigitArticle(ansDic["answer"])
            resAns = self.processPunctuation(resAns)
            resAns = self.processDigitArticle(resAns)
        for gtAnsDatum in answers:
            otherGTAns = [item for item in answers if item != gtAnsDatum]
            matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
            acc = min(1, float(len(matchingAns)) / 3)
            gtAcc.append(acc)
        return float(sum(gtAcc)) / len(gtAcc)


# ------------------------------------------------------------------------------ the tables


def test_tables_are_the_official_ones():
    assert len(PUNCTUATION) == 21 and len(set(PUNCTUATION)) == 21
    assert "'" not in PUNCTUATION and ":" not in PUNCTUATION and "." not in PUNCTUATION
    assert len(CONTRACTIONS) == 120
    assert _OfficialVQAEvalOracle.contractions == CONTRACTIONS
    assert sorted(k for k in CONTRACTIONS if k != k.lower()) == ["I'dve", "Id've", "Im", "Ive"]
    assert CONTRACTIONS["dont"] == "don't" and CONTRACTIONS["somebody'd"] == "somebodyd"
    assert int(re.UNICODE) == MAX_PERIOD_REMOVALS == 32


# ------------------------------------------------------------------------------ scoring rule


@pytest.mark.parametrize(
    ("k", "expected"),
    [(0, 0.0), (1, 30.0), (2, 60.0), (3, 90.0), (4, 100.0), (7, 100.0), (10, 100.0)],
)
def test_k_humans_agreeing(k, expected):
    answers = ["cat"] * k + [f"dog{i}" for i in range(10 - k)]
    assert _acc("cat", answers) == expected


def test_leave_one_out_exact_mean():
    # k=1: the one matching human, left out, gives 0; the nine others see 1 match -> 1/3 each.
    assert question_accuracy("cat", ["cat"] + ["dog"] * 9) == pytest.approx(9 / 3 / 10)
    # k=3: left out a match -> 2/3 (three times), a non-match -> 1 (seven times).
    assert question_accuracy("cat", ["cat"] * 3 + ["dog"] * 7) == pytest.approx(
        (3 * 2 / 3 + 7) / 10
    )


def test_unanimous_answers_are_not_normalised():
    assert _acc("2", ["Two"] * 10) == 0.0
    assert _acc("Two", ["Two"] * 10) == 100.0
    assert _acc("two", ["Two"] * 10) == 0.0  # case matters too
    assert _acc("yes.", ["yes"] * 10) == 0.0
    # unanimity is judged after stripping: the trailing space does not break it
    assert _acc("Two", ["Two"] * 9 + ["Two \n"]) == 100.0


def test_normalised_when_not_unanimous():
    answers = ["two"] * 9 + ["three"]
    assert _acc("2", answers) == 100.0
    assert _acc("Two", answers) == 100.0
    assert _acc("three", answers) == 30.0
    assert _acc("  2\n", ["2"] * 5 + ["two"] * 4 + ["3"]) == 100.0


def test_articles_and_contractions():
    answers = ["the red car"] * 4 + ["car"] * 6
    assert _acc("a red car", answers) == 100.0
    assert _acc("an car", answers) == 100.0
    assert normalize_answer("dont") == "don't"
    assert _acc("dont know", ["don't know"] * 3 + ["no"] * 7) == 90.0
    assert normalize_answer("Im") == "im"  # the capitalised key never matches
    assert normalize_answer("None") == "0"


# ------------------------------------------------------------------------------ punctuation


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("yes.", "yes"),
        ("yes!", "yes "),
        ("1,000", "1000"),  # digit-comma-digit anywhere: delete, do not space
        ("red, white", "red white"),  # ", " occurs: delete the comma
        ("red,white", "red white"),  # no space rule, no digit rule: comma -> space
        ("t-shirt", "t shirt"),
        ("t- shirt", "t shirt"),
        ("t-shirt, 3,5", "tshirt 35"),  # the digit rule deletes the hyphen too
        ("3.5", "3.5"),  # a period followed by a digit stays
        ("mr. smith's", "mr smith's"),  # apostrophe is not in the list
        ("10:30", "10:30"),  # neither is the colon
        ("(yes)", " yes "),
        ("a / b", "a  b"),
    ],
)
def test_punctuation_rules(raw, expected):
    assert process_punctuation(raw) == expected


def test_hyphen_space_rule_changes_the_answer():
    assert normalize_answer("t-shirt") == "t shirt"
    assert normalize_answer("t -shirt") == "t shirt"
    assert normalize_answer("t-shirt 1,2") == "tshirt 12"


def test_newline_and_tab_become_spaces():
    assert normalize_answer("\tfire\nhydrant \n") == "fire hydrant"
    assert _acc("fire\thydrant", ["fire hydrant"] * 3 + ["hydrant"] * 7) == 90.0


def test_at_most_32_periods_are_removed():
    assert process_punctuation("." * 40) == "." * 8
    assert process_punctuation("a." * 33) == "a" * 32 + "a."
    assert normalize_answer("no" + "." * 33) == "no."


# ------------------------------------------------------------------------------ the API


def test_report_shape_and_rounding():
    questions = [
        _question(1, ["yes"] * 10, "yes/no", "is the"),
        _question(2, ["2"] * 2 + ["3"] * 8, "number", "how many"),
        _question(3, ["red"] + ["blue"] * 9, "other", "what color"),
    ]
    result = vqa_accuracy({1: "yes", 2: "2", 3: "red"}, questions)
    assert result["per_question"] == {1: 100.0, 2: 60.0, 3: 30.0}
    assert result["overall"] == round(100 * (1 + 0.6 + 0.3) / 3, 2) == 63.33
    assert result["per_answer_type"] == {"yes/no": 100.0, "number": 60.0, "other": 30.0}
    assert result["per_question_type"] == {"is the": 100.0, "how many": 60.0, "what color": 30.0}
    assert result["n_questions"] == 3
    assert "master" in result["protocol"]


@pytest.mark.parametrize(
    ("predictions", "questions", "match"),
    [
        ({1: "a"}, [], "empty"),
        ({}, [_question(1, ["a"] * 10)], "no prediction"),
        ({1: "a", 2: "b"}, [_question(1, ["a"] * 10)], "not in questions"),
        ({1: 3}, [_question(1, ["a"] * 10)], "must be strings"),
        ({1: "a"}, [_question(1, ["a"] * 9)], "expected 10"),
        ({1: "a"}, [_question(1, ["a"] * 10), _question(1, ["a"] * 10)], "more than once"),
        ({1: "a"}, [{"question_id": 1, "answers": ["a"] * 10}], "lacks"),
        ({1: "a"}, [_question(1, "aaaaaaaaaa")], "list of strings"),
    ],
)
def test_bad_input_raises(predictions, questions, match):
    with pytest.raises(ValueError, match=match):
        vqa_accuracy(predictions, questions)


# ------------------------------------------------------------------------------ cross-check

_PIECES = [
    "two", "Two", "2", "the", "a", "an", "dont", "Im", "none", "ten", "yes", "no", "t-shirt",
    "red", "1,000", "3.5", "etc.", "...", "mr.", "it's", ":", "'", "-", " - ", ", ", ",", "?",
    "!", "(", ")", "/", "\\", "@", "`", "_", "\n", "\t", "  ", " ", ".", "x.y", "7,5", "+", "=",
    "<", ">", '"', "[", "]", "{", "}", ";", "whats", "youre", "Ive", "y'allll", "ONE",
]  # fmt: skip


def _random_answer(rng: random.Random) -> str:
    return "".join(rng.choice(_PIECES) + rng.choice(["", " "]) for _ in range(rng.randint(1, 6)))


def test_matches_official_code_on_random_strings():
    oracle = _OfficialVQAEvalOracle()
    rng = random.Random(0)
    for _ in range(300):
        text = _random_answer(rng)
        expected = oracle.processDigitArticle(
            oracle.processPunctuation(text.replace("\n", " ").replace("\t", " ").strip())
        )
        assert normalize_answer(text) == expected, repr(text)
    for _ in range(300):
        pool = [_random_answer(rng) for _ in range(rng.randint(1, 4))]
        answers = [rng.choice(pool) for _ in range(10)]
        prediction = rng.choice([*pool, _random_answer(rng)])
        assert question_accuracy(prediction, answers) == oracle.question_acc(prediction, answers), (
            prediction,
            answers,
        )
