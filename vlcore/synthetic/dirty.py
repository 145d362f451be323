"""Dirty rows with known ground truth: each is faulty for exactly one cleaning reason.

A sample is dirty with probability ``dirty_rate``; its reason is uniform over
:data:`DIRTY_REASONS` (every ``clean_pairs`` reason but ``decompression_bomb``). How each is
made (``docs/data-design.md``), and what keeps it from tripping any other check:

- ``corrupt_image``: random bytes that PIL cannot open;
- ``truncated_image``: the sample's PNG cut inside its IDAT chunk (header opens, load fails);
- ``too_small``: the scene rendered at 16x16 (square, so the aspect ratio is fine);
- ``bad_aspect_ratio``: the scene rendered 6:1, short side = the image size (>= 32);
- ``empty_caption``: every caption and styled caption blank;
- ``caption_too_long``: every caption > 200 characters (zh > 40), made of true sentences
  with shape words and no special characters;
- ``special_characters``: every caption carries markup, an emoji, a symbol, a hashtag or a URL,
  yet stays within the length limits (en <= 128, zh <= 32) and names a shape;
- ``off_domain``: every caption is about food, cars or landscapes, with no shape word;
- ``duplicate_image``: the exact bytes and captions of an earlier clean sample.

Caption faults also apply to the styled captions, and such rows carry no questions: a row
with any usable question is kept by the cleaner, so it could not be dropped for its reason.
"""

from __future__ import annotations

import io
import logging
import struct

import numpy as np
from PIL import Image

from vlcore.synthetic.captions_en import finish
from vlcore.synthetic.captions_zh import MAX_LENGTH_ZH, captions_zh
from vlcore.synthetic.scene import Scene
from vlcore.synthetic.streams import stream_rng

logger = logging.getLogger(__name__)

# In the order the cleaner checks them.
DIRTY_REASONS = (
    "corrupt_image",
    "truncated_image",
    "too_small",
    "bad_aspect_ratio",
    "empty_caption",
    "caption_too_long",
    "special_characters",
    "off_domain",
    "duplicate_image",
)
IMAGE_FAULTS = ("corrupt_image", "truncated_image", "too_small", "bad_aspect_ratio")
CAPTION_FAULTS = ("empty_caption", "caption_too_long", "special_characters", "off_domain")

TOO_SMALL_SIZE = 16
BAD_ASPECT_RATIO = 6
LONG_EN = 200  # too-long English captions have more characters than this
LONG_ZH = 40
SPECIAL_MAX_EN = 128  # the cleaner's default length limits, which special captions respect
SPECIAL_MAX_ZH = 32

OFF_DOMAIN_EN = (
    "A bowl of hot noodle soup with green onions.",
    "Grilled chicken and rice served on a white plate.",
    "A red sports car parked on a quiet street.",
    "Fresh strawberries and cream in a glass bowl.",
    "An old pickup truck driving down a dusty road.",
    "Snowy mountains above a calm blue lake at sunset.",
    "A slice of pepperoni pizza with melted cheese.",
    "Rolling green hills under a cloudy sky.",
    "A family sedan waiting at a traffic light.",
    "Pancakes with maple syrup and butter for breakfast.",
    "A sandy beach with palm trees and gentle waves.",
    "A plate of sushi next to a cup of green tea.",
    "Two vintage motorcycles outside a small garage.",
    "Autumn leaves covering a path through the forest.",
    "A chocolate cake topped with fresh raspberries.",
    "A yellow taxi driving through the city at night.",
    "A waterfall tumbling into a rocky pool.",
    "Steamed dumplings in a bamboo basket.",
    "A desert road winding toward distant cliffs.",
    "Freshly baked bread cooling on a kitchen counter.",
    "An electric car charging in a parking garage.",
    "A misty valley with a river running through it.",
)
OFF_DOMAIN_ZH = (
    "一碗热腾腾的牛肉面",
    "桌上放着一盘红烧肉和米饭",
    "一辆红色的跑车停在路边",
    "雪山脚下有一片安静的湖泊",
    "新鲜的草莓和奶油装在玻璃碗里",
    "一辆旧卡车行驶在乡间小路上",
    "夕阳下的海滩和椰子树",
    "刚出炉的面包放在厨房的台面上",
    "城市街道上的黄色出租车",
    "秋天的树林里铺满了落叶",
    "一盘香喷喷的饺子",
    "山谷里雾气弥漫，一条小河穿过",
    "一杯热咖啡和一块巧克力蛋糕",
    "停车场里正在充电的电动汽车",
    "绿色的稻田一望无际",
    "两辆老式摩托车停在车库外面",
    "一盘寿司旁边放着一杯绿茶",
    "瀑布从山崖上倾泻而下",
)
OFF_DOMAIN_STYLED = {
    "Happy": (
        "What a delicious bowl of noodles, I am so happy!",
        "I love this shiny red sports car!",
        "Sunny beaches always make me smile!",
    ),
    "Sad": (
        "The rain on the empty highway makes me feel blue.",
        "My soup went cold before I could eat it.",
        "The forest looks so bare in winter.",
    ),
    "Sarcastic": (
        "Oh great, another photo of someone's lunch.",
        "Wow, a parked car, how thrilling.",
        "Yet another sunset, how original.",
    ),
    "Formal": (
        "The photograph depicts a traditional breakfast.",
        "A well maintained sedan is shown in the driveway.",
        "The landscape features a mountain range at dawn.",
    ),
    "Curious": (
        "I wonder who baked this bread?",
        "Where is this old truck going?",
        "What lies beyond those hills?",
    ),
}
# Filler sentences for too-long captions: true of every scene, shape word, plain characters.
FILLER_EN = (
    "The shapes are drawn with clean, flat colors.",
    "Each shape has a thin darker outline around its edge.",
    "Nothing but simple shapes appears in this picture.",
    "The shapes do not touch or overlap each other.",
)
FILLER_ZH = ("画面里只有简单的几何图形", "每个形状都有一圈深色的边", "这些形状互不重叠")
BLANKS = ("", " ", "  ", "", "   ")

