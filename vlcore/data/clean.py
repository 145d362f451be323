"""``clean_pairs``: filter raw image-text rows and report why each dropped row went.

The checks, their order and the report are the contract in ``docs/data-design.md``:
a row is dropped for exactly one reason, its ingest ``error`` if set, else the first failing
check of :data:`CLEAN_REASONS`. Captions (and styled captions) are normalised (stripped,
whitespace collapsed) and checked one by one; failing ones are removed, and a row left with
nothing to learn from (no caption, styled caption or question) is dropped with the reason of
its first failing caption.

>>> report = clean_pairs("raw.parquet", "clean.parquet", "clean_report.json",
...                      CleanConfig(keywords=["circle", "square"]))   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from vlcore.data.images import BOMB_ERRORS, open_image, pil_limits
from vlcore.data.raw import INGEST_ERRORS, RAW_SCHEMA
from vlcore.io import atomic_path, write_json

logger = logging.getLogger(__name__)

IMAGE_REASONS = (
    "corrupt_image",
    "decompression_bomb",
    "truncated_image",
    "too_small",
    "bad_aspect_ratio",
)
CAPTION_REASONS = ("empty_caption", "caption_too_long", "special_characters", "off_domain")
# Every cleaning reason, in the order the checks run.
CLEAN_REASONS = (*IMAGE_REASONS, *CAPTION_REASONS, "duplicate_image")
# Every reason a row can be dropped for: ingest errors first, then the cleaning checks.
DROP_REASONS = (*INGEST_ERRORS, *CLEAN_REASONS)

DEFAULT_MAX_CAPTION_LENGTH = {"en": 128, "zh": 32}
MAX_EXAMPLES = 3  # examples kept per reason in the report
MAX_DETAIL_CHARS = 100  # an example's detail is cut to this many characters

# Characters that do not belong in a caption (markup, code, handles, hashtags ...).
# Ordinary punctuation, including Chinese punctuation (，。！？、；：“”《》…), passes.
_FORBIDDEN_ASCII = r"[#@<>{}\[\]|\\^~*=$%&_`]"
_HTML_TAG = r"</?[A-Za-z][^<>]*>"
_URL = r"(?i:https?://|www\.)\S*"
_SYMBOL_CATEGORIES = (
    "So",
    "Cs",
    "Co",
    "Cc",
)  # symbols (emoji ...), surrogates, private use, control


@dataclass
class CleanConfig:
    """What ``clean_pairs`` keeps. Field defaults match ``config/schema.yaml``."""

    # Longest caption kept, in characters; None picks the language default (zh 32, en 128).
    max_caption_length: int | None = None
    # Regex of forbidden caption content (re.search); None uses default_special_chars_pattern().
    special_chars_pattern: str | None = None
    # Domain words; empty disables the domain filter.
    keywords: list[str] = field(default_factory=list)
    # "require": a caption must contain a keyword; "exclude": it must contain none.
    keyword_mode: Literal["require", "exclude"] = "require"
    # Images whose short side is below this many pixels are dropped (too_small).
    min_image_size: int = 32
    # Images with long side / short side above this are dropped (bad_aspect_ratio).
    max_aspect_ratio: float = 3.0
    # Images with more pixels than this are never decoded (decompression_bomb); PIL's default.
    max_image_pixels: int = 89_478_485
    # Drop rows whose image bytes repeat an earlier kept row's (duplicate_image).
    dedupe: bool = True
    # Caption language: picks the default length limit and how keywords match.
    lang: Literal["en", "zh"] = "en"

    def __post_init__(self) -> None:
        if self.lang not in DEFAULT_MAX_CAPTION_LENGTH:
            raise ValueError(
                f"lang must be one of {sorted(DEFAULT_MAX_CAPTION_LENGTH)}, got {self.lang!r}"
            )
        if self.keyword_mode not in ("require", "exclude"):
            raise ValueError(
                f"keyword_mode must be 'require' or 'exclude', got {self.keyword_mode!r}"
            )
        if self.max_caption_length is not None and self.max_caption_length < 1:
            raise ValueError(
                f"max_caption_length must be >= 1 or None, got {self.max_caption_length}"
            )
        if self.min_image_size < 1:
            raise ValueError(f"min_image_size must be >= 1, got {self.min_image_size}")
        if self.max_aspect_ratio < 1:
            raise ValueError(f"max_aspect_ratio must be >= 1, got {self.max_aspect_ratio}")
        if self.max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be >= 1, got {self.max_image_pixels}")
        if isinstance(self.keywords, str):
            raise ValueError(f"keywords must be a list of words, got the string {self.keywords!r}")
        self.keywords = [normalize_caption(str(k)) for k in self.keywords if str(k).strip()]
        if self.special_chars_pattern is not None:
            try:
                re.compile(self.special_chars_pattern)
            except re.error as e:
                raise ValueError(
                    f"special_chars_pattern {self.special_chars_pattern!r} is not a valid "
                    f"regex: {e}"
                ) from e

    @property
    def caption_length_limit(self) -> int:
        """The effective maximum caption length (the language default when unset)."""
        if self.max_caption_length is None:
            return DEFAULT_MAX_CAPTION_LENGTH[self.lang]
        return self.max_caption_length


def normalize_caption(text: str) -> str:
    """Strip; collapse every whitespace run (tabs, newlines, ideographic spaces) to one space."""
    return " ".join(text.split())


def _char_ranges(categories: tuple[str, ...]) -> str:
    """A regex character-class body matching every code point in the Unicode ``categories``."""
    parts, start = [], None
    for cp in range(sys.maxunicode + 2):
        inside = cp <= sys.maxunicode and unicodedata.category(chr(cp)) in categories
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            end = cp - 1
            parts.append(f"\\U{start:08x}" if start == end else f"\\U{start:08x}-\\U{end:08x}")
            start = None
    return "".join(parts)


@functools.cache
def default_special_chars_pattern() -> str:
    """HTML tags, URLs, Unicode symbols (So: emoji ...), Cs/Co/Cc, and ``#@<>{}[]|\\^~*=$%&_```."""
    symbols = f"[{_char_ranges(_SYMBOL_CATEGORIES)}]"
    return "|".join((_HTML_TAG, _URL, _FORBIDDEN_ASCII, symbols))


