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

from compile_step import print_ratio, print_runs, time_modes, two_mode_bench


def main() -> None:
    args, _, base = two_mode_bench(__doc__.split("\n")[0])
    modes = {precision: {"precision": precision} for precision in ("fp32", "bf16")}
    runs = time_modes(Path(args.experiment), args.captioner, base, modes, args.steps)
    print_runs(args.captioner, runs)
    print_ratio(runs, ("fp32", "bf16"), args.steps)


if __name__ == "__main__":
    main()
