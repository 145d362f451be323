"""Captioners (ViT-GPT2, CLIP-prefix): the real entry points on a handful of shapes-world
images, on CPU. They train, save, reload to the same generations, decode deterministically,
answer every question, condition on styles, load pretrained parts from a folder, and repeat
themselves bit for bit from the same seed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel, ViTConfig, ViTModel

from vlcore.data.clean import CleanConfig, clean_pairs
from vlcore.data.raw import RawWriter
from vlcore.data.shard import ShardConfig, shard_dataset
from vlcore.data.stream import ShardStream
from vlcore.io import read_json
from vlcore.models.clip import build_clip, save_clip
from vlcore.models.generation import (
    IGNORE,
    DecodingConfig,
    answer_ids,
    caption_images,
    caption_prompt,
    question_prompt,
    style_token_id,
)
from vlcore.pipeline.captioner import (
    answer_questions,
    build_captioner,
    generate_captions,
    load_captioner,
    load_preset,
    parse_settings,
    train_captioner,
)
from vlcore.pipeline.captioner_batches import (
    TASK_ANSWER,
    TASK_CAPTION,
    answer_target,
    captioner_loss,
    collate_texts,
)
from vlcore.synthetic.generate import generate, to_raw_row
from vlcore.synthetic.lexicon import SHAPE_WORDS_EN
from vlcore.text import TokenizerConfig, load_tokenizer, style_token, train_tokenizer
from vlcore.train.checkpoint import load_weights

N_IMAGES = 40
TINY_VIT_GPT2 = {
    "encoder": {
        "patch_size": 16,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    },
    "conv_stem": [8, 8, 16],
    "decoder": {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_inner": 64},
}
TINY_CLIP_PREFIX = {
    "prefix_length": 4,
    "clip_length": 4,
    "mapping_layers": 1,
    "mapping_heads": 2,
    "decoder": {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_inner": 64},
}
GENERATE = {"num_beams": 3, "max_new_tokens": 8, "batch_size": 5, "answer_max_new_tokens": 3}


def settings(name: str, **extra) -> dict:
    base = {
        "model": TINY_VIT_GPT2 if name == "vit_gpt2" else TINY_CLIP_PREFIX,
        "batch_size": 8,
        "max_length": 24,
        "max_steps": 4,
        "warmup_steps": 1,
        "lr": 3e-3,
        "val_every": 0,
        "val_batches": 1,
        "ckpt_every": 0,
        "log_every": 1,
        "device": "cpu",
        "generate": GENERATE,
    }
    return {**base, **extra}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Shards of 40 clean synthetic images, a tokenizer without style tokens, and a CLIP."""
    root = tmp_path_factory.mktemp("captioner")
    samples = generate(N_IMAGES, seed=0, image_size=64, dirty_rate=0.0)
    with RawWriter(root / "raw.parquet") as writer:
        for sample in samples:
            writer.write(to_raw_row(sample, "en"))
    clean_pairs(
        root / "raw.parquet",
        root / "clean.parquet",
        root / "report.json",
        CleanConfig(keywords=list(SHAPE_WORDS_EN)),
    )
    shard_dataset(
        root / "clean.parquet",
        root / "shards",
        ShardConfig(rows_per_shard=16, row_group_rows=8, split={"val": 0.2, "test": 0.2}),
    )
    texts = [c for s in samples for c in s.captions_en]
    texts += [q["question"] + " " + " ".join(q["answers"]) for s in samples for q in s.questions]
    train_tokenizer(texts, TokenizerConfig(vocab_size=400, max_length=24), root / "tokenizer")
    torch.manual_seed(0)
    clip = build_clip("tiny", tokenizer_dir=root / "tokenizer")
    save_clip(clip, root / "clip")
    return {"root": root, "shards": root / "shards", "tokenizer": root / "tokenizer",
            "clip": root / "clip"}  # fmt: skip


