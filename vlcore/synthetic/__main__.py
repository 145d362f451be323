"""Command line for the shapes world: export it in a real data set's format, or preview it.

python -m vlcore.synthetic export --format coco --n 100 --seed 0 --out DIR [--lang zh]
python -m vlcore.synthetic preview --n 64 --seed 0 --out grid.png
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from vlcore.synthetic.export import FORMATS, export_dataset, source_config
from vlcore.synthetic.generate import LANGS, generate
from vlcore.synthetic.preview import contact_sheet

logger = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=100, help="number of images (default: 100)")
    p.add_argument("--seed", type=int, default=0, help="data set seed (default: 0)")
    p.add_argument("--image-size", type=int, default=64, help="image side in pixels (default: 64)")
    p.add_argument(
        "--dirty-rate", type=float, default=0.05, help="fraction of dirty rows (default: 0.05)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vlcore.synthetic",
        description="Generate the synthetic shapes world and write it in a real data set's format.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser(
        "export",
        help="write images and index files in one external format",
        description="Write images (dirty ones included) and the index files of one format; "
        "prints the written paths and the matching source: config as JSON.",
    )
    export.add_argument("--format", required=True, choices=FORMATS, help="output format")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument(
        "--lang", default="en", choices=LANGS, help="caption language (default: en)"
    )
    export.add_argument(
        "--base-url", default=None, help="URL prefix for url-list formats (default: file:// paths)"
    )
    _common(export)
    preview = sub.add_parser("preview", help="save a contact sheet PNG of the first samples")
    preview.add_argument("--out", required=True, help="PNG file to write")
    preview.add_argument("--cols", type=int, default=8, help="images per row (default: 8)")
    preview.add_argument("--zoom", type=int, default=2, help="pixel zoom factor (default: 2)")
    _common(preview)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        samples = generate(args.n, args.seed, args.image_size, args.dirty_rate)
        if args.command == "export":
            paths = export_dataset(samples, args.format, args.out, args.lang, args.base_url)
            result = {
                "paths": {k: str(v) for k, v in paths.items()},
                "source": source_config(args.format, paths, args.base_url),
            }
            print(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            sheet = contact_sheet([s.image for s in samples], cols=args.cols, zoom=args.zoom)
            sheet.save(args.out)
            print(args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
