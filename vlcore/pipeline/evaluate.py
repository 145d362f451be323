"""Entry points of the scoring rules: caption metrics with reference rows, VQA accuracy, and
the top-level tables (``results/cider.json``, ``results/vqa.json``, ``results/retrieval.json``).

A model row means something only beside reference rows computed the same way, on the same
test images, with the same tokenization:

- ``human``: each reference scored against the other ones (leave-one-out);
- ``nearest_neighbour``: the first caption of the most similar *training* image under the
  trained CLIP (image-image cosine similarity);
- ``most_frequent``: the most frequent training caption, predicted for every image.

Models are scored against all references (the standard number) and, as ``*_loo`` columns,
against the same leave-one-out reference sets as the human row, so "at least human
agreement" compares like with like.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from vlcore.data.shard import read_split
from vlcore.io import read_json, write_json
from vlcore.metrics import (
    human_agreement,
    meteor_for,
    score_captions,
    score_captions_leave_one_out,
    vqa_accuracy,
)
from vlcore.metrics.meteor import ClosableMeteor
from vlcore.metrics.vqa import normalize_answer

logger = logging.getLogger(__name__)

CORPUS_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
LOO_METRICS = ("BLEU", "ROUGE_L", "CIDEr")


def references(shards_dir: str | os.PathLike, split: str = "test") -> dict[int, list[str]]:
    """``image_id -> captions`` of every image of ``split`` that has captions."""
    rows = read_split(shards_dir, split, columns=("image_id", "captions"))
    refs = {row["image_id"]: row["captions"] for row in rows if row["captions"]}
    if len(refs) < 2:
        raise ValueError(
            f"the {split} split of {shards_dir} has {len(refs)} captioned image(s); caption "
            "metrics need at least two (CIDEr's document frequencies span the whole split)"
        )
    return refs


def read_caption_results(path: str | os.PathLike) -> dict[int, str]:
    """COCO results JSON ``[{"image_id", "caption"}]`` -> ``image_id -> caption``."""
    results = read_json(path)
    out: dict[int, str] = {}
    for entry in results:
        if entry["image_id"] in out:
            raise ValueError(f"{path}: image_id {entry['image_id']} has two captions")
        out[int(entry["image_id"])] = entry["caption"]
    return out


def _corpus(scores: dict[str, Any]) -> dict[str, Any]:
    return {key: scores[key] for key in CORPUS_KEYS if key in scores}


def score_prediction_set(
    predictions: dict[int, str],
    refs: dict[int, list[str]],
    lang: str,
    settings: dict[str, Any],
    meteor: ClosableMeteor | None = None,
) -> dict[str, Any]:
    """Full metrics against all references, plus the leave-one-out columns; ``meteor``: an
    open session to score METEOR with (see :func:`vlcore.metrics.meteor_for`)."""
    missing = sorted(set(refs) - set(predictions))
    if missing:
        raise ValueError(
            f"{len(missing)} test image(s) have no prediction (e.g. image_id {missing[0]}); "
            "regenerate the captions for the whole split"
        )
    predictions = {key: predictions[key] for key in refs}
    segmenter = settings["segmenter"]
    full = score_captions(predictions, refs, lang, segmenter, settings["metrics"], meteor)
    loo_metrics = [m for m in LOO_METRICS if m in settings["metrics"]]
    loo = score_captions_leave_one_out(predictions, refs, lang, segmenter, loo_metrics)
    row = _corpus(full)
    row.update({f"{key}_loo": loo[key] for key in CORPUS_KEYS if key in loo})
    return {"row": row, "per_image": full["per_image"], "tokenization": full["tokenization"],
            "segmenter": full["segmenter"]}  # fmt: skip


def score_model_captions(
    results_json: str, shards_dir: str, lang: str, settings: dict[str, Any], out_json: str
) -> dict[str, Any]:
    """Score one captioner's test-split captions; write the detail JSON (per image too)."""
    # METEOR's JVM loads while the references are read and tokenized
    with meteor_for(settings["metrics"], lang) as meteor:
        refs = references(shards_dir, settings["split"])
        predictions = read_caption_results(results_json)
        scored = score_prediction_set(predictions, refs, lang, settings, meteor)
    detail = {
        **scored,
        "split": settings["split"],
        "n_images": len(refs),
        "predictions": {str(k): predictions[k] for k in refs},
    }
    detail["per_image"] = {str(k): v for k, v in detail["per_image"].items()}
    write_json(detail, out_json)
    logger.info("caption scores: %s", scored["row"])
    return detail


