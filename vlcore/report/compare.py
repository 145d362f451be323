"""Experiments side by side (``compare_experiments``): ``results/compare.md`` and ``.json``.

One column per experiment of the run, one row per headline number, grouped in sections:
the data (rows in and kept, split sizes), retrieval, captioning (every captioner and every
reference row), VQA, and any other top-level table (text to image, ...) by its numbers.
A value an experiment does not have (a captioner it does not train) is empty.

    compare_experiments(["default", "synthetic_zh"], {"cider": "results/cider.json", ...},
                        {"default": {"clean_report": ..., "manifest": ...}, ...},
                        "results/compare.md", "results/compare.json")
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from vlcore.io import atomic_path, read_json, write_json
from vlcore.report.tables import CAPTION_REFERENCES, numeric_blocks

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CAPTION_METRICS = ("CIDEr", "BLEU-4")


def _row(metric: str, values: Mapping[str, Any], reference: bool = False) -> dict[str, Any]:
    return {"metric": metric, "reference": reference, "values": dict(values)}


def data_section(experiments: Sequence[str], data: Mapping[str, Mapping[str, str]]) -> dict:
    reports = {e: read_json(data[e]["clean_report"]) for e in experiments}
    manifests = {e: read_json(data[e]["manifest"]) for e in experiments}
    rows = [
        _row("rows in", {e: reports[e]["rows_in"] for e in experiments}),
        _row("rows kept", {e: reports[e]["rows_kept"] for e in experiments}),
    ]
    for split in SPLITS:
        rows.append(
            _row(
                f"{split} images",
                {e: manifests[e]["splits"].get(split, {}).get("rows") for e in experiments},
            )
        )
    return {"name": "data", "digits": None, "rows": rows}


def retrieval_section(experiments: Sequence[str], table: dict[str, Any]) -> dict:
    entries = table["experiments"]
    rows = []
    for way, label in (("image_to_text", "image→text"), ("text_to_image", "text→image")):
        for k in (1, 5, 10):
            rows.append(
                _row(
                    f"{label} R@{k}",
                    {e: entries.get(e, {}).get(way, {}).get(f"R@{k}") for e in experiments},
                )
            )
        rows.append(
            _row(
                f"chance {label} R@1",
                {
                    e: entries.get(e, {}).get("chance", {}).get(way, {}).get("R@1")
                    for e in experiments
                },
                reference=True,
            )
        )
    return {"name": "retrieval (recall %)", "digits": 1, "rows": rows}


def caption_section(experiments: Sequence[str], table: dict[str, Any]) -> dict:
    entries = table["experiments"]
    names: list[str] = []
    for e in experiments:
        for name in entries.get(e, {}).get("rows", {}):
            if name not in names:
                names.append(name)
    models = [n for n in names if n not in CAPTION_REFERENCES]
    refs = [n for n in CAPTION_REFERENCES if n in names]
    rows = []
    for metric in CAPTION_METRICS:
        for name in models + refs:
            values = {
                e: entries.get(e, {}).get("rows", {}).get(name, {}).get(metric) for e in experiments
            }
            rows.append(_row(f"{metric} {name}", values, reference=name in refs))
    return {"name": "captioning (pycocoevalcap raw scale)", "digits": 3, "rows": rows}


def vqa_section(experiments: Sequence[str], table: dict[str, Any]) -> dict:
    """One accuracy row per answering captioner (as the caption section has one per
    captioner), then the prior; scores that do not name their captioner go in "accuracy"."""
    entries = table["experiments"]
    answered = [e for e in experiments if e in entries]
    rows = []
    for captioner in dict.fromkeys(entries[e].get("captioner") for e in answered):
        values = {
            e: entries[e].get("model", {}).get("overall")
            if e in answered and entries[e].get("captioner") == captioner
            else None
            for e in experiments
        }
        rows.append(_row(f"accuracy {captioner}" if captioner else "accuracy", values))
    rows += [
        _row(
            "question-type prior",
            {e: entries.get(e, {}).get("prior", {}).get("overall") for e in experiments},
            reference=True,
        ),
        _row("questions", {e: entries.get(e, {}).get("n_questions") for e in experiments}),
    ]
    return {"name": "VQA (accuracy %)", "digits": 1, "rows": rows}


T2I_ROWS = (
    ("random", "random sample", False),
    ("top1", "top-1 reranked", False),
    ("topk", "top-k reranked (mean)", False),
    ("best_of_n", "best of all samples", False),
    ("real", "real images", True),
    ("reconstruction", "VQ-VAE reconstructions", True),
)


def t2i_sections(experiments: Sequence[str], table: dict[str, Any]) -> list[dict]:
    """Text to image: attribute accuracy (the judge, synthetic data) and CLIP score of random
    and reranked samples, with real images and their reconstructions as references."""
    entries = table["experiments"]
    sections = []
    for block, name, digits in (
        ("attribute_accuracy", "text to image: attribute accuracy (%)", 1),
        ("clip_score", "text to image: CLIP score", 3),
    ):
        rows = [
            _row(label, {e: entries.get(e, {}).get(block, {}).get(key) for e in experiments}, ref)
            for key, label, ref in T2I_ROWS
        ]
        rows = [r for r in rows if any(v is not None for v in r["values"].values())]
        if rows:
            sections.append({"name": name, "digits": digits, "rows": rows})
    counts = [
        _row(label, {e: entries.get(e, {}).get(key) for e in experiments})
        for key, label in (("prompts", "prompts"), ("samples_per_prompt", "samples per prompt"))
    ]
    counts = [r for r in counts if any(v is not None for v in r["values"].values())]
    if sections and counts:
        sections.insert(0, {"name": "text to image", "digits": None, "rows": counts})
    return sections


def generic_section(name: str, experiments: Sequence[str], table: dict[str, Any]) -> dict:
    """Every number of every experiment's entry, a block's keys joined with a dot."""
    flat: dict[str, dict[str, Any]] = {}
    for e in experiments:
        scalars, blocks = numeric_blocks(table["experiments"].get(e, {}))
        for key, value in scalars.items():
            flat.setdefault(key, {})[e] = value
        for block, values in blocks.items():
            for key, value in values.items():
                flat.setdefault(f"{block}.{key}", {})[e] = value
    rows = [_row(metric, {e: v.get(e) for e in experiments}) for metric, v in flat.items()]
    return {"name": name, "digits": None, "rows": rows}


SECTIONS = {"retrieval": retrieval_section, "cider": caption_section, "vqa": vqa_section}


def comparison(
    experiments: Sequence[str],
    tables: Mapping[str, str | os.PathLike],
    data: Mapping[str, Mapping[str, str]],
    descriptions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The comparison as a dict: ``experiments``, ``descriptions`` and ``sections`` of rows."""
    if not experiments:
        raise ValueError("nothing to compare: the run has no experiment")
    missing = [e for e in experiments if e not in data]
    if missing:
        raise ValueError(f"no clean report and manifest given for experiment(s) {missing}")
    sections = [data_section(experiments, data)]
    for name, path in tables.items():
        table = read_json(path)
        if name in SECTIONS:
            sections.append(SECTIONS[name](experiments, table))
        elif name == "t2i" and (found := t2i_sections(experiments, table)):
            sections.extend(found)
        else:
            sections.append(generic_section(name, experiments, table))
    return {
        "experiments": list(experiments),
        "descriptions": {e: (descriptions or {}).get(e, "") for e in experiments},
        "sections": sections,
    }


