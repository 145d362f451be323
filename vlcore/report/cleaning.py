"""The data cleaning counts of one experiment as a bar chart (``plot_cleaning``).

Reads ``results/<exp>/data/clean_report.json`` (written by ``clean_pairs``): rows in, rows
kept, rows dropped per reason, and single captions dropped from rows that were kept.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vlcore.io import atomic_path, read_json  # noqa: E402

logger = logging.getLogger(__name__)


def cleaning_bars(report: dict[str, Any]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """``(rows, captions)``: the bars of each panel as ``(label, count)``, zeros left out.

    ``rows`` starts with the kept rows, then every reason that dropped a row, in the report's
    order (the order the filters run); ``captions`` lists the reasons single captions went.
    """
    for key in ("rows_in", "rows_kept", "dropped"):
        if key not in report:
            raise ValueError(f"not a clean report: key {key!r} is missing")
    rows = [("kept", int(report["rows_kept"]))]
    rows += [(f"dropped: {r}", int(n)) for r, n in report["dropped"].items() if n]
    captions = [(r, int(n)) for r, n in report.get("captions_dropped", {}).items() if n]
    return rows, captions


def plot_cleaning(clean_report: str | os.PathLike, out_png: str | os.PathLike, title: str) -> None:
    """A horizontal bar per outcome: kept rows (green), dropped rows by reason (red), and
    single captions removed (orange; counted on rows that passed the image checks) in a
    second panel when there are any."""
    report = read_json(clean_report)
    rows, captions = cleaning_bars(report)
    panels = [(rows, "rows")] + (
        [(captions, "captions removed from rows that passed the image checks")] if captions else []
    )
    heights = [max(1.2, 0.32 * len(bars) + 0.6) for bars, _ in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(7, sum(heights) + 0.8),
        dpi=100,
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, (bars, unit) in zip(axes[:, 0], panels, strict=True):
        labels = [label for label, _ in bars][::-1]
        counts = [n for _, n in bars][::-1]
        if unit == "rows":
            colors = ["tab:green" if label == "kept" else "tab:red" for label in labels]
        else:
            colors = ["tab:orange"] * len(bars)
        ax.barh(labels, counts, color=colors)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(0, max(counts) * 3 + 1)
        for y, n in enumerate(counts):
            ax.text(n, y, f" {n}", va="center", fontsize=8)
        ax.set_xlabel(unit)
        ax.grid(axis="x", alpha=0.3)
    rows_in, kept = int(report["rows_in"]), int(report["rows_kept"])
    share = f" ({kept / rows_in:.1%})" if rows_in else ""
    axes[0, 0].set_title(f"{title}: {rows_in} rows in, {kept} kept{share}")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    logger.info("cleaning chart of %s: %d of %d rows kept", title, kept, rows_in)
