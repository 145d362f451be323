"""Sample grids of the report: what the models said about real test images.

``caption_grid``: for the first ``n`` captioned images of the evaluation split, the image,
each captioner's generated caption and the reference captions. ``vqa_grid``: images with a
few of their questions, the model's answer (coloured by its VQA accuracy) and the ten human
answers with their counts. Both are single HTML files with the images inlined, so the
report embeds them as they are; HTML (not a matplotlib figure) keeps Chinese text legible.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

from vlcore.data.shard import read_split
from vlcore.io import read_json
from vlcore.report.html import esc, image_data_uri, table, write_page

logger = logging.getLogger(__name__)


def first_rows(
    shards_dir: str | os.PathLike, split: str, n: int, columns: tuple[str, ...], need: str
) -> list[dict[str, Any]]:
    """The ``n`` rows of ``split`` with the smallest image ids among those where ``need`` is set."""
    if n < 1:
        raise ValueError(f"the number of samples must be at least 1, got {n}")
    rows = [r for r in read_split(shards_dir, split, columns=columns) if r[need]]
    return sorted(rows, key=lambda r: r["image_id"])[:n]


def read_coco_captions(path: str | os.PathLike) -> dict[int, str]:
    """COCO results JSON ``[{"image_id", "caption"}]`` -> ``image_id -> caption``."""
    return {int(entry["image_id"]): entry["caption"] for entry in read_json(path)}


def _text(text: str) -> str:
    return esc(text) if text.strip() else '<span class="empty">(empty)</span>'


def caption_grid(
    shards_dir: str | os.PathLike,
    split: str,
    captions: Mapping[str, str | os.PathLike],
    out_html: str | os.PathLike,
    title: str,
    n: int = 8,
) -> int:
    """Write the caption grid; ``captions`` maps a captioner name to its COCO results JSON.

    Returns the number of images shown.
    """
    generated = {name: read_coco_captions(path) for name, path in captions.items()}
    rows = first_rows(shards_dir, split, n, ("image_id", "key", "image", "captions"), "captions")
    cards = []
    for row in rows:
        lines = [
            (f"<b>{esc(name)}</b>", _text(by_id.get(row["image_id"], "")))
            for name, by_id in generated.items()
        ]
        refs = "".join(f"<li>{esc(c)}</li>" for c in row["captions"])
        lines.append(("references", f"<ol>{refs}</ol>"))
        cards.append(
            f'<div class="card"><img src="{image_data_uri(row["image"])}" '
            f'alt="{esc(row["key"])}" title="{esc(row["key"])}">'
            f"{table(None, lines)}</div>"
        )
    note = (
        f'<p class="note">The first {len(rows)} captioned images of the {esc(split)} split '
        "(by image id), each with the caption every captioner generated for it and the "
        "human references it was scored against.</p>"
    )
    write_page(title, note + f'<div class="grid">{"".join(cards)}</div>', out_html)
    logger.info("caption grid: %d images, captioners %s", len(rows), ", ".join(generated))
    return len(rows)


def _accuracy_class(accuracy: float | None) -> str:
    if accuracy is None:
        return ""
    return "right" if accuracy >= 100 else "wrong" if accuracy <= 0 else ""


def vqa_grid(
    shards_dir: str | os.PathLike,
    split: str,
    answers_json: str | os.PathLike,
    scores_json: str | os.PathLike | None,
    out_html: str | os.PathLike,
    title: str,
    n: int = 6,
    questions_per_image: int = 3,
) -> int:
    """Write the VQA grid: per image, a few questions with the model's and the humans' answers.

    ``scores_json`` (``score_vqa``'s output) gives each answer's VQA accuracy; without it the
    answers are shown uncoloured. Returns the number of questions shown.
    """
    answers = {int(a["question_id"]): a["answer"] for a in read_json(answers_json)}
    per_question: dict[str, float] = {}
    who = "model"  # the answering captioner's name, when the scores record it
    if scores_json is not None:
        scores = read_json(scores_json)
        per_question = scores.get("per_question", {})
        who = scores.get("captioner") or who
    rows = first_rows(shards_dir, split, n, ("image_id", "key", "image", "questions"), "questions")
    cards, shown = [], 0
    for row in rows:
        lines = []
        for q in row["questions"][:questions_per_image]:
            qid = int(q["question_id"])
            accuracy = per_question.get(str(qid))
            model = answers.get(qid)
            answer = "<i>not answered</i>" if model is None else _text(model)
            cls = _accuracy_class(accuracy)
            score = "" if accuracy is None else f" <small>(accuracy {accuracy:.0f})</small>"
            humans = ", ".join(
                f"{esc(a)} ×{c}" if c > 1 else esc(a)
                for a, c in Counter(q["answers"]).most_common()
            )
            lines.append(("<b>Q</b>", esc(q["question"])))
            lines.append((esc(who), f'<span class="{cls}">{answer}</span>{score}'))
            lines.append(("humans", humans))
            shown += 1
        cards.append(
            f'<div class="card"><img src="{image_data_uri(row["image"])}" '
            f'alt="{esc(row["key"])}" title="{esc(row["key"])}">'
            f"{table(None, lines)}</div>"
        )
    note = (
        f'<p class="note">Questions on the first {len(rows)} images of the {esc(split)} split '
        "with questions: the model's answer (green: full VQA accuracy, red: none) and the "
        "ten human answers with their counts.</p>"
    )
    write_page(title, note + f'<div class="grid">{"".join(cards)}</div>', out_html)
    logger.info("VQA grid: %d questions on %d images", shown, len(rows))
    return shown
