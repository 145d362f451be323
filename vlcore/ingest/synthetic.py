"""The synthetic shapes world as a source: ``generate`` then ``to_raw_row`` for each sample."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_synthetic(cfg: dict[str, Any], lang: str, workdir: Path) -> Iterator[dict[str, Any]]:
    """``cfg``: ``n_images``, ``image_size``, ``dirty_rate`` and the experiment's ``seed``."""
    from vlcore.synthetic import generate, to_raw_row

    samples = generate(
        cfg["n_images"], cfg["seed"], image_size=cfg["image_size"], dirty_rate=cfg["dirty_rate"]
    )
    for sample in samples:
        # Styled captions are English: a zh experiment would only see them dropped by the cleaner.
        yield to_raw_row(sample, lang, include_styled=lang == "en")
