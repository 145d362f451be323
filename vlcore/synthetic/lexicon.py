"""The vocabulary of the shapes world: shape, colour, size and position words in English and
Chinese.

Captions, questions and the default keyword filter all read these tables, so a word used in a
caption is always a word the filter knows. ``SHAPE_WORDS_EN`` / ``SHAPE_WORDS_ZH`` are the
domain keywords of the synthetic data set: every clean caption contains one (English: as a
whole word, any case; Chinese: as a substring) and no off-domain caption contains any.
"""

from __future__ import annotations

SHAPES = ("circle", "square", "triangle", "star", "diamond", "hexagon")
COLORS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
SIZES = ("small", "large")

# Grid cells of a 3x3 partition of the image, by (row, column); the names double as the
# canonical answers of "where is the ...?" questions.
POSITIONS = {
    (0, 0): "top left",
    (0, 1): "top",
    (0, 2): "top right",
    (1, 0): "left",
    (1, 1): "center",
    (1, 2): "right",
    (2, 0): "bottom left",
    (2, 1): "bottom",
    (2, 2): "bottom right",
}

# ---- English -------------------------------------------------------------------------------

SHAPE_SYNONYMS_EN = {
    "circle": ("circle", "disk"),
    "square": ("square",),
    "triangle": ("triangle",),
    "star": ("star",),
    "diamond": ("diamond", "rhombus"),
    "hexagon": ("hexagon",),
}
PLURALS_EN = {
    "circle": "circles",
    "disk": "disks",
    "disc": "discs",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "diamond": "diamonds",
    "rhombus": "rhombuses",
    "hexagon": "hexagons",
    "shape": "shapes",
}
SIZE_SYNONYMS_EN = {"small": ("small", "little"), "large": ("large", "big")}
# Background tones (see scene.Background) and how captions name them.
TONE_WORDS_EN = {
    "dark": ("dark", "dark gray", "dark grey"),
    "gray": ("gray", "grey", "medium gray"),
    "light": ("light", "light gray", "pale gray"),
}
POSITION_PHRASES_EN = {
    "top left": ("in the top left", "in the top left corner", "in the upper left corner"),
    "top": ("at the top", "near the top", "in the top middle"),
    "top right": ("in the top right", "in the top right corner", "in the upper right corner"),
    "left": ("on the left", "on the left side", "at the left"),
    "center": ("in the center", "in the middle"),
    "right": ("on the right", "on the right side", "at the right"),
    "bottom left": ("in the bottom left", "in the bottom left corner", "in the lower left corner"),
    "bottom": ("at the bottom", "near the bottom", "in the bottom middle"),
    "bottom right": (
        "in the bottom right",
        "in the bottom right corner",
        "in the lower right corner",
    ),
}
# Same positions, completed with "of the image/picture".
POSITION_OF_IMAGE_EN = {
    "top left": ("in the top left corner of the", "in the upper left of the"),
    "top": ("at the top of the", "near the top of the"),
    "top right": ("in the top right corner of the", "in the upper right of the"),
    "left": ("on the left side of the", "on the left of the"),
    "center": ("in the center of the", "in the middle of the"),
    "right": ("on the right side of the", "on the right of the"),
    "bottom left": ("in the bottom left corner of the", "in the lower left of the"),
    "bottom": ("at the bottom of the", "near the bottom of the"),
    "bottom right": ("in the bottom right corner of the", "in the lower right of the"),
}
RELATIONS_EN = {
    "left": "to the left of",
    "right": "to the right of",
    "above": "above",
    "below": "below",
}
NUMBER_WORDS_EN = {0: "zero", 1: "one", 2: "two", 3: "three"}

# ---- Chinese -------------------------------------------------------------------------------

COLOR_ZH = {
    "red": "红色",
    "orange": "橙色",
    "yellow": "黄色",
    "green": "绿色",
    "cyan": "青色",
    "blue": "蓝色",
    "purple": "紫色",
    "pink": "粉色",
}
SHAPE_SYNONYMS_ZH = {
    "circle": ("圆形",),
    "square": ("正方形", "方块"),
    "triangle": ("三角形",),
    "star": ("星形", "五角星"),
    "diamond": ("菱形",),
    "hexagon": ("六边形",),
}
SIZE_ZH = {"small": "小", "large": "大"}
TONE_WORDS_ZH = {"dark": ("深色", "深灰色"), "gray": ("灰色",), "light": ("浅色", "浅灰色")}
POSITION_ZH = {
    "top left": ("左上角",),
    "top": ("上方", "顶部"),
    "top right": ("右上角",),
    "left": ("左侧", "左边"),
    "center": ("中间", "中央"),
    "right": ("右侧", "右边"),
    "bottom left": ("左下角",),
    "bottom": ("下方", "底部"),
    "bottom right": ("右下角",),
}
RELATIONS_ZH = {"left": "左边", "right": "右边", "above": "上方", "below": "下方"}
NUMBER_WORDS_ZH = {1: "一", 2: "两", 3: "三"}

# ---- Domain keywords -----------------------------------------------------------------------

_GENERIC_EN = ("shape", "shapes")
SHAPE_WORDS_EN: tuple[str, ...] = tuple(
    sorted(
        {w for words in SHAPE_SYNONYMS_EN.values() for w in words}
        | set(PLURALS_EN)
        | set(PLURALS_EN.values())
        | set(_GENERIC_EN)
    )
)
"""English shape words (singular and plural, synonyms included); match as whole words."""

SHAPE_WORDS_ZH: tuple[str, ...] = tuple(
    sorted(
        {w for words in SHAPE_SYNONYMS_ZH.values() for w in words}
        | {"方形", "六角形", "圆圈", "形状", "图形"}
    )
)
"""Chinese shape words; match as substrings (no single characters such as 圆 or 星)."""

COLOR_WORDS_EN: tuple[str, ...] = COLORS
COLOR_WORDS_ZH: tuple[str, ...] = tuple(COLOR_ZH[c] for c in COLORS)


def article(word: str) -> str:
    """The English indefinite article for ``word`` ("an orange", "a hexagon")."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def plural_en(word: str) -> str:
    """Plural of an English shape word."""
    return PLURALS_EN.get(word, word + "s")
