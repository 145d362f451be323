"""vlcore.text: training, saving, loading and batch encoding of caption tokenizers (offline)."""

from __future__ import annotations

import itertools
import json
import random
import re
import unicodedata
from pathlib import Path

import pytest
import tokenizers
import torch
from tokenizers import decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from vlcore.text import (
    BOS,
    EOS,
    PAD,
    RECORD_FILE,
    UNK,
    VQA_SEP_TOKEN,
    TokenizerConfig,
    TokenizerUnavailableError,
    build_tokenizer,
    decode_batch,
    encode_batch,
    load_tokenizer,
    style_token,
    train_tokenizer,
)
from vlcore.text.cjk import CJK_CHAR_CLASS, join_cjk

CJK = re.compile(CJK_CHAR_CLASS)

COLOURS = {
    "red": "红色",
    "blue": "蓝色",
    "green": "绿色",
    "yellow": "黄色",
    "purple": "紫色",
    "orange": "橙色",
    "black": "黑色",
    "white": "白色",
}
SIZES = {"big": "大", "small": "小"}
SHAPES = {
    "circle": "圆形",
    "square": "方块",
    "triangle": "三角形",
    "star": "星形",
    "heart": "心形",
}
PLACES = {
    "top left corner": "左上角",
    "top right corner": "右上角",
    "bottom left corner": "左下角",
    "bottom right corner": "右下角",
    "middle": "中间",
}
COUNTS = {"A": "一个", "Two": "两个", "Three": "三个"}


def _captions() -> tuple[list[str], list[str]]:
    """400 English and 400 Chinese captions about coloured shapes, in a fixed order."""
    en, zh = [], []
    combos = itertools.product(COLOURS.items(), SIZES.items(), SHAPES.items(), PLACES.items())
    for i, ((c_en, c_zh), (s_en, s_zh), (h_en, h_zh), (p_en, p_zh)) in enumerate(combos):
        n_en, n_zh = list(COUNTS.items())[i % 3]
        plural = "s" if n_en != "A" else ""
        en.append(f"{n_en} {s_en} {c_en} {h_en}{plural} in the {p_en} of the picture.")
        zh.append(f"{n_zh}{c_zh}的{s_zh}{h_zh}在图片的{p_zh}" + ("。" if i % 2 else ""))
    return en, zh


EN, ZH = _captions()
EXTRAS = [style_token("Happy"), style_token("Sad"), VQA_SEP_TOKEN]
# unseen words, digits, accents, punctuation: byte-level BPE must still round-trip them
EN_UNSEEN = ["Café No. 5: a déjà-vu, isn't it?", "A BROWN dog (3 years old) runs!"]
ZH_UNSEEN = ["一只棕色的小狗在草地上跑，旁边有3个red气球。", "天空中飘着白云"]


def _normalized(text: str) -> str:
    return unicodedata.normalize("NFC", text).lower()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[tuple[str, str], PreTrainedTokenizerFast]:
    """One trained and saved tokenizer per (kind, lang), as train_tokenizer returns it."""
    root = tmp_path_factory.mktemp("tokenizers")
    out = {}
    for kind, lang in itertools.product(("bpe", "wordpiece"), ("en", "zh")):
        config = TokenizerConfig(kind=kind, lang=lang, vocab_size=600)
        texts = EN if lang == "en" else ZH
        out[kind, lang] = train_tokenizer(texts, config, root / f"{kind}-{lang}", EXTRAS)
    return out


