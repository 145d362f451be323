"""Small self-contained HTML pages: inline CSS, images as data URIs, escaped text."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Iterable, Sequence

from vlcore.io import atomic_path

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC",
       sans-serif; margin: 1.2em; color: #1f2328; font-size: 14px; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
p.note { color: #57606a; max-width: 60em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; }
th, td { border: 1px solid #d0d7de; padding: 0.3em 0.6em; text-align: right; }
th { background: #f6f8fa; }
td.name, th.name { text-align: left; }
tr.reference td { color: #57606a; font-style: italic; background: #fbfbfc; }
td.missing { color: #8c959f; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.6em; width: 22em; }
.card img { width: 128px; height: 128px; image-rendering: pixelated; display: block;
            margin-bottom: 0.4em; border: 1px solid #d0d7de; }
.card table { margin: 0; width: 100%; font-size: 0.92em; }
.card th, .card td { text-align: left; vertical-align: top; }
.card ol { margin: 0; padding-left: 1.3em; }
.empty { color: #cf222e; font-style: italic; }
.right { color: #1a7f37; font-weight: 600; } .wrong { color: #cf222e; font-weight: 600; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def image_data_uri(data: bytes) -> str:
    """A ``data:`` URI for PNG or JPEG bytes (the type read from the magic number)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        mime = "image/png"
    elif data[:3] == b"\xff\xd8\xff":
        mime = "image/jpeg"
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        mime = "image/webp"
    else:
        raise ValueError("image bytes are neither PNG, JPEG nor WebP")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def table(
    header: Sequence[str] | None,
    rows: Iterable[Sequence[str]],
    row_classes: Iterable[str] | None = None,
) -> str:
    """An HTML table of already escaped cells; the first column is left-aligned (a name).

    ``header=None`` leaves out the header row."""
    head = "".join(
        f'<th class="name">{h}</th>' if i == 0 else f"<th>{h}</th>"
        for i, h in enumerate(header or ())
    )
    thead = f"<thead><tr>{head}</tr></thead>" if header is not None else ""
    body = []
    classes = list(row_classes) if row_classes is not None else None
    for r, row in enumerate(rows):
        cls = f' class="{classes[r]}"' if classes and classes[r] else ""
        cells = "".join(
            f'<td class="name">{c}</td>' if i == 0 else f"<td>{c}</td>" for i, c in enumerate(row)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{esc(title)}</h1>\n{body}\n</body></html>\n"
    )


def write_page(title: str, body: str, path: str | os.PathLike) -> None:
    """Write one self-contained page atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(page(title, body), encoding="utf-8")
