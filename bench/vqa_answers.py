"""Which answers does a VQA model give, question type by question type?

    .venv/bin/python bench/vqa_answers.py results/default/vqa/answers.json \
        --shards results/default/shards --type "how many" "is there a"

For each question type, one line per right answer (the questions' ``multiple_choice_answer``,
the most common of the ten human answers): how many questions have it, and which answers the
model gave them, most frequent first. Accuracy per type (``results/vqa.json``) says how often
a model is right; this says what it says instead, e.g. "1" to every count question whose
answer is 0. Answers are compared after the official VQA normalisation.

With ``--where`` (the synthetic shapes world only), the "where is the <colour> <shape>?"
questions are also split by how many objects their image holds, and each wrong answer by
whether it names the cell of another object in the image or an empty cell: a model that
finds objects but not the one named says another object's cell.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict

from vlcore.data.shard import read_split
from vlcore.metrics.vqa import normalize_answer
from vlcore.pipeline.evaluate import read_vqa_results, split_questions
from vlcore.synthetic.lexicon import POSITIONS
from vlcore.synthetic.truth import check_truth_matches, scene_truth

WHERE = "where is the"
VERDICTS = ("right", "another object's cell", "an empty cell")


def given_answer(answers: dict[int, str], question: dict) -> str:
    """The model's normalised answer to ``question``; a missing one is an error."""
    qid = int(question["question_id"])
    if qid not in answers:
        raise ValueError(f"no answer for question_id {qid} ({question['question']!r})")
    return normalize_answer(answers[qid])


def answer_table(
    answers: dict[int, str], questions: list[dict], question_type: str
) -> dict[str, Counter]:
    """``right answer -> Counter(model answer)`` over the questions of ``question_type``."""
    table: dict[str, Counter] = defaultdict(Counter)
    for question in questions:
        if question["question_type"] == question_type:
            truth = normalize_answer(question["multiple_choice_answer"])
            table[truth][given_answer(answers, question)] += 1
    return dict(table)


def where_verdicts(
    answers: dict[int, str], rows: list[dict], scenes: list[list[dict]]
) -> dict[int, Counter]:
    """``objects in the image -> Counter(verdict)`` over the "where is the" questions of
    ``rows`` (shard rows with ``questions``; ``scenes[i]``: row ``i``'s objects with ``cell``)."""
    table: dict[int, Counter] = defaultdict(Counter)
    for row, scene in zip(rows, scenes, strict=True):
        cells = {POSITIONS[tuple(o["cell"])] for o in scene}
        for question in row["questions"]:
            if question["question_type"] != WHERE:
                continue
            given = given_answer(answers, question)
            if given == normalize_answer(question["multiple_choice_answer"]):
                verdict = VERDICTS[0]
            else:
                verdict = VERDICTS[1] if given in cells else VERDICTS[2]
            table[len(scene)][verdict] += 1
    return dict(table)


def format_where(table: dict[int, Counter]) -> list[str]:
    lines = []
    for n, verdicts in sorted(table.items()):
        total = sum(verdicts.values())
        shown = ", ".join(f"{verdict} {verdicts[verdict]}" for verdict in VERDICTS)
        lines.append(f"  {n} object{'s' if n > 1 else ''} ({total}): {shown}")
    return lines


def format_table(table: dict[str, Counter]) -> list[str]:
    lines = []
    for truth, given in sorted(table.items(), key=lambda item: -sum(item[1].values())):
        shown = ", ".join(f"{answer!r} {n}" for answer, n in given.most_common())
        lines.append(f"  {truth!r} ({sum(given.values())}): {shown}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("answers", nargs="+", help="VQA results files [{question_id, answer}]")
    parser.add_argument("--shards", required=True, help="the experiment's shards folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--type", nargs="+", default=None, help="question types (default: all)")
    parser.add_argument(
        "--where", action="store_true", help=f"{WHERE!r} by objects in the image (shapes world)"
    )
    parser.add_argument("--seed", type=int, default=0, help="with --where: the experiment's seed")
    parser.add_argument(
        "--dirty-rate", type=float, default=0.05, help="with --where: source.synthetic.dirty_rate"
    )
    args = parser.parse_args(argv)

    if args.where:  # the rows' questions, and their images' scenes
        rows = read_split(args.shards, args.split, columns=("image_id", "captions", "questions"))
        questions = [q for row in rows for q in row["questions"]]
    else:
        questions = split_questions(args.shards, args.split)
    types = args.type or sorted({q["question_type"] for q in questions})
    unknown = sorted(set(types) - {q["question_type"] for q in questions})
    if unknown:
        parser.error(f"no {args.split} question has type {unknown}")
    if args.where:
        scenes = scene_truth(
            {"seed": args.seed, "dirty_rate": args.dirty_rate}, [r["image_id"] for r in rows]
        )
        try:  # wrong truth would put every verdict at chance
            check_truth_matches(scenes, [r["captions"] for r in rows])
        except ValueError as exc:
            parser.error(str(exc))
    for path in args.answers:
        answers = read_vqa_results(path)
        print(path)
        for question_type in types:
            print(f" {question_type}")
            print("\n".join(format_table(answer_table(answers, questions, question_type))))
        if args.where:
            print(f" {WHERE}, by objects in the image")
            print("\n".join(format_where(where_verdicts(answers, rows, scenes))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
