"""Does keeping the decoded training images in memory make a training step faster? Side by side.

    .venv/bin/python bench/data_cache_step.py results/default --captioner vit_gpt2 --steps 100 400

Trains the experiment's captioner with its settings from the config (as ``train_captioner``
gets them; self-critical steps left out) for each ``--steps`` count with ``data_cache_mb: 0``
(every epoch reads and decodes the shards) and with the config's cache (``data_cache_mb``, a
training-loop key; ``vlcore/data/stream.py``), each run a process of its own with one thread,
one after the other, so the times are comparable within one call. The time per step is the
slope between the two counts (the first epoch, which fills the cache, is in both counts when
the smaller one is above an epoch's steps). The batches are the same with and without the
cache, so the last training losses must be equal: the script says so, or stops.
"""

from __future__ import annotations

from pathlib import Path

from compile_step import print_ratio, print_runs, time_modes, two_mode_bench


def main() -> None:
    args, parser, base = two_mode_bench(__doc__.split("\n")[0])
    if not base.get("data_cache_mb"):
        parser.error("the config's data_cache_mb is 0: nothing to compare")
    modes = {"no cache": {"data_cache_mb": 0}, "cache": {"data_cache_mb": base["data_cache_mb"]}}
    runs = time_modes(Path(args.experiment), args.captioner, base, modes, args.steps)
    print_runs(args.captioner, runs)
    for steps in args.steps:
        if runs["cache", steps]["last_loss"] != runs["no cache", steps]["last_loss"]:
            raise SystemExit(f"the cache changed the training loss after {steps} steps")
    print("the same losses with and without the cache")
    print_ratio(runs, ("no cache", "cache"), args.steps)


if __name__ == "__main__":
    main()
