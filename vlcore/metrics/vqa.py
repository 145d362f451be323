"""VQA accuracy: the official VQA v2 evaluation, reimplemented faithfully.

Source: GT-Vision-Lab/VQA, ``PythonEvaluationTools/vqaEvaluation/vqaEval.py``, the current
master version (commit "Fixed processing answers bug"). Antol et al., "VQA: Visual Question
Answering", ICCV 2015; Goyal et al., "Making the V in VQA Matter", CVPR 2017.

Per question, with its ten human answers and one prediction:

1. every answer and the prediction: ``\\n`` and ``\\t`` become spaces, then strip;
2. **only when the ten stripped human answers are not all identical**, every human answer and
   the prediction are normalised (:func:`normalize_answer`: punctuation, then digits, articles
   and contractions); unanimous answers are compared as they are, case included;
3. for each human answer i, m_i = how many of the *other nine* equal the prediction;
   acc = mean over i of min(1, m_i / 3). If k humans gave the predicted answer this is
   0.3, 0.6, 0.9 and 1.0 for k = 1, 2, 3 and >= 4.

Reported like the official code: 100 x mean, overall, per answer type and per question type,
rounded to 2 decimals.

How master differs from the older copy still vendored by several libraries: the older version
always normalises the prediction (punctuation and digits/articles) but only
punctuation-processes the human answers, and only when they disagree; some copies of it also
carry a 19-character punctuation list that includes the apostrophe and the colon. Master
normalises both sides identically and only when the humans disagree, with the 21 characters of
:data:`PUNCTUATION` (no apostrophe, no colon).

Quirks kept on purpose, because they change numbers:

- the period pattern ``(?!<=\\d)(\\.)(?!\\d)`` (a mistyped look-behind: it removes every period
  not followed by a digit) is applied with ``re.UNICODE`` passed as the *count* argument, so at
  most 32 periods are removed (:data:`MAX_PERIOD_REMOVALS`);
- the punctuation rule tests the *input* string for "char + space", "space + char" or a
  digit-comma-digit anywhere, and then deletes the character, else replaces it with a space;
- four contraction keys are capitalised (``Id've``, ``I'dve``, ``Im``, ``Ive``) and never match,
  since words are lower-cased first.

The human answers are scored leave-one-out *by position* (the official code compares answer
dicts that carry distinct ``answer_id`` values, so each of the ten is left out once).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

N_HUMAN_ANSWERS = 10
DECIMALS = 2

PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+",
    "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# The official code calls periodStrip.sub("", text, re.UNICODE): the flag lands in `count`.
MAX_PERIOD_REMOVALS = 32

NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# 120 entries, verbatim, including the four capitalised keys that never match and the
# reversed "somebody'd" -> "somebodyd".
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip


def clean_whitespace(text: str) -> str:
    """Step 1, applied to every answer: newlines and tabs become spaces, then strip."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``: the 21 characters, then at most 32 periods."""
    has_digit_comma_digit = _COMMA_STRIP.search(text) is not None
    out = text
    for char in PUNCTUATION:
        # The test looks at the input string, the replacement acts on the running output.
        if char + " " in text or " " + char in text or has_digit_comma_digit:
            out = out.replace(char, "")
        else:
            out = out.replace(char, " ")
    return _PERIOD_STRIP.sub("", out, count=MAX_PERIOD_REMOVALS)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lower-case, number words, articles, contractions."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_answer(text: str) -> str:
    """The full official normalisation of one answer: whitespace, punctuation, digits/articles.

    This is what the evaluation applies when the human answers disagree; use it to build
    answer vocabularies that match the metric.
    """
    if not isinstance(text, str):
        raise ValueError(f"an answer must be a string, got {type(text).__name__}: {text!r}")
    return process_digit_article(process_punctuation(clean_whitespace(text)))


