"""clean_pairs: one reason per dropped row, in the documented order; the report's shape."""

from __future__ import annotations

import io
import json
import warnings

import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFile

from vlcore.data.clean import (
    CAPTION_REASONS,
    CLEAN_REASONS,
    CaptionFilter,
    CleanConfig,
    clean_pairs,
    default_special_chars_pattern,
)
from vlcore.data.raw import INGEST_ERRORS, RAW_SCHEMA, RawWriter, make_row

SHAPES = ["circle", "square", "triangle"]


def png(width: int = 48, height: int = 48, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def noisy_png(width: int = 64, height: int = 64, seed: int = 0) -> bytes:
    """A PNG that does not compress to a few bytes, so cutting it short truncates pixel data."""
    img = Image.effect_noise((width, height), 64 + seed).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_raw(path, rows) -> None:
    with RawWriter(path) as writer:
        writer.write_all(rows)


def run(tmp_path, rows, **config):
    raw, out, report = (
        tmp_path / "raw.parquet",
        tmp_path / "clean.parquet",
        tmp_path / "report.json",
    )
    write_raw(raw, rows)
    result = clean_pairs(raw, out, report, CleanConfig(**config))
    kept = pq.read_table(out).to_pylist()
    return result, kept


def expected_reason(report: dict) -> str:
    reasons = [r for r, n in report["dropped"].items() if n]
    assert len(reasons) == 1, report["dropped"]
    return reasons[0]


def test_reason_constants_follow_the_contract():
    assert CLEAN_REASONS == (
        "corrupt_image",
        "decompression_bomb",
        "truncated_image",
        "too_small",
        "bad_aspect_ratio",
        "empty_caption",
        "caption_too_long",
        "special_characters",
        "off_domain",
        "duplicate_image",
    )
    assert CLEAN_REASONS[5:9] == CAPTION_REASONS


def test_clean_rows_pass_and_report_has_every_reason(tmp_path):
    rows = [
        make_row(f"k{i}", "test", image=png(color=(i, 0, 0)), captions=["a red circle"])
        for i in range(5)
    ]
    report, kept = run(tmp_path, rows, keywords=SHAPES)
    assert report["rows_in"] == report["rows_kept"] == 5
    assert list(report["dropped"]) == [*INGEST_ERRORS, *CLEAN_REASONS]
    assert set(report["dropped"].values()) == {0}
    assert report["captions_dropped"] == dict.fromkeys(CAPTION_REASONS, 0)
    assert report["config"]["max_caption_length"] == 128
    assert report["config"]["keywords"] == SHAPES
    assert report["examples"] == {} and report["caption_examples"] == {}
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert [r["key"] for r in kept] == [f"k{i}" for i in range(5)]
    assert pq.read_schema(tmp_path / "clean.parquet").equals(RAW_SCHEMA, check_metadata=False)


@pytest.mark.parametrize(
    ("reason", "row_kwargs", "config"),
    [
        ("failed_to_download", {"error": "failed_to_download", "error_detail": "HTTP 404"}, {}),
        ("corrupt_image", {"image": b"this is not an image at all" * 20}, {}),
        ("decompression_bomb", {"image": png(300, 300)}, {"max_image_pixels": 10_000}),
        (
            "decompression_bomb",
            {"image": png(120, 100)},
            {"max_image_pixels": 10_000},
        ),  # < 2x limit
        ("truncated_image", {"image": noisy_png()[:-400]}, {}),
        ("too_small", {"image": png(16, 16)}, {}),
        ("bad_aspect_ratio", {"image": png(192, 32)}, {}),
        ("empty_caption", {"captions": ["   ", ""]}, {}),
        ("caption_too_long", {"captions": ["a circle " + "x" * 200]}, {}),
        ("special_characters", {"captions": ["a circle <b>bold</b>"]}, {}),
        ("off_domain", {"captions": ["a plate of noodles"]}, {"keywords": SHAPES}),
    ],
)
def test_each_dirty_row_is_dropped_for_its_reason(tmp_path, reason, row_kwargs, config):
    kwargs = {"image": png(), "captions": ["a red circle"], **row_kwargs}
    rows = [make_row("good", "test", image=png(color=(1, 2, 3)), captions=["a blue square"])]
    rows.append(make_row("dirty", "test", **kwargs))
    report, kept = run(tmp_path, rows, **config)
    assert expected_reason(report) == reason
    assert report["dropped"][reason] == 1
    assert report["examples"][reason][0]["key"] == "dirty"
    assert [r["key"] for r in kept] == ["good"]


def test_first_failing_check_wins(tmp_path):
    rows = [
        # too small AND bad captions: the image check comes first
        make_row("a", "test", image=png(8, 8), captions=[""]),
        # bomb AND too small aspect etc.: decompression_bomb before truncated/too_small
        make_row("b", "test", image=png(400, 20), captions=["x" * 500]),
        # empty first, then too long: the row takes its first failing caption's reason
        make_row("c", "test", image=png(), captions=["", "circle " * 40]),
        # too long AND special characters: too long is checked first
        make_row("d", "test", image=png(), captions=["<circle> " * 40]),
    ]
    report, kept = run(tmp_path, rows, max_image_pixels=5_000, keywords=SHAPES)
    assert kept == []
    by_reason = {r: [e["key"] for e in ex] for r, ex in report["examples"].items()}
    assert by_reason == {
        "too_small": ["a"],
        "decompression_bomb": ["b"],
        "empty_caption": ["c"],
        "caption_too_long": ["d"],
    }
    # caption failures of rows that reached the caption checks are counted one by one
    assert report["captions_dropped"] == {
        "empty_caption": 1,
        "caption_too_long": 2,
        "special_characters": 0,
        "off_domain": 0,
    }


def test_captions_are_normalised_and_failing_ones_removed(tmp_path):
    row = make_row(
        "k",
        "test",
        image=png(),
        captions=[
            "  a red\t circle \n",
            "",
            "a car on a road",
            "http://x.org circle",
            "two  squares",
        ],
        styled_captions=[
            {"style": "happy", "caption": "  what a  lovely circle!  "},
            {"style": "angry", "caption": "🙂 circle"},
            {"style": "calm", "caption": "   "},
        ],
    )
    report, kept = run(tmp_path, [row], keywords=["circle", "squares"])
    assert report["rows_kept"] == 1
    assert kept[0]["captions"] == ["a red circle", "two squares"]
    assert kept[0]["styled_captions"] == [{"style": "happy", "caption": "what a lovely circle!"}]
    assert report["captions_dropped"] == {
        "empty_caption": 2,
        "caption_too_long": 0,
        "special_characters": 2,
        "off_domain": 1,
    }
    assert report["caption_examples"]["off_domain"] == [{"key": "k", "detail": "a car on a road"}]
    assert kept[0]["error"] is None and kept[0]["image"] == row["image"]


def test_vqa_only_and_style_only_rows_are_kept(tmp_path):
    question = {
        "question_id": 1,
        "question": "What shape is it?",
        "question_type": "what",
        "answer_type": "other",
        "answers": ["circle"] * 10,
        "multiple_choice_answer": "circle",
    }
    rows = [
        make_row(
            "vqa", "test", image=png(color=(1, 1, 1)), captions=["<bad>"], questions=[question]
        ),
        make_row(
            "style",
            "test",
            image=png(color=(2, 2, 2)),
            styled_captions=[{"style": "happy", "caption": "a jolly circle"}],
        ),
        make_row("nothing", "test", image=png(color=(3, 3, 3))),
    ]
    report, kept = run(tmp_path, rows)
    assert [r["key"] for r in kept] == ["vqa", "style"]
    assert kept[0]["captions"] == [] and kept[0]["questions"] == [question]
    assert report["dropped"]["empty_caption"] == 1
    assert report["examples"]["empty_caption"][0]["key"] == "nothing"


def test_duplicates_are_checked_against_kept_rows_only(tmp_path):
    image = png(color=(9, 9, 9))
    rows = [
        make_row("bad-first", "test", image=image, captions=[""]),  # dropped: does not count
        make_row("first", "test", image=image, captions=["a circle"]),
        make_row("copy", "test", image=image, captions=["another circle"]),
    ]
    report, kept = run(tmp_path, rows)
    assert [r["key"] for r in kept] == ["first"]
    assert report["dropped"]["duplicate_image"] == 1
    assert report["examples"]["duplicate_image"][0] == {
        "key": "copy",
        "detail": "same bytes as first",
    }
    report, kept = run(tmp_path, rows, dedupe=False)
    assert [r["key"] for r in kept] == ["first", "copy"]


def test_duplicate_keys_from_ingest_are_counted(tmp_path):
    rows = [make_row("k", "test", image=png(), captions=["circle"])] * 2
    report, kept = run(tmp_path, rows)
    assert report["dropped"]["duplicate_key"] == 1 and len(kept) == 1


@pytest.mark.parametrize(
    ("caption", "ok"),
    [
        ("A red circle, next to a square; (big) - 'ok'? \"yes\"! 1/2 + 3.", True),
        ("一个红色的圆形，旁边是正方形。真好！是吗？“对”、（是的）《书》【注】……——：；", True),
        ("see www.example.com", False),
        ("see HTTPS://example.com/x", False),
        ("<p>a circle</p>", False),
        ("a circle 😀", False),
        ("a circle ★", False),
        ("a\x07circle", False),
        ("a circle \ue000", False),
        ("#circle", False),
        ("@user circle", False),
        ("50% circle", False),
        ("a_b", False),
        ("{circle}", False),
        ("a | b", False),
        ("x = y", False),
        ("$5", False),
        ("a~b", False),
        ("a^b", False),
        ("a*b", False),
        ("a&b", False),
        ("a\\b", False),
        ("[circle]", False),
    ],
)
def test_default_special_characters(caption, ok):
    f = CaptionFilter(CleanConfig())
    assert (f.check(caption) is None) == ok, caption


def test_default_pattern_is_reused():
    assert default_special_chars_pattern() is default_special_chars_pattern()


def test_custom_special_pattern_replaces_default():
    f = CaptionFilter(CleanConfig(special_chars_pattern=r"\d"))
    assert f.check("a circle #1") == "special_characters"
    assert f.check("a circle #") is None


def test_english_keywords_match_whole_words_case_insensitively():
    f = CaptionFilter(CleanConfig(keywords=["circle", "traffic light"]))
    assert f.check("A big CIRCLE.") is None
    assert f.check("a Traffic light") is None
    assert f.check("a semicircle") == "off_domain"
    assert f.check("encircled") == "off_domain"
    exclude = CaptionFilter(CleanConfig(keywords=["car"], keyword_mode="exclude"))
    assert exclude.check("a red Car") == "off_domain"
    assert exclude.check("a red cart") is None


def test_chinese_defaults_and_substring_keywords():
    f = CaptionFilter(CleanConfig(lang="zh", keywords=["圆形", "正方形"]))
    assert f.check("一个红色的圆形") is None
    assert f.check("两个正方形和一个圆形。") is None
    assert f.check("一碗面条") == "off_domain"
    assert f.check("圆形" * 16) is None  # 32 characters
    assert f.check("圆形" * 16 + "。") == "caption_too_long"
    assert CaptionFilter(CleanConfig(lang="zh", max_caption_length=40)).check("圆形" * 20) is None


def test_english_length_limit():
    f = CaptionFilter(CleanConfig())
    assert f.check("c" * 128) is None
    assert f.check("c" * 129) == "caption_too_long"


def test_pil_state_is_restored_and_no_bomb_warning_leaks(tmp_path):
    old = Image.MAX_IMAGE_PIXELS
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # someone else's setting must not weaken our checks
    try:
        rows = [
            make_row("bomb", "test", image=png(150, 100), captions=["circle"]),
            make_row("cut", "test", image=noisy_png()[:-400], captions=["circle"]),
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            report, kept = run(tmp_path, rows, max_image_pixels=10_000)
        assert report["dropped"]["decompression_bomb"] == 1
        assert report["dropped"]["truncated_image"] == 1
        assert old == Image.MAX_IMAGE_PIXELS
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_images_are_accepted_above_pil_default_limit_when_configured(tmp_path):
    # A small real image passes when our limit is above its size, whatever PIL's global says.
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 100
    try:
        report, kept = run(tmp_path, [make_row("k", "test", image=png(), captions=["circle"])])
        assert report["rows_kept"] == 1
        assert Image.MAX_IMAGE_PIXELS == 100
    finally:
        Image.MAX_IMAGE_PIXELS = old


def test_streams_in_batches_and_keeps_order(tmp_path):
    rows = [
        make_row(
            f"k{i:03d}", "test", image=png(color=(i, i, 0)), captions=["circle" if i % 3 else ""]
        )
        for i in range(100)
    ]
    raw, out, rep = tmp_path / "raw.parquet", tmp_path / "clean.parquet", tmp_path / "r.json"
    write_raw(raw, rows)
    report = clean_pairs(raw, out, rep, CleanConfig(), batch_rows=7)
    kept = pq.read_table(out, columns=["key"]).column("key").to_pylist()
    assert kept == [f"k{i:03d}" for i in range(100) if i % 3]
    assert report["dropped"]["empty_caption"] == 34


def test_failure_leaves_no_output(tmp_path, monkeypatch):
    import vlcore.data.clean as clean_module

    raw, out, rep = tmp_path / "raw.parquet", tmp_path / "clean.parquet", tmp_path / "r.json"
    write_raw(
        raw,
        [make_row(f"k{i}", "test", image=png(color=(i, 0, 0)), captions=["c"]) for i in range(10)],
    )

    def boom(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(clean_module, "check_row", boom)
    with pytest.raises(RuntimeError):
        clean_pairs(raw, out, rep, CleanConfig(), batch_rows=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.parquet"]


@pytest.mark.parametrize(
    "bad",
    [
        {"lang": "fr"},
        {"keyword_mode": "maybe"},
        {"max_caption_length": 0},
        {"max_aspect_ratio": 0.5},
        {"special_chars_pattern": "("},
        {"keywords": "circle"},
    ],
)
def test_config_errors_are_clear(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        CleanConfig(**bad)
