"""The attribute judge: ground truth from the generator, the accuracy it defines, training."""

from __future__ import annotations

import json

import pytest
import torch

from tests.clip_fixtures import make_shards
from vlcore.data.stream import ShardStream
from vlcore.models.judge import (
    AttributeJudge,
    JudgeConfig,
    attribute_accuracy,
    hflip_targets,
    judge_scores,
    load_judge,
    predict_objects,
    save_judge,
    scene_targets,
    scene_truth,
)
from vlcore.pipeline.judge import collate_judge, evaluate_judge, parse_settings, train_judge
from vlcore.synthetic.generate import generate
from vlcore.synthetic.truth import check_truth_matches

RED_CIRCLE = {"shape": "circle", "color": "red", "size": "large"}
BLUE_STAR = {"shape": "star", "color": "blue", "size": "small"}


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_scene_truth_matches_the_generator():
    samples = generate(12, 3, image_size=32, dirty_rate=0.0)
    truth = scene_truth(3, range(12))
    for sample, scene in zip(samples, truth, strict=True):
        assert [
            {k: o[k] for k in ("shape", "color", "size", "x", "y")} for o in scene
        ] == sample.objects
        for o in scene:
            assert o["cell"] == [min(int(o["y"] * 3), 2), min(int(o["x"] * 3), 2)]


def test_a_duplicate_shows_the_scene_it_copies():
    samples = generate(60, 1, image_size=32, dirty_rate=0.6)
    dupes = [s for s in samples if s.dirty_reason == "duplicate_image"]
    assert dupes
    experiment = {"seed": 1, "source": {"format": "synthetic", "synthetic": {"dirty_rate": 0.6}}}
    for sample in dupes:
        (scene,) = scene_truth(experiment, [sample.index])
        assert [{k: o[k] for k in ("shape", "color", "size")} for o in scene] == [
            {k: o[k] for k in ("shape", "color", "size")} for o in sample.objects
        ]
    with pytest.raises(ValueError, match="synthetic source only"):
        scene_truth({"seed": 0, "source": {"format": "coco"}}, [0])


def test_attribute_accuracy_counts_attributes_with_binding_and_extras():
    truth = [RED_CIRCLE, BLUE_STAR]
    assert attribute_accuracy(truth, truth) == 1.0
    assert attribute_accuracy([], truth) == 0.0
    assert attribute_accuracy(list(reversed(truth)), truth) == 1.0  # order does not matter
    swapped = [{**RED_CIRCLE, "color": "blue"}, {**BLUE_STAR, "color": "red"}]
    assert attribute_accuracy(swapped, truth) == pytest.approx(4 / 6)  # colours bound to shapes
    extra = [*truth, {"shape": "square", "color": "green", "size": "small"}]
    assert attribute_accuracy(extra, truth) == pytest.approx(6 / 9)
    assert attribute_accuracy(extra, truth, penalize_extra=False) == 1.0
    no_size = [{"shape": "circle", "color": "red", "size": None}]
    assert attribute_accuracy([{**RED_CIRCLE, "size": "small"}], no_size) == 1.0
    assert attribute_accuracy([RED_CIRCLE], [RED_CIRCLE, BLUE_STAR]) == pytest.approx(3 / 6)


def test_targets_and_their_mirror_image():
    scenes = [[{**RED_CIRCLE, "cell": [0, 0]}, {**BLUE_STAR, "cell": [2, 1]}]]
    targets = scene_targets(scenes)
    assert targets["presence"][0].tolist() == [1, 0, 0, 0, 0, 0, 0, 1, 0]
    assert (
        targets["shape"][0, 0] == 0 and targets["color"][0, 7] == 5 and targets["size"][0, 7] == 0
    )
    assert targets["shape"][0, 1] == -100
    mirrored = hflip_targets(targets)
    assert mirrored["presence"][0].tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 0]
    assert mirrored["shape"][0, 2] == 0


