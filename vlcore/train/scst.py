"""Self-critical sequence training: fine-tune a captioner on its own CIDEr-D.

After cross-entropy training a captioner is tuned a few steps with the REINFORCE gradient of
the CIDEr-D of captions it samples (Rennie et al., "Self-critical Sequence Training for Image
Captioning", 2017). Per image, ``samples`` captions are drawn from the model (plain sampling,
in eval mode); each one's advantage is its reward minus the mean reward of the other samples
of the same image (the "new self-critical" baseline of Luo, 2020, which needs no extra greedy
decode), and the loss is ``-advantage * log p(caption)`` summed over the caption's tokens and
``<eos>``, averaged over captions. Rewards are CIDEr-D against the image's neutral
references, n-grams weighted by the training split (:mod:`vlcore.metrics.cider_reward`).

Only neutral captions are tuned (the prompt is ``<bos>``); styled captions and VQA answers
keep their cross-entropy training. Turned on by ``scst: {steps: N}`` in a captioner's
section; :func:`fine_tune` is the stage ``train_captioner`` runs after cross-entropy.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from vlcore.data.shard import load_manifest
from vlcore.data.stream import ShardStream
from vlcore.io import write_json
from vlcore.metrics.cider_reward import CiderD, TfIdf, reward_tokens
from vlcore.models.generation import IGNORE
from vlcore.text import decode_batch
from vlcore.train.checkpoint import unwrap
from vlcore.train.loop import TrainConfig, fit
from vlcore.train.plots import plot_loss_curve
from vlcore.train.runtime import Runtime

logger = logging.getLogger(__name__)


@dataclass
class SCSTConfig:
    """The ``scst:`` section of a captioner (0 steps: no self-critical fine-tuning)."""

    steps: int = 0  # optimizer steps after cross-entropy training
    samples: int = 5  # captions sampled per image (each one's baseline: the others' mean)
    lr: float = 5e-5  # peak learning rate (cosine decay to zero, no warm-up)
    max_new_tokens: int = 32  # longest sampled caption, in tokens
    lang: str = "en"  # how rewards tokenise (set from the experiment by the workflow)
    segmenter: str = "jieba"  # Chinese segmentation of rewards (the evaluation's)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"scst.steps must be >= 0, got {self.steps}")
        if self.samples < 2:
            raise ValueError(f"scst.samples must be >= 2 (the baseline), got {self.samples}")
        if not self.lr > 0:
            raise ValueError(f"scst.lr must be > 0, got {self.lr}")
        if self.max_new_tokens < 1:
            raise ValueError(f"scst.max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> SCSTConfig:
        values = dict(values or {})
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(
                f"unknown scst option(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**values)


def sampled_sequences(
    new_tokens: torch.Tensor, bos: int, eos: int, pad: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sampled continuations ``N T`` -> decoder ``input_ids``, ``attention_mask`` and
    ``labels`` (``N T+1``): ``<bos>`` + the tokens up to and including the first ``<eos>``;
    the labels cover those tokens, never ``<bos>`` or what follows ``<eos>``."""
    ids = torch.cat([new_tokens.new_full((len(new_tokens), 1), bos), new_tokens], dim=1)
    eos_seen = torch.cumsum((ids == eos).long(), dim=1)
    keep = (eos_seen == 0) | ((eos_seen == 1) & (ids == eos))
    keep[:, 0] = True
    labels = ids.masked_fill(~keep, IGNORE)
    labels[:, 0] = IGNORE
    return ids.masked_fill(~keep, pad), keep.long(), labels


def leave_one_out_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """``B K`` rewards -> each reward minus the mean of the other ``K-1`` of its row."""
    k = rewards.shape[1]
    return rewards - (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)


