"""Write generated samples in the external formats real data sets come in.

``export_dataset(samples, fmt, out_dir)`` writes the image files (bytes exactly as generated,
dirty ones included) and the index files of one format, as listed in
``docs/data-design.md``; ``vlcore.ingest`` reads them back. Index files are written
atomically, last, so a complete index never points at a missing image. Text fields never
contain tabs or newlines.

The returned paths use the keys of the matching ``source:`` config section, and
:func:`source_config` turns them into that section.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from vlcore.ids import stable_unit_interval
from vlcore.io import atomic_path
from vlcore.synthetic.generate import LANGS, SyntheticSample, captions_for
from vlcore.synthetic.vqa import normalize_answer

logger = logging.getLogger(__name__)

FORMATS = ("cc3m_tsv", "wukong_csv", "base64_tsv", "coco", "personality", "image_folder")
KARPATHY_SPLITS = (("train", 0.8), ("val", 0.9), ("test", 1.0))  # upper bounds of a unit hash
_CAPTIONS_PER_IMAGE_ID = 10  # COCO annotation / Karpathy sentence id = image_id * 10 + k
_INFO = {
    "description": "vlcore synthetic shapes world",
    "version": "1.0",
    "year": 2024,
    "contributor": "vlcore",
    "url": "",
    "date_created": "2024-01-01",
}
_LICENSES = [
    {"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}
]


def image_hash(key: str) -> str:
    """Personality-Captions style image name: ``sha256(key).hexdigest()[:32]``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def coco_file_name(image_id: int) -> str:
    return f"COCO_synth_{image_id:012d}.png"


def karpathy_split(key: str) -> str:
    u = stable_unit_interval(key, salt="karpathy")
    return next(name for name, upper in KARPATHY_SPLITS if u < upper)


