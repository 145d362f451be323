"""When does a captioner learn to name shapes? Teacher-forced shape-word accuracy vs steps.

    .venv/bin/python bench/shape_emergence.py results/default --steps 800 \
        --variant 'baseline={}' \
        --variant 'patch16={"model": {"encoder": {"patch_size": 16}, "conv_stem": [32, 64, 128]}}' \
        --variant 'shape_words_x5={"shape_word_weight": 5}'

A diagnostic for issue 3 (English shapes-world experiments). Each variant is a ``captioners:
vit_gpt2`` (or ``--captioner clip_prefix``) settings mapping, trained from the same seed on
the experiment's ``train`` shards (already built: ``shards/``, ``tokenizer/`` and, for
clip_prefix, ``clip/``) with the real model, batch collation and loss, AdamW with warm-up and
cosine decay as in the training loop (batches drawn at random with replacement, not in
epochs); ``{"optimizer": "muon"}`` takes the loop's Muon instead (``vlcore/train/optimizers.py``). Every ``--every`` steps it prints, on the ``val`` captions:

* shape accuracy: at every caption position whose next token starts a shape word (synonyms
  included), does the model rank that shape above the other five (each shape scored by the
  best logit among the first tokens of its words)? Chance is 1/6. The words before it
  (usually the colour) are given, so this asks "which shape is the pink object?";
* colour and size accuracy, the same way (chance 1/8 and 1/2): which colour comes next, is
  the object small or large? Captioners that cannot place objects (clip_prefix) are already
  visible here when their shape accuracy is still at chance;
* the mean caption-token loss.

``shape_word_weight`` (a bench-only key) multiplies the loss of shape-word tokens: it uses
the generator's lexicon, so it is a probe of where the learning signal goes, not a training
method. ``encoder_lr_scale`` (bench-only, vit_gpt2) multiplies the learning rate of the
image encoder, its stem included. ``focal_gamma`` (bench-only) weights each caption token's
loss by ``(1 - p)^gamma`` of its target (focal loss): hard tokens count more, whatever
words they are (not with ``shape_word_weight``). ``seed`` (a training key) changes both the
initial weights and the batches drawn; shape emergence varies from seed to seed, so compare
variants across a few seeds before reading much into a few points. The variants run side by side, ``--jobs`` at a time, one
thread each; the table at the end gives each variant's accuracy beside the first one's.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

from vlcore.data.stream import ShardStream
from vlcore.models.generation import IGNORE, sequence_losses
from vlcore.pipeline.captioner import (
    add_style_tokens,
    build_captioner,
    load_preset,
    parse_settings,
    styles_in_split,
)
from vlcore.pipeline.captioner_batches import captioner_loss, collate_texts, token_losses
from vlcore.synthetic.lexicon import COLORS, SHAPE_SYNONYMS_EN, SHAPES, SIZE_SYNONYMS_EN
from vlcore.text import load_tokenizer
from vlcore.train.optimizers import build_optimizer

BENCH_KEYS = ("shape_word_weight", "encoder_lr_scale", "focal_gamma", "muon_convolutions")


# The attribute words read at every evaluation: canonical value -> its words (synonyms).
WORD_GROUPS = {
    "shape": SHAPE_SYNONYMS_EN,
    "colour": {color: (color,) for color in COLORS},
    "size": SIZE_SYNONYMS_EN,
}


def token_classes(tokenizer, synonyms=SHAPE_SYNONYMS_EN) -> dict[int, int]:
    """First token of every word of ``synonyms`` (as inside a caption, after a space) -> the
    index of its canonical value."""
    classes: dict[int, int] = {}
    for index, (value, words) in enumerate(synonyms.items()):
        for word in words:
            token = tokenizer(" " + word, add_special_tokens=False)["input_ids"][0]
            if classes.setdefault(token, index) != index:
                raise ValueError(f"words of different values share first token {token} ({value})")
    return classes


def shape_token_classes(tokenizer) -> dict[int, int]:
    """First token of every shape word -> shape index (:func:`token_classes` of the shapes)."""
    return token_classes(tokenizer, SHAPE_SYNONYMS_EN)


def class_accuracy(
    logits: torch.Tensor, labels: torch.Tensor, classes: dict[int, int]
) -> tuple[int, int]:
    """(right, counted) over the positions whose next token starts a word of ``classes``: is
    its value ranked first among the values (each scored by its best first-token logit)?"""
    targets = labels[:, 1:]
    scores = logits[:, :-1]
    by_value = [[t for t, c in classes.items() if c == i] for i in range(max(classes.values()) + 1)]
    at = torch.isin(targets, torch.tensor(sorted(classes))).nonzero().tolist()
    right = 0
    for row, pos in at:
        best = torch.stack([scores[row, pos, toks].max() for toks in by_value])
        right += int(best.argmax()) == classes[int(targets[row, pos])]
    return right, len(at)


shape_accuracy = class_accuracy  # the name the shape-only version had


def run_variant(args: dict) -> dict:
    torch.set_num_threads(1)
    exp = Path(args["experiment"])
    settings = dict(args["settings"])
    shape_weight = float(settings.pop("shape_word_weight", 1.0))
    encoder_scale = float(settings.pop("encoder_lr_scale", 1.0))
    focal_gamma = float(settings.pop("focal_gamma", 0.0))
    muon_convolutions = bool(settings.pop("muon_convolutions", True))
    if focal_gamma and shape_weight != 1.0:
        raise ValueError("focal_gamma and shape_word_weight weight the tokens two ways: pick one")
    name = args["captioner"]
    own, config, _ = parse_settings(name, settings)
    tokenizer = load_tokenizer(exp / "tokenizer")
    styles = styles_in_split(exp / "shards") if own.styled_per_image > 0 else []
    add_style_tokens(tokenizer, styles)
    groups = {name: token_classes(tokenizer, words) for name, words in WORD_GROUPS.items()}
    classes = groups["shape"]
    seed = config.seed if config.seed is not None else 0  # {"seed": N} varies init and batches
    torch.manual_seed(seed)
    model = build_captioner(
        name,
        load_preset(name, own.preset, own.model),
        tokenizer,
        image_size=64,
        clip_dir=exp / "clip" if name == "clip_prefix" else None,
    )
    train_rows = list(ShardStream(exp / "shards", "train", shuffle=False, seed=0))
    val_rows = list(ShardStream(exp / "shards", "val", shuffle=False, seed=0))
    val_settings = dataclasses.replace(
        own, captions_per_image=5, styled_per_image=0, questions_per_image=0
    )
    val_batches = [
        collate_texts(
            val_rows[i : i + 64],
            tokenizer=tokenizer,
            settings=val_settings,
            styles=frozenset(),
            seed=0,
            epoch=0,
        )
        for i in range(0, len(val_rows), 64)
    ]

    def evaluate() -> tuple[dict[str, float], float]:
        model.eval()
        tally = {name: [0, 0] for name in groups}
        loss = 0.0
        with torch.no_grad():
            for b in val_batches:
                logits = model.text_logits(
                    b["pixel_values"], b["input_ids"], b["attention_mask"], b["image_index"]
                )
                for name, word_classes in groups.items():
                    r, n = class_accuracy(logits, b["labels"], word_classes)
                    tally[name][0] += r
                    tally[name][1] += n
                tokens = (b["labels"][:, 1:] != IGNORE).sum()  # all captions: no questions
                loss += (sequence_losses(logits, b["labels"]).sum() / tokens).item()
        model.train()
        accuracies = {name: right / max(counted, 1) for name, (right, counted) in tally.items()}
        return accuracies, loss / len(val_batches)

    shape_tokens = torch.tensor(sorted(classes))

    def loss_of(batch: dict) -> torch.Tensor:
        weights = None
        if shape_weight != 1.0:
            targets = batch["labels"][:, 1:]
            weights = torch.where(torch.isin(targets, shape_tokens), shape_weight, 1.0)
        if focal_gamma:
            return focal_loss(model, batch, focal_gamma)
        return captioner_loss(model, batch, own.vqa_weight, own.label_smoothing, weights)

    encoder = [p for n, p in model.named_parameters() if n.startswith("model.encoder.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("model.encoder.")]
    if encoder_scale != 1.0 and not encoder:
        raise ValueError(f"encoder_lr_scale: {name} has no model.encoder (vit_gpt2 has)")
    param_groups = [{"params": encoder, "scale": encoder_scale}, {"params": rest, "scale": 1.0}]
    if config.optimizer != "adamw":
        if encoder_scale != 1.0:
            raise ValueError("encoder_lr_scale is for the bench's own AdamW: drop optimizer")
        opt = build_optimizer(
            model,
            config.optimizer,
            config.lr,
            config.weight_decay,
            config.betas,
            muon_convolutions=muon_convolutions,
            lr_scales=model.learning_rate_scales() if name == "clip_prefix" else None,
        )
        for group in opt.param_groups:  # the schedule below keeps each group's factor
            group["scale"] = group["lr"] / config.lr
    else:
        opt = torch.optim.AdamW(
            [group for group in param_groups if group["params"]],
            lr=config.lr,
            betas=tuple(config.betas),
            weight_decay=config.weight_decay,
        )
    draw = torch.Generator().manual_seed(seed)
    styles_set = frozenset(styles)
    steps, every = args["steps"], args["every"]
    curve = []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        rows = [
            train_rows[i] for i in torch.randint(len(train_rows), (own.batch_size,), generator=draw)
        ]
        batch = collate_texts(
            rows, tokenizer=tokenizer, settings=own, styles=styles_set, seed=0, epoch=step
        )
        warm = min(1.0, step / max(config.warmup_steps, 1))
        for group in opt.param_groups:
            cosine = 0.5 * (1 + math.cos(math.pi * step / steps))
            group["lr"] = group.get("scale", 1.0) * config.lr * warm * cosine
        loss = loss_of(batch)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % every == 0 or step == steps:
            accuracies, val_loss = evaluate()
            curve.append(
                {
                    "step": step,
                    "shape_accuracy": accuracies["shape"],
                    "colour_accuracy": accuracies["colour"],
                    "size_accuracy": accuracies["size"],
                    "val_loss": val_loss,
                }
            )
            print(
                f"[{args['label']}] step {step}: shape accuracy {100 * accuracies['shape']:.1f}%, "
                f"colour {100 * accuracies['colour']:.1f}%, size {100 * accuracies['size']:.1f}%, "
                f"val loss {val_loss:.3f} ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return {"label": args["label"], "curve": curve, "seconds": time.perf_counter() - start}


def focal_loss(model: torch.nn.Module, batch: dict, gamma: float) -> torch.Tensor:
    """The tokens' weighted mean loss, each token weighted by ``(1 - p)^gamma`` of its target
    (focal loss, Lin et al. 2017; the weights carry no gradient): the tokens the model gets
    wrong count more, whatever words they are. Captions only (no VQA questions here)."""
    losses = token_losses(model, batch, 0.0)
    counted = (batch["labels"][:, 1:] != IGNORE).float()
    weights = (1 - torch.exp(-losses.detach())).pow(gamma) * counted
    return (losses * weights).sum() / weights.sum().clamp_min(1e-8)


def parse_variant(text: str) -> tuple[str, dict]:
    label, sep, body = text.partition("=")
    if not sep or not label:
        raise argparse.ArgumentTypeError(f"--variant wants NAME=JSON, got {text!r}")
    try:
        settings = json.loads(body or "{}")
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--variant {label}: not JSON ({exc})") from exc
    if not isinstance(settings, dict):
        raise argparse.ArgumentTypeError(f"--variant {label}: JSON must be a mapping")
    return label, settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment", help="results/<experiment> with shards/ and tokenizer/")
    parser.add_argument("--captioner", default="vit_gpt2", choices=["vit_gpt2", "clip_prefix"])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=200, help="steps between evaluations")
    parser.add_argument(
        "--variant",
        action="append",
        type=parse_variant,
        help="NAME=JSON captioner settings (repeat); default: baseline={}",
    )
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once")
    parser.add_argument("--json", help="also write the curves to this file")
    args = parser.parse_args(argv)
    variants = args.variant or [("baseline", {})]
    for label, settings in variants:  # fail before any training, not in a worker
        try:
            parse_settings(
                args.captioner, {k: v for k, v in settings.items() if k not in BENCH_KEYS}
            )
        except (TypeError, ValueError) as exc:
            parser.error(f"--variant {label}: {exc}")
    jobs = [
        {
            "experiment": args.experiment,
            "captioner": args.captioner,
            "steps": args.steps,
            "every": args.every,
            "label": label,
            "settings": settings,
        }
        for label, settings in variants
    ]
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_variant, jobs))
    base = {p["step"]: p["shape_accuracy"] for p in results[0]["curve"]}
    print(
        f"\nteacher-forced word accuracy on the val captions (chance: shape "
        f"{100 / len(SHAPES):.1f}%, colour {100 / len(COLORS):.1f}%, size 50%)"
    )
    print(
        f"{'variant':24s} {'step':>5s} {'shape':>7s} {'vs ' + results[0]['label']:>14s} "
        f"{'colour':>7s} {'size':>7s} {'val loss':>9s}"
    )
    for result in results:
        for p in result["curve"]:
            ratio = p["shape_accuracy"] / base[p["step"]] if base.get(p["step"]) else float("nan")
            print(
                f"{result['label']:24s} {p['step']:5d} {100 * p['shape_accuracy']:6.1f}% "
                f"{ratio:13.2f}x {100 * p['colour_accuracy']:6.1f}% "
                f"{100 * p['size_accuracy']:6.1f}% {p['val_loss']:9.3f}"
            )
        print(f"{result['label']:24s} trained in {result['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
