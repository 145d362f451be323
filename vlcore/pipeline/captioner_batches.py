"""The captioners' training batches: which texts each image brings in a step, and the loss.

For each image of a batch, :func:`collate_texts` draws afresh from ``(seed, epoch, key)`` (the
same draw on any process layout) ``captions_per_image`` neutral captions, ``styled_per_image``
styled captions (after their style token) and ``questions_per_image`` VQA questions with their
answer (:func:`answer_target`), and packs them as token sequences that point back at their
image (``image_index``), so that each image is encoded once for all its texts.
:func:`captioner_loss` is the mean cross-entropy over caption tokens plus ``vqa_weight`` times
the mean over answer tokens (the sequence formats are in :mod:`vlcore.models.generation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from vlcore.ids import stable_uint64
from vlcore.metrics.vqa import normalize_answer
from vlcore.models.generation import IGNORE, keep_prompt_end, style_token_id

if TYPE_CHECKING:
    from vlcore.pipeline.captioner import CaptionerSettings

TASK_CAPTION, TASK_ANSWER = 0, 1  # the task row of a batch: a caption, or an answer


def image_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """The draw of one image's texts in one epoch: fixed by (seed, epoch, key)."""
    return np.random.default_rng(stable_uint64(f"{seed}:{epoch}:{key}"))


def _draw(items: list, k: int, rng: np.random.Generator) -> list:
    if k <= 0 or not items:
        return []
    picked = rng.choice(len(items), size=min(k, len(items)), replace=False)
    return [items[i] for i in sorted(picked)]


def answer_target(question: Mapping[str, Any], how: str, rng: np.random.Generator) -> str:
    """The answer a model learns: the most common human answer, or one of the ten drawn at
    random (so answers are learned in proportion to their frequency); normalised as the VQA
    evaluation does (lower case, digits, no articles or punctuation)."""
    if how == "sample" and question.get("answers"):
        answers = question["answers"]
        return normalize_answer(answers[int(rng.integers(len(answers)))])
    answer = question.get("multiple_choice_answer") or ""
    if not answer and question.get("answers"):
        counts: dict[str, int] = {}
        for a in question["answers"]:
            counts[normalize_answer(a)] = counts.get(normalize_answer(a), 0) + 1
        answer = max(counts, key=counts.get)
    return normalize_answer(answer)


def _fit_length(
    prompt: list[int], target: list[int], max_length: int, kind: int
) -> tuple[list[int], list[int]]:
    """Cut a sequence to ``max_length``: a caption loses the end of its text (keeping <eos>),
    a question the beginning of its prompt (keeping <bos> and the answer)."""
    if len(prompt) + len(target) <= max_length:
        return prompt, target
    if kind == TASK_CAPTION:
        room = max(max_length - len(prompt) - 1, 0)
        return prompt, [*target[:room], target[-1]]
    target = target[: max_length - 2]
    room = max(max_length - len(target) - 1, 1)  # question tokens kept after <bos>
    return keep_prompt_end(prompt, room + 1), target