@pytest.fixture(scope="module")
def trained(data) -> dict[str, Path]:
    """Both captioners trained for a few steps (captions, styles; VQA for clip_prefix)."""
    out = {}
    for name in ("vit_gpt2", "clip_prefix"):
        out[name] = data["root"] / name
        history = train_captioner(
            name, data["shards"], data["tokenizer"], data["clip"], settings(name), out[name]
        )
        out[f"{name}_history"] = history
    return out


def split_rows(data, split: str) -> list[dict]:
    return list(ShardStream(data["shards"], split))


@pytest.mark.parametrize("name", ["vit_gpt2", "clip_prefix"])
def test_training_writes_a_reloadable_captioner(data, trained, name):
    out = trained[name]
    for file in ("model.safetensors", "captioner.json", "history.json", "train_config.json",
                 "loss_curve.png", "tokenizer/tokenizer.json"):  # fmt: skip
        assert (out / file).is_file(), file
    history = trained[f"{name}_history"]
    losses = [loss for _, loss, _ in history["train"]]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert history["val"] and math.isfinite(history["val"][-1][1])
    record = read_json(out / "captioner.json")
    assert record["name"] == name
    assert record["styles"] == ["Curious", "Formal", "Happy", "Sad", "Sarcastic"]
    assert record["trained_vqa"] is (name == "clip_prefix")

    # rebuilt from captioner.json alone == rebuilt the way training built it, same weights
    loaded = load_captioner(out)
    tokenizer = load_tokenizer(out / "tokenizer")
    config = load_preset(name, None, settings(name)["model"])
    torch.manual_seed(123)
    built = build_captioner(name, config, tokenizer, image_size=64, clip_dir=data["clip"])
    load_weights(built, out / "model.safetensors")
    built.eval()
    images = torch.stack([r["image"] for r in split_rows(data, "test")])
    decoding = DecodingConfig(**GENERATE)
    assert caption_images(loaded.model, loaded.tokenizer, images, decoding) == caption_images(
        built, tokenizer, images, decoding
    )
    ids = torch.tensor([caption_prompt(tokenizer, "Happy") + [10, 11]] * len(images))
    args = (images, ids, torch.ones_like(ids), torch.arange(len(images)))
    with torch.no_grad():
        assert torch.equal(loaded.model.text_logits(*args), built.text_logits(*args))


