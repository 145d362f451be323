"""The top-level metric tables as HTML pages for the report (``render_table``).

``results/cider.json``, ``retrieval.json`` and ``vqa.json`` have their own layout: one table
per experiment, model rows first and reference rows (human agreement, nearest neighbour, most
frequent caption, chance, the question-type prior) after them in grey italics. Any other
table (``t2i.json``, ``compare.json`` and tables added later) is drawn generically: each
block of numbers of an experiment becomes a row.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable
from typing import Any

from vlcore.io import read_json
from vlcore.report.html import esc, table, write_page

logger = logging.getLogger(__name__)

# Reference rows of results/cider.json (vlcore.pipeline.evaluate.caption_baselines).
CAPTION_REFERENCES = ("human", "nearest_neighbour", "most_frequent")
CAPTION_COLUMNS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
LOO_COLUMNS = ("BLEU-4_loo", "ROUGE_L_loo", "CIDEr_loo")


def fmt(value: Any, digits: int | None = None) -> str:
    """A number for a table cell: integers as they are, floats to ``digits`` decimals (by
    default 3 below 10 and 1 above); a missing value is a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<span class="missing">–</span>'
    if isinstance(value, bool) or not isinstance(value, int | float):
        return esc(value)
    if isinstance(value, int):
        return str(value)
    if digits is None:
        digits = 3 if abs(value) < 10 else 1
    return f"{value:.{digits}f}"


def _spice(value: Any) -> str:
    if isinstance(value, dict):
        reason = value.get("reason", "")
        if not value.get("available", True):
            return f'<span class="missing" title="{esc(reason)}">n/a</span>'
        value = value.get("value")
    return fmt(value)


def _rows_by_kind(rows: dict[str, Any], references: Iterable[str]) -> tuple[list[str], list[str]]:
    refs = [name for name in references if name in rows]
    return [name for name in rows if name not in refs], refs


def cider_html(data: dict[str, Any]) -> str:
    parts = [
        f'<p class="note">Caption metrics on the {esc(data.get("scale", "raw scale"))}; '
        "<code>*_loo</code> columns score every row against the same leave-one-out "
        "reference sets as the human row. Grey rows are references computed the same way.</p>"
    ]
    for name, exp in data["experiments"].items():
        rows = exp["rows"]
        models, refs = _rows_by_kind(rows, CAPTION_REFERENCES)
        present = [c for c in CAPTION_COLUMNS if any(c in r for r in rows.values())]
        loo = [c for c in LOO_COLUMNS if any(c in r for r in rows.values())]
        cells = []
        for row_name in models + refs:
            row = rows[row_name]
            cells.append(
                [esc(row_name)]
                + [_spice(row.get(c)) if c == "SPICE" else fmt(row.get(c)) for c in present]
                + [fmt(row.get(c)) for c in loo]
            )
        classes = [""] * len(models) + ["reference"] * len(refs)
        meta = (
            f"{esc(exp.get('lang', ''))}, {esc(exp.get('split', ''))} split, "
            f"{fmt(exp.get('n_images'))} images"
        )
        parts.append(f"<h2>{esc(name)} <small>({meta})</small></h2>")
        parts.append(table(["", *present, *loo], cells, classes))
        if exp.get("tokenization"):
            parts.append(f'<p class="note">Tokenization: {esc(exp["tokenization"])}</p>')
    return "".join(parts)


def _recall_cells(block: dict[str, Any], ks: Iterable[int]) -> list[str]:
    out = []
    for way in ("image_to_text", "text_to_image"):
        out += [fmt(block[way].get(f"R@{k}"), 1) for k in ks]
        out.append(fmt(block[way].get("mean_rank"), 1))
    return out


def retrieval_html(data: dict[str, Any]) -> str:
    parts = [
        '<p class="note">Recall at k (%) and mean rank of the trained CLIP, both ways, on the '
        "evaluation split; the grey row is exact chance for the same gallery.</p>"
    ]
    for name, exp in data["experiments"].items():
        ks = exp.get("ks", [1, 5, 10])
        header = [""]
        for way in ("image→text", "text→image"):
            header += [f"{way} R@{k}" for k in ks] + [f"{way} mean rank"]

        model = exp.get("model", {})
        label = "CLIP" + (f" ({esc(model['name'])})" if model.get("name") else "")
        rows = [[label, *_recall_cells(exp, ks)], ["chance", *_recall_cells(exp["chance"], ks)]]
        meta = f"{fmt(exp.get('n_images'))} images, {fmt(exp.get('n_texts'))} texts"
        parts.append(f"<h2>{esc(name)} <small>({meta})</small></h2>")
        parts.append(table(header, rows, ["", "reference"]))
    return "".join(parts)


