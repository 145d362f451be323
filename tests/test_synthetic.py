"""The synthetic shapes world: determinism, caption/answer invariants, dirty-row ground truth."""

from __future__ import annotations

import io
import re
from collections import Counter

import pyarrow as pa
import pytest
from PIL import Image

from vlcore.data.raw import RAW_SCHEMA
from vlcore.synthetic import (
    COLORS,
    DIRTY_REASONS,
    SHAPE_WORDS_EN,
    SHAPE_WORDS_ZH,
    SHAPES,
    STYLES,
    contact_sheet,
    generate,
    generate_sample,
    normalize_answer,
    sample_key,
    to_raw_row,
)
from vlcore.synthetic.dirty import OFF_DOMAIN_EN, OFF_DOMAIN_STYLED, OFF_DOMAIN_ZH
from vlcore.synthetic.lexicon import COLOR_ZH, SHAPE_SYNONYMS_EN, SHAPE_SYNONYMS_ZH

SEED = 7
N = 240

_SHAPE_RE_EN = re.compile(
    r"(?<!\w)(?:" + "|".join(map(re.escape, SHAPE_WORDS_EN)) + r")(?!\w)", re.IGNORECASE
)
# Characters clean captions may use; everything else would risk a special-character check.
_PLAIN_EN = re.compile(r"[A-Za-z0-9 ,.:'!?]+")
_PLAIN_ZH = re.compile(r"[\u4e00-\u9fff，：、。]+")
_SPECIAL = re.compile(
    r"</?[A-Za-z][^<>]*>|https?://|www\.|[#@<>{}\[\]|\\^~*=$%&_`]|[^\x00-\uffff]|★"
)


def has_shape_en(text: str) -> bool:
    return _SHAPE_RE_EN.search(text) is not None


def has_shape_zh(text: str) -> bool:
    return any(w in text for w in SHAPE_WORDS_ZH)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.fixture(scope="module")
def samples():
    return generate(N, SEED)


@pytest.fixture(scope="module")
def dirty_samples():
    return generate(N, SEED, dirty_rate=0.6)


def clean(samples):
    return [s for s in samples if s.dirty_reason is None]


# ---- determinism ---------------------------------------------------------------------------


def test_same_seed_same_bytes_and_growth_keeps_samples(samples, dirty_samples):
    assert generate(N, SEED) == samples
    small = generate(60, SEED, dirty_rate=0.6)
    assert small == dirty_samples[:60]  # sample i never depends on n_images
    for i in (0, 17, 59):
        assert generate_sample(i, SEED, dirty_rate=0.6) == dirty_samples[i]


def test_duplicate_sample_alone_equals_sample_in_data_set(dirty_samples):
    dup = next(s for s in dirty_samples if s.dirty_reason == "duplicate_image")
    assert generate_sample(dup.index, SEED, dirty_rate=0.6) == dup


def test_seeds_differ_and_keys(samples):
    other = generate(10, SEED + 1)
    assert [s.image for s in other] != [s.image for s in samples[:10]]
    assert [s.key for s in samples[:3]] == ["synth-0000000", "synth-0000001", "synth-0000002"]
    assert all(s.image_id == s.index == i and s.key == sample_key(i) for i, s in enumerate(samples))


# ---- scenes and images ---------------------------------------------------------------------


def test_images_and_objects(samples):
    images = set()
    for s in clean(samples):
        with Image.open(io.BytesIO(s.image)) as img:
            img.load()
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (64, 64))
        images.add(s.image)
        assert 1 <= len(s.objects) <= 3
        kinds = {(o["shape"], o["color"]) for o in s.objects}
        assert len(kinds) == len(s.objects)
        for o in s.objects:
            assert o["shape"] in SHAPES and o["color"] in COLORS and o["size"] in ("small", "large")
            assert 0 < o["x"] < 1 and 0 < o["y"] < 1
    assert len(images) == len(clean(samples))  # no accidental duplicates
    counts = Counter(len(s.objects) for s in samples)
    assert set(counts) == {1, 2, 3}


def test_image_size_option():
    s = generate_sample(3, SEED, image_size=96, dirty_rate=0.0)
    assert Image.open(io.BytesIO(s.image)).size == (96, 96)


def test_contact_sheet_is_readable(tmp_path, dirty_samples):
    sheet = contact_sheet([s.image for s in dirty_samples[:64]], cols=8)
    path = tmp_path / "grid.png"
    sheet.save(path)
    assert Image.open(path).size == (8 * 66 + 2, 8 * 66 + 2)


# ---- captions ------------------------------------------------------------------------------


def test_english_captions(samples):
    for s in clean(samples):
        caps = s.captions_en
        assert len(caps) == 5 and len(set(caps)) == 5
        for c in caps:
            assert len(c) <= 100 and _PLAIN_EN.fullmatch(c), c
            assert has_shape_en(c), c
            ws = words(c)
            named = [
                o for o in s.objects if o["color"] in ws and ws & set(SHAPE_SYNONYMS_EN[o["shape"]])
            ]
            assert named, (c, s.objects)
            if len(s.objects) == 1:
                assert named == s.objects


