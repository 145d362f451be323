"""Text tokenizers: train a small one on captions, or copy a pretrained one into the workflow.

Whatever the kind, the result is a Hugging Face tokenizer folder (``tokenizer.json``,
``tokenizer_config.json``) that ``AutoTokenizer.from_pretrained`` reads, plus
``vlcore_tokenizer.json`` recording how it was made. The kinds:

- ``bpe`` + ``en``: byte-level BPE as in GPT-2 (Radford et al., 2019). Any text encodes
  without ``<unk>``, and decoding gives the text back exactly (after NFC and lowercasing).
- ``bpe`` + ``zh``: the same, but every CJK ideograph is split off as its own pre-token first,
  so merges stay inside one character instead of fusing whole unspaced sentences into tokens.
- ``wordpiece``: BERT-style (Devlin et al., 2019), trained deterministically by
  :mod:`vlcore.text.wordpiece`: ideographs isolated, words split on
  whitespace and punctuation. Its decoder puts spaces between tokens;
  :func:`vlcore.text.decode_batch` takes them out again between Chinese characters.
- ``pretrained``: load ``pretrained_name_or_path`` (a hub name such as ``gpt2`` or
  ``bert-base-chinese`` for online users, or a local folder) and save a copy, so the
  ``train_tokenizer`` rule always outputs a local folder.

Special tokens are the same everywhere: ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2,
``<unk>`` = 3 in tokenizers we train, then the extra special tokens (style tokens such as
``<style:Happy>``, the VQA separator ``<sep>``) in sorted order. The post-processor wraps every
text as ``<bos> text <eos>``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tokenizers
import transformers
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from vlcore.io import atomic_dir, write_json
from vlcore.text.cjk import CJK_CHAR_CLASS
from vlcore.text.load import hub_offline, load_tokenizer
from vlcore.text.specials import BOS, EOS, PAD, SPECIAL_TOKENS, UNK, normalize_extra_tokens
from vlcore.text.wordpiece import count_words, train_wordpiece

logger = logging.getLogger(__name__)

#: Written beside the Hugging Face files: the config and provenance of a tokenizer folder.
RECORD_FILE = "vlcore_tokenizer.json"

KINDS = ("bpe", "wordpiece", "pretrained")
LANGS = ("en", "zh")
_BYTE_ALPHABET = 256


@dataclass
class TokenizerConfig:
    """How to build the text tokenizer of an experiment (the ``tokenizer:`` config section)."""

    # bpe: byte-level, never <unk>, exact decoding; wordpiece: BERT-style; pretrained: a copy
    kind: Literal["bpe", "wordpiece", "pretrained"] = "bpe"
    # tiny default for the synthetic data; most parameters of a tiny model sit in the embedding
    vocab_size: int = 2000
    # a merge (BPE) or word piece must occur this often to enter the vocabulary
    min_frequency: int = 2
    # captions are scored case-insensitively, so case would only split the vocabulary
    lowercase: bool = True
    # zh isolates CJK characters before BPE and joins them without spaces when decoding
    lang: Literal["en", "zh"] = "en"
    # hub name (bert-base-chinese, gpt2; needs network once) or a local folder; kind pretrained
    pretrained_name_or_path: str | None = None
    # tokens per caption including <bos> and <eos>: the text context length of the models
    max_length: int = 32

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"tokenizer kind {self.kind!r} is unknown; expected one of {KINDS}")
        if self.lang not in LANGS:
            raise ValueError(f"tokenizer lang {self.lang!r} is unknown; expected one of {LANGS}")
        if self.kind == "pretrained" and not self.pretrained_name_or_path:
            raise ValueError(
                "tokenizer kind 'pretrained' needs pretrained_name_or_path "
                "(a hub name such as 'gpt2', or a local tokenizer folder)"
            )
        if self.kind != "pretrained" and self.vocab_size < len(SPECIAL_TOKENS) + 1:
            raise ValueError(f"tokenizer vocab_size {self.vocab_size} is too small")
        if self.min_frequency < 1:
            raise ValueError(f"tokenizer min_frequency {self.min_frequency} must be >= 1")
        if self.max_length < 3:
            raise ValueError(
                f"tokenizer max_length {self.max_length} must be >= 3 (<bos>, a token, <eos>)"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TokenizerConfig:
        """Build from a config section; unknown keys raise ``ValueError`` naming them."""
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(
                f"unknown tokenizer option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- building and training --------------------------------------------------------------------


def _build_backend(config: TokenizerConfig) -> tokenizers.Tokenizer:
    """An untrained ``tokenizers.Tokenizer`` with the normalizer, pre-tokenizer and decoder."""
    if config.kind == "bpe":
        tok = tokenizers.Tokenizer(models.BPE(unk_token=UNK))
        steps = [normalizers.NFC()] + ([normalizers.Lowercase()] if config.lowercase else [])
        tok.normalizer = normalizers.Sequence(steps)
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        if config.lang == "zh":
            cjk = pre_tokenizers.Split(Regex(CJK_CHAR_CLASS), behavior="isolated")
            tok.pre_tokenizer = pre_tokenizers.Sequence([cjk, byte_level])
        else:
            tok.pre_tokenizer = byte_level
        tok.decoder = decoders.ByteLevel()
    else:  # wordpiece
        tok = tokenizers.Tokenizer(models.WordPiece(unk_token=UNK))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=True,  # spaces around every ideograph: one token each
            strip_accents=False,  # keep é: decoding should give the text back
            lowercase=config.lowercase,
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return tok


def _bpe_trainer(config: TokenizerConfig, special_tokens: list[str]) -> trainers.BpeTrainer:
    floor = _BYTE_ALPHABET + len(special_tokens)
    if config.vocab_size <= floor:
        raise ValueError(
            f"tokenizer vocab_size {config.vocab_size} leaves no room for merges: byte-level "
            f"BPE needs more than {floor} (256 bytes + {len(special_tokens)} special tokens)"
        )
    return trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )


def _checked_texts(texts: Iterable[str], counter: list[int]) -> Iterator[str]:
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"training texts must be str, got {type(text).__name__}: {text!r}")
        counter[0] += 1
        yield text


def build_tokenizer(
    texts: Iterable[str], config: TokenizerConfig, extra_special_tokens: Iterable[str] = ()
) -> PreTrainedTokenizerFast:
    """Train a ``bpe`` or ``wordpiece`` tokenizer in memory (see :func:`train_tokenizer`)."""
    return _train(texts, config, extra_special_tokens)[0]


def _train(
    texts: Iterable[str], config: TokenizerConfig, extra_special_tokens: Iterable[str]
) -> tuple[PreTrainedTokenizerFast, int]:
    """The trained tokenizer and the number of texts it saw."""
    if config.kind == "pretrained":
        raise ValueError(
            "build_tokenizer trains bpe or wordpiece; use train_tokenizer for pretrained"
        )
    extras = normalize_extra_tokens(extra_special_tokens)
    special_tokens = [*SPECIAL_TOKENS, *extras]
    tok = _build_backend(config)
    if config.kind == "bpe":
        trainer = _bpe_trainer(config, special_tokens)
        count = [0]
        tok.train_from_iterator(_checked_texts(texts, count), trainer=trainer)
        num_texts = count[0]
    else:  # the library's WordPiece trainer is not deterministic: see vlcore.text.wordpiece
        words, num_texts = count_words(texts, tok.normalizer, tok.pre_tokenizer)
        if num_texts:
            tok.model = train_wordpiece(
                words,
                vocab_size=config.vocab_size,
                min_frequency=config.min_frequency,
                special_tokens=special_tokens,
                unk_token=UNK,
            )
            tok.add_special_tokens(special_tokens)
    if num_texts == 0:
        raise ValueError("no texts to train the tokenizer on")
    ids = {t: tok.token_to_id(t) for t in special_tokens}
    if list(ids.values()) != list(range(len(special_tokens))):  # the trainer puts them first
        raise RuntimeError(f"special tokens did not get the first ids: {ids}")
    template = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        pair=f"{BOS} $A {EOS} $B:1 {EOS}:1",
        special_tokens=[(BOS, ids[BOS]), (EOS, ids[EOS])],
    )
    if config.kind == "bpe":
        # ByteLevel keeps offsets pointing at the words rather than at their leading spaces
        tok.post_processor = processors.Sequence(
            [processors.ByteLevel(trim_offsets=True), template]
        )
    else:
        tok.post_processor = template
    logger.info(
        "trained a %s tokenizer (%s) on %d texts: %d tokens, %d extra special tokens",
        config.kind,
        config.lang,
        num_texts,
        tok.get_vocab_size(),
        len(extras),
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        extra_special_tokens=extras,
        model_max_length=config.max_length,
        padding_side="right",
        truncation_side="right",
    )
    return wrapped, num_texts


def _pretrained_copy(
    config: TokenizerConfig, extra_special_tokens: Iterable[str]
) -> PreTrainedTokenizerBase:
    tokenizer = load_tokenizer(config.pretrained_name_or_path, local_only=hub_offline())
    extras = [
        t
        for t in normalize_extra_tokens(extra_special_tokens)
        if t not in tokenizer.all_special_tokens
    ]
    if extras:
        added = tokenizer.add_special_tokens(
            {"extra_special_tokens": extras}, replace_extra_special_tokens=False
        )
        if added:
            logger.warning(
                "added %d extra special tokens to %s; resize the model's token embeddings to %d",
                added,
                config.pretrained_name_or_path,
                len(tokenizer),
            )
    tokenizer.model_max_length = config.max_length
    return tokenizer


def train_tokenizer(
    texts: Iterable[str],
    config: TokenizerConfig,
    out_dir: str | os.PathLike,
    extra_special_tokens: Iterable[str] = (),
) -> PreTrainedTokenizerBase:
    """Train (or, for ``kind="pretrained"``, copy) a tokenizer and save it to ``out_dir``.

    The same texts and config give a byte-identical ``tokenizer.json``. The folder is written
    beside ``out_dir`` under a temporary name and renamed into place once complete, so a killed
    job never leaves half a tokenizer. ``texts`` are ignored for ``pretrained``. Returns the
    tokenizer as :func:`load_tokenizer` reads it back from ``out_dir``.
    """
    if config.kind == "pretrained":
        tokenizer = _pretrained_copy(config, extra_special_tokens)
        num_texts = None
    else:
        tokenizer, num_texts = _train(texts, config, extra_special_tokens)
    record = {
        "config": config.to_dict(),
        "extra_special_tokens": normalize_extra_tokens(extra_special_tokens),
        "special_token_ids": {
            "pad": tokenizer.pad_token_id,
            "bos": tokenizer.bos_token_id,
            "eos": tokenizer.eos_token_id,
            "unk": tokenizer.unk_token_id,
        },
        "vocab_size": len(tokenizer),
        "num_texts": num_texts,
        "versions": {
            "tokenizers": tokenizers.__version__,
            "transformers": transformers.__version__,
        },
    }
    with atomic_dir(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)
        write_json(record, Path(tmp) / RECORD_FILE)
    logger.info("saved tokenizer (%d tokens) to %s", len(tokenizer), out_dir)
    return load_tokenizer(out_dir)
