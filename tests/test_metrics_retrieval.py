"""Retrieval R@K with several captions per image: constructed embeddings, ties, chance level."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vlcore.metrics import chance_recall, retrieval_recall


def _setup(n_images: int = 30, per_image: int = 5, dim: int = 32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n_images, dim, generator=gen)
    text_to_image = [i for i in range(n_images) for _ in range(per_image)]
    return images, text_to_image, gen


def _naive(images: np.ndarray, texts: np.ndarray, t2i: list[int], ks) -> dict:
    """Reference implementation: full similarity matrix, loops, ties counted against the query."""
    sims = images @ texts.T
    t2i = np.asarray(t2i)
    i2t_ranks = []
    for i in range(len(images)):
        best = sims[i, t2i == i].max()
        i2t_ranks.append(1 + int(((sims[i] >= best) & (t2i != i)).sum()))
    t2i_ranks = []
    for t in range(len(texts)):
        own = sims[t2i[t], t]
        t2i_ranks.append(1 + int((np.delete(sims[:, t], t2i[t]) >= own).sum()))
    out = {}
    for name, ranks in (("image_to_text", i2t_ranks), ("text_to_image", t2i_ranks)):
        ranks = np.asarray(ranks)
        out[name] = {f"R@{k}": 100.0 * float((ranks <= k).mean()) for k in ks}
        out[name] |= {"mean_rank": float(ranks.mean()), "median_rank": float(np.median(ranks))}
    return out


def test_perfect_embeddings_give_100():
    images, t2i, gen = _setup()
    texts = images[t2i] + 0.01 * torch.randn(len(t2i), images.shape[1], generator=gen)
    result = retrieval_recall(images, texts, t2i)
    for direction in ("image_to_text", "text_to_image"):
        assert result[direction] == {
            "R@1": 100.0,
            "R@5": 100.0,
            "R@10": 100.0,
            "mean_rank": 1.0,
            "median_rank": 1.0,
        }
    assert result["rsum"] == 600.0
    assert (result["n_images"], result["n_texts"], result["ks"]) == (30, 150, [1, 5, 10])


def test_reversed_embeddings_rank_last():
    images, t2i, _ = _setup()
    result = retrieval_recall(images, -images[t2i], t2i)
    assert result["text_to_image"]["R@10"] == 0.0
    assert result["text_to_image"]["mean_rank"] == 30.0  # its own image is the least similar
    assert result["image_to_text"]["R@10"] == 0.0
    assert result["image_to_text"]["mean_rank"] == 150 - 5 + 1


def test_degenerate_embeddings_cannot_score():
    images = torch.ones(10, 4)
    result = retrieval_recall(images, torch.ones(20, 4), [i // 2 for i in range(20)], ks=(1, 5))
    assert result["text_to_image"]["R@5"] == 0.0 and result["image_to_text"]["R@5"] == 0.0
    assert result["text_to_image"]["mean_rank"] == 10.0


@pytest.mark.parametrize("chunk_size", [1, 3, 7, None])
def test_chunked_matches_naive_with_ties(chunk_size):
    rng = np.random.default_rng(1)
    # small integer embeddings, unnormalised: many exact ties between candidates
    images = rng.integers(-2, 3, size=(13, 3)).astype(np.float64)
    texts = rng.integers(-2, 3, size=(40, 3)).astype(np.float64)
    t2i = [*range(13), *rng.integers(0, 13, size=27).tolist()]
    result = retrieval_recall(
        images, texts, t2i, ks=(1, 2, 5), chunk_size=chunk_size, normalize=False
    )
    expected = _naive(images, texts, t2i, (1, 2, 5))
    for direction in ("image_to_text", "text_to_image"):
        assert result[direction] == pytest.approx(expected[direction])


def test_random_embeddings_match_chance():
    n_images, dim, trials = 20, 16, 400
    gen = torch.Generator().manual_seed(2)
    per_image = [1 + i % 5 for i in range(n_images)]  # 1..5 captions: uneven on purpose
    t2i = [i for i, n in enumerate(per_image) for _ in range(n)]
    totals = {"image_to_text": np.zeros(4), "text_to_image": np.zeros(4)}
    for _ in range(trials):
        images = torch.randn(n_images, dim, generator=gen)
        texts = torch.randn(len(t2i), dim, generator=gen)
        result = retrieval_recall(images, texts, t2i)
        for direction in totals:
            r = result[direction]
            totals[direction] += [r["R@1"], r["R@5"], r["R@10"], r["mean_rank"]]
    chance = chance_recall(n_images, per_image)
    assert chance == result["chance"]
    for direction, total in totals.items():
        mean = total / trials
        c = chance[direction]
        # standard errors over 400 trials are <= 0.51 points (R@K) and 0.14 (mean rank)
        assert mean[:3] == pytest.approx([c["R@1"], c["R@5"], c["R@10"]], abs=2.0), direction
        assert mean[3] == pytest.approx(c["mean_rank"], abs=0.5), direction


def test_chance_formula():
    chance = chance_recall(4, [1, 2, 3, 6], ks=(1, 3, 20))
    n_texts = 12
    for k in (1, 3):
        expected = np.mean(
            [1 - math.comb(n_texts - n, k) / math.comb(n_texts, k) for n in (1, 2, 3, 6)]
        )
        assert chance["image_to_text"][f"R@{k}"] == pytest.approx(100 * expected)
    assert chance["image_to_text"]["R@20"] == 100.0
    assert chance["text_to_image"] == {"R@1": 25.0, "R@3": 75.0, "R@20": 100.0, "mean_rank": 2.5}
    assert chance["image_to_text"]["mean_rank"] == pytest.approx(
        np.mean([13 / 2, 13 / 3, 13 / 4, 13 / 7])
    )


@pytest.mark.parametrize(
    ("images", "texts", "t2i", "kwargs", "match"),
    [
        (torch.randn(3, 4), torch.randn(3, 5), [0, 1, 2], {}, "dims differ"),
        (torch.randn(3, 4), torch.randn(2, 4), [0, 1], {}, "no text"),
        (torch.randn(3, 4), torch.randn(3, 4), [0, 1, 3], {}, r"\[0, 3\)"),
        (torch.randn(3, 4), torch.randn(3, 4), [0, 1], {}, "one image index per text"),
        (torch.randn(3, 4), torch.randn(3, 4), [0.0, 1.0, 2.0], {}, "integer"),
        (torch.full((3, 4), float("nan")), torch.randn(3, 4), [0, 1, 2], {}, "NaN"),
        (torch.randn(4), torch.randn(3, 4), [0, 1, 2], {}, "2-D"),
        (torch.randn(3, 4), torch.randn(3, 4), [0, 1, 2], {"ks": (0, 1)}, "positive"),
        (torch.randn(3, 4), torch.randn(3, 4), [0, 1, 2], {"ks": (1, 1)}, "repeat"),
        (torch.randn(3, 4), torch.randn(3, 4), [0, 1, 2], {"chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_input_raises(images, texts, t2i, kwargs, match):
    with pytest.raises(ValueError, match=match):
        retrieval_recall(images, texts, t2i, **kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu():
    images, t2i, gen = _setup(n_images=200, dim=64)
    texts = images[t2i] + torch.randn(len(t2i), 64, generator=gen)
    cpu = retrieval_recall(images, texts, t2i, chunk_size=64)
    gpu = retrieval_recall(images.cuda(), texts.cuda(), torch.tensor(t2i).cuda(), chunk_size=64)
    for direction in ("image_to_text", "text_to_image"):
        assert gpu[direction] == pytest.approx(cpu[direction])
