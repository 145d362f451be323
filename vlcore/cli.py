"""The ``vlcore`` command: small tools around the workflow.

vlcore check-config config/config.yaml [config/experiments/coco.yaml ...]
vlcore clean-report results/default/data/clean_report.json
vlcore verify-shards results/default/shards
vlcore synthetic export --format coco --n 100 --out /tmp/coco     (= python -m vlcore.synthetic)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from vlcore.config import ConfigError, load_config
from vlcore.io import read_json


def check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(*args.files)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    for name in config["run"]:
        exp = config["experiments"][name]
        print(f"ok: experiment {name!r} ({exp['lang']}, source {exp['source']['format']})")
    if args.show:
        print(json.dumps(config, indent=2, ensure_ascii=False))
    return 0


def clean_report(args: argparse.Namespace) -> int:
    report = read_json(args.report)
    print(f"rows in: {report['rows_in']}   kept: {report['rows_kept']}")
    width = max(len(reason) for reason in report["dropped"])
    for reason, count in report["dropped"].items():
        if count or args.all:
            print(f"  dropped  {reason:<{width}}  {count:>8}")
    for reason, count in report["captions_dropped"].items():
        if count or args.all:
            print(f"  captions {reason:<{width}}  {count:>8}")
    return 0


def verify_shards(args: argparse.Namespace) -> int:
    from vlcore.data.shard import verify_shards as verify

    try:
        manifest = verify(args.shards)
    except (ValueError, FileNotFoundError) as err:
        print(f"shards are NOT intact: {err}", file=sys.stderr)
        return 1
    splits = ", ".join(f"{name} {split['rows']}" for name, split in manifest["splits"].items())
    print(f"ok: {manifest['total']['shards']} shards, rows per split: {splits}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlcore", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "check-config", help="validate config files (merged in order, as --configfile does)"
    )
    p.add_argument("files", nargs="+")
    p.add_argument(
        "--show", action="store_true", help="print the config with every default filled in"
    )
    p.set_defaults(func=check_config)
    p = sub.add_parser("clean-report", help="print a clean_pairs report as a table")
    p.add_argument("report")
    p.add_argument("--all", action="store_true", help="also list reasons with zero rows")
    p.set_defaults(func=clean_report)
    p = sub.add_parser("verify-shards", help="re-check every shard's size and sha256")
    p.add_argument("shards")
    p.set_defaults(func=verify_shards)
    sub.add_parser(
        "synthetic",
        help="the synthetic shapes world (see: vlcore synthetic --help)",
        add_help=False,
    )
    return parser


def _run(argv: list[str]) -> int:
    if argv[:1] == ["synthetic"]:
        from vlcore.synthetic.__main__ import main as synthetic_main

        return synthetic_main(argv[1:])
    logging.basicConfig(level=logging.WARNING)
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _run(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # a short output meets the closed pipe here, not at exit
        return status
    except BrokenPipeError:
        # The reader went away (`vlcore check-config ... --show | head`): stop quietly, as
        # Unix tools do, and keep Python from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, a shell's status for a tool the pipe stopped


if __name__ == "__main__":
    sys.exit(main())
