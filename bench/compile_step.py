"""Does ``torch.compile`` make a training step faster? Eager against compiled, side by side.

    .venv/bin/python bench/compile_step.py results/default --captioner vit_gpt2 --steps 30 130

Trains the experiment's captioner with its settings from the config (as ``train_captioner``
gets them; self-critical steps left out) for each ``--steps`` count, eager and with
``compile: true`` (a training-loop key, ``vlcore/train/loop.py``). Every run is a process of
its own with one thread (the main job's setting), one after the other, so the times are
comparable within one call. The time per step is the slope between the two counts; the
intercept is what a run pays once (start-up, and the compiling). The compiled runs share a
fresh compiler cache (``TORCHINDUCTOR_CACHE_DIR``): the first of them compiles from nothing,
as on a fresh clone, and is not in the slope; the other two find its kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def captioner_settings(config_files: list[str], experiment: str, captioner: str) -> dict:
    """The captioner's section of ``experiment``, flattened as the rules flatten it."""
    from vlcore.config import experiment_config, load_config, training_settings

    exp = experiment_config(load_config(*config_files), experiment)
    return training_settings(exp["captioners"][captioner], exp["seed"])


def one_run(args: argparse.Namespace) -> None:
    """Train once (the child process) and print its seconds as JSON."""
    import torch

    from vlcore.pipeline.captioner import train_captioner

    torch.set_num_threads(1)
    settings = json.loads(args.settings)
    exp_dir = Path(args.experiment)
    with tempfile.TemporaryDirectory() as out:
        history = train_captioner(
            args.captioner,
            exp_dir / "shards",
            exp_dir / "tokenizer",
            exp_dir / "clip" if args.captioner == "clip_prefix" else None,
            settings,
            out,
        )
    last_loss = history["train"][-1][1] if history["train"] else None
    print(json.dumps({"train_s": history["summary"]["seconds"], "last_loss": last_loss}))


def step_parser(description: str) -> argparse.ArgumentParser:
    """The arguments of a side-by-side step-time bench (this one, cpu_bf16_step.py and
    data_cache_step.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("experiment", help="results/<experiment> (shards, tokenizer, clip)")
    parser.add_argument("--captioner", default="vit_gpt2", choices=("vit_gpt2", "clip_prefix"))
    parser.add_argument("--steps", type=int, nargs=2, default=(30, 130), metavar=("FEW", "MANY"))
    parser.add_argument(
        "--configfile", action="append", default=[], help="on top of config/config.yaml"
    )
    return parser


def base_settings(
    args: argparse.Namespace, parser: argparse.ArgumentParser, experiment: str | None = None
) -> dict:
    """The captioner's settings for the timed runs (no self-critical steps, validation or
    checkpoints) in the config's ``experiment`` (default: the folder's name), after checking
    the step counts and the shards."""
    few, many = args.steps
    if not 0 < few < many:
        parser.error("--steps: two counts, the first smaller, both above 0")
    exp_dir = Path(args.experiment)
    if not (exp_dir / "shards" / "manifest.json").is_file():
        raise SystemExit(f"{exp_dir}/shards is missing: build the experiment's shards first")
    configs = [str(REPO / "config" / "config.yaml"), *args.configfile]
    base = captioner_settings(configs, experiment or exp_dir.name, args.captioner)
    base.update(scst={"steps": 0}, val_every=0, ckpt_every=0)
    return base


def two_mode_bench(description: str) -> tuple[argparse.Namespace, argparse.ArgumentParser, dict]:
    """The command line of a bench that times two modes of one captioner (cpu_bf16_step.py,
    data_cache_step.py): its arguments, its parser and the captioner's base settings."""
    parser = step_parser(description)
    args = parser.parse_args()
    return args, parser, base_settings(args, parser)


def print_ratio(runs: dict, modes: tuple[str, str], steps: tuple[int, int]) -> None:
    """The two modes' slopes (:func:`print_slopes`) and the second's time per step over the
    first's."""
    seconds = {key: run["train_s"] for key, run in runs.items()}
    slopes = print_slopes(seconds, modes, *steps)
    old, new = modes
    print(f"{new} / {old}, time per step: {slopes[new] / slopes[old]:.2f}")


def train_once(exp_dir: Path, captioner: str, settings: dict, what: str, env=None) -> dict:
    """One training run in a child process of this script: its seconds and last loss."""
    out = subprocess.run(
        [sys.executable, __file__, str(exp_dir), "--one", "--captioner", captioner,
         "--settings", json.dumps(settings)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_modes(
    exp_dir: Path, captioner: str, base: dict, modes: dict[str, dict], steps: tuple[int, int]
) -> dict:
    """Train once per (mode, step count), the mode's settings over ``base``, one run after
    the other, saying so as it goes; returns each run's seconds and last loss."""
    runs = {}
    for mode, overrides in modes.items():
        for count in steps:
            print(f"training {mode}, {count} steps ...", flush=True)
            settings = {**base, "max_steps": count, **overrides}
            runs[mode, count] = train_once(exp_dir, captioner, settings, f"{mode}, {count} steps")
            print(f"  {runs[mode, count]['train_s']:.1f} s", flush=True)
    return runs


def print_runs(captioner: str, runs: dict) -> None:
    """The table of :func:`time_modes`' runs: mode, steps, seconds, last loss."""
    print(f"\n{captioner}, one thread per run | steps | training s | last loss")
    for (mode, count), run in runs.items():
        print(f"{mode:8s} | {count:5d} | {run['train_s']:8.1f} | {run['last_loss']:.6f}")


def print_slopes(seconds: dict, modes: tuple[str, ...], few: int, many: int) -> dict:
    """Each mode's seconds per step (the slope between the two step counts) and what it pays
    once (the intercept), printed; returns the slopes."""
    slopes = {}
    for mode in modes:
        slopes[mode] = (seconds[mode, many] - seconds[mode, few]) / (many - few)
        once = seconds[mode, few] - few * slopes[mode]
        print(f"{mode:8s}: {slopes[mode]:.3f} s per step, {once:.1f} s once")
    return slopes


def main() -> None:
    parser = step_parser(__doc__.split("\n")[0])
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_run(args)
        return
    few, many = args.steps
    exp_dir = Path(args.experiment)
    base = base_settings(args, parser)

    # eager twice; compiled three times: once from an empty compiler cache, then twice with it
    plan = [("eager", few), ("eager", many), ("compiled, cold cache", few),
            ("compiled", few), ("compiled", many)]  # fmt: skip
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="vlcore-inductor-") as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        for mode, steps in plan:
            settings = {**base, "max_steps": steps, "compile": mode != "eager"}
            print(f"training {mode}, {steps} steps ...", flush=True)
            run = train_once(exp_dir, args.captioner, settings, f"{mode}, {steps} steps", env)
            seconds[mode, steps] = run["train_s"]
            print(f"  {seconds[mode, steps]:.1f} s", flush=True)

    print(f"\n{args.captioner}, one thread per run | steps | training s")
    for (mode, steps), value in seconds.items():
        print(f"{mode:20s} | {steps:5d} | {value:8.1f}")
    slopes = print_slopes(seconds, ("eager", "compiled"), few, many)
    cold = seconds["compiled, cold cache", few] - seconds["compiled", few]
    print(f"compiling from an empty cache: {cold:.1f} s more")
    print(f"compiled / eager, time per step: {slopes['compiled'] / slopes['eager']:.2f}")


if __name__ == "__main__":
    main()