def test_collate_mirrors_images_with_their_targets(tmp_path):
    shards = make_shards(tmp_path, 16, image_size=32, split={"val": 0.0, "test": 0.0})
    rows = list(ShardStream(shards, "train"))
    plain = collate_judge(rows, truth={"seed": 0}, seed=0, epoch=0, hflip=False)
    mixed = collate_judge(rows, truth={"seed": 0}, seed=0, epoch=0, hflip=True)
    flipped = [not torch.equal(a, b) for a, b in zip(plain["image"], mixed["image"], strict=True)]
    assert 0 < sum(flipped) < len(rows)
    for i, was in enumerate(flipped):
        expected = plain["image"][i].flip(-1) if was else plain["image"][i]
        assert torch.equal(mixed["image"][i], expected)
        presence = plain["targets"]["presence"][i].view(3, 3)
        want = presence.flip(-1) if was else presence
        assert torch.equal(mixed["targets"]["presence"][i].view(3, 3), want)


def test_save_load_and_scores_shape(tmp_path):
    torch.manual_seed(0)
    judge = AttributeJudge(JudgeConfig(image_size=32, channels=[8, 16], hidden=32))
    save_judge(judge, tmp_path / "j", {"truth": {"seed": 0}})
    again = load_judge(tmp_path / "j")
    x = torch.rand(3, 3, 32, 32)
    judge.eval()
    assert torch.equal(again(x).presence, judge(x).presence)
    scores = judge_scores(again, x, scene_truth(0, [0, 1, 2]))
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()
    with pytest.raises(ValueError, match="3 images but 2 scenes"):
        judge_scores(again, x, scene_truth(0, [0, 1]))
    with pytest.raises(ValueError, match="unknown judge setting"):
        parse_settings({"epochs": 3})


def test_train_judge_learns_above_chance(tmp_path):
    shards = make_shards(tmp_path / "data", 96, image_size=32, split={"val": 0.0, "test": 0.2})
    settings = {"model": {"channels": [16, 32], "hidden": 64, "dropout": 0.0},
                "batch_size": 16, "max_steps": 60, "warmup_steps": 5, "lr": 0.003,
                "val_every": 0, "ckpt_every": 0, "log_every": 1, "seed": 0}  # fmt: skip
    result = train_judge(shards, {"seed": 0, "dirty_rate": 0.0}, settings, tmp_path / "judge",
                         tmp_path / "scores.json")  # fmt: skip
    losses = [loss for _, loss, _ in result["train"]]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    scores = json.loads((tmp_path / "scores.json").read_text())
    judge = load_judge(tmp_path / "judge")
    assert json.loads((tmp_path / "judge" / "judge.json").read_text())["truth"]["seed"] == 0
    # Chance for presence is the majority guess: every cell empty.
    rows = list(ShardStream(shards, "train"))
    truth = scene_truth(0, [r["image_id"] for r in rows])
    empty = 1 - sum(len(s) for s in truth) / (9 * len(truth))
    train_eval = evaluate_judge(judge, shards, "train", {"seed": 0})
    assert train_eval["cell_accuracy"]["presence"] > empty + 0.02
    assert train_eval["attribute_accuracy"] > 0.2
    assert 0 <= scores["test"]["attribute_accuracy"] <= 1
    assert len(predict_objects(judge, torch.stack([r["image"] for r in rows[:4]]))) == 4


def test_truth_of_another_seed_does_not_match_the_captions():
    ids = list(range(20))
    scenes = scene_truth(0, ids)
    captions = [[f"a {o['color']} {o['shape']}" for o in scene] for scene in scenes]
    check_truth_matches(scenes, captions)  # the captions' own scenes
    check_truth_matches(scene_truth(1, ids), [["一个红色的圆"]] * len(ids))  # no English colour
    with pytest.raises(ValueError, match="not the experiment's"):
        check_truth_matches(scene_truth(1, ids), captions)
