"""VQ-VAE: the codes invariant, save/load, the real train_vqvae and encode_images entry points."""

from __future__ import annotations

import json

import pytest
import torch

from tests.clip_fixtures import make_shards
from vlcore.data.codes import load_codes_manifest, read_codes
from vlcore.data.shard import load_manifest
from vlcore.data.stream import ShardStream
from vlcore.models.vqvae import (
    VQVAE,
    VQVAEConfig,
    list_presets,
    load_preset,
    load_vqvae,
    reconstruction_loss,
    save_vqvae,
)
from vlcore.pipeline.vqvae import code_statistics, encode_images, parse_settings, train_vqvae

# A model small enough for a few CPU steps in a test: 32 px -> 4x4 codes of 32.
SMALL = {"image_size": 32, "channels": [8, 16, 16], "embed_dim": 16, "codebook_size": 32,
         "codebook_dim": 8}  # fmt: skip
TRAIN = {"max_steps": 30, "warmup_steps": 2, "lr": 0.005, "val_every": 0, "ckpt_every": 0,
         "log_every": 1, "seed": 0}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only adds overhead
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("vq"), 60, image_size=32,
                       split={"val": 0.15, "test": 0.25})  # fmt: skip


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("vqvae")
    settings = {"model": SMALL, "batch_size": 16, **TRAIN}
    result = train_vqvae(shards, settings, out / "vqvae", out / "scores.json")
    return out, result


def _images(shards, split="test"):
    return torch.stack([row["image"] for row in ShardStream(shards, split)])


def test_presets_build_the_advertised_grid():
    assert "tiny" in list_presets()
    config = load_preset("tiny")
    model = VQVAE(config)
    assert model.grid == (8, 8) and model.image_size == 64 and model.codebook_size == 512


def test_decoding_the_codes_equals_the_quantized_reconstruction():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**SMALL))
    x = torch.rand(6, 3, 32, 32)
    model.train()
    model(x)  # k-means initialisation of the codebook
    model.eval()
    with torch.no_grad():
        out = model(x)
    codes = model.encode(x)
    assert codes.shape == (6, 4, 4) and codes.dtype == torch.long
    assert torch.equal(codes, out.codes)
    assert torch.equal(model.decode_codes(codes), out.reconstruction.clamp(0, 1))


def test_encode_never_moves_the_codebook():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**SMALL)).train()
    x = torch.rand(4, 3, 32, 32)
    model(x)
    before = model.quantizer.codebook.clone()
    model.encode(torch.rand(4, 3, 32, 32))
    assert torch.equal(before, model.quantizer.codebook) and model.quantizer.training


def test_bad_inputs_are_clear_errors():
    model = VQVAE(VQVAEConfig(**SMALL))
    with pytest.raises(ValueError, match="B 3 32 32"):
        model.encode(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        model.decode_codes(torch.full((1, 4, 4), 32))
    with pytest.raises(ValueError, match="divisible"):
        VQVAEConfig(image_size=36, channels=[8, 8, 8])
    with pytest.raises(ValueError, match="unknown vqvae model option"):
        load_preset("tiny", {"codebook": 5})
    with pytest.raises(ValueError, match="unknown vqvae setting"):
        parse_settings({"batchsize": 3})


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**SMALL)).train()
    x = torch.rand(4, 3, 32, 32)
    model(x)
    model.eval()
    save_vqvae(model, tmp_path / "m")
    again = load_vqvae(tmp_path / "m")
    assert torch.equal(again.encode(x), model.encode(x))
    codes = model.encode(x)
    assert torch.equal(again.decode_codes(codes), model.decode_codes(codes))
    with pytest.raises(FileNotFoundError, match="vqvae.json"):
        load_vqvae(tmp_path)


def test_a_few_steps_fit_a_fixed_batch(shards):
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**SMALL))
    images = _images(shards, "train")[:8]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = reconstruction_loss(model(images), images, chroma_weight=4.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_train_vqvae_writes_its_files(trained):
    out, result = trained
    assert len(result["train"]) == TRAIN["max_steps"]
    for name in ("model.safetensors", "vqvae.json", "history.json", "loss_curve.png",
                 "reconstructions.png"):  # fmt: skip
        assert (out / "vqvae" / name).is_file(), name
    record = json.loads((out / "vqvae" / "vqvae.json").read_text())
    assert record["config"]["codebook_size"] == 32 and record["train"]["name"] == "train_vqvae"


def test_scores_report_reconstruction_and_usage(trained, shards):
    out, _ = trained
    scores = json.loads((out / "scores.json").read_text())
    assert scores["n_images"] == load_manifest(shards)["splits"]["test"]["rows"]
    assert 0 < scores["mse"] < 0.2 and scores["psnr"] > 7
    assert 0 < scores["usage"] <= 1 and 1 <= scores["perplexity"] <= 32
    assert scores["grid"] == [4, 4] and scores["codebook_size"] == 32


def test_code_statistics():
    stats = code_statistics(torch.tensor([5, 5, 0, 0]))
    assert stats["usage"] == 0.5 and stats["used_codes"] == 2
    assert stats["perplexity"] == pytest.approx(2.0)


def test_encode_images_writes_every_split_once(trained, shards, tmp_path):
    out, _ = trained
    manifest = encode_images(shards, out / "vqvae", tmp_path / "codes", device="cpu")
    shard_manifest = load_manifest(shards)
    assert load_codes_manifest(tmp_path / "codes")["grid"] == [4, 4]
    assert manifest["codebook_size"] == 32
    model = load_vqvae(out / "vqvae")
    for split, info in shard_manifest["splits"].items():
        entry = manifest["splits"][split]
        assert entry["rows"] == info["rows"]
        assert [f["source_sha256"] for f in entry["files"]] == [s["sha256"] for s in info["shards"]]
        codes = read_codes(tmp_path / "codes", split)
        rows = list(ShardStream(shards, split))
        assert codes.keys == [r["key"] for r in rows]
        assert codes.captions == [r["captions"] for r in rows]
        assert codes.codes.shape == (info["rows"], 16) and codes.codes.dtype == torch.long
        if rows:
            images = torch.stack([r["image"] for r in rows])
            assert torch.equal(codes.codes, model.encode(images).flatten(1))


def test_vqvae_loss_is_finite_under_autocast_settings():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(**SMALL))
    x = torch.rand(2, 3, 32, 32)
    loss = reconstruction_loss(model(x), x, chroma_weight=4.0)
    loss.backward()
    assert torch.isfinite(loss)