_DECORATIONS_EN = (
    "{c} <br>",
    "<b>{c}</b>",
    "{c} \U0001f600",
    "\u2605 {c}",
    "{c} #shapes",
    "{c} http://example.com/img/{n}.png",
    "{c} &amp; more",
    "{c} \U0001f3a8\u2728",
    "<p>{c}</p>",
    "@artbot {c}",
)
_DECORATIONS_ZH = (
    "{c}\U0001f600",
    "{c}\u2605",
    "<br>{c}",
    "#形状#{c}",
    "{c}\U0001f3a8",
    "{c} www.t.cn",
    "{c}@小明",
)


def draw_reason(seed: int, index: int, dirty_rate: float) -> str | None:
    """The reason sample ``index`` is drawn dirty for, or None when it is clean.

    Uses its own stream, so the draw is cheap to repeat (to find clean samples to copy) and a
    sample dirty at one rate is dirty for the same reason at every higher rate.
    """
    if not 0.0 <= dirty_rate <= 1.0:
        raise ValueError(f"dirty_rate must be in [0, 1], got {dirty_rate}")
    rng = stream_rng(seed, index, "dirty_draw")
    u, k = rng.random(), int(rng.integers(len(DIRTY_REASONS)))
    return DIRTY_REASONS[k] if u < dirty_rate else None


def duplicate_source(seed: int, index: int, dirty_rate: float) -> int | None:
    """An earlier clean sample for a ``duplicate_image`` sample to copy, or None if none is."""
    if index == 0:
        return None
    rng = stream_rng(seed, index, "duplicate_source")
    for _ in range(32):
        j = int(rng.integers(index))
        if draw_reason(seed, j, dirty_rate) is None:
            return j
    for j in range(index - 1, -1, -1):  # a very dirty data set: take the closest clean one
        if draw_reason(seed, j, dirty_rate) is None:
            return j
    return None


def fallback_reason(seed: int, index: int) -> str:
    """The reason used instead of ``duplicate_image`` when there is nothing to copy."""
    others = [r for r in DIRTY_REASONS if r != "duplicate_image"]
    return others[int(stream_rng(seed, index, "duplicate_source").integers(len(others)))]


# ---- images --------------------------------------------------------------------------------


def _opens(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)):
            return True
    except Exception:
        return False


def corrupt_bytes(rng: np.random.Generator) -> bytes:
    """Random bytes that no PIL plugin recognises as an image."""
    for _ in range(100):
        data = rng.bytes(int(rng.integers(200, 2000)))
        if not _opens(data):
            return data
    raise RuntimeError("could not draw bytes that PIL refuses")


