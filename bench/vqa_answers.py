"""Which answers does a VQA model give, question type by question type?

    .venv/bin/python bench/vqa_answers.py results/default/vqa/answers.json \
        --shards results/default/shards --type "how many" "is there a"

For each question type, one line per right answer (the questions' ``multiple_choice_answer``,
the most common of the ten human answers): how many questions have it, and which answers the
model gave them, most frequent first. Accuracy per type (``results/vqa.json``) says how often
a model is right; this says what it says instead, e.g. "1" to every count question whose
answer is 0. Answers are compared after the official VQA normalisation.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict

from vlcore.metrics.vqa import normalize_answer
from vlcore.pipeline.evaluate import read_vqa_results, split_questions


def answer_table(
    answers: dict[int, str], questions: list[dict], question_type: str
) -> dict[str, Counter]:
    """``right answer -> Counter(model answer)`` over the questions of ``question_type``."""
    table: dict[str, Counter] = defaultdict(Counter)
    for question in questions:
        if question["question_type"] == question_type:
            qid = int(question["question_id"])
            if qid not in answers:
                raise ValueError(f"no answer for question_id {qid} ({question['question']!r})")
            truth = normalize_answer(question["multiple_choice_answer"])
            table[truth][normalize_answer(answers[qid])] += 1
    return dict(table)


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
    args = parser.parse_args(argv)

    questions = split_questions(args.shards, args.split)
    types = args.type or sorted({q["question_type"] for q in questions})
    unknown = sorted(set(types) - {q["question_type"] for q in questions})
    if unknown:
        parser.error(f"no {args.split} question has type {unknown}")
    for path in args.answers:
        answers = read_vqa_results(path)
        print(path)
        for question_type in types:
            print(f" {question_type}")
            print("\n".join(format_table(answer_table(answers, questions, question_type))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
