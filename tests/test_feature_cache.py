"""The frozen-tower feature cache: the encoder runs once per distinct image, the features
are the ones it computes, the size limit holds, and clip_prefix uses it only when frozen."""

from __future__ import annotations

import logging

import pytest
import torch

from tests.test_captioner import N_IMAGES, TINY_CLIP_PREFIX, data, settings  # noqa: F401
from vlcore.data.stream import ShardStream
from vlcore.models.feature_cache import FeatureCache
from vlcore.pipeline.captioner import build_captioner, load_preset, train_captioner
from vlcore.text import load_tokenizer


class Counting:
    """A stand-in encoder that records which images it was asked to encode."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(images))
        return images.mean(dim=(2, 3)) * 2 + 1


def test_encoder_runs_once_per_distinct_image_and_gives_its_features():
    images = torch.rand(6, 3, 8, 8)
    encoder = Counting()
    cache = FeatureCache(max_bytes=2**20)
    first = cache(images[:4], encoder)
    second = cache(images[[3, 5, 1, 5]], encoder)  # two cached, image 5 twice
    assert encoder.calls == [4, 2]
    assert torch.allclose(first, encoder(images[:4]))
    assert torch.allclose(second, encoder(images[[3, 5, 1, 5]]))
    assert len(cache) == 5
    assert (cache.hits, cache.misses) == (2, 6)
    calls = len(encoder.calls)
    again = cache(images[[5, 0]], encoder)
    assert len(encoder.calls) == calls  # both cached
    assert torch.allclose(again, encoder(images[[5, 0]]))


def test_one_changed_pixel_is_another_image():
    images = torch.rand(2, 3, 8, 8)
    changed = images.clone()
    changed[1, 0, 0, 0] += 1e-6
    assert FeatureCache.digest(images[1]) != FeatureCache.digest(changed[1])
    assert FeatureCache.digest(images[1]) == FeatureCache.digest(images[1].clone())


def test_cache_keeps_no_more_than_its_size():
    images = torch.rand(5, 3, 8, 8)
    encoder = Counting()
    per_image = 3 * 4  # three float32 features
    cache = FeatureCache(max_bytes=2 * per_image)
    cache(images[:3], encoder)
    assert len(cache) == 2 and cache.used_bytes == 2 * per_image
    out = cache(images[:3], encoder)
    assert encoder.calls == [3, 1]  # the image that did not fit is computed again
    assert torch.allclose(out, encoder(images[:3]))
    with pytest.raises(ValueError, match=">= 0"):
        FeatureCache(-1)


def _captioner(data, **model):  # noqa: F811 (data is the fixture's value)
    tokenizer = load_tokenizer(data["tokenizer"])
    torch.manual_seed(0)
    config = load_preset("clip_prefix", None, {**TINY_CLIP_PREFIX, **model})
    return build_captioner("clip_prefix", config, tokenizer, image_size=64, clip_dir=data["clip"])


def test_clip_prefix_caches_a_frozen_tower_only(data):  # noqa: F811
    images = torch.rand(4, 3, 64, 64)
    frozen = _captioner(data, train_clip=False)
    plain = frozen.image_features(images)
    assert frozen.cache_image_features(2**20)
    runs = []
    frozen.visual.register_forward_hook(lambda module, args, out: runs.append(len(args[0])))
    cached = [frozen.image_features(images), frozen.image_features(images[[2, 0]])]
    assert runs == [4]
    assert torch.allclose(cached[0], plain, atol=1e-6)
    assert torch.allclose(cached[1], plain[[2, 0]], atol=1e-6)
    assert not frozen.cache_image_features(0) and frozen.feature_cache is None
    tuned = _captioner(data, train_clip=True)
    assert not tuned.cache_image_features(2**20) and tuned.feature_cache is None


def test_training_on_a_frozen_tower_reuses_features(data, tmp_path, caplog):  # noqa: F811
    n_train = len(ShardStream(data["shards"], "train"))
    steps = 2 * (n_train // 8)  # batches of 8: two epochs
    run = settings("clip_prefix", model={**TINY_CLIP_PREFIX, "train_clip": False},
                   max_steps=steps)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="vlcore.pipeline.captioner"):
        train_captioner("clip_prefix", data["shards"], data["tokenizer"], data["clip"], run,
                        tmp_path / "cached")  # fmt: skip
    line = next(r.getMessage() for r in caplog.records if "feature cache" in r.getMessage())
    hits, misses = (int(line.split(f" {word}")[0].split()[-1]) for word in ("hits", "misses"))
    # each training image is encoded once (the validation images are looked up too)
    assert misses <= N_IMAGES
    assert hits >= steps * 8 - n_train > 0
