"""On a CUDA GPU: every trainer's real entry point trains there under bf16 autocast, saves fp32
weights that reload on the CPU, and decodes as the CPU does. Skipped without a GPU (marker
``gpu``; run with ``pytest -m gpu``).

What the CPU suite cannot see: the device choice, autocast, moving batches and models, the
GPU branch of the feature cache, ``torch.compile`` with CUDA kernels, and the samplers'
per-row generators on the GPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.clip_fixtures import make_shards, make_tokenizer
from tests.test_captioner import GENERATE, TINY_CLIP_PREFIX, TINY_VIT_GPT2
from tests.test_runtime import linear_model, mse, regression_batches
from vlcore.data.stream import ShardStream
from vlcore.io import read_json
from vlcore.models.clip import build_clip, encode_images, encode_texts, load_clip, save_clip
from vlcore.train.loop import TrainConfig, fit
from vlcore.train.runtime import setup_runtime

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

LOOP = {"warmup_steps": 1, "val_every": 0, "val_batches": 1, "ckpt_every": 0, "log_every": 1,
        "device": "cuda", "seed": 0}  # fmt: skip
TINY_CAPTIONER = {"vit_gpt2": TINY_VIT_GPT2, "clip_prefix": TINY_CLIP_PREFIX}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gpu")
    shards = make_shards(root, 60, split={"val": 0.15, "test": 0.25})
    tokenizer = make_tokenizer(shards, root / "tokenizer")
    torch.manual_seed(0)
    save_clip(build_clip("tiny", tokenizer_dir=tokenizer), root / "clip")
    return {"root": root, "shards": shards, "tokenizer": tokenizer, "clip": root / "clip"}


def finite_fp32_weights(path: Path) -> dict[str, torch.Tensor]:
    """The saved weights: on the CPU, fp32 (bf16 is only the autocast compute type), finite."""
    weights = load_file(path)
    for name, value in weights.items():
        if value.is_floating_point():
            assert value.dtype == torch.float32, name
            assert torch.isfinite(value).all(), name
    return weights


def test_runtime_picks_the_gpu_and_bf16():
    runtime = setup_runtime()
    assert runtime.device.type == "cuda" and runtime.precision == "bf16"
    with runtime.autocast():
        product = torch.ones(4, 4, device=runtime.device) @ torch.ones(4, 4, device=runtime.device)
    assert product.dtype == torch.bfloat16


def test_the_loop_learns_on_the_gpu_and_records_the_device(tmp_path):
    config = TrainConfig(**{**LOOP, "max_steps": 60, "lr": 5e-2})
    history = fit(linear_model(), mse, regression_batches, None, config, tmp_path)
    losses = [loss for _, loss, _ in history["train"]]
    assert losses[-1] < 0.2 * losses[0]
    finite_fp32_weights(tmp_path / "model.safetensors")
    assert read_json(tmp_path / "train_config.json")["train"]["device"] == "cuda"


def test_compiled_training_on_the_gpu_matches_eager(tmp_path):
    """CUDA kernels from inductor train the same weights as eager (fp32, so the comparison is
    about compiling, not bf16 rounding)."""
    config = {**LOOP, "max_steps": 8, "lr": 1e-2, "precision": "fp32"}
    fit(linear_model(), mse, regression_batches, None, TrainConfig(**config), tmp_path / "a")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = TrainConfig(**config, compile=True)
    fit(linear_model(), mse, regression_batches, None, compiled, tmp_path / "b")
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1


def test_train_clip_on_the_gpu_and_its_embeddings_agree_with_the_cpu(data, tmp_path):
    from vlcore.pipeline.clip import score_retrieval, train_clip

    settings = {**LOOP, "model": "tiny", "batch_size": 8, "max_steps": 6}
    history = train_clip(data["shards"], data["tokenizer"], settings, tmp_path / "clip")
    assert all(math.isfinite(loss) for _, loss, _ in history["train"])
    finite_fp32_weights(tmp_path / "clip" / "model.safetensors")

    rows = list(ShardStream(data["shards"], "test"))
    texts = [caption for row in rows for caption in row["captions"]]
    images = [_to_pil(row["image"]) for row in rows]
    clip = load_clip(tmp_path / "clip")
    on_cpu = (encode_images(clip, images), encode_texts(clip, texts))
    clip.model.cuda()
    on_gpu = (encode_images(clip, images), encode_texts(clip, texts))  # bf16 autocast there
    for cpu, gpu in zip(on_cpu, on_gpu, strict=True):
        assert gpu.device.type == "cpu" and gpu.dtype == torch.float32
        cosine = (cpu * gpu).sum(dim=-1)
        assert cosine.min() > 0.99, cosine.min()

    scores = score_retrieval(data["shards"], tmp_path / "clip", "test", tmp_path / "retrieval.json")
    assert 0 <= scores["image_to_text"]["R@10"] <= 100


def _to_pil(image: torch.Tensor):
    from torchvision.transforms.functional import to_pil_image

    return to_pil_image(image)


@pytest.mark.parametrize("name", ["vit_gpt2", "clip_prefix"])
def test_captioner_trains_on_the_gpu_and_decodes_as_the_cpu_does(data, tmp_path, name):
    """Beam search runs in fp32 on both devices: the same weights give the same captions,
    bar a rare near-tie."""
    from vlcore.pipeline.captioner import answer_questions, generate_captions, train_captioner

    settings = {**LOOP, "model": TINY_CAPTIONER[name], "batch_size": 8, "max_length": 24,
                "max_steps": 6, "lr": 3e-3, "generate": GENERATE}  # fmt: skip
    clip = data["clip"] if name == "clip_prefix" else None
    history = train_captioner(name, data["shards"], data["tokenizer"], clip, settings, tmp_path)
    assert all(math.isfinite(loss) for _, loss, _ in history["train"])
    finite_fp32_weights(tmp_path / "model.safetensors")

    captions = {}
    for device in ("cuda", "cpu"):
        out = tmp_path / device
        captions[device] = generate_captions(name, tmp_path, data["shards"], "test",
                                             {**settings, "device": device},
                                             out.with_suffix(".json"), out.with_suffix(".tsv"))  # fmt: skip
    test_rows = list(ShardStream(data["shards"], "test"))
    n_test = len(test_rows)
    assert len(captions["cuda"]) == n_test
    same = sum(a == b for a, b in zip(captions["cuda"], captions["cpu"], strict=True))
    assert same >= 0.9 * n_test, (same, n_test)
    if name == "clip_prefix":
        answers = answer_questions(
            tmp_path, data["shards"], "test", settings, tmp_path / "vqa.json"
        )
        n_questions = sum(len(row["questions"] or ()) for row in test_rows)
        assert len(answers) == n_questions > 0


def test_text_to_image_chain_on_the_gpu(data, tmp_path):
    """VQ-VAE -> codes -> DALL-E -> sampled images, every stage on the GPU."""
    from vlcore.pipeline.dalle import train_dalle
    from vlcore.pipeline.dalle_generate import generate_images, read_samples
    from vlcore.pipeline.vqvae import encode_images as encode_codes
    from vlcore.pipeline.vqvae import train_vqvae

    vq_model = {"image_size": 64, "channels": [8, 16, 16], "embed_dim": 16, "codebook_size": 32,
                "codebook_dim": 8}  # fmt: skip
    vq = {**LOOP, "model": vq_model, "batch_size": 16, "max_steps": 10, "lr": 5e-3}
    train_vqvae(data["shards"], vq, tmp_path / "vqvae", tmp_path / "vqvae_scores.json")
    finite_fp32_weights(tmp_path / "vqvae" / "model.safetensors")
    manifest = encode_codes(data["shards"], tmp_path / "vqvae", tmp_path / "codes", device="cuda")
    assert sum(split["rows"] for split in manifest["splits"].values()) == 60

    transformer = {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_inner": 64}
    dalle = {**LOOP, "model": {"text_length": 16, "transformer": transformer}, "batch_size": 8,
             "max_steps": 6, "lr": 3e-3, "generate": {"samples": 2, "batch_size": 8}}  # fmt: skip
    history = train_dalle(tmp_path / "codes", data["tokenizer"], dalle, tmp_path / "dalle")
    assert all(math.isfinite(loss) for _, loss, _ in history["train"])
    out = tmp_path / "samples.parquet"
    summary = generate_images(tmp_path / "dalle", tmp_path / "vqvae", data["shards"], "test",
                              dalle, out)  # fmt: skip
    rows = read_samples(out).to_pylist()
    assert len(rows) == summary["samples"] == 2 * summary["prompts"] > 0
    assert all(row["image"][:4] == b"\x89PNG" for row in rows)
    # the same seeds draw the same codes again on the GPU
    again = tmp_path / "again.parquet"
    generate_images(tmp_path / "dalle", tmp_path / "vqvae", data["shards"], "test", dalle, again)
    assert [r["codes"] for r in read_samples(again).to_pylist()] == [r["codes"] for r in rows]