def question_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Accuracy of one prediction against its human answers, in [0, 1] (not rounded)."""
    humans = [clean_whitespace(answer) for answer in answers]
    predicted = clean_whitespace(prediction)
    if len(set(humans)) > 1:
        humans = [process_digit_article(process_punctuation(answer)) for answer in humans]
        predicted = process_digit_article(process_punctuation(predicted))
    per_left_out = []
    for left_out in range(len(humans)):
        matches = sum(1 for i, answer in enumerate(humans) if i != left_out and answer == predicted)
        per_left_out.append(min(1, float(matches) / 3))
    return float(sum(per_left_out)) / len(per_left_out)


def _validate(predictions: Mapping[int, str], questions: Sequence[Mapping[str, Any]]) -> None:
    if not isinstance(predictions, Mapping):
        raise ValueError(
            f"predictions must be a dict question_id -> answer, got {type(predictions).__name__}"
        )
    if isinstance(questions, (str, bytes, Mapping)) or not isinstance(questions, Sequence):
        raise ValueError(f"questions must be a list of dicts, got {type(questions).__name__}")
    if not questions:
        raise ValueError("questions is empty: there is nothing to evaluate")
    seen: set[int] = set()
    for position, question in enumerate(questions):
        if not isinstance(question, Mapping):
            raise ValueError(f"questions[{position}] must be a dict, got {type(question).__name__}")
        missing = [
            key
            for key in ("question_id", "answers", "answer_type", "question_type")
            if key not in question
        ]
        if missing:
            raise ValueError(f"questions[{position}] lacks the key(s) {missing}")
        qid = question["question_id"]
        if qid in seen:
            raise ValueError(f"question_id {qid!r} appears more than once in questions")
        seen.add(qid)
        answers = question["answers"]
        if isinstance(answers, str) or not isinstance(answers, Sequence):
            raise ValueError(
                f"question {qid!r}: answers must be a list of strings, got {answers!r}"
            )
        if len(answers) != N_HUMAN_ANSWERS:
            raise ValueError(
                f"question {qid!r}: expected {N_HUMAN_ANSWERS} human answers (VQA v2), "
                f"got {len(answers)}"
            )
        bad = [answer for answer in answers if not isinstance(answer, str)]
        if bad:
            raise ValueError(f"question {qid!r}: answers must be strings, got {bad!r}")
        for key in ("answer_type", "question_type"):
            if not isinstance(question[key], str):
                raise ValueError(f"question {qid!r}: {key} must be a string, got {question[key]!r}")
    missing_predictions = [qid for qid in seen if qid not in predictions]
    if missing_predictions:
        raise ValueError(
            f"{len(missing_predictions)} question(s) have no prediction, "
            f"e.g. question_id {missing_predictions[:5]}"
        )
    extra = [qid for qid in predictions if qid not in seen]
    if extra:
        raise ValueError(
            f"{len(extra)} prediction(s) are for question ids not in questions, e.g. {extra[:5]}"
        )
    bad_predictions = {qid: p for qid, p in predictions.items() if not isinstance(p, str)}
    if bad_predictions:
        example = next(iter(bad_predictions.items()))
        raise ValueError(
            f"predictions must be strings; question_id {example[0]!r} has {example[1]!r}"
        )


def _percent(values: Sequence[float]) -> float:
    return round(100 * float(sum(values)) / len(values), DECIMALS)


def vqa_accuracy(predictions: Mapping[int, str], questions: Sequence[Mapping[str, Any]]) -> dict:
    """Official VQA v2 accuracy (master) of ``predictions`` over ``questions``.

    Args:
        predictions: ``question_id -> predicted answer``, exactly one per question.
        questions: dicts with ``question_id``, ``answers`` (the 10 human answer strings),
            ``answer_type`` (``yes/no``, ``number``, ``other``) and ``question_type``.

    Returns:
        ``{"overall", "per_answer_type", "per_question_type", "n_questions", "per_question",
        "protocol"}``; accuracies are 100 x the mean, rounded to 2 decimals like the official
        code (``per_question`` is ``question_id -> accuracy``).
    """
    _validate(predictions, questions)
    overall: list[float] = []
    by_answer_type: dict[str, list[float]] = {}
    by_question_type: dict[str, list[float]] = {}
    per_question: dict[int, float] = {}
    for question in questions:
        qid = question["question_id"]
        acc = question_accuracy(predictions[qid], question["answers"])
        overall.append(acc)
        by_answer_type.setdefault(question["answer_type"], []).append(acc)
        by_question_type.setdefault(question["question_type"], []).append(acc)
        per_question[qid] = round(100 * acc, DECIMALS)
    result = {
        "overall": _percent(overall),
        "per_answer_type": {key: _percent(accs) for key, accs in by_answer_type.items()},
        "per_question_type": {key: _percent(accs) for key, accs in by_question_type.items()},
        "n_questions": len(questions),
        "per_question": per_question,
        "protocol": "VQA v2 official accuracy, GT-Vision-Lab/VQA master",
    }
    logger.info("VQA accuracy %.2f over %d questions", result["overall"], len(questions))
    return result