def most_frequent_caption(train_captions: Iterable[list[str]]) -> str:
    counts = Counter(c.strip().lower() for caps in train_captions for c in caps)
    if not counts:
        raise ValueError("the training split has no caption")
    # Ties break alphabetically so the baseline is deterministic.
    return min(counts.items(), key=lambda item: (-item[1], item[0]))[0]


def embed_captioned_images(clip, shards_dir: str, split: str, batch_size: int = 256) -> dict:
    """CLIP image embeddings of the captioned images of ``split``, with ids and captions."""
    from torch.utils.data import DataLoader

    from vlcore.data.stream import ShardStream, collate
    from vlcore.models.clip import encode_images, inference_runtime

    stream = ShardStream(shards_dir, split, transform=clip.preprocess, rank=0, world_size=1)
    loader = DataLoader(stream, batch_size=batch_size, collate_fn=collate)
    embeddings, image_ids, captions = [], [], []
    runtime = inference_runtime(clip)
    for batch in loader:
        keep = [i for i, caps in enumerate(batch["captions"]) if caps]
        if keep:
            embeddings.append(encode_images(clip, batch["image"][keep], runtime=runtime))
            image_ids += [int(batch["image_id"][i]) for i in keep]
            captions += [batch["captions"][i] for i in keep]
    if not embeddings:
        raise ValueError(f"the {split} split of {shards_dir} has no captioned image")
    return {"image_emb": torch.cat(embeddings), "image_ids": image_ids, "captions": captions}


def nearest_neighbour_captions(shards_dir: str, clip_dir: str, split: str) -> dict[int, str]:
    """For each ``split`` image, the first caption of its most similar training image (CLIP)."""
    from vlcore.models.clip import load_clip
    from vlcore.train.runtime import pick_device

    clip = load_clip(clip_dir, device=pick_device("auto"))
    train = embed_captioned_images(clip, shards_dir, "train")
    test = embed_captioned_images(clip, shards_dir, split)
    nearest = (test["image_emb"] @ train["image_emb"].T).argmax(dim=1).tolist()
    return {
        image_id: train["captions"][j][0]
        for image_id, j in zip(test["image_ids"], nearest, strict=True)
    }


def caption_baselines(
    shards_dir: str, clip_dir: str | None, lang: str, settings: dict[str, Any], out_json: str
) -> dict[str, Any]:
    """The reference rows: human agreement, nearest neighbour (needs CLIP), most frequent.

    One METEOR session scores all three; its JVM loads while CLIP encodes the images."""
    split = settings["split"]
    with meteor_for(settings["metrics"], lang) as meteor:
        refs = references(shards_dir, split)
        train_rows = read_split(shards_dir, "train", columns=("captions",))
        frequent = most_frequent_caption(row["captions"] for row in train_rows)
        baselines = {"most_frequent": {image_id: frequent for image_id in refs}}
        if clip_dir is not None:
            nn = nearest_neighbour_captions(shards_dir, clip_dir, split)
            baselines["nearest_neighbour"] = {image_id: nn[image_id] for image_id in refs}
        human = human_agreement(refs, lang, settings["segmenter"], settings["metrics"], meteor)
        rows: dict[str, Any] = {"human": _corpus(human)}
        rows["human"].update(
            {f"{key}_loo": human[key] for key in ("CIDEr", "BLEU-4") if key in human}
        )
        for name, predictions in baselines.items():
            rows[name] = score_prediction_set(predictions, refs, lang, settings, meteor)["row"]
    result = {
        "rows": rows,
        "split": split,
        "n_images": len(refs),
        "most_frequent_caption": frequent,
        "tokenization": human["tokenization"],
        "segmenter": human["segmenter"],
    }
    write_json(result, out_json)
    return result


