"""What does packing an image's texts behind one prefix save in clip_prefix's step? Side by side.

    .venv/bin/python bench/packed_prefix_step.py results/default --steps 20 80
    .venv/bin/python bench/packed_prefix_step.py results/default --steps 20 80 \
        --configfile config/experiments/clip_prefix_git.yaml --experiment-name git_muon

Trains the experiment's clip_prefix with its settings from the config (as ``train_captioner``
gets them; self-critical steps left out) for each ``--steps`` count two ways, each run a
process of its own with one thread, one after the other, so the times are comparable within
one call:

* ``per text``: every text in its own sequence behind a copy of its image's prefix, padded
  to the batch's longest text (``model: {pack_texts: false}``);
* ``packed``: each image's prefix once, its texts' real tokens after it in one sequence
  (``vlcore/models/packed_prefix.py``; the default).

The time per step is the slope between the two counts. The logits are the same up to the
order of floating-point sums, so the losses drift apart in the last digits; the script
prints them, and stops if they differ by more than 1%.
"""

from __future__ import annotations

from pathlib import Path

from compile_step import base_settings, print_ratio, print_runs, step_parser, time_modes


def main() -> None:
    parser = step_parser(__doc__.split("\n")[0])
    parser.add_argument(
        "--experiment-name",
        help="the config's experiment to take clip_prefix's settings from "
        "(default: the folder's name)",
    )
    parser.set_defaults(captioner="clip_prefix")
    args = parser.parse_args()
    if args.captioner != "clip_prefix":
        parser.error("only clip_prefix reads a prefix")
    base = base_settings(args, parser, args.experiment_name)
    model = dict(base.get("model") or {})
    modes = {"per text": {"model": {**model, "pack_texts": False}},
             "packed": {"model": {**model, "pack_texts": True}}}  # fmt: skip
    runs = time_modes(Path(args.experiment), args.captioner, base, modes, args.steps)
    print_runs(args.captioner, runs)
    for steps in args.steps:
        per_text, packed = runs["per text", steps]["last_loss"], runs["packed", steps]["last_loss"]
        if abs(packed - per_text) > 0.01 * abs(per_text):
            raise SystemExit(f"packing moved the loss after {steps} steps: {per_text} -> {packed}")
    print("packed and per-text losses within 1% of each other")
    print_ratio(runs, ("per text", "packed"), args.steps)


if __name__ == "__main__":
    main()
