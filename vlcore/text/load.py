"""Load any tokenizer folder or hub name, and give it the pad, bos and eos tokens vlcore needs.

Offline is the default: a hub name is looked up in the local Hugging Face cache only, and
when it is not there the error says how to go on (go online once, or point at a folder).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from vlcore.text.specials import BOS, EOS, PAD

logger = logging.getLogger(__name__)


class TokenizerUnavailableError(OSError, ValueError):
    """A tokenizer could not be found: not a local folder, and not reachable on the hub."""


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set (read now, not when huggingface_hub was imported)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith(("/", ".", "~"))
        or "\\" in name
        or name.count("/") > 1
        or name.endswith("/")
    )


def load_tokenizer(
    path_or_name: str | os.PathLike, *, local_only: bool = True
) -> PreTrainedTokenizerBase:
    """Load a tokenizer folder (ours or any Hugging Face one) or a hub name.

    With ``local_only`` (the default), or when ``HF_HUB_OFFLINE`` is set, a hub name is only
    looked up in the local Hugging Face cache; if it is not there, a
    :class:`TokenizerUnavailableError` explains how to proceed. The loaded tokenizer always has
    ``pad``, ``bos`` and ``eos`` tokens (see :func:`ensure_special_tokens`).
    """
    name = os.fspath(path_or_name)
    offline = local_only or hub_offline()
    if Path(name).expanduser().is_dir():
        source = str(Path(name).expanduser())
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as err:
            raise TokenizerUnavailableError(
                f"{source} is a folder but holds no loadable tokenizer "
                f"(expected tokenizer.json and tokenizer_config.json): {err}"
            ) from err
    elif _looks_like_path(name) or Path(name).expanduser().exists():
        raise TokenizerUnavailableError(f"tokenizer folder {name} does not exist")
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=offline)
        except (OSError, ValueError) as err:
            if offline:
                why = "HF_HUB_OFFLINE is set" if hub_offline() else "local_only=True was passed"
                raise TokenizerUnavailableError(
                    f"tokenizer {name!r} is not a local folder and is not in the Hugging Face "
                    f"cache, and the hub may not be contacted ({why}). Either go online once "
                    f"(unset HF_HUB_OFFLINE; load_tokenizer(..., local_only=False)) to download "
                    f"it, or set pretrained_name_or_path to a local folder holding a saved "
                    f"tokenizer (tokenizer.json, tokenizer_config.json)."
                ) from err
            raise TokenizerUnavailableError(
                f"could not load tokenizer {name!r} from the Hugging Face hub: {err}. "
                f"Check the name, or point at a local tokenizer folder."
            ) from err
    ensure_special_tokens(tokenizer)
    return tokenizer


def ensure_special_tokens(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Give ``tokenizer`` pad, bos and eos tokens where it lacks them; return the tokens added.

    - bos: the existing ``cls_token`` (BERT's ``[CLS]``), else ``<bos>``;
    - eos: the existing ``sep_token`` (BERT's ``[SEP]``), else ``<eos>``;
    - pad: ``<pad>``. GPT-2 has no pad token, so loading it adds ``<pad>`` as a new token: a
      pretrained GPT-2 model must then ``resize_token_embeddings(len(tokenizer))``.

    Tokens already in the vocabulary are reused; only missing ones grow it (a warning says so).
    """
    added = []
    vocab = tokenizer.get_vocab()
    for attr, fallback_attr, default in (
        ("bos_token", "cls_token", BOS),
        ("eos_token", "sep_token", EOS),
        ("pad_token", None, PAD),
    ):
        if getattr(tokenizer, attr) is not None:
            continue
        fallback = getattr(tokenizer, fallback_attr) if fallback_attr else None
        if fallback is not None:
            setattr(tokenizer, attr, fallback)
            continue
        tokenizer.add_special_tokens({attr: default})
        if default not in vocab:
            added.append(default)
    if added:
        logger.warning(
            "tokenizer %s lacked %s: added, vocabulary now %d tokens; resize the model's token "
            "embeddings (model.resize_token_embeddings(len(tokenizer)))",
            tokenizer.name_or_path,
            ", ".join(added),
            len(tokenizer),
        )
    return added