class CaptionFilter:
    """The per-caption checks, in order: empty, too long, special characters, off domain."""

    def __init__(self, config: CleanConfig):
        self.max_length = config.caption_length_limit
        pattern = config.special_chars_pattern or default_special_chars_pattern()
        self.special = re.compile(pattern)
        self.keyword_mode = config.keyword_mode
        self.keywords = _keyword_regex(config.keywords, config.lang)

    def check(self, caption: str) -> str | None:
        """The reason a normalised caption fails, or None when it passes."""
        if not caption:
            return "empty_caption"
        if len(caption) > self.max_length:
            return "caption_too_long"
        if self.special.search(caption):
            return "special_characters"
        if self.keywords is not None:
            found = self.keywords.search(caption) is not None
            if found != (self.keyword_mode == "require"):
                return "off_domain"
        return None


def _keyword_regex(keywords: list[str], lang: str) -> re.Pattern | None:
    """English: whole words, case-insensitive; Chinese: substrings. None when no keywords."""
    if not keywords:
        return None
    alternatives = "|".join(re.escape(k) for k in sorted(set(keywords), key=len, reverse=True))
    if lang == "en":
        return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
    return re.compile(f"(?:{alternatives})", re.IGNORECASE)


@dataclass
class RowVerdict:
    """What the checks decided for one row: a drop reason, or the cleaned row to keep."""

    reason: str | None  # None: keep ``row``
    detail: str = ""
    row: dict[str, Any] | None = None
    caption_failures: list[tuple[str, str]] = field(default_factory=list)  # (reason, caption)
    image_sha256: bytes | None = None


