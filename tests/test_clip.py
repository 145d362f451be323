"""CLIP: the real ``train_clip`` / ``score_retrieval`` entry points on a few shapes-world samples.

Invariants: a saved model reloads to identical embeddings (by folder, by preset + weights);
the same seed gives identical weights; padding after ``<eos>`` never changes a caption's
embedding; pretrained open_clip weights load from a local folder or file (never a hub); two
gloo processes train one model.
"""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import open_clip
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from tests.clip_fixtures import make_shards, make_tokenizer
from vlcore.data.stream import ShardStream
from vlcore.metrics.retrieval import retrieval_recall
from vlcore.models.clip import (
    build_clip,
    encode_images,
    encode_texts,
    list_presets,
    load_clip,
    load_preset,
)
from vlcore.pipeline.clip import (
    embed_split,
    parse_settings,
    pick_caption,
    score_retrieval,
    train_clip,
)
from vlcore.train.checkpoint import load_weights

FAST = {
    "model": "tiny",
    "batch_size": 8,
    "max_steps": 3,
    "warmup_steps": 1,
    "val_every": 0,
    "ckpt_every": 0,
    "log_every": 1,
    "device": "cpu",
    "seed": 0,
}
SPLIT = {"val": 0.15, "test": 0.15}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and OpenMP threads waiting on a busy
    (shared) core can make a step 20 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clip_en")
    shards = make_shards(root, 40, split=SPLIT)
    return {"shards": shards, "tokenizer": make_tokenizer(shards, root / "tokenizer")}


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("clip_run") / "clip"
    history = train_clip(data["shards"], data["tokenizer"], FAST, out)
    return out, history


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def _siglip_preset(folder: Path) -> dict:
    """Settings for the tiny preset with SigLIP's logit bias and scale (open_clip's configs)."""
    preset = {**load_preset("tiny"), "init_logit_bias": -10.0, "init_logit_scale": math.log(10)}
    (folder / "tiny_siglip.json").write_text(json.dumps(preset))
    return {"model": str(folder / "tiny_siglip.json"), "loss": "siglip"}


def test_train_clip_writes_a_model_that_reloads_identically(data, trained):
    out, history = trained
    for name in ("model.safetensors", "open_clip_config.json", "vlcore_clip.json",
                 "history.json", "train_config.json", "loss_curve.png", "tokenizer/tokenizer.json"):  # fmt: skip
        assert (out / name).is_file(), name
    assert not (out / "checkpoint").exists()
    losses = [loss for _, loss, _ in history["train"]]
    assert len(losses) == FAST["max_steps"] and all(math.isfinite(v) for v in losses)
    assert history["summary"]["steps"] == FAST["max_steps"]

    images = torch.stack([row["image"] for row in ShardStream(data["shards"], "test")])
    texts = [c for row in ShardStream(data["shards"], "test") for c in row["captions"]]
    clip = load_clip(out)
    assert clip.tokenizer.vocab_size == clip.model_cfg["text_cfg"]["vocab_size"]
    img_a = encode_images(clip, [_to_pil(i) for i in images])
    txt_a = encode_texts(clip, texts)
    assert txt_a.shape == (len(texts), clip.embed_dim)
    torch.testing.assert_close(txt_a.norm(dim=-1), torch.ones(len(texts)))
    # batching changes nothing but float summation order
    torch.testing.assert_close(encode_texts(clip, texts, batch_size=3), txt_a)

    # the same weights through the preset + the experiment's tokenizer, and the folder as a model
    rebuilt = build_clip("tiny", tokenizer_dir=data["tokenizer"])
    load_weights(rebuilt.model, out / "model.safetensors")
    for other in (rebuilt, build_clip(str(out))):
        assert torch.equal(encode_texts(other, texts), txt_a)
        assert torch.equal(encode_images(other, [_to_pil(i) for i in images]), img_a)
    logit_scale = weights(out)["logit_scale"]
    assert 0 <= float(logit_scale) <= math.log(100)