def one_line(text: str) -> str:
    """``text`` with tabs, newlines and other line breaks turned into spaces."""
    return re.sub(r"[\t\n\r\v\f\x1c-\x1e\x85\u2028\u2029]", " ", text)


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def _write_images(
    samples: Sequence[SyntheticSample], folder: Path, name: Callable[[SyntheticSample], str]
) -> dict[str, Path]:
    """Write each sample's bytes to ``folder/name(sample)``; the paths by key."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for s in samples:
        path = folder / name(s)
        with atomic_path(path) as tmp:
            tmp.write_bytes(s.image)
        paths[s.key] = path
    return paths


def _url(base_url: str | None, path: Path, key: str) -> str:
    if base_url:
        return f"{base_url.rstrip('/')}/images/{key}.png"
    return path.resolve().as_uri()


def _image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header, or (0, 0) when the bytes are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:
        return 0, 0


def _tokens(text: str, lang: str) -> list[str]:
    """Karpathy-style tokens: lowercase words (en) or characters without punctuation (zh)."""
    if lang == "en":
        return re.findall(r"[a-z0-9]+", text.lower())
    return [ch for ch in text if ch.isalnum()]


# ---- one writer per format -----------------------------------------------------------------


def _url_list(samples, out, lang, base_url, tsv: bool) -> dict[str, Path]:
    images = _write_images(samples, out / "images", lambda s: f"{s.key}.png")
    rows = [
        (one_line((captions_for(s, lang) or [""])[0]), _url(base_url, images[s.key], s.key))
        for s in samples
    ]
    if tsv:
        path = out / "cc3m.tsv"
        _write_text(path, "".join(f"{caption}\t{url}\n" for caption, url in rows))
    else:
        path = out / "wukong.csv"
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["url", "caption"])
        writer.writerows((url, caption) for caption, url in rows)
        _write_text(path, buf.getvalue())
    return {"path": path, "images_dir": out / "images"}


def _base64_tsv(samples, out, lang, base_url) -> dict[str, Path]:
    lines = []
    for s in samples:
        b64 = base64.b64encode(s.image).decode("ascii")
        lines += [f"{s.key}\t{b64}\t{one_line(c)}\n" for c in captions_for(s, lang)]
    path = out / "data.tsv"
    _write_text(path, "".join(lines))
    return {"path": path}


def _coco(samples, out, lang, base_url) -> dict[str, Path]:
    images = _write_images(samples, out / "images", lambda s: coco_file_name(s.image_id))
    coco_images, annotations, karpathy, questions, answers = [], [], [], [], []
    for imgid, s in enumerate(samples):
        width, height = _image_size(s.image)
        name = coco_file_name(s.image_id)
        url = (
            f"{base_url.rstrip('/')}/images/{name}"
            if base_url
            else images[s.key].resolve().as_uri()
        )
        coco_images.append(
            {
                "id": s.image_id,
                "file_name": name,
                "width": width,
                "height": height,
                "license": 1,
                "coco_url": url,
            }
        )
        caps = [one_line(c) for c in captions_for(s, lang)]
        ids = [s.image_id * _CAPTIONS_PER_IMAGE_ID + k for k in range(len(caps))]
        annotations += [
            {"id": i, "image_id": s.image_id, "caption": c} for i, c in zip(ids, caps, strict=True)
        ]
        karpathy.append(
            {
                "filepath": "images",
                "filename": name,
                "imgid": imgid,
                "cocoid": s.image_id,
                "split": karpathy_split(s.key),
                "sentids": ids,
                "sentences": [
                    {"tokens": _tokens(c, lang), "raw": c, "imgid": imgid, "sentid": i}
                    for i, c in zip(ids, caps, strict=True)
                ],
            }
        )
        for q in s.questions:
            questions.append(
                {"image_id": s.image_id, "question": q["question"], "question_id": q["question_id"]}
            )
            mca = q["multiple_choice_answer"]
            answers.append(
                {
                    "question_type": q["question_type"],
                    "multiple_choice_answer": mca,
                    "answers": [
                        {
                            "answer": a,
                            "answer_confidence": "yes" if normalize_answer(a) == mca else "maybe",
                            "answer_id": k + 1,
                        }
                        for k, a in enumerate(q["answers"])
                    ],
                    "image_id": s.image_id,
                    "answer_type": q["answer_type"],
                    "question_id": q["question_id"],
                }
            )
    paths = {
        "images_dir": out / "images",
        "captions_json": out / "captions.json",
        "karpathy_json": out / "dataset_coco.json",
        "questions_json": out / "questions.json",
        "annotations_json": out / "annotations.json",
    }
    _write_json(
        paths["captions_json"],
        {"info": _INFO, "licenses": _LICENSES, "images": coco_images, "annotations": annotations},
    )
    _write_json(paths["karpathy_json"], {"images": karpathy, "dataset": "coco"})
    common = {"info": _INFO, "license": _LICENSES[0], "data_subtype": "synth"}
    _write_json(
        paths["questions_json"],
        {**common, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions},
    )
    _write_json(paths["annotations_json"], {**common, "annotations": answers})
    return paths


def _personality(samples, out, lang, base_url) -> dict[str, Path]:
    _write_images(samples, out / "images", lambda s: f"{image_hash(s.key)}.png")
    entries = [
        {
            "image_hash": image_hash(s.key),
            "personality": sc["style"],
            "comment": one_line(sc["caption"]),
        }
        for s in samples
        for sc in s.styled_captions
    ]
    path = out / "personality_captions.json"
    _write_json(path, entries)
    return {"json": path, "images_dir": out / "images"}


def _image_folder(samples, out, lang, base_url) -> dict[str, Path]:
    _write_images(samples, out / "images", lambda s: f"{s.key}.png")
    lines = ["file\tcaption\n"]
    for s in samples:
        lines += [f"images/{s.key}.png\t{one_line(c)}\n" for c in captions_for(s, lang)]
    path = out / "captions.tsv"
    _write_text(path, "".join(lines))
    # ``file`` is relative to the folder of captions.tsv, which is therefore the images root
    return {"images_dir": out, "captions_file": path}


_WRITERS: dict[str, Callable[..., dict[str, Path]]] = {
    "cc3m_tsv": lambda *a: _url_list(*a, tsv=True),
    "wukong_csv": lambda *a: _url_list(*a, tsv=False),
    "base64_tsv": _base64_tsv,
    "coco": _coco,
    "personality": _personality,
    "image_folder": _image_folder,
}


def export_dataset(
    samples: Sequence[SyntheticSample],
    fmt: str,
    out_dir: str | os.PathLike,
    lang: str = "en",
    base_url: str | None = None,
) -> dict[str, Path]:
    """Write ``samples`` as format ``fmt`` under ``out_dir``; the written paths by config key.

    Keys: ``cc3m_tsv``/``wukong_csv``: ``path``, ``images_dir``; ``base64_tsv``: ``path``;
    ``coco``: ``images_dir``, ``captions_json``, ``karpathy_json``, ``questions_json``,
    ``annotations_json``; ``personality``: ``json``, ``images_dir``; ``image_folder``:
    ``images_dir``, ``captions_file``. URLs (cc3m/wukong) are ``{base_url}/images/{key}.png``
    when ``base_url`` is given, else ``file://`` URIs of the written images.
    """
    if fmt not in _WRITERS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {FORMATS}")
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = _WRITERS[fmt](list(samples), out, lang, base_url)
    logger.info("exported %d samples as %s to %s", len(samples), fmt, out)
    return paths


def source_config(fmt: str, paths: dict[str, Path], base_url: str | None = None) -> dict[str, Any]:
    """The experiment ``source:`` section that ingests an export (paths as strings)."""
    strings = {k: str(v) for k, v in paths.items()}
    if fmt in ("cc3m_tsv", "wukong_csv"):
        tsv = fmt == "cc3m_tsv"
        section = {
            "path": strings["path"],
            "input_format": "tsv" if tsv else "csv",
            "header": not tsv,
            "columns": ["caption", "url"] if tsv else None,
            "url_col": "url",
            "caption_col": "caption",
            "allow_file_urls": base_url is None,
        }
        return {"format": "url_list", "url_list": section}
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {FORMATS}")
    return {"format": fmt, fmt: strings}