def check_image(data: bytes | None, config: CleanConfig) -> tuple[str, str] | None:
    """Decode once; ``(reason, detail)`` for the first failing image check, else None.

    Call inside :func:`~vlcore.data.images.pil_limits` set to ``config.max_image_pixels`` so
    PIL's own bomb check agrees with ours and truncated data is never silently accepted.
    """
    if not data:
        return "corrupt_image", "no image bytes"
    try:
        img = open_image(data)
    except BOMB_ERRORS as e:
        return "decompression_bomb", str(e)
    except Exception as e:  # PIL raises many types for data that is not an image
        return "corrupt_image", f"{type(e).__name__}: {e}"
    with img:
        width, height = img.size
        if width * height > config.max_image_pixels:
            return "decompression_bomb", f"{width}x{height} > {config.max_image_pixels} pixels"
        try:
            img.load()
        except BOMB_ERRORS as e:
            return "decompression_bomb", str(e)
        except Exception as e:
            return "truncated_image", f"{img.format} {width}x{height}: {type(e).__name__}: {e}"
    if min(width, height) < config.min_image_size:
        return "too_small", f"{width}x{height} < {config.min_image_size}"
    ratio = max(width, height) / min(width, height)
    if ratio > config.max_aspect_ratio:
        return "bad_aspect_ratio", f"{width}x{height}: {ratio:.2f} > {config.max_aspect_ratio}"
    return None


def check_row(row: dict[str, Any], config: CleanConfig, captions: CaptionFilter) -> RowVerdict:
    """Run every check but deduplication (which needs the rows kept so far) on one raw row."""
    if row.get("error"):
        return RowVerdict(row["error"], row.get("error_detail") or "")
    failed = check_image(row.get("image"), config)
    if failed is not None:
        return RowVerdict(*failed)

    failures: list[tuple[str, str]] = []
    kept_captions = []
    for text in row.get("captions") or []:
        text = normalize_caption(text or "")
        reason = captions.check(text)
        if reason is None:
            kept_captions.append(text)
        else:
            failures.append((reason, text))
    kept_styled = []
    for styled in row.get("styled_captions") or []:
        text = normalize_caption(styled.get("caption") or "")
        reason = captions.check(text)
        if reason is None:
            kept_styled.append({**styled, "caption": text})
        else:
            failures.append((reason, text))

    if not kept_captions and not kept_styled and not row.get("questions"):
        if failures:
            return RowVerdict(failures[0][0], failures[0][1], caption_failures=failures)
        return RowVerdict("empty_caption", "no caption, styled caption or question")
    cleaned = {
        **row,
        "error": None,
        "error_detail": None,
        "captions": kept_captions,
        "styled_captions": kept_styled,
    }
    digest = hashlib.sha256(row["image"]).digest()
    return RowVerdict(None, row=cleaned, caption_failures=failures, image_sha256=digest)


class CleanReport:
    """Counts and examples accumulated while cleaning; :meth:`to_dict` is the JSON report."""

    def __init__(self, config: CleanConfig):
        self.config = config
        self.rows_in = 0
        self.rows_kept = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.captions_dropped = dict.fromkeys(CAPTION_REASONS, 0)
        self.examples: dict[str, list[dict[str, str]]] = {}
        self.caption_examples: dict[str, list[dict[str, str]]] = {}

    @staticmethod
    def _add_example(examples: dict, reason: str, key: str, detail: str) -> None:
        bucket = examples.setdefault(reason, [])
        if len(bucket) < MAX_EXAMPLES:
            short = (
                detail
                if len(detail) <= MAX_DETAIL_CHARS
                else detail[: MAX_DETAIL_CHARS - 1] + "..."
            )
            bucket.append({"key": key, "detail": short})

    def add(self, key: str, verdict: RowVerdict) -> None:
        self.rows_in += 1
        for reason, text in verdict.caption_failures:
            self.captions_dropped[reason] += 1
            self._add_example(self.caption_examples, reason, key, text)
        if verdict.reason is None:
            self.rows_kept += 1
            return
        if verdict.reason not in self.dropped:
            logger.warning("row %r has an unknown error code %r", key, verdict.reason)
            self.dropped[verdict.reason] = 0
        self.dropped[verdict.reason] += 1
        self._add_example(self.examples, verdict.reason, key, verdict.detail)

    def to_dict(self) -> dict[str, Any]:
        config = dataclasses.asdict(self.config)
        config["max_caption_length"] = self.config.caption_length_limit
        return {
            "rows_in": self.rows_in,
            "rows_kept": self.rows_kept,
            "dropped": self.dropped,
            "captions_dropped": self.captions_dropped,
            "config": config,
            "examples": self.examples,
            "caption_examples": self.caption_examples,
        }