def _to_pil(image: torch.Tensor):
    from torchvision.transforms.functional import to_pil_image

    return to_pil_image(image)


def test_same_seed_same_weights_other_seed_other_weights(data, trained, tmp_path):
    first, _ = trained
    train_clip(data["shards"], data["tokenizer"], FAST, tmp_path / "again")
    train_clip(data["shards"], data["tokenizer"], {**FAST, "seed": 1}, tmp_path / "seed1")
    a, b, c = weights(first), weights(tmp_path / "again"), weights(tmp_path / "seed1")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_score_retrieval_reports_recall_with_chance(data, trained, tmp_path):
    out, _ = trained
    result = score_retrieval(data["shards"], out, "test", tmp_path / "scores" / "retrieval.json")
    assert json.loads((tmp_path / "scores" / "retrieval.json").read_text()) == json.loads(
        json.dumps(result)
    )
    n_images = len(ShardStream(data["shards"], "test"))
    assert result["n_images"] == n_images and result["n_texts"] == 5 * n_images
    for direction in ("image_to_text", "text_to_image"):
        for k in (1, 5, 10):
            assert 0 <= result[direction][f"R@{k}"] <= 100
            assert 0 < result["chance"][direction][f"R@{k}"] <= 100
    assert result["split"] == "test" and result["model"]["name"] == "tiny"


def test_embed_split_pairs_each_caption_with_its_image(data, trained):
    clip = load_clip(trained[0])
    got = embed_split(clip, data["shards"], "test", batch_size=4)
    rows = list(ShardStream(data["shards"], "test"))
    assert got["keys"] == [r["key"] for r in rows]
    owners = [got["keys"][i] for i in got["text_to_image"]]
    assert owners == [r["key"] for r in rows for _ in r["captions"]]
    # perfectly aligned embeddings through that mapping retrieve perfectly
    n = len(rows)
    eye = torch.eye(n)
    perfect = retrieval_recall(eye, eye[torch.tensor(got["text_to_image"])], got["text_to_image"])
    assert perfect["image_to_text"]["R@1"] == perfect["text_to_image"]["R@1"] == 100.0


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_padding_after_eos_never_changes_a_caption_embedding(lang, data, tmp_path):
    if lang == "zh":
        shards = make_shards(tmp_path, 12, lang="zh", split={"val": 0.0, "test": 0.0})
        tokenizer_dir = make_tokenizer(shards, tmp_path / "tok", lang="zh")
    else:
        shards, tokenizer_dir = data["shards"], data["tokenizer"]
    torch.manual_seed(0)
    clip = build_clip("tiny", tokenizer_dir=tokenizer_dir).model.eval()
    tokenize = build_clip("tiny", tokenizer_dir=tokenizer_dir).tokenizer
    texts = next(iter(ShardStream(shards, "train")))["captions"]
    ids = tokenize(texts)
    assert ids.shape == (len(texts), tokenize.context_length)
    assert (ids == tokenize.eos_id).any(dim=1).all()  # every caption keeps its <eos>
    noisy = ids.clone()
    after_eos = torch.cumsum(ids == tokenize.eos_id, dim=1) > 0
    after_eos &= ids != tokenize.eos_id
    noisy[after_eos] = torch.randint(4, tokenize.vocab_size, (int(after_eos.sum()),))
    with torch.no_grad():
        torch.testing.assert_close(clip.encode_text(noisy), clip.encode_text(ids))


def tiny_open_clip_folder(folder: Path, name: str = "vlcore-test-tiny") -> Path:
    """A tiny open_clip model (its own 49408-row BPE, 32 px) saved as open_clip saves one."""
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": 32,
            "patch_size": 8,
            "width": 32,
            "layers": 1,
            "head_width": 16,
        },
        "text_cfg": {"context_length": 16, "width": 32, "heads": 2, "layers": 1},
    }
    folder.mkdir(parents=True)
    (folder / f"{name}.json").write_text(json.dumps(cfg))
    torch.manual_seed(123)
    model = open_clip.CLIP(**cfg)
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.25] * 3}})
    )
    save_file(model.state_dict(), folder / "open_clip_model.safetensors")
    return folder


