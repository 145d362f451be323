"""VQAv2-shaped questions about a scene, each with 10 human-style answers.

Question families (``question_type`` is the VQAv2 leading-words type):

- ``how many``: all shapes, or shapes of one colour (``number``; 0 is a valid answer);
- ``what color is the``: only for a shape that appears exactly once (``other``);
- ``what is the``: "what is the shape of the red object?", only for a unique colour (``other``);
- ``is there a``: existence, yes and no equally likely (``yes/no``);
- ``where is the``: grid position "top left", "center", "bottom" ... (``other``);
- ``is the``: size and left/right/above/below relations, yes and no equally likely (``yes/no``).

Answers imitate annotators: mostly the right answer in forms the official VQA normalisation
maps together ("2", "two", "Two"; "red", "Red", "red."), sometimes a genuinely different
phrasing ("on the left" vs "left", "teal" vs "cyan") and now and then one wrong answer.
``multiple_choice_answer`` is the most common normalised answer.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

import numpy as np

from vlcore.synthetic.lexicon import (
    COLORS,
    NUMBER_WORDS_EN,
    RELATIONS_EN,
    SHAPES,
    SIZE_SYNONYMS_EN,
)
from vlcore.synthetic.scene import Scene, SceneObject, relation

logger = logging.getLogger(__name__)

N_ANSWERS = 10
QUESTIONS_PER_IMAGE = 16  # question_id = image index * 16 + question number
P_WRONG = 0.15  # chance that one of the 10 annotators is wrong

_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$:|~']")
_PERIOD = re.compile(r"\.(?!\d)")  # like the official periodStrip: "3." -> "3", "1.5" kept

_COLOR_ALTERNATIVES = {
    "cyan": ("light blue", "teal", "turquoise"),
    "purple": ("violet",),
    "pink": ("magenta", "light pink"),
    "yellow": ("gold",),
    "green": ("dark green",),
    "blue": ("dark blue",),
}
_COLOR_CONFUSION = {
    "red": "orange",
    "orange": "red",
    "yellow": "orange",
    "green": "cyan",
    "cyan": "blue",
    "blue": "purple",
    "purple": "blue",
    "pink": "purple",
}
_SHAPE_ALTERNATIVES = {"circle": ("disk", "dot"), "square": ("box",), "diamond": ("rhombus",)}
_SHAPE_CONFUSION = {
    "circle": "hexagon",
    "hexagon": "circle",
    "square": "diamond",
    "diamond": "square",
    "triangle": "star",
    "star": "triangle",
}
_OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}


def normalize_answer(answer: str) -> str:
    """The VQA evaluation's answer normalisation (punctuation, number words, articles)."""
    text = answer.replace("\n", " ").replace("\t", " ").strip().lower()
    text = _PUNCT.sub("", text)
    text = _PERIOD.sub("", text)
    words = [_NUMBERS.get(w, w) for w in text.split() if w not in _ARTICLES]
    return " ".join(words)


def _same_forms(kind: str, canonical: str) -> list[str]:
    """Surface forms that normalise to ``canonical``; the first one is the most common."""
    if kind == "number":
        word = NUMBER_WORDS_EN[int(canonical)]
        return [canonical, word, word.capitalize(), canonical + "."]
    if kind == "shape":
        return [canonical, canonical.capitalize(), f"a {canonical}", canonical + "."]
    if kind == "position":
        return [canonical, canonical.capitalize(), canonical + ".", f"the {canonical}"]
    return [canonical, canonical.capitalize(), canonical + ".", canonical.capitalize() + "."]


def _alternatives(kind: str, canonical: str) -> tuple[str, ...]:
    """Right but differently phrased answers (not merged by the normalisation)."""
    if kind == "yes/no":
        return ("yep", "yeah") if canonical == "yes" else ("nope",)
    if kind == "color":
        return _COLOR_ALTERNATIVES.get(canonical, ())
    if kind == "shape":
        return _SHAPE_ALTERNATIVES.get(canonical, ())
    if kind == "position":
        if " " in canonical:  # a corner
            vertical, horizontal = canonical.split()
            other = {"top": "upper", "bottom": "lower"}[vertical]
            return (f"{other} {horizontal}", f"{canonical} corner", f"in the {canonical}")
        if canonical == "center":
            return ("middle", "in the middle", "center of the image")
        if canonical in ("left", "right"):
            return (f"on the {canonical}", f"{canonical} side")
        return (f"at the {canonical}", f"{canonical} middle")
    return ()


def _wrong(kind: str, canonical: str, rng: np.random.Generator) -> str:
    if kind == "yes/no":
        return "no" if canonical == "yes" else "yes"
    if kind == "number":
        n = int(canonical)
        return str(n + 1 if n == 0 or rng.random() < 0.5 else n - 1)
    if kind == "color":
        return _COLOR_CONFUSION[canonical]
    if kind == "shape":
        return _SHAPE_CONFUSION[canonical]
    # position: a neighbouring cell
    parts = canonical.split()
    if len(parts) == 2:
        return parts[int(rng.integers(2))]
    if canonical == "center":
        return ("left", "right", "top", "bottom")[int(rng.integers(4))]
    return "center"