def test_chinese_captions(samples):
    for s in clean(samples):
        caps = s.captions_zh
        assert len(caps) == 5 and len(set(caps)) == 5
        for c in caps:
            assert len(c) <= 32 and _PLAIN_ZH.fullmatch(c), c
            assert has_shape_zh(c), c
            assert any(
                COLOR_ZH[o["color"]] in c and any(w in c for w in SHAPE_SYNONYMS_ZH[o["shape"]])
                for o in s.objects
            ), c


def test_captions_use_synonyms_counts_and_positions(samples):
    text = " ".join(c.lower() for s in samples for c in s.captions_en)
    for phrase in ("disk", "big", "little", "to the left of", "above", "top left", "three shapes"):
        assert phrase in text
    zh = "".join(c for s in samples for c in s.captions_zh)
    for phrase in ("图中有两个形状：", "左上角", "方块", "背景"):
        assert phrase in zh


def test_styled_captions(samples):
    for s in clean(samples):
        assert [sc["style"] for sc in s.styled_captions] == list(STYLES)
        for sc in s.styled_captions:
            c = sc["caption"]
            assert len(c) <= 100 and _PLAIN_EN.fullmatch(c) and has_shape_en(c), c
            assert any(o["color"] in words(c) for o in s.objects), c


# ---- questions -----------------------------------------------------------------------------


def test_questions_are_vqa_shaped_and_true(samples):
    ids = []
    yes_no = Counter()
    disagreement = 0
    for s in clean(samples):
        assert len(s.questions) >= 5
        for k, q in enumerate(s.questions):
            ids.append(q["question_id"])
            assert q["question_id"] == s.index * 16 + k
            assert q["question"].startswith(q["question_type"]) and q["question"].endswith("?")
            assert q["answer_type"] in ("yes/no", "number", "other")
            assert len(q["answers"]) == 10
            normalized = Counter(normalize_answer(a) for a in q["answers"])
            assert q["multiple_choice_answer"] == normalized.most_common(1)[0][0]
            assert normalized[q["multiple_choice_answer"]] >= 7
            disagreement += len(normalized) > 1
            mca = q["multiple_choice_answer"]
            if q["answer_type"] == "yes/no":
                assert mca in ("yes", "no")
                yes_no[mca] += 1
            if q["answer_type"] == "number":
                assert mca.isdigit()
            if q["question"].startswith("how many shapes") or q["question"].startswith(
                "how many objects"
            ):
                assert mca == str(len(s.objects))
            m = re.fullmatch(r"what color is the (\w+)\?", q["question"])
            if m:
                (obj,) = [o for o in s.objects if o["shape"] == m.group(1)]  # only when unambiguous
                assert mca == obj["color"]
            m = re.fullmatch(r"is there a (\w+) (\w+)\?", q["question"])
            if m:
                present = any((o["color"], o["shape"]) == m.groups() for o in s.objects)
                assert mca == ("yes" if present else "no")
    assert len(ids) == len(set(ids))
    assert 0.4 < yes_no["yes"] / (yes_no["yes"] + yes_no["no"]) < 0.6
    assert disagreement > 0


def test_normalize_answer():
    assert normalize_answer("Two.") == normalize_answer("2") == normalize_answer("2.") == "2"
    assert normalize_answer("The red!") == "red"
    assert normalize_answer("a circle") == "circle"
    assert normalize_answer("on the left") == "on left" != normalize_answer("left")


# ---- dirty rows ----------------------------------------------------------------------------


def test_dirty_rate_and_reasons(samples, dirty_samples):
    n_dirty = sum(s.dirty_reason is not None for s in samples)
    assert 2 <= n_dirty <= 30  # 5% of 240 = 12
    reasons = Counter(s.dirty_reason for s in dirty_samples if s.dirty_reason)
    assert set(reasons) == set(DIRTY_REASONS)
    assert all(
        generate_sample(0, seed, dirty_rate=1.0).dirty_reason != "duplicate_image"
        for seed in range(20)
    )
    assert not any(s.dirty_reason == "duplicate_image" for s in generate(30, SEED, dirty_rate=1.0))


def test_dirty_reasons_are_cleaning_reasons():
    clean_module = pytest.importorskip("vlcore.data.clean")
    assert set(DIRTY_REASONS) == set(clean_module.CLEAN_REASONS) - {"decompression_bomb"}


def _captions_ok(s) -> bool:
    return all(c.strip() and len(c) <= 100 and has_shape_en(c) for c in s.captions_en) and all(
        len(c) <= 32 and has_shape_zh(c) for c in s.captions_zh
    )


def test_image_faults_break_only_the_image(dirty_samples):
    by_reason = {r: [s for s in dirty_samples if s.dirty_reason == r] for r in DIRTY_REASONS}
    for s in by_reason["corrupt_image"]:
        with pytest.raises(Exception):  # noqa: B017 - PIL raises UnidentifiedImageError
            Image.open(io.BytesIO(s.image))
        assert _captions_ok(s) and s.questions
    for s in by_reason["truncated_image"]:
        img = Image.open(io.BytesIO(s.image))
        assert img.size == (64, 64)
        with pytest.raises(OSError):
            img.load()
        assert _captions_ok(s) and s.questions
    for s in by_reason["too_small"]:
        img = Image.open(io.BytesIO(s.image))
        img.load()
        assert img.size == (16, 16)
        assert _captions_ok(s)
    for s in by_reason["bad_aspect_ratio"]:
        img = Image.open(io.BytesIO(s.image))
        img.load()
        assert img.size == (384, 64) and min(img.size) >= 32
        assert _captions_ok(s)