def test_pretrained_weights_from_a_local_folder_or_file(data, tmp_path):
    folder = tiny_open_clip_folder(tmp_path / "pretrained")
    saved = load_file(folder / "open_clip_model.safetensors")

    from_folder = build_clip(str(folder))
    open_clip.add_model_config(folder / "vlcore-test-tiny.json")
    from_file = build_clip(
        "vlcore-test-tiny", pretrained=str(folder / "open_clip_model.safetensors")
    )
    for clip in (from_folder, from_file):
        assert clip.tokenizer.kind == "open_clip" and clip.tokenizer.context_length == 16
        state = clip.model.state_dict()
        assert all(torch.equal(state[k], saved[k]) for k in saved)
    assert from_folder.preprocess_cfg["mean"] == [0.5, 0.5, 0.5]
    assert from_folder.preprocess(_to_pil(torch.rand(3, 64, 64))).shape == (3, 32, 32)

    # fine-tune it: no experiment tokenizer needed; the result reloads by path alone
    out = tmp_path / "finetuned"
    history = train_clip(data["shards"], None, {**FAST, "model": str(folder)}, out)
    assert all(math.isfinite(v) for _, v, _ in history["train"])
    clip = load_clip(out)
    assert clip.source["kind"] == "open_clip" and clip.tokenizer.kind == "open_clip"
    texts = ["a red circle", "a blue square at the top"]
    rebuilt = build_clip(str(folder))
    load_weights(rebuilt.model, out / "model.safetensors")
    assert torch.equal(encode_texts(clip, texts), encode_texts(rebuilt, texts))


def test_presets_are_valid(data):
    assert {"tiny", "small", "vit-b-32-laion2b"} <= set(list_presets())
    for name in list_presets():
        preset = load_preset(name)
        if "open_clip_model" in preset:  # an alias: the name and tag must exist in open_clip
            tags = open_clip.list_pretrained_tags_by_model(preset["open_clip_model"])
            assert preset["pretrained"] in tags, name
        else:
            clip = build_clip(name, tokenizer_dir=data["tokenizer"])
            assert clip.model_cfg["text_cfg"]["vocab_size"] == clip.tokenizer.vocab_size


def test_custom_attention_blocks_start_as_torch_attention(data):
    """tiny_conv_stem runs open_clip's custom attention blocks, initialised as
    nn.MultiheadAttention initialises itself, and saves and reloads them."""
    torch.manual_seed(0)
    clip = build_clip("tiny_conv_stem", tokenizer_dir=data["tokenizer"])
    model = clip.model
    blocks = [m for m in model.modules() if isinstance(m, open_clip.transformer.Attention)]
    layers = clip.model_cfg["vision_cfg"]["layers"] + clip.model_cfg["text_cfg"]["layers"]
    assert len(blocks) == layers
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in model.modules())
    for block in blocks:
        assert not block.in_proj_bias.any() and not block.out_proj.bias.any()
    for block in model.visual.transformer.resblocks:
        weight = block.attn.in_proj_weight  # Xavier-uniform: |w| <= sqrt(6 / (in + out))
        bound = math.sqrt(6 / sum(weight.shape))
        assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound

    torch.manual_seed(0)
    stock = open_clip.CLIP(**{k: v for k, v in clip.model_cfg.items() if k != "vision_conv_stem"})
    stock_block = stock.visual.transformer.resblocks[0].attn  # open_clip's own initialisation
    assert stock_block.in_proj_weight.abs().max() > 2 * bound


def test_bad_settings_are_clear_errors(data, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="download them once online"):
        build_clip("vit-b-32-laion2b")  # an alias of a hub checkpoint: offline, a clear error
    with pytest.raises(ValueError, match="unknown clip setting"):
        parse_settings({"batchsize": 8})
    with pytest.raises(ValueError, match="neither a preset"):
        build_clip("no-such-model")
    with pytest.raises(ValueError, match="needs the experiment's tokenizer_dir"):
        build_clip("tiny")
    with pytest.raises(ValueError, match="fewer rows than one batch"):
        train_clip(data["shards"], data["tokenizer"], {**FAST, "batch_size": 64}, tmp_path / "x")