# -- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "sentencepiece"}, "kind 'sentencepiece'"),
        ({"lang": "fr"}, "lang 'fr'"),
        ({"kind": "pretrained"}, "pretrained_name_or_path"),
        ({"max_length": 2}, "max_length"),
        ({"min_frequency": 0}, "min_frequency"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenizerConfig(**kwargs)


def test_config_from_dict_names_unknown_keys():
    assert TokenizerConfig.from_dict({"kind": "wordpiece", "lang": "zh"}).kind == "wordpiece"
    with pytest.raises(ValueError, match="vocab"):
        TokenizerConfig.from_dict({"vocab": 100})


def test_bpe_vocab_must_leave_room_for_merges(tmp_path):
    with pytest.raises(ValueError, match="256 bytes"):
        train_tokenizer(EN, TokenizerConfig(vocab_size=200), tmp_path / "tok")
    assert not (tmp_path / "tok").exists()


def test_no_texts_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no texts"):
        train_tokenizer([], TokenizerConfig(), tmp_path / "tok")


# -- round trips ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_bpe_round_trip_is_exact_even_for_unseen_text(trained, lang):
    tok = trained["bpe", lang]
    texts = (EN[:50] + EN_UNSEEN) if lang == "en" else (ZH[:50] + ZH_UNSEEN)
    ids, _ = encode_batch(tok, texts, max_length=128)
    assert decode_batch(tok, ids) == [_normalized(t) for t in texts]
    for text in texts:  # the plain Hugging Face API agrees
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == _normalized(text)
    assert tok.unk_token_id not in ids.tolist()[0]  # bytes: nothing is unknown
    assert not any(tok.unk_token_id in row for row in ids.tolist())


def test_wordpiece_round_trip(trained):
    en, zh = trained["wordpiece", "en"], trained["wordpiece", "zh"]
    ids, _ = encode_batch(en, EN[:50], max_length=64)
    assert decode_batch(en, ids) == [t.lower() for t in EN[:50]]
    ids, _ = encode_batch(zh, ZH, max_length=64)
    assert decode_batch(zh, ids) == ZH  # joined: no spaces between characters
    assert " " in zh.decode(ids[0], skip_special_tokens=True)  # which the raw decoder inserts


def test_chinese_bpe_never_merges_across_characters(trained):
    tok = trained["bpe", "zh"]
    # no vocabulary entry spells more than one ideograph
    for token_id in range(len(tok)):
        assert len(CJK.findall(tok.decode([token_id]))) <= 1, tok.convert_ids_to_tokens(token_id)
    # and no token of an encoded caption spans two characters
    for text in ZH[:20] + ZH_UNSEEN:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        spans = [text[a:b] for a, b in enc["offset_mapping"]]
        assert all(len(CJK.findall(span)) <= 1 for span in spans), spans
    # frequent characters became whole tokens rather than three byte pieces
    assert len(tok("一个红色的大圆形", add_special_tokens=False)["input_ids"]) == 8


def test_without_cjk_split_bpe_merges_whole_words():
    """The contrast that motivates lang="zh": plain byte-level BPE fuses characters."""
    tok = build_tokenizer(ZH, TokenizerConfig(lang="en", vocab_size=600))
    assert any(len(CJK.findall(tok.decode([i]))) >= 2 for i in range(len(tok)))


def test_chinese_wordpiece_isolates_characters_and_counts_unknowns(trained):
    wp, bpe = trained["wordpiece", "zh"], trained["bpe", "zh"]
    tokens = wp.tokenize(ZH[0])
    assert all(len(CJK.findall(t)) <= 1 for t in tokens)
    unseen = "".join(ZH_UNSEEN)
    wp_unk = wp(unseen)["input_ids"].count(wp.unk_token_id)
    assert wp_unk > 0  # characters never seen in training
    assert bpe(unseen)["input_ids"].count(bpe.unk_token_id) == 0


def test_join_cjk_only_between_chinese_characters():
    assert join_cjk("一 个 红 色 的 圆 。") == "一个红色的圆。"
    assert join_cjk("3 个 red 圆 and a b") == "3 个 red 圆 and a b"


# -- determinism -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, lang", list(itertools.product(("bpe", "wordpiece"), ("en", "zh"))))
def test_training_is_deterministic(tmp_path, kind, lang):
    texts = EN if lang == "en" else ZH
    config = TokenizerConfig(kind=kind, lang=lang, vocab_size=600)
    shuffled = random.Random(0).sample(texts, len(texts))
    train_tokenizer(texts, config, tmp_path / "a", EXTRAS)
    train_tokenizer(iter(shuffled), config, tmp_path / "b", set(reversed(EXTRAS)))
    for name in ("tokenizer.json", "tokenizer_config.json", RECORD_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


# -- special tokens ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", [("bpe", "en"), ("bpe", "zh"), ("wordpiece", "en"), ("wordpiece", "zh")]
)
def test_special_tokens_have_fixed_single_ids(trained, key):
    tok = trained[key]
    assert [tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token] == [PAD, BOS, EOS, UNK]
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert tok.convert_tokens_to_ids(sorted(EXTRAS)) == [4, 5, 6]  # sorted after the base four
    assert set(EXTRAS) <= set(tok.all_special_tokens)
    for extra in EXTRAS:  # written in text, each is one id, untouched by lowercasing
        ids = tok(f"{extra} a red circle", add_special_tokens=False)["input_ids"]
        assert ids[0] == tok.convert_tokens_to_ids(extra)
    ids = tok("a red circle")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id


def test_decode_skips_specials_and_stops_at_eos(trained):
    tok = trained["bpe", "en"]
    happy, sep = tok.convert_tokens_to_ids([style_token("Happy"), VQA_SEP_TOKEN])
    body = tok("a red circle", add_special_tokens=False)["input_ids"]
    after_eos = tok(" never shown", add_special_tokens=False)["input_ids"]
    row = [tok.bos_token_id, happy, *body, tok.eos_token_id, *after_eos, tok.pad_token_id]
    assert decode_batch(tok, [row]) == ["a red circle"]
    assert decode_batch(tok, [row], skip_special_tokens=False) == ["<style:Happy>a red circle"]
    qa = [tok.bos_token_id, *body, sep, *body, tok.eos_token_id]
    assert decode_batch(tok, torch.tensor([qa]), skip_special_tokens=False) == [
        "a red circle<sep>a red circle"
    ]


def test_style_token_rejects_bad_names():
    assert style_token("Happy") == "<style:Happy>"
    with pytest.raises(ValueError):
        style_token("very happy")


# -- batches -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [("bpe", "en"), ("wordpiece", "zh")])
def test_encode_batch_pads_right_and_truncates_keeping_eos(trained, key):
    tok = trained[key]
    texts = (EN if key[1] == "en" else ZH)[:3] + ["a"]
    ids, mask = encode_batch(tok, texts, max_length=6)
    assert ids.shape == mask.shape == (4, 6) and ids.dtype == mask.dtype == torch.long
    assert (ids[:, 0] == tok.bos_token_id).all()
    assert (ids[:3, -1] == tok.eos_token_id).all()  # long captions: cut, eos kept
    assert mask[:3].all()
    short = tok("a", add_special_tokens=True)["input_ids"]
    assert ids[3].tolist() == short + [tok.pad_token_id] * (6 - len(short))
    assert mask[3].tolist() == [1] * len(short) + [0] * (6 - len(short))

    ids, mask = encode_batch(tok, texts, max_length=64, padding="longest")
    lengths = [len(tok(t)["input_ids"]) for t in texts]
    assert ids.shape == (4, max(lengths))
    assert mask.sum(dim=1).tolist() == lengths
    for row, text in zip(ids.tolist(), texts, strict=True):  # same as the post-processor
        expected = tok(text)["input_ids"]
        assert row[: len(expected)] == expected


def test_encode_batch_never_cuts_inside_a_character(trained):
    tok = trained["bpe", "zh"]
    text = "一个棕色的狗"  # 棕 and 狗 are unseen: three byte tokens each
    for max_length in range(3, 16):
        ids, _ = encode_batch(tok, [text], max_length=max_length)
        (decoded,) = decode_batch(tok, ids)
        assert text.startswith(decoded) and "\ufffd" not in decoded
        assert ids[0].tolist().count(tok.eos_token_id) == 1


def test_encode_batch_edge_cases(trained):
    tok = trained["bpe", "en"]
    ids, mask = encode_batch(tok, [], max_length=8)
    assert ids.shape == mask.shape == (0, 8)
    with pytest.raises(ValueError, match="list of texts"):
        encode_batch(tok, "a red circle", max_length=8)
    with pytest.raises(ValueError, match="max_length"):
        encode_batch(tok, ["a"], max_length=2)
    with pytest.raises(ValueError, match="shape"):
        decode_batch(tok, torch.zeros(3, dtype=torch.long))


# -- saving and loading --------------------------------------------------------------------------


def test_saved_folder_loads_back_identically(trained, tmp_path):
    tok = trained["bpe", "zh"]
    folder = Path(tok.name_or_path)
    assert {p.name for p in folder.iterdir()} >= {
        "tokenizer.json",
        "tokenizer_config.json",
        RECORD_FILE,
    }
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left
    record = json.loads((folder / RECORD_FILE).read_text())
    assert record["config"]["kind"] == "bpe" and record["config"]["lang"] == "zh"
    assert record["extra_special_tokens"] == sorted(EXTRAS)
    assert record["special_token_ids"] == {"pad": 0, "bos": 1, "eos": 2, "unk": 3}
    assert record["num_texts"] == len(ZH) and record["vocab_size"] == len(tok)

    for loaded in (load_tokenizer(folder), AutoTokenizer.from_pretrained(folder)):
        assert loaded.model_max_length == 32
        assert len(loaded) == len(tok)
        assert loaded.all_special_tokens == tok.all_special_tokens
        a, _ = encode_batch(tok, ZH_UNSEEN, 64)
        b, _ = encode_batch(loaded, ZH_UNSEEN, 64)
        assert torch.equal(a, b)
        assert decode_batch(loaded, b) == ZH_UNSEEN


def test_training_replaces_an_existing_folder_atomically(tmp_path):
    out = tmp_path / "tok"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    train_tokenizer(EN, TokenizerConfig(vocab_size=400), out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok"]


# -- pretrained tokenizers, offline ------------------------------------------------------------------


def test_pretrained_kind_copies_a_local_folder(trained, tmp_path):
    source = Path(trained["wordpiece", "zh"].name_or_path)
    config = TokenizerConfig(kind="pretrained", pretrained_name_or_path=str(source), max_length=16)
    copy = train_tokenizer(["ignored"], config, tmp_path / "copy", [style_token("Angry")])
    original = load_tokenizer(source)
    assert len(copy) == len(original) + 1  # only the new style token was added
    assert copy.model_max_length == 16
    assert style_token("Angry") in copy.all_special_tokens
    a, _ = encode_batch(original, ZH[:10], 16)
    b, _ = encode_batch(copy, ZH[:10], 16)
    assert torch.equal(a, b)
    record = json.loads((tmp_path / "copy" / RECORD_FILE).read_text())
    assert record["config"]["kind"] == "pretrained" and record["num_texts"] is None
    again = train_tokenizer([], config, tmp_path / "again", EXTRAS)  # already special: no growth
    assert len(again) == len(original)


def _save_gpt2_like(folder: Path) -> None:
    """A tiny GPT-2-style tokenizer: byte-level BPE, bos = eos = <|endoftext|>, no pad."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(EN, trainer)
    eot = "<|endoftext|>"
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=eot, eos_token=eot, unk_token=eot, model_max_length=1024
    )
    wrapped.save_pretrained(folder)


def test_gpt2_like_tokenizer_gets_a_pad_token(tmp_path):
    _save_gpt2_like(tmp_path / "gpt2")
    tok = load_tokenizer(tmp_path / "gpt2")
    assert tok.pad_token == PAD and tok.pad_token_id == len(tok) - 1  # added at the end
    assert tok.bos_token_id == tok.eos_token_id
    ids, mask = encode_batch(tok, ["A red circle.", "Two blue squares in the middle."], 24)
    assert ids[0, 0] == tok.bos_token_id and ids[0, int(mask[0].sum()) - 1] == tok.eos_token_id
    assert decode_batch(tok, ids) == ["A red circle.", "Two blue squares in the middle."]


def test_bert_like_tokenizer_uses_cls_and_sep(tmp_path):
    tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = tokenizers.normalizers.BertNormalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        ZH, trainers.WordPieceTrainer(special_tokens=specials, show_progress=False)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(tmp_path / "bert")
    loaded = load_tokenizer(tmp_path / "bert")
    assert (loaded.bos_token, loaded.eos_token, loaded.pad_token) == ("[CLS]", "[SEP]", "[PAD]")
    assert len(loaded) == tok.get_vocab_size()  # nothing was added
    ids, _ = encode_batch(loaded, ZH[:5], 32)
    assert decode_batch(loaded, ids) == ZH[:5]


def test_hub_name_offline_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "vlcore-test/no-such-tokenizer"
    for kwargs in ({}, {"local_only": False}):
        with pytest.raises(TokenizerUnavailableError) as err:
            load_tokenizer(name, **kwargs)
        message = str(err.value)
        assert name in message and "HF_HUB_OFFLINE" in message
        assert "online" in message and "local folder" in message
        assert isinstance(err.value, OSError) and isinstance(err.value, ValueError)
    config = TokenizerConfig(kind="pretrained", pretrained_name_or_path=name)
    with pytest.raises(TokenizerUnavailableError, match="local folder"):
        train_tokenizer([], config, tmp_path / "tok")
    assert not (tmp_path / "tok").exists()
    with pytest.raises(TokenizerUnavailableError, match="does not exist"):
        load_tokenizer(tmp_path / "missing")
