"""Text side of vlcore: tokenizers for the models, and segmentation for the metrics."""

from vlcore.text.codec import decode_batch, encode_batch
from vlcore.text.segment import segment
from vlcore.text.tokenizer import (
    BOS,
    EOS,
    PAD,
    RECORD_FILE,
    SPECIAL_TOKENS,
    UNK,
    VQA_SEP_TOKEN,
    TokenizerConfig,
    TokenizerUnavailableError,
    build_tokenizer,
    ensure_special_tokens,
    load_tokenizer,
    style_token,
    train_tokenizer,
)

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "RECORD_FILE",
    "SPECIAL_TOKENS",
    "UNK",
    "VQA_SEP_TOKEN",
    "TokenizerConfig",
    "TokenizerUnavailableError",
    "build_tokenizer",
    "decode_batch",
    "encode_batch",
    "ensure_special_tokens",
    "load_tokenizer",
    "segment",
    "style_token",
    "train_tokenizer",
]
