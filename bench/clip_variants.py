"""Train CLIP variants side by side on an experiment's data and compare retrieval and time.

    .venv/bin/python bench/clip_variants.py results/default --seeds 0 1 \\
        --variant 'mha={"vision_cfg": {"block_type": "default"}, "text_cfg": {"block_type": "default"}}' \\
        --variant 'custom={}' \\
        --variant 'custom_open_clip_init={"init": "open_clip"}'

Each variant is a mapping deep-merged into the architecture preset the experiment's CLIP was
trained from (read from ``clip/train_config.json``, with its training settings), trained
with those settings from each ``--seeds`` seed on the experiment's ``shards/`` and
``tokenizer/`` (already built), and scored by test-split retrieval exactly as
``score_retrieval`` scores it, and by how often it prefers a test caption to the same caption
with its shape word swapped (``bench/clip_word_swaps.py``; chance 50%; blank when the captions
name no shapes of the English shapes world). Two keys belong to the bench, not the preset:
``"init": "open_clip"`` leaves open_clip's custom attention blocks as open_clip initialises
them, instead of :func:`vlcore.models.clip.init_attention_as_torch`, and ``"train"`` overrides
training settings (``{"train": {"batch_size": 64, "max_steps": 500}}``: any key of the
experiment's ``clip`` section or its ``train``). ``--steps`` shortens training (the schedule
shrinks with it). Runs go ``--jobs`` at a time, one thread each (the main job's
setting), so times are comparable within one call; the table gives each run's seconds
against the first variant's at the same seed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import json
import multiprocessing
import sys
import tempfile
from pathlib import Path

BENCH_KEYS = ("init", "train")
INITS = ("torch", "open_clip")


def variant_preset(preset: dict, overrides: dict) -> dict:
    """``overrides`` (less the bench-only keys) deep-merged into a copy of ``preset``."""
    from vlcore.config import deep_update

    own = {k: v for k, v in overrides.items() if k not in BENCH_KEYS}
    return deep_update(copy.deepcopy(preset), own)


def parse_variant(text: str) -> tuple[str, dict]:
    name, sep, body = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"a variant is NAME=JSON, got {text!r}")
    try:
        value = json.loads(body)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"variant {name}: not JSON ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"variant {name}: expected a JSON object")
    if value.get("init", "torch") not in INITS:
        raise argparse.ArgumentTypeError(f"variant {name}: init must be one of {INITS}")
    if not isinstance(value.get("train", {}), dict):
        raise argparse.ArgumentTypeError(f"variant {name}: train must be a JSON object")
    return name, value


def variant_settings(settings: dict, overrides: dict) -> dict:
    """The experiment's training ``settings`` with the variant's ``train`` overrides: keys
    of the recorded run or of today's ``clip:`` section (a setting newer than the run)."""
    from dataclasses import fields

    from vlcore.pipeline.clip import ClipSettings
    from vlcore.train.loop import TrainConfig

    own = overrides.get("train", {})
    known = set(settings) | {f.name for f in (*fields(ClipSettings), *fields(TrainConfig))}
    unknown = sorted(set(own) - known)
    if unknown:
        raise SystemExit(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
    return {**settings, **own}


def experiment_clip(exp_dir: Path) -> tuple[dict, dict]:
    """The preset (architecture) and the training settings of ``exp_dir``'s CLIP."""
    from vlcore.io import read_json
    from vlcore.models.clip import load_preset

    path = exp_dir / "clip" / "train_config.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: train the experiment's CLIP first (train_clip)")
    record = read_json(path)
    if record["model"].get("kind") != "preset":
        raise SystemExit(
            f"{exp_dir}'s CLIP is not a preset trained from scratch: {record['model']}"
        )
    settings = {**record["settings"], **record["train"]}
    return load_preset(record["model"]["name"]), settings