def vqa_html(data: dict[str, Any]) -> str:
    parts = [
        '<p class="note">VQA accuracy (%) with the official VQA v2 protocol; the grey row '
        "answers each question with the most frequent training answer of its question type.</p>"
    ]
    for name, exp in data["experiments"].items():
        label = esc(exp.get("captioner") or "model")
        entries = ((label, exp["model"]), ("question-type prior", exp["prior"]))
        meta = f"{fmt(exp.get('n_questions'))} questions, {esc(exp.get('split', ''))} split"
        parts.append(f"<h2>{esc(name)} <small>({meta})</small></h2>")
        for block, title in (("per_answer_type", "answer type"), ("per_question_type", "question type")):  # fmt: skip
            keys = sorted({k for _, entry in entries for k in entry.get(block, {})})
            overall = block == "per_answer_type"  # the overall number goes in the first table
            rows = [
                [label]
                + ([fmt(entry.get("overall"), 1)] if overall else [])
                + [fmt(entry.get(block, {}).get(k), 1) for k in keys]
                for label, entry in entries
            ]
            header = ["", *(["overall"] if overall else []), *map(esc, keys)]
            parts.append(f"<p>by {title}</p>" + table(header, rows, ["", "reference"]))
    return "".join(parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def numeric_blocks(entry: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(scalars, blocks)`` of an experiment's entry: its top-level numbers, and the numbers
    of every mapping in it that has some (other values, like a ``unit``, left out)."""
    scalars = {k: v for k, v in entry.items() if _is_number(v)}
    blocks = {}
    for key, value in entry.items():
        if isinstance(value, dict):
            numbers = {k: v for k, v in value.items() if _is_number(v)}
            if numbers:
                blocks[key] = numbers
    return scalars, blocks


def generic_html(data: dict[str, Any]) -> str:
    parts = []
    for name, entry in data.get("experiments", {}).items():
        scalars, blocks = numeric_blocks(entry)
        parts.append(f"<h2>{esc(name)}</h2>")
        if scalars:
            parts.append(table(["", *map(esc, scalars)], [["", *map(fmt, scalars.values())]]))
        if blocks:
            keys = list(dict.fromkeys(k for block in blocks.values() for k in block))
            rows = [[esc(b), *(fmt(v.get(k)) for k in keys)] for b, v in blocks.items()]
            parts.append(table(["", *map(esc, keys)], rows))
    return "".join(parts)


def compare_html(data: dict[str, Any]) -> str:
    names = data["experiments"]
    header = ["", *(esc(n) for n in names)]
    rows, classes = [], []
    descriptions = data.get("descriptions", {})
    if any(descriptions.values()):
        rows.append(["<i>description</i>", *(esc(descriptions.get(n, "")) for n in names)])
        classes.append("")
    for section in data["sections"]:
        rows.append([f"<b>{esc(section['name'])}</b>", *([""] * len(names))])
        classes.append("")
        for row in section["rows"]:
            rows.append(
                [
                    esc(row["metric"]),
                    *(fmt(row["values"].get(n), section.get("digits")) for n in names),
                ]
            )
            classes.append("reference" if row.get("reference") else "")
    note = (
        '<p class="note">The experiments of this run side by side (also '
        "<code>results/compare.md</code>); grey rows are reference rows.</p>"
    )
    return note + table(header, rows, classes)


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "cider": cider_html,
    "retrieval": retrieval_html,
    "vqa": vqa_html,
    "compare": compare_html,
}
TITLES = {
    "cider": "Captioning (results/cider.json)",
    "retrieval": "Retrieval (results/retrieval.json)",
    "vqa": "VQA (results/vqa.json)",
    "compare": "Experiments side by side (results/compare.json)",
}


def render_table(name: str, table_json: str | os.PathLike, out_html: str | os.PathLike) -> None:
    """Write ``results/<name>.json`` as an HTML page (a generic layout for unknown names)."""
    data = read_json(table_json)
    if not isinstance(data, dict) or "experiments" not in data:
        raise ValueError(f"{table_json} is not a results table: no 'experiments' key")
    body = RENDERERS.get(name, generic_html)(data)
    write_page(TITLES.get(name, f"results/{name}.json"), body, out_html)
    logger.info("rendered %s to %s", table_json, out_html)
