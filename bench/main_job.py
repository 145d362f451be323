"""Time the main job from scratch and print per-rule times (Snakemake ``benchmark:`` files).

    .venv/bin/python bench/main_job.py                       # default config, 2 cores
    .venv/bin/python bench/main_job.py --target results/t2i.json --budget 600
    .venv/bin/python bench/main_job.py --configfile config/experiments/synthetic_zh.yaml \
        --config 'run=[synthetic_zh]' --target results/cider.json results/vqa.json

The workflow is copied into a temporary folder (so nothing of yours is reused or touched),
run with ``snakemake --cores N``, and every rule's ``benchmarks/<rule>/<exp>.tsv`` is read
back. The table shows each rule's wall time and its share of the total; the last line
compares the whole run against the budget (the issue's bar: 10 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKFLOW_FILES = ("Snakefile", "rules", "scripts", "config", "envs", "profiles", "slurm", "report")


def copy_workflow(dest: Path) -> None:
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True)
        elif src.exists():
            shutil.copy2(src, dest / name)


def read_benchmarks(workdir: Path) -> list[tuple[str, str, float, float]]:
    """(rule, wildcards, seconds, max RSS MB) for every benchmark file."""
    rows = []
    for path in sorted((workdir / "benchmarks").glob("*/*.tsv")):
        with open(path) as f:
            record = next(csv.DictReader(f, delimiter="\t"))
        rss = float(record["max_rss"]) if record.get("max_rss", "NA") != "NA" else float("nan")
        rows.append((path.parent.name, path.stem, float(record["s"]), rss))
    return rows


def timeline(
    workdir: Path, rows: list[tuple[str, str, float, float]]
) -> list[tuple[float, float, str, str]]:
    """(start, end, rule, wildcards) of the benchmarked jobs ``rows`` (:func:`read_benchmarks`),
    in seconds from the first start, sorted by start. Snakemake writes a job's benchmark file
    when the job ends, so the file's modification time is its end and the end minus the job's
    seconds its start."""
    jobs = []
    for rule, wildcards, seconds, _ in rows:
        end = (workdir / "benchmarks" / rule / f"{wildcards}.tsv").stat().st_mtime
        jobs.append((end - seconds, end, rule, wildcards))
    if not jobs:
        return []
    first = min(start for start, _, _, _ in jobs)
    return sorted((start - first, end - first, r, w) for start, end, r, w in jobs)


def print_timeline(jobs: list[tuple[float, float, str, str]]) -> None:
    """When each job ran, so the chain the wall time waited on can be read off: the job
    that ends last, and before it the jobs that ended as it started."""
    print(f"\ntimeline (s from the first job's start)\n{'start':>7} {'end':>7}  job")
    for start, end, rule, wildcards in jobs:
        print(f"{start:>7.1f} {end:>7.1f}  {rule} {wildcards}")


def snakemake_command(args: argparse.Namespace) -> list[str]:
    """The snakemake call; the targets come first, because ``--configfile`` and ``--config``
    take every value that follows them."""
    command = [str(Path(sys.executable).parent / "snakemake"), "--cores", str(args.cores)]
    command += args.target
    if args.configfile:
        command += ["--configfile", str(Path(args.configfile).resolve())]
    if args.config:
        command += ["--config", *args.config]
    return command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", nargs="*", default=[], help="targets (default: rule all)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--configfile", default=None)
    parser.add_argument("--config", nargs="*", default=[], help="snakemake --config KEY=VALUE")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds allowed (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="vlcore-bench-"))
    copy_workflow(workdir)
    command = snakemake_command(args)
    print("running:", " ".join(command), "in", workdir, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-6000:], sep="\n")
        print(f"the run failed ({proc.returncode}); folder kept: {workdir}")
        return 1
    rows = read_benchmarks(workdir)
    total_rules = sum(seconds for _, _, seconds, _ in rows)
    print(f"\n{'rule':<22} {'wildcards':<28} {'seconds':>8} {'share':>6} {'max RSS MB':>10}")
    for rule, wildcards, seconds, rss in sorted(rows, key=lambda r: -r[2]):
        print(
            f"{rule:<22} {wildcards:<28} {seconds:>8.1f} {seconds / total_rules:>6.1%} {rss:>10.0f}"
        )
    print_timeline(timeline(workdir, rows))
    print(
        f"\nsum of rule times {total_rules:.1f} s; wall time {wall:.1f} s with {args.cores} cores"
    )
    print(f"wall / budget = {wall:.1f} / {args.budget:.0f} s = {wall / args.budget:.2f}"
          f" ({'within' if wall <= args.budget else 'OVER'} the budget)")  # fmt: skip
    if args.keep:
        print("kept:", workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