def run_one(job: dict) -> dict:
    """Train and score one (variant, seed) in this process (one thread)."""
    import torch

    torch.set_num_threads(1)
    import vlcore.models.clip as clip_module
    from vlcore.pipeline.clip import score_retrieval, train_clip

    if job["init"] == "open_clip":
        clip_module.init_attention_as_torch = lambda model: None
    exp_dir, out = Path(job["exp_dir"]), Path(job["out"])
    history = train_clip(exp_dir / "shards", exp_dir / "tokenizer", job["settings"], out)
    scores = score_retrieval(exp_dir / "shards", out, device="cpu")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from clip_word_swaps import SHAPES_WORLD_GROUPS, probe

    shapes = {"shape": SHAPES_WORLD_GROUPS["shape"]}
    swaps = probe(str(out), str(exp_dir / "shards"), "test", shapes)["shape"]
    return {
        "variant": job["variant"],
        "seed": job["settings"]["seed"],
        "i2t_r1": scores["image_to_text"]["R@1"],
        "t2i_r1": scores["text_to_image"]["R@1"],
        "shape_swap": swaps.get("accuracy"),
        "seconds": history["summary"]["seconds"],
    }


def table(results: list[dict], names: list[str]) -> str:
    base = {r["seed"]: r["seconds"] for r in results if r["variant"] == names[0]}
    lines = [
        f"{'variant':<28}{'seed':>5}{'R@1 i->t':>10}{'R@1 t->i':>10}{'shape swap':>12}"
        f"{'seconds':>9}{'ratio':>7}"
    ]
    order = {name: i for i, name in enumerate(names)}
    for r in sorted(results, key=lambda r: (order[r["variant"]], r["seed"])):
        ratio = r["seconds"] / base[r["seed"]] if r["seed"] in base else float("nan")
        shape = "" if r["shape_swap"] is None else f"{r['shape_swap']:.1f}%"
        lines.append(
            f"{r['variant']:<28}{r['seed']:>5}{r['i2t_r1']:>10.1f}{r['t2i_r1']:>10.1f}"
            f"{shape:>12}{r['seconds']:>9.1f}{ratio:>7.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "experiment", type=Path, help="results/<experiment> (shards, tokenizer, clip)"
    )
    parser.add_argument("--variant", type=parse_variant, action="append", required=True,
                        help="NAME=JSON merged into the CLIP preset; repeat")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, help="training steps (default: the experiment's)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, help="keep the trained CLIPs here")
    args = parser.parse_args(argv)
    names = [name for name, _ in args.variant]
    if len(set(names)) != len(names):
        parser.error(f"variant names repeat: {names}")
    preset, settings = experiment_clip(args.experiment)
    with tempfile.TemporaryDirectory(prefix="clip-variants-") as tmp:
        root = args.out or Path(tmp)
        jobs = []
        for name, overrides in args.variant:
            merged = variant_preset(preset, overrides)
            preset_file = root / f"{name}.json"
            preset_file.parent.mkdir(parents=True, exist_ok=True)
            preset_file.write_text(json.dumps(merged, indent=2))
            own = variant_settings(settings, overrides)
            for seed in args.seeds:
                run = {**own, "model": str(preset_file), "seed": seed, "device": "cpu"}
                if args.steps is not None:
                    scale = args.steps / own["max_steps"]
                    run.update(max_steps=args.steps,
                               warmup_steps=max(1, round(own["warmup_steps"] * scale)),
                               val_every=0, ckpt_every=0)  # fmt: skip
                jobs.append({"variant": name, "settings": run, "exp_dir": str(args.experiment),
                             "out": str(root / f"{name}-seed{seed}"),
                             "init": overrides.get("init", "torch")})  # fmt: skip
        results = []
        spawn = multiprocessing.get_context("spawn")  # fresh processes: one thread each
        # a fresh process per run: nothing (threads, the init switch) carries over
        with concurrent.futures.ProcessPoolExecutor(
            args.jobs, mp_context=spawn, max_tasks_per_child=1
        ) as pool:
            for result in pool.map(run_one, jobs):
                print(json.dumps(result), flush=True)
                results.append(result)
    print(table(results, names))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
