"""English reference captions: 5 distinct descriptions of a scene from varied templates.

Every caption names at least one object by colour and shape (synonyms: circle/disk,
diamond/rhombus, large/big, small/little), and every position, relation, count and
background word is true of the picture, so the captions can be learned from the pixels.
Captions use letters, spaces and ``, . : '`` only and are at most :data:`MAX_LENGTH_EN`
characters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from vlcore.synthetic.lexicon import (
    POSITION_OF_IMAGE_EN,
    POSITION_PHRASES_EN,
    RELATIONS_EN,
    SHAPE_SYNONYMS_EN,
    SIZE_SYNONYMS_EN,
    TONE_WORDS_EN,
    article,
)
from vlcore.synthetic.scene import Scene, SceneObject, relation

logger = logging.getLogger(__name__)

MAX_LENGTH_EN = 100
N_CAPTIONS = 5


class PhrasesEn:
    """Random but truthful English phrases about one scene."""

    def __init__(self, scene: Scene, rng: np.random.Generator):
        self.scene = scene
        self.rng = rng

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def shape(self, o: SceneObject) -> str:
        return self.pick(SHAPE_SYNONYMS_EN[o.shape])

    def size(self, o: SceneObject) -> str:
        return self.pick(SIZE_SYNONYMS_EN[o.size])

    def noun(self, o: SceneObject, with_size: bool | None = None) -> str:
        """ "big red circle" or "red disk" (size mentioned at random unless forced)."""
        if with_size is None:
            with_size = bool(self.rng.random() < 0.6)
        words = [self.size(o)] if with_size else []
        return " ".join([*words, o.color, self.shape(o)])

    def obj(self, o: SceneObject, with_size: bool | None = None) -> str:
        """ "a big red circle", "an orange star"."""
        noun = self.noun(o, with_size)
        return f"{article(noun)} {noun}"

    def pos(self, o: SceneObject) -> str:
        return self.pick(POSITION_PHRASES_EN[o.position])

    def pos_of_image(self, o: SceneObject) -> str:
        return f"{self.pick(POSITION_OF_IMAGE_EN[o.position])} {self.pick(('image', 'picture'))}"

    def background(self) -> str:
        """ "a dark gray background", "a light gradient background"."""
        bg = self.scene.background
        tone = self.pick(TONE_WORDS_EN[bg.tone])
        words = f"{tone} gradient background" if bg.gradient else f"{tone} background"
        return f"{article(words)} {words}"

    def rel(self, a: SceneObject, b: SceneObject) -> str:
        return RELATIONS_EN[relation(a, b)]


Template = Callable[[PhrasesEn, list[SceneObject]], str]

ONE: list[Template] = [
    lambda w, o: f"{w.obj(o[0])} {w.pos(o[0])}",
    lambda w, o: f"{w.obj(o[0])} {w.pos(o[0])} on {w.background()}",
    lambda w, o: f"there is {w.obj(o[0])} {w.pos_of_image(o[0])}",
    lambda w, o: f"{w.obj(o[0])} on {w.background()}",
    lambda w, o: f"a picture of {w.obj(o[0])}",
    lambda w, o: f"a single {o[0].color} {w.shape(o[0])} {w.pos(o[0])}",
    lambda w, o: f"{w.obj(o[0])} is shown {w.pos_of_image(o[0])}",
    lambda w, o: f"an image with one {w.noun(o[0])} {w.pos(o[0])}",
    lambda w, o: f"{w.pos(o[0])}, there is {w.obj(o[0])}",
    lambda w, o: f"one {w.size(o[0])} {w.shape(o[0])} colored {o[0].color}",
    lambda w, o: f"only one shape: {w.obj(o[0])} {w.pos(o[0])}",
]
TWO: list[Template] = [
    lambda w, o: f"{w.obj(o[0])} and {w.obj(o[1])}",
    lambda w, o: f"{w.obj(o[0])} {w.rel(o[0], o[1])} {w.obj(o[1])}",
    lambda w, o: f"{w.obj(o[0])} {w.pos(o[0])} and {w.obj(o[1])} {w.pos(o[1])}",
    lambda w, o: f"two shapes: {w.obj(o[0])} and {w.obj(o[1])}",
    lambda w, o: f"two shapes on {w.background()}, {w.obj(o[0])} and {w.obj(o[1])}",
    lambda w, o: f"{w.obj(o[0])} and {w.obj(o[1])} on {w.background()}",
    lambda w, o: f"there are two shapes, {w.obj(o[0])} {w.rel(o[0], o[1])} {w.obj(o[1])}",
    lambda w, o: f"a picture with {w.obj(o[0])} {w.rel(o[0], o[1])} {w.obj(o[1])}",
    lambda w, o: f"{w.pos(o[0])} there is {w.obj(o[0])}, {w.pos(o[1])} {w.obj(o[1])}",
]
THREE: list[Template] = [
    lambda w, o: f"three shapes: {w.obj(o[0])}, {w.obj(o[1])} and {w.obj(o[2])}",
    lambda w, o: f"{w.obj(o[0])}, {w.obj(o[1])} and {w.obj(o[2])}",
    lambda w, o: f"{w.obj(o[0])}, {w.obj(o[1])} and {w.obj(o[2])} on {w.background()}",
    lambda w, o: (
        f"{w.obj(o[0])} {w.pos(o[0])}, {w.obj(o[1])} {w.pos(o[1])} and {w.obj(o[2])} {w.pos(o[2])}"
    ),
    lambda w, o: (
        f"three shapes on {w.background()}: {w.obj(o[0])}, {w.obj(o[1])} and {w.obj(o[2])}"
    ),
    lambda w, o: (
        f"{w.obj(o[0])} {w.rel(o[0], o[1])} {w.obj(o[1])}, and {w.obj(o[2])} {w.pos(o[2])}"
    ),
    lambda w, o: f"three shapes, with {w.obj(o[0])} {w.pos(o[0])}",
    lambda w, o: f"{w.obj(o[0])} {w.pos(o[0])} with {w.obj(o[1])} and {w.obj(o[2])}",
    lambda w, o: f"a picture of three shapes, one of them {w.obj(o[0])}",
]
TEMPLATES_EN: dict[int, list[Template]] = {1: ONE, 2: TWO, 3: THREE}


def finish(text: str, rng: np.random.Generator) -> str:
    """Capitalise and, most of the time, end with a full stop."""
    text = text[:1].upper() + text[1:]
    return text + "." if rng.random() < 0.7 else text


def captions_en(
    scene: Scene, rng: np.random.Generator, n: int = N_CAPTIONS, max_length: int = MAX_LENGTH_EN
) -> list[str]:
    """``n`` distinct captions of at most ``max_length`` characters."""
    words = PhrasesEn(scene, rng)
    templates = TEMPLATES_EN[len(scene.objects)]
    out: list[str] = []
    for attempt in range(50 * n):
        # a shuffled pass over every template first, then random ones
        if attempt % len(templates) == 0:
            order = rng.permutation(len(templates))
        objs = [scene.objects[k] for k in rng.permutation(len(scene.objects))]
        text = finish(templates[int(order[attempt % len(templates)])](words, objs), rng)
        if len(text) <= max_length and text not in out:
            out.append(text)
            if len(out) == n:
                return out
    raise RuntimeError(f"could not write {n} distinct captions for {scene}")