def collate_texts(
    rows: list[dict[str, Any]],
    *,
    tokenizer: PreTrainedTokenizerBase,
    settings: CaptionerSettings,
    styles: frozenset[str],
    seed: int,
    epoch: int,
) -> dict[str, torch.Tensor]:
    """ShardStream rows -> a training batch of images and the texts drawn for them::

        pixel_values [B, 3, H, W]; input_ids, attention_mask, labels [S, L];
        image_index [S] (row of pixel_values); task [S] (0 caption, 1 answer)

    Rows that bring no text are left out (and their image with them).
    """
    prompts: list[list[int]] = []  # <bos> [+ style token]; a question's is added below
    bodies: list[str] = []  # caption texts, tokenised in one call below
    asked: list[tuple[int, str, str]] = []  # (text number, prompt, answer): one call too
    image_index: list[int] = []
    task: list[int] = []
    images = []
    for row in rows:
        rng = image_rng(seed, epoch, row["key"])
        texts: list[tuple[list[int], str, tuple[str, str] | None, int]] = []
        for caption in _draw(list(row.get("captions") or ()), settings.captions_per_image, rng):
            texts.append(([tokenizer.bos_token_id], caption, None, TASK_CAPTION))
        styled = [s for s in row.get("styled_captions") or () if s["style"] in styles]
        for item in _draw(styled, settings.styled_per_image, rng):
            prompt = [tokenizer.bos_token_id, style_token_id(tokenizer, item["style"])]
            texts.append((prompt, item["caption"], None, TASK_CAPTION))
        questions = list(row.get("questions") or ())
        for q in _draw(questions, settings.questions_per_image or 0, rng):
            answer = answer_target(q, settings.answer_target, rng)
            qa = (settings.vqa_prompt.format(question=q["question"]), " " + answer.strip())
            texts.append(([tokenizer.bos_token_id], "", qa, TASK_ANSWER))
        if not texts:
            continue
        for prompt, body, qa, kind in texts:
            if qa is not None:
                asked.append((len(prompts), *qa))
            prompts.append(list(prompt))
            bodies.append(body)
            image_index.append(len(images))
            task.append(kind)
        images.append(row["image"])
    if not images:
        return {"pixel_values": torch.empty(0), "input_ids": torch.empty(0, 0, dtype=torch.long)}
    body_ids = tokenizer(
        bodies, add_special_tokens=False, truncation=True, max_length=settings.max_length
    )["input_ids"]
    eos = tokenizer.eos_token_id
    # every question's prompt and answer in one call, as question_prompt and answer_ids (which
    # answering uses) give them one at a time
    targets: list[list[int] | None] = [None] * len(prompts)
    if asked:
        qa_ids = tokenizer(
            [text for _, prompt, answer in asked for text in (prompt, answer)],
            add_special_tokens=False,
        )["input_ids"]
        for k, (i, _, _) in enumerate(asked):
            prompts[i] += qa_ids[2 * k]
            targets[i] = [*qa_ids[2 * k + 1], eos]
    cut = [
        _fit_length(
            prompt, target if target is not None else [*body, eos], settings.max_length, kind
        )
        for prompt, body, target, kind in zip(prompts, body_ids, targets, task, strict=True)
    ]
    width = max(len(prompt) + len(target) for prompt, target in cut)
    input_ids = np.full((len(cut), width), tokenizer.pad_token_id, dtype=np.int64)
    labels = np.full((len(cut), width), IGNORE, dtype=np.int64)
    attention_mask = np.zeros((len(cut), width), dtype=np.int64)
    for i, (prompt, target) in enumerate(cut):
        n = len(prompt) + len(target)
        input_ids[i, :n] = prompt + target
        labels[i, len(prompt) : n] = target
        attention_mask[i, :n] = 1
    return {
        "pixel_values": torch.stack(images),
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention_mask),
        "labels": torch.from_numpy(labels),
        "image_index": torch.tensor(image_index, dtype=torch.long),
        "task": torch.tensor(task, dtype=torch.long),
    }


def token_losses(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], smoothing: float
) -> torch.Tensor:
    """The per-token cross-entropy ``S L-1`` of a :func:`collate_texts` batch (0 where
    ``labels[:, 1:]`` is ignored)."""
    return model(
        batch["pixel_values"],
        batch["input_ids"],
        batch["attention_mask"],
        batch["image_index"],
        batch["labels"],
        smoothing,
    )


def captioner_loss(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    vqa_weight: float,
    smoothing: float,
    token_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean caption-token loss + ``vqa_weight`` x mean answer-token loss; ``token_weights``
    (``S L-1``, aligned with ``labels[:, 1:]``) turns both means into weighted means."""
    if batch["input_ids"].numel() == 0:  # no row of the batch had any text
        return sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
    losses = token_losses(model, batch, smoothing)
    counted = batch["labels"][:, 1:] != IGNORE
    if token_weights is not None:
        losses = losses * token_weights
        counted = counted * token_weights
    total = losses.new_zeros(())
    for kind, weight in ((TASK_CAPTION, 1.0), (TASK_ANSWER, vqa_weight)):
        rows = batch["task"] == kind
        n = counted[rows].sum()
        if weight and n > 0:
            total = total + weight * losses[rows].sum() / n
    return total
