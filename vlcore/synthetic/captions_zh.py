"""Chinese reference captions: 5 distinct, natural simplified-Chinese descriptions of a scene.

Examples: ``一个红色的大圆形在图片的左上角``, ``图中有两个形状：一个蓝色星形和一个绿色方块``,
``红色圆形在蓝色五角星的左边``. Every caption names at least one object by colour and shape,
uses only Chinese characters and Chinese punctuation (，：、), and is at most
:data:`MAX_LENGTH_ZH` characters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from vlcore.synthetic.lexicon import (
    COLOR_ZH,
    NUMBER_WORDS_ZH,
    POSITION_ZH,
    RELATIONS_ZH,
    SHAPE_SYNONYMS_ZH,
    SIZE_ZH,
    TONE_WORDS_ZH,
)
from vlcore.synthetic.scene import Scene, SceneObject, relation

logger = logging.getLogger(__name__)

MAX_LENGTH_ZH = 32
N_CAPTIONS = 5


class PhrasesZh:
    """Random but truthful Chinese phrases about one scene."""

    def __init__(self, scene: Scene, rng: np.random.Generator):
        self.scene = scene
        self.rng = rng

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def shape(self, o: SceneObject) -> str:
        return self.pick(SHAPE_SYNONYMS_ZH[o.shape])

    def short(self, o: SceneObject) -> str:
        """红色圆形 / 红色的大圆形."""
        color, shape = COLOR_ZH[o.color], self.shape(o)
        if self.rng.random() < 0.5:
            return f"{color}{shape}"
        return f"{color}的{SIZE_ZH[o.size]}{shape}"

    def full(self, o: SceneObject) -> str:
        """一个红色的大圆形 / 一个大的红色圆形 / 一个红色圆形."""
        color, shape, size = COLOR_ZH[o.color], self.shape(o), SIZE_ZH[o.size]
        return self.pick(
            [f"一个{color}的{size}{shape}", f"一个{size}的{color}{shape}", f"一个{color}{shape}"]
        )

    def pos(self, o: SceneObject) -> str:
        return self.pick(POSITION_ZH[o.position])

    def background(self) -> str:
        """深色背景 / 渐变的浅灰色背景."""
        bg = self.scene.background
        tone = self.pick(TONE_WORDS_ZH[bg.tone])
        return f"渐变的{tone}背景" if bg.gradient else f"{tone}背景"

    def tone(self) -> str:
        return self.pick(TONE_WORDS_ZH[self.scene.background.tone])

    def rel(self, a: SceneObject, b: SceneObject) -> str:
        return RELATIONS_ZH[relation(a, b)]


Template = Callable[[PhrasesZh, list[SceneObject]], str]

ONE: list[Template] = [
    lambda w, o: f"{w.full(o[0])}在图片的{w.pos(o[0])}",
    lambda w, o: f"图片的{w.pos(o[0])}有{w.full(o[0])}",
    lambda w, o: f"{w.background()}上有{w.full(o[0])}",
    lambda w, o: f"图中只有{w.full(o[0])}",
    lambda w, o: f"{w.pos(o[0])}是{w.full(o[0])}",
    lambda w, o: f"这是{w.full(o[0])}，位于{w.pos(o[0])}",
    lambda w, o: f"{w.full(o[0])}，背景是{w.tone()}",
    lambda w, o: f"一个{SIZE_ZH[o[0].size]}{w.shape(o[0])}，颜色是{COLOR_ZH[o[0].color]}",
    lambda w, o: f"画面{w.pos(o[0])}画着{w.full(o[0])}",
]
TWO: list[Template] = [
    lambda w, o: f"图中有两个形状：{w.full(o[0])}和{w.full(o[1])}",
    lambda w, o: f"{w.short(o[0])}在{w.short(o[1])}的{w.rel(o[0], o[1])}",
    lambda w, o: f"{w.full(o[0])}位于{w.pos(o[0])}，{w.full(o[1])}位于{w.pos(o[1])}",
    lambda w, o: f"{w.background()}上有{w.short(o[0])}和{w.short(o[1])}",
    lambda w, o: f"{w.pos(o[0])}有{w.full(o[0])}，{w.pos(o[1])}有{w.full(o[1])}",
    lambda w, o: f"两个形状：{w.short(o[0])}和{w.short(o[1])}",
    lambda w, o: f"图片里有{w.full(o[0])}和{w.full(o[1])}",
    lambda w, o: f"{w.full(o[0])}，它的{w.rel(o[1], o[0])}是{w.full(o[1])}",
]
THREE: list[Template] = [
    lambda w, o: f"图中有三个形状：{w.short(o[0])}、{w.short(o[1])}和{w.short(o[2])}",
    lambda w, o: f"{w.short(o[0])}、{w.short(o[1])}和{w.short(o[2])}",
    lambda w, o: f"{w.background()}上有{w.short(o[0])}、{w.short(o[1])}和{w.short(o[2])}",
    lambda w, o: (
        f"{w.short(o[0])}在{w.pos(o[0])}，{w.short(o[1])}在{w.pos(o[1])}，"
        f"{w.short(o[2])}在{w.pos(o[2])}"
    ),
    lambda w, o: f"三个形状中，{w.full(o[0])}在{w.pos(o[0])}",
    lambda w, o: f"{w.short(o[0])}在{w.short(o[1])}的{w.rel(o[0], o[1])}，旁边还有{w.short(o[2])}",
    lambda w, o: f"画面中有{w.short(o[0])}、{w.short(o[1])}和{w.short(o[2])}",
    lambda w, o: f"一共有{NUMBER_WORDS_ZH[3]}个图形，{w.pos(o[0])}是{w.full(o[0])}",
]
TEMPLATES_ZH: dict[int, list[Template]] = {1: ONE, 2: TWO, 3: THREE}


def captions_zh(
    scene: Scene, rng: np.random.Generator, n: int = N_CAPTIONS, max_length: int = MAX_LENGTH_ZH
) -> list[str]:
    """``n`` distinct captions of at most ``max_length`` characters."""
    words = PhrasesZh(scene, rng)
    templates = TEMPLATES_ZH[len(scene.objects)]
    out: list[str] = []
    for attempt in range(50 * n):
        if attempt % len(templates) == 0:
            order = rng.permutation(len(templates))
        objs = [scene.objects[k] for k in rng.permutation(len(scene.objects))]
        text = templates[int(order[attempt % len(templates)])](words, objs)
        if len(text) <= max_length and text not in out:
            out.append(text)
            if len(out) == n:
                return out
    raise RuntimeError(f"could not write {n} distinct Chinese captions for {scene}")
