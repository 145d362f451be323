"""What do an image encoder's patch tokens say about each object? Linear probes per grid cell.

    .venv/bin/python bench/patch_probe.py results/default/clip \
        results/default/captioners/vit_gpt2 results/default/captioners/clip_prefix \
        --shards results/default/shards

A diagnostic for issue 3 on the synthetic shapes world, where every object sits in its own
cell of a 3x3 grid. Each image's scene is regenerated from its id and the experiment seed
(:func:`vlcore.synthetic.truth.scene_truth`; ``--seed`` and ``--dirty-rate`` must be the
experiment's, defaults: the default experiment's; other values are an error), so every cell
has a label per attribute: the object's shape, colour and size, or "empty". An encoder's
patch tokens, frozen, are averaged over each cell (``adaptive_avg_pool2d`` to 3x3),
standardised, and one linear classifier per attribute, shared by the nine cells, is fitted
on the ``train`` split; the table gives its accuracy on the cells of ``--split`` that hold
an object (chance: shape 1/6, colour 1/8, size 1/2). A token grid that says "a star here"
passes shape; one that only knows "something pink is somewhere" does not, and no decoder
reading it can name the star.

Two reference rows come first, with the same probe:

* ``random stem``: a random-init convolutional stem (the one the tiny presets use), frozen,
  with its BatchNorm statistics from training images: what pixels give a linear probe;
* ``supervised stem``: the same stem trained from scratch on the cell labels themselves
  (``--stem-steps`` steps of 32 images, AdamW 1e-3): how quickly shapes can be learned when
  the supervision says where each object is; ``--stem-depths 1 2`` adds a row for a stem with
  two convolutions per stage (``conv_stem_depth: 2``), and so on.

Encoders: a ``train_clip`` folder (the open_clip ViT tower's patch tokens), a
``train_captioner`` folder (vit_gpt2: the ViT encoder's states; clip_prefix: its CLIP tower's
patch tokens), or the ``xe/`` stage folder inside a vit_gpt2 folder trained with ``scst`` (its
encoder before self-critical fine-tuning). Everything runs on the CPU, one thread, in a
minute or two per encoder.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vlcore.data.stream import ShardStream
from vlcore.models.captioner_vit_gpt2 import normalize_images
from vlcore.models.clip import CONFIG_FILE as CLIP_CONFIG_FILE
from vlcore.models.clip import load_clip
from vlcore.models.conv_stem import ConvStem
from vlcore.pipeline.captioner import (
    RECORD_FILE,
    WEIGHTS_FILE,
    LoadedCaptioner,
    load_captioner,
)
from vlcore.synthetic.lexicon import COLORS, SHAPES, SIZES
from vlcore.synthetic.truth import check_truth_matches, scene_truth
from vlcore.train.checkpoint import load_weights

GRID = 3  # the shapes world's grid: objects are placed in distinct cells of 3x3
ATTRIBUTES = {"shape": SHAPES, "colour": COLORS, "size": SIZES}
TRUTH_KEYS = {"shape": "shape", "colour": "color", "size": "size"}
EMPTY = 0  # label of a cell without an object; an attribute value v is 1 + its index

Encoder = Callable[[torch.Tensor], torch.Tensor]  # B 3 H W in [0, 1] -> B D h w


def load_split(
    shards: str, split: str, seed: int, dirty_rate: float | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Images ``N 3 H W`` in [0, 1] and per-cell labels ``{attribute: N 9}`` (0 = empty);
    ``seed`` and ``dirty_rate`` are the experiment's (a kept duplicate shows its source's scene)."""
    rows = list(ShardStream(shards, split))
    if not rows:
        raise ValueError(f"{shards}: the {split!r} split is empty")
    images = torch.stack([row["image"] for row in rows])
    truth = scene_truth({"seed": seed, "dirty_rate": dirty_rate}, [r["image_id"] for r in rows])
    check_truth_matches(truth, [r.get("captions") or [] for r in rows])
    labels = {name: torch.zeros(len(rows), GRID * GRID, dtype=torch.long) for name in ATTRIBUTES}
    for i, objects in enumerate(truth):
        for obj in objects:
            cell = obj["cell"][0] * GRID + obj["cell"][1]
            for name, values in ATTRIBUTES.items():
                labels[name][i, cell] = 1 + values.index(obj[TRUTH_KEYS[name]])
    return images, labels


