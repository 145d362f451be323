"""Do generated English captions of the shapes world name the right shapes, colours, sizes
and positions?

    .venv/bin/python bench/caption_attributes.py results/default/captions/*.json
    .venv/bin/python bench/caption_attributes.py --seed 0 --dirty-rate 0.05 captions.json
    .venv/bin/python bench/caption_attributes.py results/default/captions/vit_gpt2.json \
        --shards results/default/shards

A diagnostic beside CIDEr: for every shape word (synonyms and plurals included) and colour
word in a COCO results file (``[{"image_id", "caption"}]``), is that attribute present in the
image's scene (the generator's ground truth, :func:`vlcore.synthetic.truth.scene_truth`)?
Chance is what a word drawn uniformly from the vocabulary would score on the same images.
Size words before a colour word ("big red ...") and position phrases after a colour and a
shape word ("red circle in the top left") are checked against the object of that colour.
``--seed`` and ``--dirty-rate`` must be the experiment's (defaults: the default experiment);
with ``--shards``, truth regenerated with other values (every count would sit at chance) is
an error.

``--shards`` adds a ceiling: the captions' CIDEr (and BLEU-4) on the test split as generated
and with every shape word that follows a colour word replaced by the true shape of the
object of that colour (the rest of the caption untouched). It says how much of the gap to
the human row is shape alone. A diagnostic that reads the ground truth, never a model.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from vlcore.synthetic.lexicon import (
    COLORS,
    POSITION_PHRASES_EN,
    POSITIONS,
    SHAPE_SYNONYMS_EN,
    SHAPES,
    SIZE_SYNONYMS_EN,
    plural_en,
)
from vlcore.synthetic.truth import check_truth_matches, scene_truth

SHAPE_OF_WORD = {
    form: shape
    for shape, words in SHAPE_SYNONYMS_EN.items()
    for word in words
    for form in (word, plural_en(word))
}
SIZE_OF_WORD = {word: size for size, words in SIZE_SYNONYMS_EN.items() for word in words}
POSITION_OF_PHRASE = {
    phrase: position for position, phrases in POSITION_PHRASES_EN.items() for phrase in phrases
}
_COLOR_ALTERNATIVES = "|".join(COLORS)
# "big red", and "red circle in the top left" (longest phrase first, so "... corner" wins)
SIZE_BEFORE_COLOR = re.compile(rf"\b({'|'.join(SIZE_OF_WORD)}) ({_COLOR_ALTERNATIVES})\b")
POSITION_AFTER_SHAPE = re.compile(
    rf"\b({_COLOR_ALTERNATIVES}) [a-z]+ "
    rf"({'|'.join(sorted(map(re.escape, POSITION_OF_PHRASE), key=len, reverse=True))})\b"
)
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


def bound_hits(results: list[dict], scenes: list[list[dict]]) -> dict[str, dict[str, float]]:
    """Size words right before a colour word ("big red ...") and position phrases right after
    a colour and shape word ("red circle in the top left"), checked against the object of that
    colour; chance: one size in two, one of the nine grid positions."""
    counts = {a: {"named": 0, "right": 0, "chance": 0.0} for a in ("size", "position")}
    for result, scene in zip(results, scenes, strict=True):
        text = result["caption"].lower()
        objects = {o["color"]: o for o in scene}
        found = [
            ("size", m.group(2), SIZE_OF_WORD[m.group(1)], 0.5)
            for m in SIZE_BEFORE_COLOR.finditer(text)
        ] + [
            ("position", m.group(1), POSITION_OF_PHRASE[m.group(2)], 1 / 9)
            for m in POSITION_AFTER_SHAPE.finditer(text)
        ]
        for attribute, color, value, chance in found:
            if color in objects:
                truth = objects[color]
                actual = truth["size"] if attribute == "size" else POSITIONS[tuple(truth["cell"])]
                c = counts[attribute]
                c["named"] += 1
                c["right"] += value == actual
                c["chance"] += chance
    return counts


def fix_shapes(results: list[dict], scenes: list[list[dict]]) -> list[dict]:
    """The captions with each shape word right after a colour word set to the true shape of
    the object of that colour (its first synonym; plurals stay plural)."""
    fixed = []
    for result, scene in zip(results, scenes, strict=True):
        shape_of_color = {o["color"]: o["shape"] for o in scene}
        caption = result["caption"]
        words = list(re.finditer(r"[A-Za-z]+", caption))
        pairs = zip(words[:-1], words[1:], strict=True)
        for before, word in reversed(list(pairs)):  # right to left, so the spans stay valid
            said = SHAPE_OF_WORD.get(word.group().lower())
            truth = shape_of_color.get(before.group().lower())
            if said is None or truth is None or said == truth:
                continue
            name = SHAPE_SYNONYMS_EN[truth][0]
            if word.group().lower() not in SHAPE_SYNONYMS_EN[said]:  # a plural
                name = plural_en(name)
            caption = caption[: word.start()] + name + caption[word.end() :]
        fixed.append({**result, "caption": caption})
    return fixed


def shape_ceiling(
    results: list[dict], scenes: list[list[dict]], refs: dict[int, list[str]]
) -> dict:
    """CIDEr and BLEU-4 of the captions as generated and with their shapes fixed, against
    the test split's references ``refs``."""
    from vlcore.pipeline.evaluate import score_prediction_set

    settings = {"segmenter": "jieba", "metrics": ["BLEU", "CIDEr"]}
    out = {}
    for name, rows in (("as generated", results), ("shapes fixed", fix_shapes(results, scenes))):
        captions = {r["image_id"]: r["caption"] for r in rows}
        row = score_prediction_set(captions, refs, "en", settings)["row"]
        out[name] = {key: row[key] for key in ("CIDEr", "CIDEr_loo", "BLEU-4")}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", help="COCO results JSON files (English captions)")
    parser.add_argument("--seed", type=int, default=0, help="the experiment's seed")
    parser.add_argument(
        "--dirty-rate", type=float, default=0.05, help="source.synthetic.dirty_rate"
    )
    parser.add_argument("--shards", help="the experiment's shards: also print the shape ceiling")
    args = parser.parse_args(argv)
    refs = None
    if args.shards:
        from vlcore.pipeline.evaluate import references

        refs = references(args.shards, "test")
    for path in args.results:
        with open(path, encoding="utf-8") as f:
            results = json.load(f)
        scenes = scene_truth(
            {"seed": args.seed, "dirty_rate": args.dirty_rate}, [r["image_id"] for r in results]
        )
        if refs is not None:  # before counting: wrong truth would count at chance
            try:
                check_truth_matches(scenes, [refs.get(int(r["image_id"]), []) for r in results])
            except ValueError as exc:
                sys.exit(f"error: {exc}")
        print(f"{path} ({len(results)} captions)")
        hits = {**attribute_hits(results, scenes), **bound_hits(results, scenes)}
        for attribute, c in hits.items():
            n = max(c["named"], 1)
            print(
                f"  {attribute:8s} words right {c['right']:5d} / {c['named']:5d} = "
                f"{100 * c['right'] / n:5.1f}%   (chance {100 * c['chance'] / n:5.1f}%)"
            )
        if refs is not None:
            for name, row in shape_ceiling(results, scenes, refs).items():
                print(f"  {name:13s} " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