@pytest.mark.parametrize("name", ["vit_gpt2", "clip_prefix"])
def test_generate_captions_one_per_image_deterministic(data, trained, name, tmp_path):
    rows = split_rows(data, "test")
    runs = []
    for run in ("a", "b"):
        results = generate_captions(
            name, trained[name], data["shards"], "test", settings(name),
            tmp_path / f"{run}.json", tmp_path / f"{run}.tsv",
        )  # fmt: skip
        assert json.loads((tmp_path / f"{run}.json").read_text()) == results
        runs.append(results)
    assert runs[0] == runs[1]
    assert sorted(r["image_id"] for r in runs[0]) == sorted(r["image_id"] for r in rows)
    assert all(isinstance(r["caption"], str) for r in runs[0])
    lines = (tmp_path / "a.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == [r["key"] for r in rows]
    assert all(len(line.split("\t")) == 2 for line in lines)


def test_styled_generation_and_unknown_style(data, trained, tmp_path):
    name = "vit_gpt2"
    results = generate_captions(
        name, trained[name], data["shards"], "test", settings(name),
        tmp_path / "happy.json", tmp_path / "happy.tsv", style="Happy",
    )  # fmt: skip
    assert len(results) == len(split_rows(data, "test"))
    with pytest.raises(ValueError, match="Grumpy"):
        generate_captions(
            name, trained[name], data["shards"], "test", settings(name),
            tmp_path / "x.json", tmp_path / "x.tsv", style="Grumpy",
        )  # fmt: skip
    with pytest.raises(ValueError, match="clip_prefix"):
        generate_captions(
            "clip_prefix", trained[name], data["shards"], "test", settings(name),
            tmp_path / "x.json", tmp_path / "x.tsv",
        )  # fmt: skip


@pytest.mark.parametrize("name", ["vit_gpt2", "clip_prefix"])
def test_style_token_changes_the_next_token_distribution(data, trained, name):
    loaded = load_captioner(trained[name])
    tok = loaded.tokenizer
    images = torch.stack([r["image"] for r in split_rows(data, "test")])[:2]
    dists = {}
    for style in (None, "Happy", "Formal"):
        ids = torch.tensor([caption_prompt(tok, style)] * len(images))
        with torch.no_grad():
            logits = loaded.model.text_logits(images, ids, torch.ones_like(ids), torch.arange(2))
        dists[style] = logits[:, -1].softmax(-1)
    assert not torch.allclose(dists["Happy"], dists["Formal"], atol=1e-4)
    assert not torch.allclose(dists[None], dists["Happy"], atol=1e-4)


def test_answer_questions_one_answer_per_question(data, trained, tmp_path):
    rows = split_rows(data, "test")
    qids = sorted(q["question_id"] for r in rows for q in r["questions"])
    results = answer_questions(
        trained["clip_prefix"], data["shards"], "test", settings("clip_prefix"),
        tmp_path / "answers.json",
    )  # fmt: skip
    assert [r["question_id"] for r in results] == qids
    assert all(isinstance(r["answer"], str) for r in results)
    again = answer_questions(
        trained["clip_prefix"], data["shards"], "test", settings("clip_prefix"),
        tmp_path / "again.json",
    )  # fmt: skip
    assert again == results
    assert json.loads((tmp_path / "answers.json").read_text()) == results


def test_text_batches_learn_only_captions_and_answers(data):
    tokenizer = load_tokenizer(data["tokenizer"])
    from vlcore.pipeline.captioner import add_style_tokens

    add_style_tokens(tokenizer, ["Happy", "Sad"])
    own, _, _ = parse_settings(
        "clip_prefix",
        {"captions_per_image": 1, "styled_per_image": 1, "questions_per_image": 2,
         "max_length": 12},
    )  # fmt: skip
    rows = split_rows(data, "train")[:3]
    kw = dict(tokenizer=tokenizer, settings=own, styles=frozenset({"Happy", "Sad"}), seed=0)
    batch = collate_texts(rows, **kw, epoch=0)
    assert torch.equal(batch["input_ids"], collate_texts(rows, **kw, epoch=0)["input_ids"])
    assert not torch.equal(batch["input_ids"], collate_texts(rows, **kw, epoch=1)["input_ids"])
    assert batch["input_ids"].shape[1] <= 12
    assert batch["image_index"].tolist() == sorted(batch["image_index"].tolist())
    style_ids = {style_token_id(tokenizer, s) for s in ("Happy", "Sad")}
    for ids, labels, mask, task in zip(batch["input_ids"], batch["labels"],
                                       batch["attention_mask"], batch["task"], strict=True):  # fmt: skip
        n = int(mask.sum())
        assert ids[0] == tokenizer.bos_token_id and labels[0] == IGNORE
        assert ids[n - 1] == tokenizer.eos_token_id == labels[n - 1]  # <eos> survives cutting
        assert (labels[n:] == IGNORE).all()
        learned = labels[labels != IGNORE].tolist()
        assert not style_ids & set(learned)
        if task == 1:  # VQA: only the answer and <eos> are learned
            text = tokenizer.decode(ids[:n][labels[:n] == IGNORE])
            assert text.startswith("<bos>") and text.rstrip().endswith("answer:")
            assert len(learned) <= 4
        elif ids[1].item() in style_ids:
            assert labels[1] == IGNORE


def test_question_rows_are_the_prompts_answering_continues(data):
    # the batch tokenises its questions and answers in one call; each row must still be
    # what question_prompt (which answer_questions uses) and answer_ids give one at a time
    tokenizer = load_tokenizer(data["tokenizer"])
    own, _, _ = parse_settings(
        "vit_gpt2",
        {"captions_per_image": 0, "styled_per_image": 0, "questions_per_image": 16},
    )
    rows = split_rows(data, "train")[:4]
    batch = collate_texts(rows, tokenizer=tokenizer, settings=own, styles=frozenset(), seed=0,
                          epoch=0)  # fmt: skip
    got: dict[int, list[tuple[int, ...]]] = {}
    for ids, mask, image in zip(batch["input_ids"], batch["attention_mask"],
                                batch["image_index"], strict=True):  # fmt: skip
        got.setdefault(int(image), []).append(tuple(ids[: int(mask.sum())].tolist()))
    asked = [row for row in rows if row["questions"]]
    assert len(got) == len(asked) >= 2
    for image, row in enumerate(asked):
        expected = [
            (*question_prompt(tokenizer, q["question"]),
             *answer_ids(tokenizer, answer_target(q, "most_common", None)))
            for q in row["questions"]
        ]  # fmt: skip
        assert sorted(got[image]) == sorted(expected)


def test_same_seed_gives_identical_weights(data, tmp_path):
    weights = []
    for run in ("a", "b"):
        train_captioner(
            "vit_gpt2", data["shards"], data["tokenizer"], None,
            settings("vit_gpt2", max_steps=3, styled_per_image=0), tmp_path / run,
        )  # fmt: skip
        weights.append(load_file(tmp_path / run / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert read_json(tmp_path / "a" / "captioner.json")["styles"] == []


def test_pretrained_parts_load_from_local_folders(data, tmp_path):
    torch.manual_seed(0)
    vit = ViTModel(
        ViTConfig(image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=1,
                  num_attention_heads=2, intermediate_size=64),
        add_pooling_layer=False,
    )  # fmt: skip
    vit.save_pretrained(tmp_path / "vit")
    gpt2 = GPT2LMHeadModel(
        GPT2Config(vocab_size=300, n_embd=32, n_layer=1, n_head=2, n_positions=64)
    )
    gpt2.save_pretrained(tmp_path / "gpt2")
    model = {
        "encoder_pretrained": str(tmp_path / "vit"),
        "decoder_pretrained": str(tmp_path / "gpt2"),
        "conv_stem": None,
    }
    for name, overrides in (
        ("vit_gpt2", model),
        ("clip_prefix", {**TINY_CLIP_PREFIX, "decoder_pretrained": str(tmp_path / "gpt2"),
                         "features": "pooled", "mapping": "mlp", "train_decoder": False}),
    ):  # fmt: skip
        out = tmp_path / name
        train_captioner(
            name, data["shards"], data["tokenizer"], data["clip"],
            settings(name, model=overrides, max_steps=2), out,
        )  # fmt: skip
        loaded = load_captioner(out)
        vocab = len(loaded.tokenizer)
        decoder = loaded.model.model.decoder if name == "vit_gpt2" else loaded.model.decoder
        assert decoder.get_input_embeddings().num_embeddings == vocab  # resized from 300
        results = generate_captions(
            name, out, data["shards"], "test", settings(name),
            tmp_path / f"{name}.json", tmp_path / f"{name}.tsv",
        )  # fmt: skip
        assert len(results) == len(split_rows(data, "test"))
    # vit_gpt2 kept the pretrained encoder's architecture and resized images to its 32 px
    loaded = load_captioner(tmp_path / "vit_gpt2")
    assert loaded.model.image_size == 32
    # the frozen pretrained decoder of clip_prefix kept its transformer weights
    saved = load_file(tmp_path / "gpt2" / "model.safetensors")
    trained_w = load_file(tmp_path / "clip_prefix" / "model.safetensors")
    key = "transformer.h.0.mlp.c_fc.weight"
    assert torch.equal(saved[key], trained_w[f"decoder.{key}"])


@pytest.mark.parametrize(
    ("model", "prefix", "positions"),
    [({"mapping": "mlp", "token_grid": 2}, 4, None), ({"token_positions": True}, 4, 64)],
)
def test_pooled_and_placed_patch_tokens_train_and_reload(data, tmp_path, model, prefix, positions):
    """token_grid pools the 8x8 patch grid (with the mlp mapping: one prefix embedding per
    pooled token); token_positions gives the transformer mapping an embedding per token."""
    own = settings("clip_prefix", max_steps=1)
    own["model"] = {**TINY_CLIP_PREFIX, **model}
    train_captioner("clip_prefix", data["shards"], data["tokenizer"], data["clip"], own,
                    tmp_path / "model")  # fmt: skip
    loaded = load_captioner(tmp_path / "model").model
    images = torch.stack([r["image"] for r in split_rows(data, "test")])
    with torch.no_grad():
        assert loaded.prefix(images).shape == (len(images), prefix, 32)
    placed = loaded.mapping.positions if hasattr(loaded.mapping, "positions") else None
    assert (None if placed is None else len(placed)) == positions
    coarse = {**TINY_CLIP_PREFIX, "token_grid": 16}
    with pytest.raises(ValueError, match="token_grid 16 is finer than the tower's 8x8"):
        build_captioner("clip_prefix", load_preset("clip_prefix", None, coarse),
                        load_tokenizer(data["tokenizer"]), image_size=64, clip_dir=data["clip"])  # fmt: skip


def test_settings_are_checked():
    with pytest.raises(ValueError, match="num_beam"):
        parse_settings("vit_gpt2", {"num_beam": 3})
    with pytest.raises(ValueError, match="unknown generate option"):
        parse_settings("vit_gpt2", {"generate": {"beams": 3}})
    with pytest.raises(ValueError, match="captioner 'blip'"):
        parse_settings("blip", {})
    with pytest.raises(ValueError, match="mapping 'lstm'"):
        load_preset("clip_prefix", None, {"mapping": "lstm"})
    with pytest.raises(ValueError, match="is for 'clip_prefix'"):
        load_preset("vit_gpt2", "clip_prefix_tiny")
    own, train, decoding = parse_settings("clip_prefix", {"lr": 1e-4, "generate": {"num_beams": 2}})
    assert own.questions_per_image == 4 and train.lr == 1e-4 and decoding.num_beams == 2
    assert parse_settings("vit_gpt2", {})[0].questions_per_image == 0
    assert style_token("Happy") == "<style:Happy>"


def test_loss_is_a_per_task_mean_and_token_weights_make_it_a_weighted_one():
    # two captions and one answer; labels[:, 1:] marks the counted tokens (-100 is not)
    labels = torch.tensor([[-100, 1, 2, 3], [-100, 1, -100, -100], [-100, -100, 4, -100]])
    token_losses = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [0.0, 6.0, 0.0]])
    batch = {
        "pixel_values": torch.zeros(1, 3, 4, 4),
        "input_ids": torch.ones_like(labels),
        "attention_mask": torch.ones_like(labels),
        "image_index": torch.zeros(3, dtype=torch.long),
        "labels": labels,
        "task": torch.tensor([TASK_CAPTION, TASK_CAPTION, TASK_ANSWER]),
    }

    def model(*args):
        return token_losses

    plain = captioner_loss(model, batch, vqa_weight=0.5, smoothing=0.0)
    assert plain.item() == pytest.approx((1 + 2 + 3 + 4) / 4 + 0.5 * 6)
    ones = captioner_loss(model, batch, 0.5, 0.0, torch.ones(3, 3))
    assert ones.item() == pytest.approx(plain.item())
    weights = torch.tensor([[1.0, 3.0, 1.0], [2.0, 9.0, 9.0], [9.0, 2.0, 9.0]])
    weighted = captioner_loss(model, batch, 0.5, 0.0, weights)
    assert weighted.item() == pytest.approx((1 + 6 + 3 + 8) / (1 + 3 + 1 + 2) + 0.5 * 6)
