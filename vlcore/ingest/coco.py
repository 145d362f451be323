"""COCO: captions JSON, Karpathy splits and/or VQAv2 questions, one row per image.

Inputs (``source.coco``), any of:

- ``captions_json``: COCO captions (``images`` with ``id``, ``file_name``; ``annotations``
  with ``image_id``, ``caption``);
- ``karpathy_json``: Karpathy's ``dataset_coco.json``; its ``split`` becomes ``split_hint``
  (``restval`` counts as ``train``), matched by ``cocoid``. Without ``captions_json`` its
  ``sentences[].raw`` are the captions;
- ``questions_json`` + ``annotations_json``: VQAv2; each question, with its 10 answers, is
  attached to its image's row (an image may have questions only). A question without an
  annotation is skipped and counted.

Images are read from ``images_dir``: by ``file_name`` (also under Karpathy's ``filepath``
and anywhere below ``images_dir``), else by id (``*_{image_id:012d}.*`` or
``{image_id:012d}.*``, as COCO 2014 and 2017 name them). A missing file gives a
``missing_image`` row. Key ``coco:{image_id}``; ``image_id`` is the COCO id.

A malformed JSON file stops the run with a :class:`ValueError` naming it; a single entry
missing fields is skipped, counted and logged.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vlcore.data.raw import make_row
from vlcore.ingest.textio import SkipLog, input_path, load_json, require_keys

log = logging.getLogger(__name__)

SOURCE = "coco"
KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
_ID_IN_NAME = re.compile(r"^(?:.*_)?(\d{12})\.[^.]+$")


@dataclass
class _Image:
    image_id: int
    file_name: str | None = None
    subdir: str | None = None  # Karpathy's filepath, e.g. val2014
    url: str | None = None
    split: str | None = None
    captions: list[str] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)


def read_coco(cfg: dict[str, Any], lang: str, workdir: Path) -> Iterator[dict[str, Any]]:
    images_dir = input_path(cfg, "images_dir", SOURCE, kind="dir")
    paths = {
        key: input_path(cfg, key, SOURCE, required=False)
        for key in ("captions_json", "karpathy_json", "questions_json", "annotations_json")
    }
    if not (paths["captions_json"] or paths["karpathy_json"] or paths["questions_json"]):
        raise ValueError(
            "source.coco: nothing to read; set captions_json, karpathy_json and/or "
            "questions_json + annotations_json"
        )
    if bool(paths["questions_json"]) != bool(paths["annotations_json"]):
        raise ValueError(
            "source.coco: questions_json and annotations_json go together (VQAv2 questions "
            "need their answers); set both or neither"
        )
    if lang != "en":
        log.warning("COCO captions are English but the experiment language is %r", lang)

    skips = SkipLog(log, "coco")
    images: dict[int, _Image] = {}
    if paths["captions_json"]:
        _read_captions(paths["captions_json"], images, skips)
    karpathy = _read_karpathy(paths["karpathy_json"], skips) if paths["karpathy_json"] else {}
    if not paths["captions_json"]:
        images.update(karpathy)  # Karpathy's sentences are the captions
    if paths["questions_json"]:
        _read_vqa(paths["questions_json"], paths["annotations_json"], images, skips)
    for img in images.values():
        if (k := karpathy.get(img.image_id)) is not None:
            img.split = k.split
            img.file_name = img.file_name or k.file_name
            img.subdir = img.subdir or k.subdir
    skips.summary()

    finder = _ImageFinder(images_dir)
    for img in tqdm(images.values(), desc="coco images", unit="img", disable=None):
        key = f"coco:{img.image_id}"
        common = dict(
            captions=img.captions,
            questions=img.questions,
            image_id=img.image_id,
            split_hint=img.split,
            url=img.url,
        )
        path = finder.find(img)
        if path is None:
            wanted = img.file_name or f"*_{img.image_id:012d}.*"
            yield make_row(
                key,
                SOURCE,
                error="missing_image",
                error_detail=f"no file {wanted!r} under {str(images_dir)!r}",
                **common,
            )
            continue
        try:
            data = path.read_bytes()
        except OSError as e:
            yield make_row(
                key,
                SOURCE,
                error="missing_image",
                error_detail=f"cannot read {str(path)!r}: {e}",
                **common,
            )
            continue
        yield make_row(key, SOURCE, image=data, **common)


def _read_captions(path: Path, images: dict[int, _Image], skips: SkipLog) -> None:
    what = "source.coco.captions_json"
    data = load_json(path, what)
    require_keys(data, ("images", "annotations"), path, what)
    for entry in data["images"]:
        try:
            image_id, file_name = _int(entry["id"]), str(entry["file_name"])
        except (KeyError, TypeError, ValueError):
            skips.add("captions_json image entry without a valid id and file_name", entry)
            continue
        images[image_id] = _Image(image_id, file_name=file_name, url=entry.get("coco_url"))
    for entry in data["annotations"]:
        try:
            image_id, caption = _int(entry["image_id"]), entry["caption"]
        except (KeyError, TypeError, ValueError):
            skips.add("captions_json annotation without a valid image_id and caption", entry)
            continue
        if not isinstance(caption, str):
            skips.add("captions_json annotation whose caption is not a string", entry)
        elif image_id not in images:
            skips.add("captions_json annotation for an image_id not in its images list", entry)
        else:
            images[image_id].captions.append(caption)


def _read_karpathy(path: Path, skips: SkipLog) -> dict[int, _Image]:
    """Karpathy's images by cocoid, with their split, file location and sentences."""
    what = "source.coco.karpathy_json"
    data = load_json(path, what)
    require_keys(data, ("images",), path, what)
    out: dict[int, _Image] = {}
    for entry in data["images"]:
        try:
            image_id, split = _int(entry["cocoid"]), KARPATHY_SPLITS.get(entry["split"])
        except (KeyError, TypeError, ValueError):
            skips.add("karpathy_json entry without a valid cocoid and split", entry)
            continue
        if split is None:
            skips.add(f"karpathy_json split not one of {sorted(KARPATHY_SPLITS)}", entry)
        img = out[image_id] = _Image(
            image_id, file_name=entry.get("filename"), subdir=entry.get("filepath"), split=split
        )
        sentences = entry.get("sentences")
        for s in sentences if isinstance(sentences, list) else ():
            if isinstance(s, dict) and isinstance(s.get("raw"), str):
                img.captions.append(s["raw"])
            else:
                skips.add("karpathy_json sentence without a raw string", s)
    return out


