"""What do per-image cross-attention and stacked Newton-Schulz save in vit_gpt2's step? Side by side.

    .venv/bin/python bench/per_image_step.py results/default --steps 20 80

Trains the experiment's vit_gpt2 with its settings from the config (as ``train_captioner``
gets them; self-critical steps left out) for each ``--steps`` count in four modes, each run
a process of its own with one thread, one after the other, so the times are comparable
within one call:

* ``before``: the decoder handed the encoder states repeated per text (plain ``sdpa``), and
  Muon's Newton-Schulz run once per matrix: the code before these two changes;
* ``per image``: cross-attention reading each image's states once for all its texts
  (``vlcore/models/cross_attention.py``), Newton-Schulz still per matrix;
* ``stacked``: states per text, Newton-Schulz on one stack per shape
  (``vlcore/train/optimizers.py``);
* ``both``: the two together, as the code runs now.

The time per step is the slope between the two counts. The logits are the same either way
and the stacked steps equal the per-matrix ones bit for bit, but the gradient of the keys'
and values' projection is summed in another order per image, so the losses drift apart in
the last digits; the script prints them, and stops if stacking changed a loss.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from compile_step import base_settings, print_runs, print_slopes, step_parser

MODES = {
    "before": {"per_image": False, "stacked": False},
    "per image": {"per_image": True, "stacked": False},
    "stacked": {"per_image": False, "stacked": True},
    "both": {"per_image": True, "stacked": True},
}


def one_run(args: argparse.Namespace) -> None:
    """The child: switch the two changes off as the mode says, train, print seconds."""
    import compile_step

    import vlcore.models.captioner_vit_gpt2 as vit_gpt2
    import vlcore.train.optimizers as optimizers

    mode = MODES[args.mode]
    if not mode["per_image"]:
        vit_gpt2.use_per_image_attention = lambda decoder: False
    if not mode["stacked"]:
        whole = optimizers.stacks_of_one_shape

        def one_per_matrix(matrices):
            for members, stack in whole(matrices):
                for i, matrix in zip(members, stack.unbind(0), strict=True):
                    yield [i], matrix.unsqueeze(0)

        optimizers.stacks_of_one_shape = one_per_matrix
    compile_step.one_run(args)


def main() -> None:
    parser = step_parser(__doc__.split("\n")[0])
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.set_defaults(captioner="vit_gpt2")
    args = parser.parse_args()
    if args.captioner != "vit_gpt2":
        parser.error("only vit_gpt2 cross-attends to the image")
    if args.one:
        one_run(args)
        return
    base = base_settings(args, parser)
    runs = {}
    for mode in MODES:
        for count in args.steps:
            print(f"training {mode}, {count} steps ...", flush=True)
            settings = json.dumps({**base, "max_steps": count})
            out = subprocess.run(
                [sys.executable, __file__, args.experiment, "--one", "--mode", mode,
                 "--settings", settings],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if out.returncode != 0:
                raise SystemExit(f"{mode}, {count} steps failed:\n{out.stderr[-3000:]}")
            runs[mode, count] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  {runs[mode, count]['train_s']:.1f} s", flush=True)
    print_runs("vit_gpt2", runs)
    for count in args.steps:  # stacking changes no bit of a step
        for per_matrix, stacked in (("before", "stacked"), ("per image", "both")):
            if runs[stacked, count]["last_loss"] != runs[per_matrix, count]["last_loss"]:
                raise SystemExit(f"stacked Newton-Schulz changed {per_matrix}'s loss")
    print("stacked Newton-Schulz: the same losses as one matrix at a time")
    seconds = {key: run["train_s"] for key, run in runs.items()}
    slopes = print_slopes(seconds, tuple(MODES), *args.steps)
    for mode in list(MODES)[1:]:
        print(f"{mode} / before, time per step: {slopes[mode] / slopes['before']:.2f}")


if __name__ == "__main__":
    main()
