"""The synthetic shapes world: vlcore's embedded, deterministic default data set.

Images of 1-3 coloured shapes with English and Chinese captions, personality captions,
VQAv2-style questions, and a known fraction of dirty rows for the cleaner to find. See
``docs/data-design.md`` for the contract.

>>> from vlcore.synthetic import generate, export_dataset   # doctest: +SKIP
>>> samples = generate(100, seed=0)
>>> export_dataset(samples, "coco", "out/coco")
"""

from __future__ import annotations

from vlcore.synthetic.dirty import DIRTY_REASONS
from vlcore.synthetic.export import FORMATS, export_dataset, image_hash, source_config
from vlcore.synthetic.generate import (
    SyntheticSample,
    generate,
    generate_sample,
    sample_key,
    to_raw_row,
)
from vlcore.synthetic.lexicon import (
    COLOR_WORDS_EN,
    COLOR_WORDS_ZH,
    COLORS,
    SHAPE_WORDS_EN,
    SHAPE_WORDS_ZH,
    SHAPES,
    SIZES,
)
from vlcore.synthetic.preview import contact_sheet
from vlcore.synthetic.styles import STYLES
from vlcore.synthetic.vqa import normalize_answer

__all__ = [
    "COLORS",
    "COLOR_WORDS_EN",
    "COLOR_WORDS_ZH",
    "DIRTY_REASONS",
    "FORMATS",
    "SHAPES",
    "SHAPE_WORDS_EN",
    "SHAPE_WORDS_ZH",
    "SIZES",
    "STYLES",
    "SyntheticSample",
    "contact_sheet",
    "export_dataset",
    "generate",
    "generate_sample",
    "image_hash",
    "normalize_answer",
    "sample_key",
    "source_config",
    "to_raw_row",
]