def split_questions(shards_dir: str | os.PathLike, split: str) -> list[dict]:
    """Every VQA question of ``split``, in shard order."""
    rows = read_split(shards_dir, split, columns=("questions",))
    return [q for row in rows for q in row["questions"]]


def read_vqa_results(path: str | os.PathLike) -> dict[int, str]:
    """VQA results JSON ``[{"question_id", "answer"}]`` -> ``question_id -> answer``."""
    return {int(a["question_id"]): a["answer"] for a in read_json(path)}


def vqa_prior_answers(train_questions: Iterable[dict], questions: list[dict]) -> dict[int, str]:
    """The "prior" baseline: the most common training answer of each question type."""
    by_type: dict[str, Counter] = {}
    overall: Counter = Counter()
    for q in train_questions:
        answer = normalize_answer(q["multiple_choice_answer"])
        by_type.setdefault(q["question_type"], Counter())[answer] += 1
        overall[answer] += 1
    fallback = overall.most_common(1)[0][0] if overall else ""
    out = {}
    for q in questions:
        counts = by_type.get(q["question_type"])
        out[q["question_id"]] = counts.most_common(1)[0][0] if counts else fallback
    return out


def score_vqa(
    answers_json: str, shards_dir: str, split: str, out_json: str, captioner: str | None = None
) -> dict[str, Any]:
    """Official VQA v2 accuracy of the answers, with the question-type prior beside it;
    ``captioner`` (the one that answered) is recorded beside the ``model`` row."""
    questions = split_questions(shards_dir, split)
    if not questions:
        raise ValueError(f"the {split} split of {shards_dir} has no VQA question to score")
    model = vqa_accuracy(read_vqa_results(answers_json), questions)
    train_questions = split_questions(shards_dir, "train")
    prior = vqa_accuracy(vqa_prior_answers(train_questions, questions), questions)
    summary = {k: model[k] for k in ("overall", "per_answer_type", "per_question_type")}
    result = {
        "captioner": captioner,
        "model": summary,
        "prior": {k: prior[k] for k in ("overall", "per_answer_type", "per_question_type")},
        "n_questions": model["n_questions"],
        "protocol": model.get("protocol"),
        "split": split,
        "per_question": {str(k): v for k, v in model["per_question"].items()},
    }
    write_json(result, out_json)
    logger.info(
        "VQA accuracy of %s: %.2f (prior %.2f)",
        captioner or "the answers",
        model["overall"],
        prior["overall"],
    )
    return result


def _name_from(path: str) -> str:
    return Path(path).stem


def collect_caption_table(experiments: dict[str, dict[str, Any]], out_json: str) -> dict[str, Any]:
    """``results/cider.json``: every experiment x captioner, plus the reference rows.

    ``experiments``: ``name -> {"lang", "scores": [model detail JSONs], "baselines": path}``.
    """
    table: dict[str, Any] = {}
    for name, entry in experiments.items():
        baselines = read_json(entry["baselines"])
        rows = {_name_from(p): read_json(p)["row"] for p in entry["scores"]}
        rows.update(baselines["rows"])
        table[name] = {
            "lang": entry["lang"],
            "split": baselines["split"],
            "n_images": baselines["n_images"],
            "tokenization": baselines["tokenization"],
            "segmenter": baselines["segmenter"],
            "rows": rows,
        }
    result = {"experiments": table, "scale": "pycocoevalcap raw scale (papers print x100)"}
    write_json(result, out_json, sort_keys=False)
    return result


def collect_json_table(
    named_paths: dict[str, str], out_json: str, drop: tuple[str, ...] = ()
) -> dict:
    """A top-level table of per-experiment result files (``results/vqa.json``, ...)."""
    table = {}
    for name, path in named_paths.items():
        data = read_json(path)
        table[name] = {k: v for k, v in data.items() if k not in drop}
    result = {"experiments": table}
    write_json(result, out_json, sort_keys=False)
    return result