def truncate_png(png: bytes, rng: np.random.Generator) -> bytes:
    """``png`` cut inside its first IDAT chunk: the header parses, the pixels do not."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("truncate_png needs PNG bytes")
    pos = 8
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT":
            start = pos + 8
            keep = max(1, min(length - 1, int(length * rng.uniform(0.3, 0.7))))
            return png[: start + keep]
        pos += 12 + length
    raise ValueError("PNG has no IDAT chunk")


# ---- captions ------------------------------------------------------------------------------


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def long_en(captions: list[str], rng: np.random.Generator, minimum: int = LONG_EN) -> list[str]:
    """One caption per input, each its own caption followed by the others and filler."""
    out = []
    for k in range(len(captions)):
        parts = [_sentence(c) for c in captions[k:] + captions[:k]]
        fillers = [FILLER_EN[i] for i in rng.permutation(len(FILLER_EN))]
        text = ""
        for part in parts + fillers * 4:
            text = f"{text} {part}".strip()
            if len(text) > minimum:
                break
        out.append(text)
    return out


def long_zh(captions: list[str], rng: np.random.Generator, minimum: int = LONG_ZH) -> list[str]:
    out = []
    for k in range(len(captions)):
        parts = captions[k:] + captions[:k]
        fillers = [FILLER_ZH[i] for i in rng.permutation(len(FILLER_ZH))]
        text = ""
        for part in parts + fillers * 4:
            text = f"{text}，{part}" if text else part
            if len(text) > minimum:
                break
        out.append(text + "。")
    return out


def long_styled(
    styled: list[dict[str, str]], captions: list[str], rng: np.random.Generator
) -> list[dict[str, str]]:
    out = []
    for item in styled:
        text = long_en([item["caption"], *captions], rng)[0]
        out.append({"style": item["style"], "caption": text})
    return out


def _decorate(
    caption: str, templates: tuple[str, ...], limit: int, rng: np.random.Generator
) -> str | None:
    for k in rng.permutation(len(templates)):
        text = templates[int(k)].format(c=caption, n=int(rng.integers(1000, 9999)))
        if len(text) <= limit:
            return text
    return None


def special_en(captions: list[str], rng: np.random.Generator) -> list[str]:
    """Each caption with markup, an emoji, a symbol, a hashtag, a handle or a URL added."""
    out = []
    for c in captions:
        text = _decorate(c, _DECORATIONS_EN, SPECIAL_MAX_EN, rng)
        if text is None:
            raise RuntimeError(f"caption too long to decorate: {c!r}")
        out.append(text)
    return out


def special_zh(scene: Scene, rng: np.random.Generator, n: int) -> list[str]:
    """Short Chinese captions of ``scene`` with a special character added, each <= 32 chars."""
    out: list[str] = []
    for c in captions_zh(scene, rng, n=n, max_length=MAX_LENGTH_ZH - 4):
        text = _decorate(c, _DECORATIONS_ZH, SPECIAL_MAX_ZH, rng)
        if text is None:
            raise RuntimeError(f"caption too long to decorate: {c!r}")
        out.append(text)
    return out


def special_styled(styled: list[dict[str, str]], rng: np.random.Generator) -> list[dict[str, str]]:
    return [{"style": s["style"], "caption": special_en([s["caption"]], rng)[0]} for s in styled]


def off_domain_en(rng: np.random.Generator, n: int) -> list[str]:
    return [
        finish(OFF_DOMAIN_EN[int(k)].rstrip("."), rng)
        for k in rng.permutation(len(OFF_DOMAIN_EN))[:n]
    ]


def off_domain_zh(rng: np.random.Generator, n: int) -> list[str]:
    return [OFF_DOMAIN_ZH[int(k)] for k in rng.permutation(len(OFF_DOMAIN_ZH))[:n]]


def off_domain_styled(
    styled: list[dict[str, str]], rng: np.random.Generator
) -> list[dict[str, str]]:
    out = []
    for s in styled:
        options = OFF_DOMAIN_STYLED[s["style"]]
        out.append({"style": s["style"], "caption": options[int(rng.integers(len(options)))]})
    return out


def blank_captions(n: int) -> list[str]:
    return [BLANKS[k % len(BLANKS)] for k in range(n)]


def blank_styled(styled: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"style": s["style"], "caption": BLANKS[k % len(BLANKS)]} for k, s in enumerate(styled)]
