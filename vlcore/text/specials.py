"""The special tokens every vlcore tokenizer shares, and the extra ones models condition on.

Tokenizers we train give ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>`` the ids 0 to 3, then the
extra special tokens in sorted order: style tokens (``<style:Happy>``) that let a captioner or
DALL-E condition on a caption style, and ``<sep>`` between a VQA question and its answer.
"""

from __future__ import annotations

from collections.abc import Iterable

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
#: The base special tokens, in id order (0, 1, 2, 3) for the tokenizers we train.
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
#: Separates question and answer in VQA sequences; pass it in ``extra_special_tokens``.
VQA_SEP_TOKEN = "<sep>"


def style_token(style: str) -> str:
    """The special token that conditions a model on a caption style: ``<style:Happy>``."""
    if not style or any(c.isspace() for c in style) or ">" in style:
        raise ValueError(f"style {style!r} must be non-empty, without whitespace or '>'")
    return f"<style:{style}>"


def normalize_extra_tokens(extra_special_tokens: Iterable[str]) -> list[str]:
    """Deduplicate and sort extra special tokens, so a set gives the same ids on every run."""
    tokens = set()
    for token in extra_special_tokens:
        if not isinstance(token, str) or not token.strip() or token != token.strip():
            raise ValueError(
                f"extra special token {token!r} must be a non-empty string without outer spaces"
            )
        tokens.add(token)
    clash = sorted(tokens & set(SPECIAL_TOKENS))
    if clash:
        raise ValueError(f"extra special tokens {clash} repeat the base tokens {SPECIAL_TOKENS}")
    return sorted(tokens)
