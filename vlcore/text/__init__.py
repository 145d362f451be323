"""Text side of vlcore: tokenizers for the models, and segmentation for the metrics."""

from vlcore.text.codec import decode_batch, encode_batch
from vlcore.text.load import TokenizerUnavailableError, ensure_special_tokens, load_tokenizer
from vlcore.text.segment import segment
from vlcore.text.specials import BOS, EOS, PAD, SPECIAL_TOKENS, UNK, VQA_SEP_TOKEN, style_token
from vlcore.text.tokenizer import RECORD_FILE, TokenizerConfig, build_tokenizer, train_tokenizer

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
