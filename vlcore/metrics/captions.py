"""Caption metrics over a whole test split: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D (pycocoevalcap).

Sources: the COCO caption evaluation server code, pycocoevalcap 1.2 (``COCOEvalCap``);
Papineni et al. 2002 (BLEU), Denkowski and Lavie 2014 (METEOR), Lin 2004 (ROUGE-L), Vedantam
et al., "CIDEr: Consensus-based Image Description Evaluation", CVPR 2015 (CIDEr-D).

- English: PTB tokenization exactly as ``COCOEvalCap`` (:mod:`vlcore.metrics.tokenization`),
  then ``Bleu(4)``, ``Meteor``, ``Rouge``, ``Cider``.
- Chinese: segmentation (``jieba`` or ``char``), then the same scorers called directly; no PTB
  tokenizer and no METEOR (English resources only: reported unavailable, with the reason).
- SPICE is never computed: it needs Stanford CoreNLP 3.6.0, downloaded on first use, which is
  impossible offline. It is reported unavailable, never estimated.

pycocoevalcap's ``Cider`` is CIDEr-D (n-grams 1..4, sigma 6, clipping, length penalty, x10).
Its document frequencies come from the reference sets *of the images being scored*: a
caption's score depends on which other images are in the set, and one image alone scores 0.
Always score the whole split in one call; numbers are on the raw scale (papers print x100).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any, Literal

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from vlcore.metrics.meteor import ClosableMeteor, meteor_session
from vlcore.metrics.tokenization import (
    SEGMENTERS,
    Segmenter,
    describe,
    ptb_tokenize,
    segment_captions,
)

logger = logging.getLogger(__name__)

Lang = Literal["en", "zh"]
LANGS: tuple[str, ...] = ("en", "zh")
METRICS: tuple[str, ...] = ("BLEU", "METEOR", "ROUGE_L", "CIDEr")
KNOWN_METRICS: tuple[str, ...] = (*METRICS, "SPICE")
BLEU_KEYS: tuple[str, ...] = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4")

SPICE_REASON = (
    "SPICE needs Stanford CoreNLP 3.6.0, which pycocoevalcap downloads on first use; "
    "that is impossible offline, so SPICE is not computed (and never estimated)"
)
METEOR_ZH_REASON = (
    "METEOR 1.5 in pycocoevalcap runs with English resources only (-l en: stemmer, synonyms, "
    "paraphrase table); it is not computed for Chinese"
)
CIDER_NOTE = (
    "CIDEr-D (pycocoevalcap Cider: n=1..4, sigma=6); document frequencies over the references "
    "of the {n} images scored together; raw scale (papers print x100)"
)

Corpus = dict[str, float]
PerImage = dict[Hashable, dict[str, float]]


def _unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def _check_options(lang: str, segmenter: str, metrics: Sequence[str]) -> tuple[str, ...]:
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")
    if segmenter not in SEGMENTERS:
        raise ValueError(f"segmenter must be one of {SEGMENTERS}, got {segmenter!r}")
    if isinstance(metrics, str) or not isinstance(metrics, Sequence):
        raise ValueError(f"metrics must be a list of metric names, got {metrics!r}")
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in KNOWN_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}: choose from {KNOWN_METRICS}")
    if not metrics or len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics must name each metric once and at least one, got {metrics!r}")
    return metrics


def _check_references(references: Mapping[Hashable, Sequence[str]], min_refs: int) -> None:
    if not isinstance(references, Mapping):
        raise ValueError(
            f"references must be a dict id -> list of captions, got {type(references).__name__}"
        )
    for key, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise ValueError(f"references[{key!r}] must be a list of captions, got {refs!r}")
        if len(refs) < min_refs:
            raise ValueError(
                f"references[{key!r}] has {len(refs)} caption(s), at least {min_refs} needed"
            )
        for ref in refs:
            if not isinstance(ref, str) or not ref.strip():
                raise ValueError(
                    f"references[{key!r}] holds an empty or non-string caption: {ref!r}"
                )
    if len(references) < 2:
        raise ValueError(
            f"{len(references)} image(s) given, at least 2 needed: CIDEr's document frequencies "
            "come from the references of the images scored together, so over a single image "
            "every n-gram has idf 0 and the score is meaningless. Score the whole split at once."
        )


def _check_predictions(
    predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]
) -> None:
    if not isinstance(predictions, Mapping):
        raise ValueError(
            f"predictions must be a dict id -> caption, got {type(predictions).__name__}"
        )
    missing = [key for key in references if key not in predictions]
    extra = [key for key in predictions if key not in references]
    if missing or extra:
        raise ValueError(
            "predictions and references must have the same ids: "
            f"{len(missing)} id(s) without a prediction (e.g. {missing[:5]}), "
            f"{len(extra)} prediction(s) without references (e.g. {extra[:5]})"
        )
    for key, caption in predictions.items():
        if not isinstance(caption, str):
            raise ValueError(
                f"predictions[{key!r}] must be exactly one caption string, got {caption!r}"
            )


def _tokenize(captions: Mapping[Hashable, Sequence[str]], lang: str, segmenter: str) -> dict:
    start = time.perf_counter()
    tokenized = ptb_tokenize(captions) if lang == "en" else segment_captions(captions, segmenter)
    logger.info(
        "tokenized %d caption(s) (%s) in %.1f s",
        sum(len(v) for v in captions.values()),
        "PTB" if lang == "en" else segmenter,
        time.perf_counter() - start,
    )
    return tokenized


def _score_tokenized(
    gts: dict[Hashable, list[str]],
    res: dict[Hashable, list[str]],
    metrics: Sequence[str],
    meteor: ClosableMeteor | None,
) -> tuple[Corpus, PerImage]:
    """Run the requested scorers on tokenized ``gts`` (references) and ``res`` (one caption)."""
    corpus: Corpus = {}
    per_metric: dict[str, list[float]] = {}
    if "BLEU" in metrics:
        scores, per = Bleu(4).compute_score(gts, res, verbose=0)
        for key, score, values in zip(BLEU_KEYS, scores, per, strict=True):
            corpus[key], per_metric[key] = float(score), [float(v) for v in values]
    if "METEOR" in metrics and meteor is not None:
        corpus["METEOR"], per_metric["METEOR"] = meteor.score(gts, res)
    for name, scorer in (("ROUGE_L", Rouge), ("CIDEr", Cider)):
        if name in metrics:
            score, values = scorer().compute_score(gts, res)
            corpus[name], per_metric[name] = float(score), [float(v) for v in values]
    per_image = {
        key: {name: values[i] for name, values in per_metric.items()} for i, key in enumerate(gts)
    }
    return corpus, per_image


@contextlib.contextmanager
def meteor_for(metrics: Sequence[str], lang: str) -> Iterator[ClosableMeteor | None]:
    """A METEOR session if ``metrics`` asks for METEOR on English captions, else ``None``.

    Its JVM starts at once and takes about 5 s to load before the first score; after that a
    300-image scoring takes a fraction of a second. Open it early and hand it to every
    scoring call (``meteor=``) of a job, so the start-up is paid once and overlaps other work.
    """
    if _scores_meteor(metrics, lang):
        with meteor_session() as meteor:
            yield meteor
    else:
        yield None


def _scores_meteor(metrics: Sequence[str], lang: str) -> bool:
    """METEOR is asked for and can be computed (its resources are English only)."""
    return "METEOR" in metrics and lang == "en"


def _meteor(
    given: ClosableMeteor | None, metrics: Sequence[str], lang: str
) -> contextlib.AbstractContextManager[ClosableMeteor | None]:
    """The session a scoring call uses: the caller's (kept open), or one of its own."""
    if given is None:
        return meteor_for(metrics, lang)
    return contextlib.nullcontext(given if _scores_meteor(metrics, lang) else None)