def test_siglip_loss_trains_the_logit_bias_and_reloads(data, tmp_path):
    settings = {**FAST, **_siglip_preset(tmp_path)}
    history = train_clip(data["shards"], data["tokenizer"], settings, tmp_path / "clip")
    # at the start every pair scores about -10 (bias) + 10 * cos, cos near 0: each of the B
    # positives costs about 10 and each negative almost nothing, so the loss (summed over the
    # pairs, divided by B) starts near 10, where the softmax loss would start near log B = 2
    first = history["train"][0][1]
    assert 8 < first < 12, first
    bias = weights(tmp_path / "clip")["logit_bias"]
    assert bias.numel() == 1 and -10 < float(bias) < -9  # trained, from -10
    reloaded = load_clip(tmp_path / "clip")
    assert torch.equal(reloaded.model.logit_bias.detach(), bias)


def test_softmax_loss_leaves_a_siglip_models_bias_as_it_is(data, tmp_path, caplog):
    settings = {**FAST, **_siglip_preset(tmp_path), "loss": "clip"}
    with caplog.at_level("WARNING", logger="vlcore.pipeline.clip"):
        history = train_clip(data["shards"], data["tokenizer"], settings, tmp_path / "clip")
    assert "set loss: siglip to train it" in caplog.text
    assert float(weights(tmp_path / "clip")["logit_bias"]) == -10.0
    assert history["train"][0][1] < 3  # the softmax loss, about log(batch size) at the start


def test_siglip_loss_needs_a_logit_bias_and_no_hard_negatives(data, tmp_path):
    with pytest.raises(ValueError, match="needs a model with a logit bias"):
        train_clip(data["shards"], data["tokenizer"], {**FAST, "loss": "siglip"}, tmp_path / "a")
    with pytest.raises(ValueError, match="clip loss must be one of"):
        parse_settings({"loss": "sigmoid"})
    with pytest.raises(ValueError, match="leave hard_negatives empty"):
        parse_settings({"loss": "siglip", "hard_negatives": [["red", "blue"]]})
    assert not (tmp_path / "a").exists()


def test_caption_draw_is_seeded_per_epoch():
    caps = [f"caption {i}" for i in range(5)]
    keys = [f"synth-{i:07d}" for i in range(50)]
    draw = [pick_caption(caps, k, 0, 0) for k in keys]
    assert draw == [pick_caption(caps, k, 0, 0) for k in keys]
    assert draw != [pick_caption(caps, k, 0, 1) for k in keys]
    assert len(set(draw)) == 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(
    rank: int, world: int, port: int, shards: str, tokenizer: str, out: str, extra: dict
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    train_clip(shards, tokenizer, {**FAST, "batch_size": 4, "val_every": 2, **extra}, out)


@pytest.mark.parametrize("loss, bias", [("clip", False), ("siglip", True), ("clip", True)])
def test_two_process_ddp_trains_one_model(loss, bias, data, tmp_path):
    """Under DDP ClipLoss gathers every process's features; SigLipLoss passes them from
    neighbour to neighbour (point-to-point sends, which gloo must carry too). A SigLIP model
    under the softmax loss keeps its bias frozen: an unused parameter would stall DDP."""
    out = tmp_path / "ddp"
    extra = {**_siglip_preset(tmp_path), "loss": loss} if bias else {}
    args = (2, _free_port(), str(data["shards"]), str(data["tokenizer"]), str(out), extra)
    mp.spawn(_ddp_worker, args=args, nprocs=2, join=True)
    history = json.loads((out / "history.json").read_text())
    assert len(history["train"]) == FAST["max_steps"] and history["val"]
    assert json.loads((out / "train_config.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["model.safetensors"]
    clip = load_clip(out)
    assert encode_texts(clip, ["a red circle"]).shape == (1, clip.embed_dim)
