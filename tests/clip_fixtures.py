"""Tiny shapes-world shards and a caption tokenizer for the CLIP tests (and timing runs).

The data goes through the real data stages (``RawWriter`` -> ``clean_pairs`` ->
``shard_dataset``), so the trainers read exactly what the workflow would give them::

    python -m tests.clip_fixtures /tmp/clipdata 3000 en    # shards/ and tokenizer/ in /tmp/clipdata
"""

from __future__ import annotations

import sys
from pathlib import Path

from vlcore.data.clean import CleanConfig, clean_pairs
from vlcore.data.raw import RawWriter
from vlcore.data.shard import ShardConfig, shard_dataset
from vlcore.data.stream import ShardStream
from vlcore.synthetic.generate import generate, to_raw_row
from vlcore.text import TokenizerConfig, train_tokenizer


def make_shards(
    root: str | Path,
    n_images: int = 48,
    *,
    seed: int = 0,
    lang: str = "en",
    image_size: int = 64,
    split: dict[str, float] | None = None,
    row_group_rows: int = 256,
) -> Path:
    """Generate, clean and shard ``n_images`` clean synthetic samples; return the shard folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    samples = generate(n_images, seed, image_size=64, dirty_rate=0.0)
    with RawWriter(root / "raw.parquet") as writer:
        writer.write_all(to_raw_row(s, lang, include_styled=False) for s in samples)
    clean_pairs(root / "raw.parquet", root / "clean.parquet", root / "clean_report.json",
                CleanConfig(lang=lang))  # fmt: skip
    config = ShardConfig(
        image_size=image_size,
        rows_per_shard=1000,
        row_group_rows=row_group_rows,
        split=split if split is not None else {"val": 0.1, "test": 0.1},
    )
    shard_dataset(root / "clean.parquet", root / "shards", config)
    return root / "shards"


def make_tokenizer(
    shards: str | Path, out_dir: str | Path, *, lang: str = "en", vocab_size: int = 600
) -> Path:
    """Train the experiment's byte-level BPE tokenizer on the training captions."""
    texts = [
        caption
        for row in ShardStream(shards, "train", transform=lambda img: None)
        for caption in row["captions"]
    ]
    config = TokenizerConfig(kind="bpe", lang=lang, vocab_size=vocab_size, max_length=32)
    train_tokenizer(texts, config, out_dir)
    return Path(out_dir)


if __name__ == "__main__":
    out, n, language = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    shards_dir = make_shards(out, n, lang=language)
    make_tokenizer(shards_dir, out / "tokenizer", lang=language, vocab_size=2000)
    print(shards_dir, out / "tokenizer")