def _grid(tokens: torch.Tensor) -> torch.Tensor:
    """``B N D`` patch tokens (a square grid) -> ``B D h w``."""
    side = round(tokens.shape[1] ** 0.5)
    if side * side != tokens.shape[1]:
        raise ValueError(f"{tokens.shape[1]} patch tokens do not form a square grid")
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)


def _clip_tower_encoder(visual: nn.Module, size: int, mean, std) -> Encoder:
    if not hasattr(visual, "output_tokens"):
        raise ValueError(f"{type(visual).__name__} has no patch tokens (needs a ViT tower)")
    visual.output_tokens = True
    visual.eval()
    mean = torch.tensor(mean).view(1, 3, 1, 1)
    std = torch.tensor(std).view(1, 3, 1, 1)
    return lambda images: _grid(visual(normalize_images(images, size, mean, std))[1])


def _captioner(path: Path) -> LoadedCaptioner | None:
    """The captioner of ``path``: a captioner folder, or a training stage folder inside one
    (vit_gpt2's ``xe/``, the weights before self-critical fine-tuning); None if neither."""
    if (path / RECORD_FILE).is_file():
        return load_captioner(path)
    if (path.parent / RECORD_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
        loaded = load_captioner(path.parent)
        load_weights(loaded.model, path / WEIGHTS_FILE)
        return loaded
    return None


def load_encoder(folder: str) -> Encoder:
    """The patch-token grid of a trained CLIP or captioner folder (see the module docstring)."""
    path = Path(folder)
    loaded = _captioner(path)
    if loaded is not None:
        model = loaded.model
        if loaded.record["name"] == "vit_gpt2":
            n_patches = (model.image_size // model.model.config.encoder.patch_size) ** 2
            return lambda images: _grid(model.encode(images)[:, -n_patches:])
        spec = model.clip_spec
        return _clip_tower_encoder(model.visual, spec["image_size"][0], spec["mean"], spec["std"])
    if not (path / CLIP_CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{path} is neither a captioner folder ({RECORD_FILE}) nor a CLIP folder "
            f"({CLIP_CONFIG_FILE}): give train_captioner's or train_clip's output folder"
        )
    clip = load_clip(path, device="cpu")
    size = clip.model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    cfg = clip.preprocess_cfg
    return _clip_tower_encoder(clip.model.visual, int(size), cfg["mean"], cfg["std"])


def _cells(grid: torch.Tensor) -> torch.Tensor:
    """``B D h w`` -> ``B 9 D``: the grid averaged over each cell of the 3x3 object grid."""
    return F.adaptive_avg_pool2d(grid, GRID).flatten(2).transpose(1, 2)


@torch.no_grad()
def cell_features(encoder: Encoder, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """``N 9 D``: the encoder's patch tokens averaged over each cell of the 3x3 grid."""
    out = []
    for start in range(0, len(images), batch_size):
        out.append(_cells(encoder(images[start : start + batch_size]).float()))
    return torch.cat(out)


def _heads(dim: int) -> nn.ModuleDict:
    return nn.ModuleDict({n: nn.Linear(dim, 1 + len(v)) for n, v in ATTRIBUTES.items()})


def _loss(heads: nn.ModuleDict, features: torch.Tensor, labels: dict[str, torch.Tensor]):
    return sum(
        F.cross_entropy(heads[n](features).flatten(0, 1), labels[n].flatten()) for n in heads
    )


def accuracy(
    heads: nn.ModuleDict, features: torch.Tensor, labels: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Per attribute: % of cells holding an object whose value the probe names."""
    with torch.no_grad():
        occupied = labels["shape"] != EMPTY
        return {
            n: 100.0
            * (heads[n](features).argmax(-1)[occupied] == labels[n][occupied]).float().mean().item()
            for n in heads
        }


def fit_probe(
    train: torch.Tensor, labels: dict[str, torch.Tensor], steps: int = 500, lr: float = 0.05
) -> tuple[nn.ModuleDict, torch.Tensor, torch.Tensor]:
    """Linear heads on standardised frozen features (full batch, AdamW); returns the heads and
    the standardisation (mean, std) to apply to other features."""
    mean = train.mean((0, 1), keepdim=True)
    std = train.std((0, 1), keepdim=True) + 1e-6
    torch.manual_seed(0)
    heads = _heads(train.shape[-1])
    optimizer = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=1e-4)
    x = (train - mean) / std
    for _ in range(steps):
        loss = _loss(heads, x, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return heads, mean, std


def probe_encoder(encoder: Encoder, data: dict) -> dict[str, float]:
    """Fit the linear probe on the train split's cell features; accuracy on the eval split."""
    train = cell_features(encoder, data["train_images"])
    heads, mean, std = fit_probe(train, data["train_labels"])
    test = (cell_features(encoder, data["eval_images"]) - mean) / std
    return accuracy(heads, test, data["eval_labels"])


def _stem(seed: int, depth: int = 1) -> ConvStem:
    torch.manual_seed(seed)  # the stem of the tiny presets: 64 px -> an 8x8 grid of 128
    return ConvStem(3, 128, 8, [32, 64], downsample="stride", norm="batch", depth=depth)


def _pixels(images: torch.Tensor) -> torch.Tensor:
    return (images - 0.5) / 0.5


def random_stem(data: dict, seed: int) -> Encoder:
    """A random-init stem, frozen after its BatchNorm statistics are taken from train images."""
    stem = _stem(seed)
    with torch.no_grad():
        stem.train()(_pixels(data["train_images"][:512]))
    stem.eval()
    return lambda images: stem(_pixels(images))


def supervised_stem(
    data: dict, seed: int, steps: int, batch_size: int = 32, depth: int = 1
) -> dict[str, float]:
    """The stem (``depth`` convolutions per stage, ``conv_stem_depth``) and the probe's heads
    trained together on the cell labels, from scratch."""
    stem, heads = _stem(seed, depth), _heads(128)
    params = [*stem.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    images, labels = data["train_images"], data["train_labels"]
    for _ in range(steps):
        pick = torch.randint(len(images), (batch_size,), generator=generator)
        features = _cells(stem(_pixels(images[pick])))
        loss = _loss(heads, features, {n: v[pick] for n, v in labels.items()})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    stem.eval()
    with torch.no_grad():
        features = _cells(stem(_pixels(data["eval_images"])))
    return accuracy(heads, features, data["eval_labels"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", help="trained CLIP or captioner folders")
    parser.add_argument("--shards", required=True, help="the experiment's shards folder")
    parser.add_argument("--split", default="test", help="the split the probes are scored on")
    parser.add_argument("--seed", type=int, default=0, help="the experiment seed (its scenes)")
    parser.add_argument(
        "--dirty-rate",
        type=float,
        default=0.05,
        help="the experiment's source.synthetic.dirty_rate",
    )
    parser.add_argument("--stem-steps", type=int, default=600, help="0 skips the supervised row")
    parser.add_argument(
        "--stem-depths",
        type=int,
        nargs="+",
        default=[1],
        help="a supervised row per stem depth (convolutions per stage; the presets' is 1)",
    )
    args = parser.parse_args(argv)
    if min(args.stem_depths) < 1:
        parser.error(f"--stem-depths must be at least 1, got {args.stem_depths}")
    torch.set_num_threads(1)
    try:
        train_images, train_labels = load_split(args.shards, "train", args.seed, args.dirty_rate)
        eval_images, eval_labels = load_split(args.shards, args.split, args.seed, args.dirty_rate)
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    data = {"train_images": train_images, "train_labels": train_labels,
            "eval_images": eval_images, "eval_labels": eval_labels}  # fmt: skip
    rows: list[tuple[str, dict[str, float], float]] = []

    def timed(name: str, run: Callable[[], dict[str, float]]) -> None:
        start = time.perf_counter()
        rows.append((name, run(), time.perf_counter() - start))
        print(f"  probed {name} in {rows[-1][2]:.0f} s", file=sys.stderr, flush=True)

    timed("random stem", lambda: probe_encoder(random_stem(data, args.seed), data))
    for depth in args.stem_depths if args.stem_steps else []:
        suffix = f", depth {depth}" if depth > 1 else ""
        timed(
            f"supervised stem, {args.stem_steps} steps{suffix}",
            lambda depth=depth: supervised_stem(data, args.seed, args.stem_steps, depth=depth),
        )
    for folder in args.folders:
        timed(folder, lambda folder=folder: probe_encoder(load_encoder(folder), data))
    width = max(len(name) for name, _, _ in rows)
    print(f"{'patch tokens of':<{width}}  " + "  ".join(f"{n:>6}" for n in ATTRIBUTES))
    for name, result, _ in rows:
        print(f"{name:<{width}}  " + "  ".join(f"{result[n]:5.1f}%" for n in ATTRIBUTES))
    n_objects = int((eval_labels["shape"] != EMPTY).sum())
    chance = "  ".join(f"{n} {100 / len(v):.1f}%" for n, v in ATTRIBUTES.items())
    print(f"({n_objects} objects of the {args.split} split; chance: {chance})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
