"""Personality captions (Personality-Captions-like): one English caption per style per image.

Each style has its own voice (templates), but every styled caption still names at least one
object of the scene by colour and shape, so a captioner conditioned on the style has to look
at the image too. Same character set and length limit as the plain English captions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from vlcore.synthetic.captions_en import MAX_LENGTH_EN, PhrasesEn, finish
from vlcore.synthetic.scene import Scene, SceneObject

logger = logging.getLogger(__name__)

STYLES = ("Happy", "Sad", "Sarcastic", "Formal", "Curious")

Template = Callable[[PhrasesEn, list[SceneObject]], str]


def describe(w: PhrasesEn, objs: list[SceneObject]) -> str:
    """All objects: "a red circle", "a red circle and a blue star", "a, b and c"."""
    names = [w.obj(o) for o in objs]
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"


STYLE_TEMPLATES: dict[str, list[Template]] = {
    "Happy": [
        lambda w, o: f"what a lovely picture, {describe(w, o)}, it makes me smile",
        lambda w, o: f"yay, {w.obj(o[0])} {w.pos(o[0])}, so cheerful",
        lambda w, o: f"I love this bright {o[0].color} {w.shape(o[0])}, it is so happy",
        lambda w, o: f"{describe(w, o)}, what a delightful little picture",
    ],
    "Sad": [
        lambda w, o: f"just {w.obj(o[0])} {w.pos(o[0])}, all alone",
        lambda w, o: f"{describe(w, o)} on {w.background()}, how gloomy",
        lambda w, o: f"this {o[0].color} {w.shape(o[0])} looks so lonely",
        lambda w, o: f"even {describe(w, o)} cannot cheer me up today",
    ],
    "Sarcastic": [
        lambda w, o: f"oh wow, {describe(w, o)}, how original",
        lambda w, o: f"yes, because the world needed another {o[0].color} {w.shape(o[0])}",
        lambda w, o: f"{describe(w, o)}, truly the art of the century",
        lambda w, o: f"groundbreaking stuff, {w.obj(o[0])} {w.pos(o[0])}",
    ],
    "Formal": [
        lambda w, o: f"the image depicts {describe(w, o)}",
        lambda w, o: f"presented here is {w.obj(o[0])}, positioned {w.pos(o[0])}",
        lambda w, o: f"this composition contains {describe(w, o)} on {w.background()}",
        lambda w, o: f"we are pleased to present {w.obj(o[0])} {w.pos(o[0])}",
    ],
    "Curious": [
        lambda w, o: f"I wonder why {w.obj(o[0])} is {w.pos(o[0])}?",
        lambda w, o: f"is {w.obj(o[0])} trying to tell us something?",
        lambda w, o: f"what is {w.obj(o[0])} doing {w.pos(o[0])}?",
        lambda w, o: f"why would anyone draw {describe(w, o)}?",
    ],
}


def styled_captions(
    scene: Scene, rng: np.random.Generator, max_length: int = MAX_LENGTH_EN
) -> list[dict[str, str]]:
    """``[{"style", "caption"}]``, one per style in :data:`STYLES` order."""
    words = PhrasesEn(scene, rng)
    out = []
    for style in STYLES:
        templates = STYLE_TEMPLATES[style]
        for _ in range(50):
            objs = [scene.objects[k] for k in rng.permutation(len(scene.objects))]
            text = templates[int(rng.integers(len(templates)))](words, objs)
            text = text[:1].upper() + text[1:]
            if style == "Happy":
                text += "!"
            elif not text.endswith("?"):
                text = finish(text, rng)
            if len(text) <= max_length:
                break
        else:
            raise RuntimeError(f"no {style} caption of <= {max_length} characters for {scene}")
        out.append({"style": style, "caption": text})
    return out
