"""Which words does a trained CLIP read? Caption vs the same caption with one word swapped.

    .venv/bin/python bench/clip_word_swaps.py results/default/clip --shards results/default/shards
    .venv/bin/python bench/clip_word_swaps.py results/default/clip other/clip \
        --shards results/default/shards

For every test caption and every word group (shapes, colours, sizes, left/right, ...), the
caption's copy with one word of that group swapped for another member
(:class:`vlcore.data.hard_negatives.WordSwapper`, as NegCLIP's training negatives) is scored
against the image beside the true caption: accuracy is how often the true caption scores
higher (chance 50%; ARO's protocol, Yuksekgonul et al. 2023). A swap can now and then
produce a caption that is also true (a second object of the swapped colour), so 100% is not
always reachable. A CLIP that reads an attribute passes its group; one at 50% does not see it,
whatever its retrieval recall, and neither can a captioner that reads that CLIP frozen.
``--groups`` takes a JSON list of word groups; the default is the English shapes world's.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from vlcore.data.hard_negatives import WordSwapper
from vlcore.data.stream import ShardStream
from vlcore.ids import stable_uint64
from vlcore.models.clip import encode_images, encode_texts, load_clip
from vlcore.pipeline.clip import row_texts

SHAPES_WORLD_GROUPS = {
    "shape": ["circle", "square", "triangle", "star", "diamond", "hexagon"],
    "colour": ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"],
    "size": ["small", "large"],
    "size (little/big)": ["little", "big"],
    "left/right": ["left", "right"],
    "top/bottom": ["top", "bottom"],
    "above/below": ["above", "below"],
    "count": ["two", "three"],
}


def split_captions(shards: str, split: str) -> list[list[str]]:
    """The captions of every image of ``split``, in stream order (images not decoded)."""
    return [row_texts(row) for row in ShardStream(shards, split, transform=lambda image: None)]


def swap_pairs(
    image_captions: list[list[str]], group: list[str]
) -> tuple[list[int], list[str], list[str]]:
    """(image index, caption, its swapped copy) for every caption (of :func:`split_captions`)
    that has a word of ``group``; the swap is drawn from the caption's hash (the same on every
    run)."""
    swapper = WordSwapper([group])
    images, captions, negatives = [], [], []
    for index, texts in enumerate(image_captions):
        for caption in texts:
            negative = swapper.negative(caption, stable_uint64(f"swap:{caption}"))
            if negative is not None:
                images.append(index), captions.append(caption), negatives.append(negative)
    return images, captions, negatives


def probe(clip_dir: str, shards: str, split: str, groups: dict[str, list[str]]) -> dict:
    clip = load_clip(clip_dir, device="cpu")
    stream = ShardStream(shards, split, transform=clip.preprocess)
    image_emb = encode_images(clip, torch.stack([row["image"] for row in stream]))
    image_captions = split_captions(shards, split)
    result = {}
    for name, group in groups.items():
        index, captions, negatives = swap_pairs(image_captions, group)
        if not captions:
            result[name] = {"pairs": 0}
            continue
        images = image_emb[torch.tensor(index)]
        true = (images * encode_texts(clip, captions)).sum(-1)
        swapped = (images * encode_texts(clip, negatives)).sum(-1)
        accuracy = 100.0 * float((true > swapped).float().mean())
        result[name] = {"pairs": len(captions), "accuracy": accuracy}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clip_dirs", nargs="+", help="trained CLIP folders (train_clip output)")
    parser.add_argument("--shards", required=True, help="the experiment's shards folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--groups", type=json.loads, default=None,
                        help="JSON list of word groups (default: the shapes world's)")  # fmt: skip
    args = parser.parse_args(argv)
    groups = SHAPES_WORLD_GROUPS
    if args.groups is not None:
        groups = {"/".join(g[:2]) + ("/..." if len(g) > 2 else ""): g for g in args.groups}
    torch.set_num_threads(1)
    results = {d: probe(d, args.shards, args.split, groups) for d in args.clip_dirs}
    print(f"{'word group':20s} {'pairs':>6s} " + " ".join(f"{d[-28:]:>28s}" for d in results))
    for name in groups:
        first = results[args.clip_dirs[0]][name]
        cells = [
            f"{results[d][name]['accuracy']:27.1f}%" if results[d][name]["pairs"] else " " * 28
            for d in args.clip_dirs
        ]
        print(f"{name:20s} {first['pairs']:6d} " + " ".join(cells))
    print("(accuracy: the true caption scores above its swapped copy; chance 50%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