class SelfCritical:
    """The SCST loss, as a ``loss_fn(model, batch)`` of :func:`vlcore.train.loop.fit`.

    ``batch``: ``pixel_values`` ``B 3 H W`` and ``references`` (per image, the
    :meth:`CiderD.tfidf` of each reference). ``rewards`` collects the mean sampled reward of
    every call, for the history.
    """

    def __init__(self, config: SCSTConfig, tokenizer: PreTrainedTokenizerBase, cider: CiderD):
        self.config = config
        self.tokenizer = tokenizer
        self.cider = cider
        self.rewards: list[float] = []

    def reward(self, caption: str, references: Sequence[TfIdf]) -> float:
        tokens = reward_tokens(caption, self.config.lang, self.config.segmenter)
        return self.cider.score(tokens, references)

    def __call__(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        pixel_values = batch["pixel_values"]
        n_images, k = len(pixel_values), self.config.samples
        if n_images == 0:  # no image of the batch had a neutral caption
            return sum(p.sum() for p in model.parameters() if p.requires_grad) * 0.0
        tok = self.tokenizer
        core = unwrap(model)
        was_training = core.training
        core.eval()
        try:
            new_tokens = core.generate_tokens(
                pixel_values,
                torch.full((n_images, 1), tok.bos_token_id, device=pixel_values.device),
                do_sample=True,
                top_k=0,
                num_beams=1,
                num_return_sequences=k,
                max_new_tokens=self.config.max_new_tokens,
            )
        finally:
            core.train(was_training)
        captions = decode_batch(tok, new_tokens.cpu())
        rewards = torch.tensor(
            [
                self.reward(caption, batch["references"][i // k])
                for i, caption in enumerate(captions)
            ],
            dtype=torch.float32,
        ).view(n_images, k)
        self.rewards.append(float(rewards.mean()))
        advantages = leave_one_out_advantages(rewards).view(-1).to(pixel_values.device)
        input_ids, attention_mask, labels = sampled_sequences(
            new_tokens, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
        )
        image_index = torch.arange(n_images, device=pixel_values.device).repeat_interleave(k)
        # through forward (not text_logits), so that DDP syncs the gradients
        nll = model(pixel_values, input_ids, attention_mask, image_index, labels)
        return (advantages[:, None] * nll).sum() / len(nll)


# -- the fine-tuning stage of train_captioner ---------------------------------------------


def train_references(
    shards_dir: str | os.PathLike, scst: SCSTConfig
) -> tuple[CiderD, dict[str, list[TfIdf]]]:
    """The CIDEr-D reward of self-critical training: n-grams weighted by the ``train`` split's
    neutral captions, and each training image's references (by key) as tf-idf vectors."""
    manifest = load_manifest(shards_dir)
    keys, corpus = [], []
    for shard in manifest["splits"]["train"]["shards"]:
        table = pq.read_table(Path(manifest["dir"]) / shard["file"], columns=["key", "captions"])
        for key, captions in zip(table["key"].to_pylist(), table["captions"].to_pylist(),
                                 strict=True):  # fmt: skip
            if captions:
                keys.append(key)
                corpus.append([reward_tokens(c, scst.lang, scst.segmenter) for c in captions])
    cider = CiderD(corpus)
    return cider, {k: [cider.tfidf(t) for t in refs] for k, refs in zip(keys, corpus, strict=True)}


def collate_references(
    rows: list[dict[str, Any]], references: Mapping[str, list[TfIdf]]
) -> dict[str, Any]:
    """ShardStream rows -> a self-critical batch: ``pixel_values`` and each image's
    references (rows without neutral captions are left out)."""
    rows = [row for row in rows if row["key"] in references]
    if not rows:
        return {"pixel_values": torch.empty(0), "references": []}
    return {
        "pixel_values": torch.stack([row["image"] for row in rows]),
        "references": [references[row["key"]] for row in rows],
    }


def fine_tune(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    shards_dir: str | os.PathLike,
    stream: ShardStream,
    scst: SCSTConfig,
    config: TrainConfig,
    meta: dict[str, Any],
    xe_history: dict[str, Any],
    out_dir: Path,
    runtime: Runtime,
    *,
    batch_size: int,
    num_workers: int = 0,
) -> dict[str, Any]:
    """The stage :func:`vlcore.pipeline.captioner.train_captioner` runs after cross-entropy:
    fine-tune ``model`` on its sampled captions' CIDEr-D with the shared loop (its own
    checkpoints and resume; the reward history covers the steps run since the last resume)
    and write the captioner's final weights, history (cross-entropy curves, then ``scst``:
    the policy-gradient loss and the mean sampled reward of every step) and the
    cross-entropy loss curve to ``out_dir``."""
    cider, references = train_references(shards_dir, scst)
    torch.manual_seed(config.seed)  # the same samples whether or not the first stage just ran
    loss_fn = SelfCritical(scst, tokenizer, cider)

    def loader(epoch: int) -> DataLoader:
        stream.set_epoch(epoch)
        return DataLoader(
            stream,
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=functools.partial(collate_references, references=references),
            drop_last=True,
        )

    tuning = dataclasses.replace(
        config, max_steps=scst.steps, lr=scst.lr, warmup_steps=0, val_every=0
    )
    logger.info(
        "self-critical fine-tuning: %d steps, %d samples per image, lr %.1e",
        scst.steps,
        scst.samples,
        scst.lr,
    )
    tuned = fit(
        model,
        loss_fn,
        loader,
        None,
        tuning,
        out_dir,
        meta={**meta, "scst": dataclasses.asdict(scst)},
        runtime=runtime,
    )
    history = {**xe_history, "scst": {"train": tuned["train"], "reward": loss_fn.rewards}}
    if runtime.is_main:
        write_json(history, out_dir / "history.json")
        plot_loss_curve(xe_history, out_dir / "loss_curve.png", title=meta.get("name", ""))
        logger.info(
            "self-critical fine-tuning: mean sampled CIDEr-D %.3f over the first 10 steps, "
            "%.3f over the last 10",
            sum(loss_fn.rewards[:10]) / max(len(loss_fn.rewards[:10]), 1),
            sum(loss_fn.rewards[-10:]) / max(len(loss_fn.rewards[-10:]), 1),
        )
    return history
