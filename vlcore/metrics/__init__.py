"""Evaluation metrics with the exact protocols of the benchmarks we compare against.

- :func:`vqa_accuracy`, :func:`normalize_answer`: official VQA v2 accuracy (GT-Vision-Lab master).
- :func:`score_captions`, :func:`human_agreement`: BLEU, METEOR, ROUGE-L, CIDEr-D through
  pycocoevalcap, English (PTB tokenizer) or Chinese (jieba or characters); SPICE reported
  unavailable offline.
- :func:`retrieval_recall`, :func:`chance_recall`: image <-> text R@K with several captions per
  image, and the exact chance level of the same setting.

Each module's docstring cites its source and the version of the protocol it follows.
"""

from vlcore.metrics.captions import (
    METRICS,
    human_agreement,
    meteor_for,
    score_captions,
    score_captions_leave_one_out,
)
from vlcore.metrics.retrieval import chance_recall, retrieval_recall
from vlcore.metrics.tokenization import segment_chinese
from vlcore.metrics.vqa import normalize_answer, question_accuracy, vqa_accuracy

__all__ = [
    "METRICS",
    "chance_recall",
    "human_agreement",
    "meteor_for",
    "score_captions_leave_one_out",
    "normalize_answer",
    "question_accuracy",
    "retrieval_recall",
    "score_captions",
    "segment_chinese",
    "vqa_accuracy",
]
