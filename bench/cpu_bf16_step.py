"""Does bf16 autocast make a CPU training step faster? fp32 against bf16, side by side.

    .venv/bin/python bench/cpu_bf16_step.py results/default --captioner vit_gpt2 --steps 30 130

Trains the experiment's captioner with its settings from the config (as ``train_captioner``
gets them; self-critical steps left out) for each ``--steps`` count under ``precision: fp32``
and ``precision: bf16`` (a training-loop key; on a CPU, bf16 autocast with attention kept in
fp32, ``vlcore/train/runtime.py``). Every run is a process of its own with one thread (the
main job's setting), one after the other, so the times are comparable within one call. The
time per step is the slope between the two counts; the intercept is what a run pays once.
It also prints the last training loss of each longer run, so a faster step that learns
worse shows up here too. ``precision: auto`` picks bf16 only where the CPU has AMX-BF16 tiles;
elsewhere bf16 is emulated and this script shows what that costs.
"""

from __future__ import annotations

from pathlib import Path

from compile_step import base_settings, print_slopes, step_parser, train_once


def main() -> None:
    parser = step_parser(__doc__.split("\n")[0])
    args = parser.parse_args()
    few, many = args.steps
    exp_dir = Path(args.experiment)
    base = base_settings(args, parser)

    runs = {}
    for precision in ("fp32", "bf16"):
        for steps in (few, many):
            print(f"training {precision}, {steps} steps ...", flush=True)
            settings = {**base, "max_steps": steps, "precision": precision}
            what = f"{precision}, {steps} steps"
            runs[precision, steps] = train_once(exp_dir, args.captioner, settings, what)
            print(f"  {runs[precision, steps]['train_s']:.1f} s", flush=True)

    print(f"\n{args.captioner}, one thread per run | steps | training s | last loss")
    for (precision, steps), run in runs.items():
        print(f"{precision:6s} | {steps:5d} | {run['train_s']:8.1f} | {run['last_loss']:.4f}")
    seconds = {key: run["train_s"] for key, run in runs.items()}
    slopes = print_slopes(seconds, ("fp32", "bf16"), few, many)
    print(f"bf16 / fp32, time per step: {slopes['bf16'] / slopes['fp32']:.2f}")


if __name__ == "__main__":
    main()
