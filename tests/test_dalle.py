"""DALL-E on tiny random-init models: loss, sampling (codes only, seeded, batch-invariant, KV
cache), save/load, and the real ``train_dalle`` / ``generate_images`` entry points on a few
samples."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import LogitsProcessorList

from vlcore.models.dalle import (
    Dalle,
    DalleConfig,
    ImageCodesOnly,
    JointVocab,
    SamplingConfig,
    gumbel_noise,
    sample_codes,
    text_tokens,
)
from vlcore.models.generation import TextIds
from vlcore.pipeline import dalle as pipeline
from vlcore.pipeline import dalle_generate as generation

TEXT = TextIds(vocab_size=50, bos=1, eos=2, pad=0)
K, GRID, LT = 16, (3, 3), 8
TINY = {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_inner": 64, "activation_function": "gelu"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and are not slowed by busy sibling jobs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_dalle(seed: int = 0, **config) -> Dalle:
    torch.manual_seed(seed)
    cfg = DalleConfig(text_length=LT, transformer={**TINY, **config})
    return Dalle.build(cfg, TEXT, K, GRID).eval()


def random_text(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, TEXT.vocab_size, (n, LT), generator=gen)
    ids[:, 0] = TEXT.bos
    ids[:, LT // 2] = TEXT.eos
    ids[:, LT // 2 + 1 :] = TEXT.pad
    return ids


def test_joint_vocabulary_layout():
    vocab = JointVocab(TEXT, K)
    assert (vocab.boi, vocab.code_offset, vocab.size) == (50, 51, 50 + 1 + K)
    model = tiny_dalle()
    assert model.sequence_length == LT + 1 + 9
    assert model.gpt.config.n_positions == model.sequence_length
    with pytest.raises(ValueError, match="codebook_size"):
        JointVocab(TEXT, 1)


def test_text_tokens_pad_and_cut():
    class Tok:
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

        def __call__(self, texts, **_):
            return {"input_ids": [[10 + i for i in range(len(t.split()))] for t in texts]}

    ids = text_tokens(Tok(), ["a b", "a b c d e f g h i"], 6)
    assert ids.tolist() == [[1, 10, 11, 2, 0, 0], [1, 10, 11, 12, 13, 2]]
    with pytest.raises(ValueError, match="list of texts"):
        text_tokens(Tok(), "a b", 6)


def test_loss_is_image_cross_entropy_and_text_is_optional():
    model = tiny_dalle()
    text, codes = random_text(4), torch.randint(0, K, (4, 9))
    parts = model.losses(text, codes)
    logits = model.logits(text, codes)
    assert logits.shape == (4, model.sequence_length - 1, model.vocab.size)
    k0 = model.vocab.code_offset
    expected = torch.nn.functional.cross_entropy(
        logits[:, LT:, k0 : k0 + K].reshape(-1, K), codes.reshape(-1)
    )
    torch.testing.assert_close(parts["image"], expected)
    assert parts["text"] > 0
    torch.testing.assert_close(model(text, codes), parts["image"])
    torch.testing.assert_close(model(text, codes, 0.5), parts["image"] + 0.5 * parts["text"])
    # the loss of a code depends only on what precedes it (causal)
    changed = codes.clone()
    changed[:, -1] = (changed[:, -1] + 1) % K
    torch.testing.assert_close(
        model.logits(text, codes)[:, :-1], model.logits(text, changed)[:, :-1]
    )
    with pytest.raises(ValueError, match="codes must lie"):
        model(text, codes + K)
    with pytest.raises(ValueError, match="9 codes"):
        model(text, codes[:, :5])


def test_training_lowers_the_loss():
    model = tiny_dalle().train()
    text, codes = random_text(8), torch.randint(0, K, (8, 9))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = float(model(text, codes).detach())
    for _ in range(30):
        opt.zero_grad()
        model(text, codes).backward()
        opt.step()
    assert float(model(text, codes).detach()) < first - 0.5


def test_logits_processor_keeps_only_image_codes():
    proc = ImageCodesOnly(code_offset=51, codebook_size=K)
    scores = torch.randn(2, 51 + K)
    out = proc(torch.zeros(2, 1, dtype=torch.long), scores)
    assert torch.isinf(out[:, :51]).all()
    torch.testing.assert_close(out[:, 51:], scores[:, 51:])


@pytest.mark.parametrize("sampling", [SamplingConfig(), SamplingConfig(0.7, 4, 0.9)])
def test_sampling_emits_only_codes_and_is_seeded(sampling):
    model = tiny_dalle()
    text = random_text(6)
    codes = sample_codes(model, text, list(range(6)), sampling)
    assert codes.shape == (6, 9) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < K
    again = sample_codes(model, text, list(range(6)), sampling)
    assert torch.equal(codes, again)
    other = sample_codes(model, text, list(range(100, 106)), sampling)
    assert not torch.equal(codes, other)


def test_samples_do_not_depend_on_the_batch():
    model = tiny_dalle()
    text = random_text(5)
    seeds = [11, 12, 13, 14, 15]
    whole = sample_codes(model, text, seeds)
    parts = torch.cat([sample_codes(model, text[i : i + 2], seeds[i : i + 2]) for i in (0, 2, 4)])
    assert torch.equal(whole, parts)
    alone = sample_codes(model, text[3:4], seeds[3:4])
    assert torch.equal(alone[0], whole[3])


def test_top_k_one_is_greedy():
    model = tiny_dalle()
    text = random_text(3)
    greedy = sample_codes(model, text, None)
    assert torch.equal(sample_codes(model, text, [1, 2, 3], SamplingConfig(top_k=1)), greedy)


def test_kv_cache_on_equals_off_and_hf_generate():
    model = tiny_dalle()
    text = random_text(4)
    cached = sample_codes(model, text, None, use_cache=True)
    full = sample_codes(model, text, None, use_cache=False)
    assert torch.equal(cached, full)
    sampled = [sample_codes(model, text, [5, 6, 7, 8], use_cache=c) for c in (True, False)]
    assert torch.equal(*sampled)
    # Hugging Face generate with the same logits processor, greedy, gives the same codes
    out = model.gpt.generate(
        input_ids=model.prompt(text),
        attention_mask=torch.ones(4, LT + 1, dtype=torch.long),
        logits_processor=LogitsProcessorList([model.logits_processor()]),
        max_new_tokens=9,
        min_new_tokens=9,
        do_sample=False,
        pad_token_id=TEXT.pad,
    )
    assert torch.equal(out[:, LT + 1 :] - model.vocab.code_offset, cached)


def test_gumbel_noise_rows_depend_on_their_seed_only():
    a = gumbel_noise([1, 2], 3, 4)
    b = gumbel_noise([2], 3, 4)
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])


def test_spec_round_trip(tmp_path):
    model = tiny_dalle()
    spec = json.loads(json.dumps(model.spec()))
    rebuilt = Dalle.from_spec(spec)
    rebuilt.load_state_dict(model.state_dict())
    text, codes = random_text(2), torch.randint(0, K, (2, 9))
    torch.testing.assert_close(rebuilt.eval()(text, codes), model(text, codes))


def test_settings_reject_unknown_and_bad_values():
    own, train, gen = pipeline.parse_settings(
        {"batch_size": 8, "max_steps": 3, "generate": {"samples": 4, "top_k": 8}}
    )
    assert (own.batch_size, train.max_steps, gen.samples, gen.sampling().top_k) == (8, 3, 4, 8)
    with pytest.raises(ValueError, match="unknown dalle setting"):
        pipeline.parse_settings({"bogus": 1})
    with pytest.raises(ValueError, match="unknown dalle generate option"):
        pipeline.parse_settings({"generate": {"num_beams": 2}})
    with pytest.raises(ValueError, match="top_p"):
        pipeline.parse_settings({"generate": {"top_p": 0}})
    with pytest.raises(ValueError, match="preset"):
        pipeline.load_preset("nope")
    assert pipeline.load_preset("tiny", {"text_length": 20}).text_length == 20


def test_text_length_defaults_to_the_tokenizer_max_length():
    class Tok:
        model_max_length = 32

    assert pipeline.load_preset("tiny").text_length is None
    assert pipeline.load_preset("tiny", tokenizer=Tok()).text_length == 32
    assert pipeline.load_preset("tiny", {"text_length": 20}, Tok()).text_length == 20
    Tok.model_max_length = int(1e30)
    with pytest.raises(ValueError, match="set dalle model.text_length"):
        pipeline.load_preset("tiny", tokenizer=Tok())
    with pytest.raises(ValueError, match="text_length is null"):
        Dalle.build(DalleConfig(), TEXT, K, GRID)


def test_choose_caption():
    caps = ["a b", "a longer one", "mid size"]
    assert generation.choose_caption(caps, "longest", 0, "k") == "a longer one"
    assert generation.choose_caption(caps, "first", 0, "k") == "a b"
    assert generation.choose_caption(caps, "random", 0, "k") in caps


# -- the entry points on a few samples --------------------------------------------------------


def write_codes(folder, tokenizer_captions, grid=(2, 2), codebook=8, rows=None):
    """A codes folder in the encode_images format, with random codes."""
    from vlcore.data import codes as fmt

    rng = np.random.default_rng(0)
    rows = rows or {"train": 24, "val": 6, "test": 6}
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, n in rows.items():
        table = pa.table(
            {
                "key": [f"{split}-{i}" for i in range(n)],
                "image_id": list(range(n)),
                "split": [split] * n,
                "captions": [[tokenizer_captions[i % len(tokenizer_captions)]] for i in range(n)],
                "styled_captions": [[] for _ in range(n)],
                "codes": [
                    rng.integers(0, codebook, grid[0] * grid[1]).astype(np.int16) for _ in range(n)
                ],
            }
        ).cast(fmt.SCHEMA)
        pq.write_table(table, folder / f"{split}-00000.parquet")
        splits[split] = {
            "rows": n,
            "files": [{"file": f"{split}-00000.parquet", "rows": n, "sha256": split}],
        }
    manifest = {
        "format_version": fmt.FORMAT_VERSION,
        "grid": list(grid),
        "codebook_size": codebook,
        "image_size": 16,
        "splits": splits,
    }
    (folder / fmt.MANIFEST).write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from vlcore.text import TokenizerConfig, train_tokenizer

    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    texts = ["a red circle", "a blue square on the left", "two green stars"] * 20
    train_tokenizer(texts, TokenizerConfig(vocab_size=300, min_frequency=1), out)
    return out


SMALL = {
    "batch_size": 4,
    "model": {"text_length": 8, "transformer": TINY},
    "max_steps": 3,
    "warmup_steps": 1,
    "val_every": 0,
    "ckpt_every": 0,
    "log_every": 1,
    "seed": 0,
}


def test_train_dalle_entry_point(tmp_path, tokenizer_dir):
    codes = write_codes(tmp_path / "codes", ["a red circle", "two green stars"])
    out = tmp_path / "dalle"
    history = pipeline.train_dalle(codes, tokenizer_dir, SMALL, out)
    assert len(history["train"]) == 3 and history["val"]
    for name in ("model.safetensors", "dalle.json", "history.json", "loss_curve.png"):
        assert (out / name).is_file()
    loaded = pipeline.load_dalle(out)
    assert loaded.model.grid == (2, 2) and loaded.model.vocab.codebook_size == 8
    # the same run again gives the same weights (deterministic on CPU)
    pipeline.train_dalle(codes, tokenizer_dir, SMALL, tmp_path / "again")
    again = pipeline.load_dalle(tmp_path / "again").model.state_dict()
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, again[name]), name


def test_ranks_share_the_global_batch_of_one_process():
    data = pipeline.CaptionedCodes(
        torch.arange(10).view(10, 1), [f"k{i}" for i in range(10)],
        [torch.full((2, 3), i) for i in range(10)],
    )  # fmt: skip
    kw = {"seed": 0, "epoch": 1, "shuffle": True}
    single = list(data.batches(4, **kw))
    ranks = [list(data.batches(2, rank=r, world_size=2, **kw)) for r in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 2
    for i, batch in enumerate(single):
        for key in ("codes", "text"):
            joined = torch.cat([ranks[0][i][key], ranks[1][i][key]])
            assert torch.equal(joined, batch[key])
    val = list(data.batches(4, seed=0, epoch=0, shuffle=False, drop_last=False))
    assert [len(b["codes"]) for b in val] == [4, 4, 2]
    val1 = list(data.batches(4, seed=0, epoch=0, shuffle=False, drop_last=False, rank=1,
                             world_size=2))  # fmt: skip
    assert [b["codes"].flatten().tolist() for b in val1] == [[4, 5, 6, 7]]


@pytest.mark.timeout(300)
def test_train_dalle_with_two_gloo_processes_matches_one(tmp_path, tokenizer_dir, monkeypatch):
    """train_dalle through the launcher: 2 torchrun processes of batch 4 = 1 process of 8."""
    from types import SimpleNamespace

    from safetensors.torch import load_file

    from tests.conftest import REPO
    from vlcore.train.launch import launch

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    codes = write_codes(tmp_path / "codes", ["a red circle", "two green stars"], rows={
        "train": 16, "val": 4})  # fmt: skip
    weights, histories = {}, {}
    for name, batch, processes in (("single", 8, 1), ("ddp", 4, 2)):
        job = SimpleNamespace(params={"processes": processes}, resources={"gpu": 0}, threads=1)
        # fp32: under bf16 autocast (auto on CPUs with AMX) each process rounds its half apart
        settings = {**SMALL, "batch_size": batch, "device": "cpu", "precision": "fp32"}
        launch(job, pipeline.train_dalle, str(codes), str(tokenizer_dir), settings,
               str(tmp_path / name))  # fmt: skip
        weights[name] = load_file(tmp_path / name / "model.safetensors")
        histories[name] = json.loads((tmp_path / name / "history.json").read_text())
    worst = max(
        (weights["single"][k] - weights["ddp"][k]).abs().max().item() for k in weights["single"]
    )
    assert worst < 1e-5, f"2-process DDP differs from 1 process by {worst}"
    losses = [[loss for _, loss, _ in histories[n]["train"]] for n in ("single", "ddp")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_generate_images_entry_point(tmp_path, tokenizer_dir, monkeypatch):
    """generate_images on a random-init DALL-E and a random-init VQ-VAE stand-in."""
    codes = write_codes(tmp_path / "codes", ["a red circle"])
    pipeline.train_dalle(codes, tokenizer_dir, {**SMALL, "max_steps": 1}, tmp_path / "dalle")

    class FakeVQVAE:
        grid, codebook_size = (2, 2), 8

        def decode_codes(self, c):
            return (c.float() / 7).repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None]\
                .expand(-1, 3, -1, -1)  # fmt: skip

    import vlcore.models.vqvae as vqvae_module

    monkeypatch.setattr(vqvae_module, "load_vqvae", lambda *_a, **_k: FakeVQVAE())
    shards = tmp_path / "shards"
    shards.mkdir()
    rows = pa.table({"key": ["a", "b", "c"], "image_id": [1, 2, 3],
                     "captions": [["a red circle", "a blue square"], [], ["two green stars"]]})  # fmt: skip
    pq.write_table(rows, shards / "test-00000.parquet")
    manifest = {"image_size": 16, "splits": {"test": {"shards": [{"file": "test-00000.parquet"}]}}}
    (shards / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(generation, "load_manifest", lambda d: {**manifest, "dir": str(d)})
    settings = {**SMALL, "generate": {"samples": 3, "batch_size": 4, "top_k": 4}}
    out = tmp_path / "samples.parquet"
    summary = generation.generate_images(tmp_path / "dalle", "vq", shards, "test", settings, out)
    assert summary["prompts"] == 2 and summary["samples"] == 6
    table = generation.read_samples(out).to_pylist()
    assert [(r["key"], r["sample"]) for r in table] == [
        ("a", 0), ("a", 1), ("a", 2), ("c", 0), ("c", 1), ("c", 2)
    ]  # fmt: skip
    assert table[0]["caption"] == "a blue square"  # the longest caption
    assert all(len(r["codes"]) == 4 and r["image"][:4] == b"\x89PNG" for r in table)
    # batch size does not change a sample
    out2 = tmp_path / "samples2.parquet"
    settings2 = {**settings, "generate": {**settings["generate"], "batch_size": 5}}
    generation.generate_images(tmp_path / "dalle", "vq", shards, "test", settings2, out2)
    assert generation.read_samples(out2).to_pylist() == table
    assert dataclasses.is_dataclass(pipeline.GenerateSettings())
