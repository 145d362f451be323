"""rerank_images and score_images on hand-made samples with a stand-in scorer."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from vlcore.pipeline import t2i
from vlcore.pipeline.dalle_generate import SAMPLES_SCHEMA, png_bytes


def write_samples(path, n_prompts=3, n_samples=5):
    """Sample ``j`` of every prompt is a flat image of grey level ``j / (n - 1)``."""
    rows = {name: [] for name in SAMPLES_SCHEMA.names}
    for p in range(n_prompts):
        for j in range(n_samples):
            rows["prompt"].append(p)
            rows["key"].append(f"k{p}")
            rows["image_id"].append(p)
            rows["caption"].append(f"caption {p}")
            rows["sample"].append(j)
            rows["seed"].append(100 * p + j)
            rows["codes"].append(np.zeros(4, dtype=np.int16))
            rows["image"].append(png_bytes(torch.full((3, 8, 8), j / (n_samples - 1))))
    pq.write_table(pa.table(rows, schema=SAMPLES_SCHEMA), path)
    return path


def brightness_scorer(*_args, **_kwargs):
    """Scores a sample by its mean brightness, negated for prompt 1 (darkest best)."""

    def score(images, captions):
        sign = torch.tensor([-1.0 if c.endswith(" 1") else 1.0 for c in captions])
        return images.mean(dim=(1, 2, 3)) * sign

    return score


def test_top_k_orders_best_first_and_breaks_ties_by_index():
    assert t2i.top_k([0.1, 0.5, 0.5, 0.9], 3) == [3, 1, 2]
    assert t2i.top_k([1.0], 4) == [0]


def test_rerank_keeps_the_top_k(tmp_path, monkeypatch):
    monkeypatch.setitem(t2i.SCORERS, "clip", brightness_scorer)
    samples = write_samples(tmp_path / "samples.parquet")
    out = tmp_path / "rerank.json"
    result = t2i.rerank_images(samples, "unused", {"keep": 2}, out)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    kept = [p["kept"] for p in result["prompts"]]
    assert kept == [[4, 3], [0, 1], [4, 3]]
    scores = result["prompts"][0]["scores"]
    assert len(scores) == 5 and scores == sorted(scores)
    assert result["keep"] == 2 and result["samples_per_prompt"] == 5
    with pytest.raises(ValueError, match="rerank scorer"):
        t2i.rerank_images(samples, "unused", {"scorer": "nope"}, out)
    with pytest.raises(ValueError, match="unknown rerank option"):
        t2i.rerank_images(samples, "unused", {"kep": 2}, out)


def test_pick_summary_random_is_the_expectation():
    per_sample = [[0.0, 1.0, 0.5, 0.5], [1.0, 1.0, 0.0, 0.0]]
    kept = [[1, 2], [0, 1]]
    out = t2i.pick_summary(per_sample, kept, {"real": [1.0, 0.5]}, scale=100)
    assert out["random"] == pytest.approx(50.0)
    assert out["top1"] == pytest.approx(100.0)
    assert out["topk"] == pytest.approx((75 + 100) / 2)
    assert out["best_of_n"] == pytest.approx(100.0)
    assert out["real"] == pytest.approx(75.0)
    assert out["gain_top1"] == pytest.approx(50.0)
    assert out["gain_top1_se"] == pytest.approx(0.0)


def test_score_images_with_a_stand_in_clip_and_judge(tmp_path, monkeypatch):
    monkeypatch.setitem(t2i.SCORERS, "clip", brightness_scorer)
    monkeypatch.setattr(t2i, "clip_scorer", brightness_scorer)
    samples = write_samples(tmp_path / "samples.parquet")
    rerank = tmp_path / "rerank.json"
    t2i.rerank_images(samples, "clipdir", {"keep": 2}, rerank)
    real = torch.ones(3, 3, 8, 8)
    monkeypatch.setattr(t2i, "real_images", lambda *_a: real)

    import vlcore.models.judge as judge_module

    monkeypatch.setattr(judge_module, "load_judge", lambda *_a, **_k: "judge")
    monkeypatch.setattr(judge_module, "scene_truth", lambda _s, ids: [[{"id": i}] for i in ids])
    # the judge likes bright images: accuracy = brightness
    monkeypatch.setattr(
        judge_module, "judge_scores", lambda _j, images, scenes: images.mean(dim=(1, 2, 3))
    )
    out, grid = tmp_path / "t2i.json", tmp_path / "grid.png"
    result = t2i.score_images(
        samples, rerank, "shards", "test", "clipdir", None, "judgedir", {"seed": 0}, {"keep": 2},
        out, grid,
    )  # fmt: skip
    acc = result["attribute_accuracy"]
    assert acc["random"] == pytest.approx(50.0, abs=0.5)
    assert acc["real"] == pytest.approx(100.0)
    # prompts 0 and 2 rerank the brightest first, prompt 1 the darkest
    assert acc["top1"] == pytest.approx(200 / 3, abs=0.5)
    assert result["clip_score"]["top1"] > result["clip_score"]["random"]
    assert result["prompts"] == 3 and result["samples_per_prompt"] == 5
    assert json.loads(out.read_text())["keep"] == 2
    image = Image.open(grid)
    assert image.width > 5 * 16 and image.height > 3 * 16
    # without a judge (non-synthetic data) there is no attribute accuracy
    result = t2i.score_images(
        samples,
        rerank,
        "shards",
        "test",
        "clipdir",
        None,
        None,
        None,
        {"grid_prompts": 0},
        out,
        grid,
    )
    assert result["attribute_accuracy"] is None