def _read_vqa(
    questions_path: Path, annotations_path: Path, images: dict[int, _Image], skips: SkipLog
) -> None:
    questions = load_json(questions_path, "source.coco.questions_json")
    require_keys(questions, ("questions",), questions_path, "source.coco.questions_json")
    annotations = load_json(annotations_path, "source.coco.annotations_json")
    require_keys(annotations, ("annotations",), annotations_path, "source.coco.annotations_json")

    by_qid: dict[int, dict[str, Any]] = {}
    for ann in annotations["annotations"]:
        try:
            qid = _int(ann["question_id"])
            by_qid[qid] = {
                "question_type": str(ann["question_type"]),
                "answer_type": str(ann["answer_type"]),
                "answers": [str(a["answer"]) for a in ann["answers"]],
                "multiple_choice_answer": str(ann["multiple_choice_answer"]),
            }
        except (KeyError, TypeError, ValueError):
            skips.add(
                "annotations_json entry without question_id, question_type, answer_type, "
                "answers[].answer and multiple_choice_answer",
                ann,
            )
    for q in questions["questions"]:
        try:
            qid, image_id, text = _int(q["question_id"]), _int(q["image_id"]), str(q["question"])
        except (KeyError, TypeError, ValueError):
            skips.add("questions_json entry without question_id, image_id and question", q)
            continue
        ann = by_qid.get(qid)
        if ann is None:
            skips.add("question without an annotation (no answers)", q)
            continue
        img = images.get(image_id)
        if img is None:
            img = images[image_id] = _Image(image_id)
        img.questions.append({"question_id": qid, "question": text, **ann})


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected an integer id, got {value!r}")
    return int(value)


class _ImageFinder:
    """Find an image file below ``images_dir`` by name or by COCO id.

    The direct path is tried first; the folder is walked (once, lazily) only when needed.
    """

    def __init__(self, images_dir: Path):
        self.images_dir = images_dir
        self._by_name: dict[str, Path] | None = None
        self._by_id: dict[int, Path] = {}

    def find(self, img: _Image) -> Path | None:
        if img.file_name:
            for candidate in (
                self.images_dir / img.file_name,
                self.images_dir / (img.subdir or "") / img.file_name,
            ):
                if candidate.is_file():
                    return candidate
        self._index()
        assert self._by_name is not None
        if img.file_name and (path := self._by_name.get(Path(img.file_name).name)):
            return path
        return self._by_id.get(img.image_id)

    def _index(self) -> None:
        if self._by_name is not None:
            return
        self._by_name = {}
        for root, dirs, files in os.walk(self.images_dir):
            dirs.sort()
            for name in sorted(files):
                path = Path(root) / name
                self._by_name.setdefault(name, path)
                if m := _ID_IN_NAME.match(name):
                    self._by_id.setdefault(int(m.group(1)), path)
        log.info("indexed %d files under %s", len(self._by_name), self.images_dir)
