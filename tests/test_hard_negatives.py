"""NegCLIP hard negatives: the word swap, the loss, and ``train_clip`` with them (one process
and two gloo processes)."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from open_clip import ClipLoss

from tests.conftest import REPO
from tests.test_clip import FAST, data  # noqa: F401 (its module's data fixture)
from tests.test_train_loop import _free_port
from vlcore.config import ConfigError, load_yaml, validate_config
from vlcore.data.hard_negatives import WordSwapper
from vlcore.data.stream import ShardStream
from vlcore.models.clip import build_clip, load_clip
from vlcore.models.clip_loss import HardNegativeClipLoss
from vlcore.pipeline.clip import collate_pairs, parse_settings, train_clip

GROUPS = [["circle", "square", "star"], ["left", "right"], ["small", "large"], ["圆形", "方形"]]

# -- the word swap -----------------------------------------------------------------------


def test_swap_replaces_one_group_word_with_another_of_its_group():
    swapper = WordSwapper(GROUPS)
    text = "a small red circle on the left"
    seen = {swapper.negative(text, draw) for draw in range(60)}
    # each of the three group words, swapped for each other member of its group
    assert seen == {
        "a large red circle on the left",
        "a small red square on the left",
        "a small red star on the left",
        "a small red circle on the right",
    }
    assert swapper.negative(text, 7) == swapper.negative(text, 7)  # the draw fixes the swap


def test_swap_keeps_case_matches_whole_words_and_chinese_substrings():
    swapper = WordSwapper(GROUPS)
    assert swapper.negative("Circle and stars", 0) in {"Square and stars", "Star and stars"}
    assert swapper.negative("circles, stars and squares", 3) is None  # plurals: no group word
    assert swapper.negative("a leftover starfish", 0) is None
    assert swapper.negative("一个红色的圆形", 1) == "一个红色的方形"
    assert WordSwapper([]).negative("a circle", 0) is None and not WordSwapper([])


@pytest.mark.parametrize(
    "groups, message",
    [
        ([["circle"]], "at least two distinct"),
        ([["circle", "Circle"]], "at least two distinct"),
        ([["circle", "square"], ["square", "star"]], "in two groups"),
        (["circle"], "a list of words"),
    ],
)
def test_malformed_groups_are_clear_errors(groups, message):
    with pytest.raises(ValueError, match=message):
        WordSwapper(groups)
    with pytest.raises(ValueError, match=message):
        parse_settings({"hard_negatives": groups})


@pytest.mark.parametrize("groups", [[["circle"]], ["circle", "square"], [["circle", ""]]])
def test_the_config_schema_checks_the_groups(groups):
    config = load_yaml(REPO / "config" / "config.yaml")
    config["experiments"]["default"]["clip"]["hard_negatives"] = groups
    with pytest.raises(ConfigError, match="hard_negatives"):
        validate_config(config)


# -- the loss ------------------------------------------------------------------------------


def _features(n: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, 16, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_loss_adds_the_negatives_to_the_image_side_only():
    images, texts, negatives = _features(5, 0), _features(5, 1), _features(5, 2)
    scale = torch.tensor(10.0)
    valid = torch.tensor([True, False, True, True, False])
    loss = HardNegativeClipLoss()(images, texts, scale, negatives, valid)
    # by hand: image i's softmax over the 5 captions and the 3 valid negatives
    candidates = torch.cat([texts, negatives[valid]])
    image_side = F.cross_entropy(scale * images @ candidates.T, torch.arange(5))
    text_side = F.cross_entropy(scale * texts @ images.T, torch.arange(5))
    assert torch.allclose(loss, (image_side + text_side) / 2)
    plain = ClipLoss()(images, texts, scale)
    assert loss > plain  # more candidates in the softmax: a higher loss
    none_valid = torch.zeros(5, dtype=torch.bool)
    assert torch.allclose(
        HardNegativeClipLoss()(images, texts, scale, negatives, none_valid), plain
    )


def test_loss_gradient_raises_each_negative_by_its_softmax_weight():
    images, texts = _features(4, 0), _features(4, 1)
    negatives = _features(4, 2).requires_grad_(True)
    scale = torch.tensor(10.0)
    loss = HardNegativeClipLoss()(images, texts, scale, negatives, torch.ones(4, dtype=torch.bool))
    loss.backward()
    # d/d negative_j of the mean image-side CE (halved): scale / B * sum_i p_ij image_i / 2
    probs = torch.softmax(scale * images @ torch.cat([texts, negatives.detach()]).T, dim=1)
    expected = scale / 4 * probs[:, 4:].T @ images / 2
    # (gradient descent moves each negative away from the images that found it likely)
    assert torch.allclose(negatives.grad, expected, atol=1e-6)


# -- train_clip with hard negatives ----------------------------------------------------------


SHAPE_GROUPS = [
    ["circle", "square", "triangle", "star", "diamond", "hexagon"],
    ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"],
    ["left", "right"],
]


def test_collate_adds_a_negative_per_caption(data):  # noqa: F811
    clip = build_clip("tiny", tokenizer_dir=data["tokenizer"])
    rows = list(ShardStream(data["shards"], "train", transform=clip.preprocess))[:8]
    plain = collate_pairs(rows, tokenizer=clip.tokenizer, seed=0, epoch=0)
    batch = collate_pairs(rows, tokenizer=clip.tokenizer, seed=0, epoch=0,
                          swapper=WordSwapper(SHAPE_GROUPS))  # fmt: skip
    assert torch.equal(batch["text"], plain["text"]) and "negative_text" not in plain
    assert batch["negative_text"].shape == batch["text"].shape
    valid = batch["negative_valid"]
    assert valid.dtype == torch.bool and bool(valid.all())  # every caption names a colour
    # a valid negative differs from its caption; the same draw gives the same negatives
    pairs = zip(batch["text"], batch["negative_text"], strict=True)
    assert all(not torch.equal(a, b) for a, b in pairs)
    again = collate_pairs(rows, tokenizer=clip.tokenizer, seed=0, epoch=0,
                          swapper=WordSwapper(SHAPE_GROUPS))  # fmt: skip
    assert torch.equal(again["negative_text"], batch["negative_text"])


def test_train_clip_with_hard_negatives(data, tmp_path):  # noqa: F811
    settings = {**FAST, "hard_negatives": SHAPE_GROUPS}
    history = train_clip(data["shards"], data["tokenizer"], settings, tmp_path / "hn")
    plain = train_clip(data["shards"], data["tokenizer"], FAST, tmp_path / "plain")
    losses = [loss for _, loss, _ in history["train"]]
    assert len(losses) == FAST["max_steps"] and all(math.isfinite(v) for v in losses)
    # the same batches and initial weights: the extra negatives raise the first loss
    assert losses[0] > plain["train"][0][1]
    meta = json.loads((tmp_path / "hn" / "train_config.json").read_text())
    assert meta["settings"]["hard_negatives"] == SHAPE_GROUPS
    assert load_clip(tmp_path / "hn").embed_dim == load_clip(tmp_path / "plain").embed_dim


def _ddp_worker(rank: int, world: int, port: int, shards: str, tokenizer: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))  # fmt: skip
    torch.set_num_threads(1)
    settings = {**FAST, "batch_size": 4, "val_every": 2, "hard_negatives": SHAPE_GROUPS}
    train_clip(shards, tokenizer, settings, out)


def test_two_gloo_processes_train_with_hard_negatives(data, tmp_path):  # noqa: F811
    out = tmp_path / "ddp"
    args = (2, _free_port(), str(data["shards"]), str(data["tokenizer"]), str(out))
    mp.spawn(_ddp_worker, args=args, nprocs=2, join=True)
    history = json.loads((out / "history.json").read_text())
    assert len(history["train"]) == FAST["max_steps"] and history["val"]
    assert all(math.isfinite(loss) for _, loss, _ in history["train"])
    assert json.loads((out / "train_config.json").read_text())["world_size"] == 2
