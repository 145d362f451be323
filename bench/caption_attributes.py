"""Do generated English captions of the shapes world name the right shapes and colours?

    .venv/bin/python bench/caption_attributes.py results/default/captions/*.json
    .venv/bin/python bench/caption_attributes.py --seed 0 --dirty-rate 0.05 captions.json

A diagnostic beside CIDEr: for every shape word (synonyms and plurals included) and colour
word in a COCO results file (``[{"image_id", "caption"}]``), is that attribute present in the
image's scene (the generator's ground truth, :func:`vlcore.synthetic.truth.scene_truth`)?
Chance is what a word drawn uniformly from the vocabulary would score on the same images.
``--seed`` and ``--dirty-rate`` must be the experiment's (defaults: the default experiment).
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from vlcore.synthetic.lexicon import COLORS, SHAPE_SYNONYMS_EN, SHAPES, plural_en
from vlcore.synthetic.truth import scene_truth

SHAPE_OF_WORD = {
    form: shape
    for shape, words in SHAPE_SYNONYMS_EN.items()
    for word in words
    for form in (word, plural_en(word))
}
# attribute -> (the attribute value a caption word names, the attribute's vocabulary)
LOOKUPS = {"shape": (SHAPE_OF_WORD, SHAPES), "color": ({c: c for c in COLORS}, COLORS)}


def attribute_hits(results: list[dict], scenes: list[list[dict]]) -> dict[str, dict[str, float]]:
    """Per attribute: words named, words right, and the chance rate on the same images."""
    counts = {a: {"named": 0, "right": 0, "chance": 0.0} for a in LOOKUPS}
    for result, scene in zip(results, scenes, strict=True):
        words = re.findall(r"[a-z]+", result["caption"].lower())
        for attribute, (value_of, vocabulary) in LOOKUPS.items():
            present = {o[attribute] for o in scene}
            for value in filter(None, map(value_of.get, words)):
                c = counts[attribute]
                c["named"] += 1
                c["right"] += value in present
                c["chance"] += len(present) / len(vocabulary)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", help="COCO results JSON files (English captions)")
    parser.add_argument("--seed", type=int, default=0, help="the experiment's seed")
    parser.add_argument(
        "--dirty-rate", type=float, default=0.05, help="source.synthetic.dirty_rate"
    )
    args = parser.parse_args(argv)
    for path in args.results:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
        scenes = scene_truth(
            {"seed": args.seed, "dirty_rate": args.dirty_rate}, [r["image_id"] for r in results]
        )
        print(f"{path} ({len(results)} captions)")
        for attribute, c in attribute_hits(results, scenes).items():
            n = max(c["named"], 1)
            print(
                f"  {attribute:6s} words right {c['right']:5d} / {c['named']:5d} = "
                f"{100 * c['right'] / n:5.1f}%   (chance {100 * c['chance'] / n:5.1f}%)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
