"""Round trip: synthetic samples exported to each external format come back unchanged.

``vlcore.synthetic.export`` writes what real data sets look like; ingesting it must give back,
for every clean sample, the same image bytes, captions and (where the format carries them)
questions, styled captions, COCO id and Karpathy split.
"""

from __future__ import annotations

import pytest

from vlcore.data.raw import iter_raw_rows
from vlcore.ingest import run_ingest
from vlcore.synthetic import export_dataset, generate, source_config
from vlcore.synthetic.export import image_hash, karpathy_split

N, SEED = 40, 11


@pytest.fixture(scope="module")
def samples():
    samples = generate(N, SEED, image_size=48, dirty_rate=0.3)
    assert any(s.dirty_reason for s in samples) and any(s.dirty_reason is None for s in samples)
    return samples


def roundtrip(samples, fmt, tmp_path, lang="en") -> tuple[dict[str, dict], dict]:
    paths = export_dataset(samples, fmt, tmp_path / "export", lang=lang)
    out = tmp_path / "raw.parquet"
    stats = run_ingest(
        source_config(fmt, paths), out, tmp_path / "stats.json", lang=lang, seed=SEED
    )
    rows = list(iter_raw_rows(out))
    return {r["key"]: r for r in rows}, stats


def captions(sample, lang):
    return sample.captions_en if lang == "en" else sample.captions_zh


def clean(samples):
    clean = [s for s in samples if s.dirty_reason is None]
    assert len(clean) >= N // 2
    return clean


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_base64_tsv(samples, tmp_path, lang):
    rows, stats = roundtrip(samples, "base64_tsv", tmp_path, lang)
    assert stats["ok"] == stats["rows"] == len([s for s in samples if captions(s, lang)])
    for s in clean(samples):
        row = rows[f"tsv:{s.key}"]
        assert row["image"] == s.image
        assert row["captions"] == captions(s, lang)
    for s in samples:  # dirty images come back byte for byte too: the cleaner judges them
        if captions(s, lang):
            assert rows[f"tsv:{s.key}"]["image"] == s.image


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_image_folder(samples, tmp_path, lang):
    rows, stats = roundtrip(samples, "image_folder", tmp_path, lang)
    assert stats["ok"] == stats["rows"] == len([s for s in samples if captions(s, lang)])
    for s in clean(samples):
        row = rows[f"folder:images/{s.key}.png"]
        assert row["image"] == s.image
        assert row["captions"] == captions(s, lang)
    for s in samples:
        if captions(s, lang):
            assert rows[f"folder:images/{s.key}.png"]["image"] == s.image


def test_coco(samples, tmp_path):
    rows, stats = roundtrip(samples, "coco", tmp_path)
    assert stats["ok"] == stats["rows"] == N and stats["warnings"] == 0
    assert all(rows[f"coco:{s.image_id}"]["image"] == s.image for s in samples)
    for s in clean(samples):
        row = rows[f"coco:{s.image_id}"]
        assert row["image"] == s.image and row["image_id"] == s.image_id
        assert row["captions"] == s.captions_en
        assert row["questions"] == s.questions
        assert row["split_hint"] == karpathy_split(s.key)


def test_personality(samples, tmp_path):
    rows, stats = roundtrip(samples, "personality", tmp_path)
    assert stats["ok"] == stats["rows"] == len([s for s in samples if s.styled_captions])
    for s in clean(samples):
        assert s.styled_captions
        row = rows[f"pc:{image_hash(s.key)}"]
        assert row["image"] == s.image and row["captions"] == []
        assert row["styled_captions"] == s.styled_captions