def _md_value(value: Any, digits: int | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if digits is None:
            digits = 3 if abs(value) < 10 else 1
        return f"{value:.{digits}f}"
    return str(value)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(result: dict[str, Any]) -> str:
    names = result["experiments"]
    lines = [
        "# Experiments side by side",
        "",
        "Written by the `compare_experiments` rule from the top-level tables in `results/`; "
        "*italic* rows are reference rows.",
        "",
        "| | " + " | ".join(map(_md_cell, names)) + " |",
        "|---|" + "---:|" * len(names),
    ]
    if any(result["descriptions"].values()):
        cells = [_md_cell(result["descriptions"][n]) for n in names]
        lines.append("| description | " + " | ".join(cells) + " |")
    for section in result["sections"]:
        lines.append(f"| **{_md_cell(section['name'])}** |" + " |" * len(names))
        for row in section["rows"]:
            metric = _md_cell(row["metric"])
            label = f"*{metric}*" if row["reference"] else metric
            values = [_md_value(row["values"].get(n), section.get("digits")) for n in names]
            lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def compare_experiments(
    experiments: Sequence[str],
    tables: Mapping[str, str | os.PathLike],
    data: Mapping[str, Mapping[str, str]],
    out_md: str | os.PathLike,
    out_json: str | os.PathLike,
    descriptions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write ``results/compare.md`` and ``results/compare.json``; return the comparison.

    ``tables``: top-level table name -> path (``cider``, ``retrieval``, ``vqa``, ``t2i``...);
    ``data``: experiment -> ``{"clean_report": path, "manifest": path}``.
    """
    result = comparison(experiments, tables, data, descriptions)
    write_json(result, out_json, sort_keys=False)
    with atomic_path(out_md) as tmp:
        tmp.write_text(to_markdown(result), encoding="utf-8")
    logger.info(
        "compared %s: %d rows",
        ", ".join(experiments),
        sum(len(s["rows"]) for s in result["sections"]),
    )
    return result