def test_caption_faults_break_only_the_captions(dirty_samples):
    for s in dirty_samples:
        if s.dirty_reason not in (
            "empty_caption",
            "caption_too_long",
            "special_characters",
            "off_domain",
        ):
            continue
        Image.open(io.BytesIO(s.image)).load()
        assert s.questions == []  # a usable question would keep the row
        en = s.captions_en + [sc["caption"] for sc in s.styled_captions]
        zh = s.captions_zh
        assert not any(ch in c for c in en + zh for ch in "\t\n\r")
        if s.dirty_reason == "empty_caption":
            assert all(not c.strip() for c in en + zh)
        elif s.dirty_reason == "caption_too_long":
            assert all(len(c) > 200 and has_shape_en(c) and not _SPECIAL.search(c) for c in en)
            assert all(len(c) > 40 and has_shape_zh(c) and not _SPECIAL.search(c) for c in zh)
        elif s.dirty_reason == "special_characters":
            assert all(len(c) <= 128 and has_shape_en(c) and _SPECIAL.search(c) for c in en), en
            assert all(len(c) <= 32 and has_shape_zh(c) and _SPECIAL.search(c) for c in zh), zh
        else:
            assert all(c.strip() and len(c) <= 100 and not has_shape_en(c) for c in en), en
            assert all(c.strip() and len(c) <= 32 and not has_shape_zh(c) for c in zh), zh
            assert not any(_SPECIAL.search(c) for c in en + zh)


def test_off_domain_lists_have_no_shape_word():
    for text in OFF_DOMAIN_EN + tuple(t for ts in OFF_DOMAIN_STYLED.values() for t in ts):
        assert not has_shape_en(text), text
        assert not any(w in text.lower() for w in SHAPE_WORDS_EN), text  # not even as a substring
    for text in OFF_DOMAIN_ZH:
        assert not has_shape_zh(text) and len(text) <= 32, text
    assert set(OFF_DOMAIN_STYLED) == set(STYLES)


def test_duplicates_copy_an_earlier_clean_sample(dirty_samples):
    dups = [s for s in dirty_samples if s.dirty_reason == "duplicate_image"]
    assert dups
    for s in dups:
        src = next(t for t in dirty_samples[: s.index] if t.image == s.image)
        assert src.dirty_reason is None  # the first holder of these bytes is a clean sample
        assert (src.captions_en, src.captions_zh, src.objects) == (
            s.captions_en,
            s.captions_zh,
            s.objects,
        )
        assert [q["question_id"] // 16 for q in s.questions] == [s.index] * len(s.questions)


def test_dirty_ground_truth_matches_the_cleaner(tmp_path, dirty_samples):
    """The real clean_pairs drops every dirty row for its reason and keeps every clean row."""
    from vlcore.data import clean as clean_module
    from vlcore.data.raw import RawWriter

    truth = Counter(s.dirty_reason for s in dirty_samples if s.dirty_reason)
    for lang, keywords in (("en", SHAPE_WORDS_EN), ("zh", SHAPE_WORDS_ZH)):
        raw = tmp_path / f"raw_{lang}.parquet"
        with RawWriter(raw) as writer:
            writer.write_all(to_raw_row(s, lang) for s in dirty_samples)
        config = clean_module.CleanConfig(lang=lang, keywords=list(keywords))
        report = clean_module.clean_pairs(
            raw, tmp_path / f"clean_{lang}.parquet", tmp_path / f"report_{lang}.json", config
        )
        assert {k: v for k, v in report["dropped"].items() if v} == dict(truth), lang
        assert report["rows_kept"] == len(clean(dirty_samples))


# ---- raw rows and arguments ----------------------------------------------------------------


def test_to_raw_row(samples):
    s = samples[5]
    row = to_raw_row(s, "zh")
    assert list(row) == RAW_SCHEMA.names
    assert (row["key"], row["source"], row["image_id"]) == (s.key, "synthetic", s.index)
    assert row["captions"] == s.captions_zh and row["image"] == s.image
    assert row["styled_captions"] == s.styled_captions and row["questions"] == s.questions
    assert to_raw_row(s, "zh", include_styled=False)["styled_captions"] == []
    table = pa.Table.from_pylist([to_raw_row(t, "en") for t in samples[:20]], schema=RAW_SCHEMA)
    assert table.num_rows == 20
    with pytest.raises(ValueError, match="lang"):
        to_raw_row(s, "fr")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_images": -1, "seed": 0},
        {"n_images": 2, "seed": -1},
        {"n_images": 2, "seed": 0, "image_size": 16},
        {"n_images": 2, "seed": 0, "dirty_rate": 1.5},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        generate(**kwargs)