def _clean_batch(
    rows: list[dict[str, Any]],
    config: CleanConfig,
    captions: CaptionFilter,
    seen: dict[bytes, str],
    report: CleanReport,
) -> list[dict[str, Any]]:
    """Check a batch of raw rows in order; record them in ``report``; return the kept ones.

    ``seen`` maps the sha256 of every kept image so far to its row's key (deduplication).
    """
    kept = []
    for row in rows:
        verdict = check_row(row, config, captions)
        if verdict.reason is None and config.dedupe:
            owner = seen.get(verdict.image_sha256)
            if owner is None:
                seen[verdict.image_sha256] = row["key"]
            else:
                verdict.reason, verdict.detail = "duplicate_image", f"same bytes as {owner}"
        report.add(row["key"], verdict)
        if verdict.reason is None:
            kept.append(verdict.row)
    return kept


def clean_pairs(
    raw_path: str | os.PathLike,
    out_path: str | os.PathLike,
    report_path: str | os.PathLike,
    config: CleanConfig | None = None,
    *,
    batch_rows: int = 256,
) -> dict[str, Any]:
    """Stream ``raw_path``, write the kept rows to ``out_path`` and the report to ``report_path``.

    The kept rows keep ``RAW_SCHEMA`` and their input order, with normalised captions and
    failing (styled) captions removed. Both outputs are written atomically. Returns the report:

    ``rows_in``, ``rows_kept``; ``dropped`` {reason: rows} for every ingest error and cleaning
    reason (zeros included); ``captions_dropped`` {caption reason: captions and styled captions
    failing that check, on rows that passed the image checks}; ``config`` (the effective
    settings); ``examples`` {reason: [{key, detail}]} for dropped rows and ``caption_examples``
    likewise for removed captions (at most :data:`MAX_EXAMPLES` each).
    """
    config = config or CleanConfig()
    captions = CaptionFilter(config)
    report = CleanReport(config)
    seen: dict[bytes, str] = {}  # image sha256 -> key of the kept row that owns it
    raw = pq.ParquetFile(raw_path)
    if not raw.schema_arrow.equals(RAW_SCHEMA, check_metadata=False):
        raise ValueError(f"{raw_path} does not have the raw schema; was it written by RawWriter?")

    with atomic_path(out_path) as tmp, pil_limits(config.max_image_pixels):
        writer = pq.ParquetWriter(tmp, RAW_SCHEMA, compression="zstd")
        try:
            total = raw.metadata.num_rows
            with tqdm(total=total, desc="clean_pairs", unit="row", disable=None) as bar:
                for batch in raw.iter_batches(batch_size=batch_rows):
                    kept = _clean_batch(batch.to_pylist(), config, captions, seen, report)
                    if kept:
                        writer.write_table(pa.Table.from_pylist(kept, schema=RAW_SCHEMA))
                    bar.update(batch.num_rows)
        finally:
            writer.close()
    result = report.to_dict()
    write_json(result, report_path, sort_keys=False)
    logger.info(
        "clean_pairs kept %d of %d rows; dropped %s",
        result["rows_kept"],
        result["rows_in"],
        {k: v for k, v in result["dropped"].items() if v},
    )
    return result