def _report(
    corpus: Corpus,
    per_image: PerImage,
    metrics: Sequence[str],
    lang: str,
    segmenter: str,
    n_images: int,
    n_references: int,
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name in metrics:
        if name == "BLEU":
            report.update({key: corpus[key] for key in BLEU_KEYS})
        elif name == "METEOR" and lang == "zh":
            report["METEOR"] = _unavailable(METEOR_ZH_REASON)
        elif name != "SPICE":
            report[name] = corpus[name]
    report["SPICE"] = _unavailable(SPICE_REASON)
    report.update(
        {
            "per_image": per_image,
            "lang": lang,
            "tokenization": describe(lang, segmenter if lang == "zh" else None),
            "segmenter": segmenter if lang == "zh" else None,
            "n_images": n_images,
            "n_references": n_references,
            "metrics": list(metrics),
        }
    )
    if "CIDEr" in metrics:
        report["cider_note"] = CIDER_NOTE.format(n=n_images)
    return report


def score_captions(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    lang: Lang = "en",
    segmenter: Segmenter = "jieba",
    metrics: Sequence[str] = METRICS,
    meteor: ClosableMeteor | None = None,
) -> dict[str, Any]:
    """Score one caption per image against its references, over the whole set at once.

    Args:
        predictions: ``id -> caption`` (exactly one per id).
        references: ``id -> [reference, ...]`` with the same ids, at least one each; at least
            two images (CIDEr's document frequency needs the whole split).
        lang: ``"en"`` (PTB tokenizer, as COCOEvalCap) or ``"zh"`` (segmentation, no METEOR).
        segmenter: for ``zh`` only: ``"jieba"`` (words) or ``"char"`` (characters).
        metrics: any of ``BLEU``, ``METEOR``, ``ROUGE_L``, ``CIDEr`` (``SPICE`` is accepted
            and always reported unavailable).
        meteor: an open session (:func:`meteor_for`) to score METEOR with; ``None`` starts
            one for this call (a JVM, about 5 s).

    Returns:
        ``BLEU-1``..``BLEU-4``, ``METEOR``, ``ROUGE_L``, ``CIDEr`` as floats on pycocoevalcap's
        scale (a metric that cannot be computed is ``{"available": False, "reason": ...}``,
        always so for ``SPICE``), ``per_image`` (``id -> {metric: score}``), ``lang``,
        ``tokenization``, ``segmenter`` (``None`` for English), ``n_images``,
        ``n_references``, ``metrics`` and ``cider_note``.
    """
    metrics = _check_options(lang, segmenter, metrics)
    _check_references(references, min_refs=1)
    _check_predictions(predictions, references)
    ids = list(references)
    combined: dict[Hashable, list[str]] = {("ref", key): list(references[key]) for key in ids}
    combined.update({("pred", key): [predictions[key]] for key in ids})
    tokenized = _tokenize(combined, lang, segmenter)
    gts = {key: tokenized[("ref", key)] for key in ids}
    res = {key: tokenized[("pred", key)] for key in ids}
    start = time.perf_counter()
    with _meteor(meteor, metrics, lang) as session:
        corpus, per_image = _score_tokenized(gts, res, metrics, session)
    logger.info("scored %d image(s) in %.1f s: %s", len(ids), time.perf_counter() - start, corpus)
    n_refs = sum(len(refs) for refs in references.values())
    return _report(corpus, per_image, metrics, lang, segmenter, len(ids), n_refs)


def human_agreement(
    references: Mapping[Hashable, Sequence[str]],
    lang: Lang = "en",
    segmenter: Segmenter = "jieba",
    metrics: Sequence[str] = METRICS,
    meteor: ClosableMeteor | None = None,
) -> dict[str, Any]:
    """The "human" row: each reference scored against the other ones, leave-one-out.

    For round r in ``0..k-1``, every image's reference r is the prediction and its other
    references are the references; the scores of the k rounds are averaged (corpus and
    per image). k is the smallest number of references of any image (at least 2 needed);
    images with more keep their extra references as references in every round. Note that
    each round has one reference fewer than a model is scored against, which lowers
    reference-count-sensitive metrics such as BLEU and CIDEr a little.

    Returns the same keys as :func:`score_captions`, plus ``rounds`` (k) and ``per_round``
    (the corpus scores of each round). ``meteor`` as for :func:`score_captions`.
    """
    metrics = _check_options(lang, segmenter, metrics)
    _check_references(references, min_refs=2)
    ids = list(references)
    tokenized = _tokenize({key: list(references[key]) for key in ids}, lang, segmenter)
    rounds = min(len(tokenized[key]) for key in ids)
    per_round: list[Corpus] = []
    per_image_rounds: list[PerImage] = []
    start = time.perf_counter()
    with _meteor(meteor, metrics, lang) as session:
        for r in range(rounds):
            gts = {key: tokenized[key][:r] + tokenized[key][r + 1 :] for key in ids}
            res = {key: [tokenized[key][r]] for key in ids}
            corpus, per_image = _score_tokenized(gts, res, metrics, session)
            per_round.append(corpus)
            per_image_rounds.append(per_image)
    logger.info("human agreement: %d round(s) in %.1f s", rounds, time.perf_counter() - start)
    mean = {name: sum(c[name] for c in per_round) / rounds for name in per_round[0]}
    mean_per_image = {
        key: {
            name: sum(p[key][name] for p in per_image_rounds) / rounds
            for name in per_image_rounds[0][key]
        }
        for key in ids
    }
    n_refs = sum(len(refs) for refs in references.values())
    report = _report(mean, mean_per_image, metrics, lang, segmenter, len(ids), n_refs)
    report.update({"rounds": rounds, "per_round": per_round})
    return report


def score_captions_leave_one_out(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    lang: Lang = "en",
    segmenter: Segmenter = "jieba",
    metrics: Sequence[str] = ("BLEU", "ROUGE_L", "CIDEr"),
) -> dict[str, Any]:
    """Score predictions against the same reference sets :func:`human_agreement` uses.

    Round r drops every image's reference r (r in ``0..k-1``, k the smallest reference
    count) and scores the predictions against the rest; the corpus scores are averaged over
    rounds. A model row computed this way and the human row see identical references, so
    "at least human agreement" compares like with like.

    Returns the corpus scores (``BLEU-1``.. ``CIDEr``), ``rounds`` and ``per_round``.
    """
    metrics = _check_options(lang, segmenter, metrics)
    _check_references(references, min_refs=2)
    _check_predictions(predictions, references)
    ids = list(references)
    combined: dict[Hashable, list[str]] = {("ref", key): list(references[key]) for key in ids}
    combined.update({("pred", key): [predictions[key]] for key in ids})
    tokenized = _tokenize(combined, lang, segmenter)
    res = {key: tokenized[("pred", key)] for key in ids}
    rounds = min(len(tokenized[("ref", key)]) for key in ids)
    per_round: list[Corpus] = []
    with meteor_for(metrics, lang) as meteor:
        for r in range(rounds):
            gts = {
                key: tokenized[("ref", key)][:r] + tokenized[("ref", key)][r + 1 :] for key in ids
            }
            corpus, _ = _score_tokenized(gts, res, metrics, meteor)
            per_round.append(corpus)
    mean = {name: sum(c[name] for c in per_round) / rounds for name in per_round[0]}
    return {**mean, "rounds": rounds, "per_round": per_round}