def make_answers(kind: str, canonical: str, rng: np.random.Generator) -> list[str]:
    """10 annotator answers for a question whose right answer is ``canonical``."""
    n_wrong = int(rng.random() < P_WRONG)
    alternatives = _alternatives(kind, canonical)
    n_alt = int(rng.choice(3, p=[0.5, 0.35, 0.15])) if alternatives else 0
    forms = _same_forms(kind, canonical)
    answers = [
        forms[0] if rng.random() < 0.7 else forms[int(rng.integers(1, len(forms)))]
        for _ in range(N_ANSWERS - n_wrong - n_alt)
    ]
    answers += [alternatives[int(rng.integers(len(alternatives)))] for _ in range(n_alt)]
    answers += [_wrong(kind, canonical, rng) for _ in range(n_wrong)]
    return [answers[k] for k in rng.permutation(N_ANSWERS)]


def most_common_answer(answers: list[str]) -> str:
    """The most frequent normalised answer (first seen wins a tie)."""
    return Counter(normalize_answer(a) for a in answers).most_common(1)[0][0]


class _Builder:
    def __init__(self, scene: Scene, index: int, rng: np.random.Generator):
        self.scene, self.index, self.rng = scene, index, rng
        self.questions: list[dict[str, Any]] = []

    def add(self, question: str, question_type: str, kind: str, canonical: str) -> None:
        q = len(self.questions)
        if q >= QUESTIONS_PER_IMAGE:
            raise RuntimeError(f"more than {QUESTIONS_PER_IMAGE} questions for one image")
        answers = make_answers(kind, canonical, self.rng)
        answer_type = {"yes/no": "yes/no", "number": "number"}.get(kind, "other")
        self.questions.append(
            {
                "question_id": self.index * QUESTIONS_PER_IMAGE + q,
                "question": question,
                "question_type": question_type,
                "answer_type": answer_type,
                "answers": answers,
                "multiple_choice_answer": most_common_answer(answers),
            }
        )

    def pick(self, items: list | tuple):
        return items[int(self.rng.integers(len(items)))]

    def name(self, o: SceneObject) -> str:
        return f"{o.color} {o.shape}"


def _absent_kind(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """A (colour, shape) not in the scene, often sharing a colour or shape with one that is."""
    present = {(o.color, o.shape) for o in scene.objects}
    anchor = scene.objects[int(rng.integers(len(scene.objects)))]
    for _ in range(100):
        mode = rng.random()
        color = anchor.color if mode < 0.35 else str(rng.choice(COLORS))
        shape = anchor.shape if 0.35 <= mode < 0.7 else str(rng.choice(SHAPES))
        if (color, shape) not in present:
            return color, shape
    raise RuntimeError("no absent (colour, shape) pair found")


def make_questions(scene: Scene, index: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The questions about ``scene`` (image ``index``), in a fixed family order."""
    b = _Builder(scene, index, rng)
    objs = list(scene.objects)

    total = b.pick(
        [
            "how many shapes are there?",
            "how many shapes are in the image?",
            "how many objects are there?",
        ]
    )
    b.add(total, "how many", "number", str(len(objs)))

    color = b.pick(objs).color if rng.random() < 0.6 else str(rng.choice(COLORS))
    b.add(
        f"how many {color} shapes are there?", "how many", "number", str(scene.count(color=color))
    )

    unique_shapes = [o for o in objs if scene.count(shape=o.shape) == 1]
    if unique_shapes:
        o = b.pick(unique_shapes)
        b.add(f"what color is the {o.shape}?", "what color is the", "color", o.color)

    unique_colors = [o for o in objs if scene.count(color=o.color) == 1]
    if unique_colors:
        o = b.pick(unique_colors)
        b.add(f"what is the shape of the {o.color} object?", "what is the", "shape", o.shape)

    asked: set[tuple[str, str]] = set()
    for _ in range(2):
        for _ in range(100):
            if rng.random() < 0.5:
                o = b.pick(objs)
                pair, answer = (o.color, o.shape), "yes"
            else:
                pair, answer = _absent_kind(scene, rng), "no"
            if pair not in asked:
                break
        asked.add(pair)
        b.add(f"is there a {pair[0]} {pair[1]}?", "is there a", "yes/no", answer)

    o = b.pick(objs)
    b.add(f"where is the {b.name(o)}?", "where is the", "position", o.position)

    o = b.pick(objs)
    size = b.pick(["small", "large"])
    word = b.pick(SIZE_SYNONYMS_EN[size])
    b.add(f"is the {b.name(o)} {word}?", "is the", "yes/no", "yes" if o.size == size else "no")

    if len(objs) >= 2:
        first, second = (objs[k] for k in rng.permutation(len(objs))[:2])
        true = relation(first, second)
        asked_rel, answer = (true, "yes") if rng.random() < 0.5 else (_OPPOSITE[true], "no")
        b.add(
            f"is the {b.name(first)} {RELATIONS_EN[asked_rel]} the {b.name(second)}?",
            "is the",
            "yes/no",
            answer,
        )
    return b.questions
