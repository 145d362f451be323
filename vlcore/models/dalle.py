"""DALL-E: text-to-image as next-token prediction over ``[text tokens ; <boi> ; image codes]``.

Ramesh et al., "Zero-Shot Text-to-Image Generation", 2021: a decoder-only transformer reads a
caption and writes the image as the discrete codes of a VQ-VAE (van den Oord et al., 2017),
one code per grid cell in raster order; the VQ-VAE's decoder turns the codes into pixels. Here
the transformer is a Hugging Face GPT-2 (Radford et al., 2019) over one joint vocabulary::

    ids [0, T)              the experiment's text tokens (English or Chinese tokenizer)
    id  T                   <boi>, "begin image"
    ids [T + 1, T + 1 + K)  the K codes of the VQ-VAE codebook (code c is id T + 1 + c)

A sequence is the caption cut or padded to ``text_length`` tokens (``<bos> text <eos>`` then
``<pad>``; the padding is attended to like any token, as DALL-E's learned padding tokens are,
so every sequence has the same layout and positions), then ``<boi>``, then the ``h x w`` codes::

    <bos> a red circle <eos> <pad> .. <pad> <boi> c_1 c_2 .. c_hw

The loss is the cross-entropy of each code given everything before it, over the K code logits
only, plus ``text_weight`` times the cross-entropy of the caption tokens (DALL-E weighted text
1/8 and image 7/8). Sampling (:func:`sample_codes`) keeps only image codes with a
:class:`ImageCodesOnly` logits processor, then temperature / top-k / top-p (Hugging Face's
warpers), and draws every code by the Gumbel-max trick with noise from the sample's own seed:
a sample depends on its seed alone, never on the batch it was drawn in. It runs with the KV
cache (one token per step after the prompt).

Shapes: text ``B Lt`` (``Lt`` = ``text_length``), codes ``B N`` (``N = h * w``, raster order),
logits ``B L V``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerBase
from transformers.generation.logits_process import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from vlcore.models.generation import TextIds, decoder_from_config

logger = logging.getLogger(__name__)


# -- configuration ----------------------------------------------------------------------------


@dataclass
class DalleConfig:
    """The DALL-E architecture (a preset JSON in ``vlcore/presets/dalle``, plus overrides)."""

    # text tokens per caption, <bos> and <eos> included; longer captions are cut, shorter
    # ones padded (the image always starts at the same position); null: the tokenizer's
    # max_length (the experiment's tokenizer.max_length), resolved by the trainer
    text_length: int | None = None
    # GPT2Config fields (n_embd, n_layer, n_head, dropouts); vocab size, positions and special
    # ids come from the tokenizer, the codebook and the grid
    transformer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.text_length is not None and self.text_length < 3:
            raise ValueError(
                f"dalle text_length must be >= 3 (<bos>, a token, <eos>), got {self.text_length}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DalleConfig:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed - {"name", "description"})
        if unknown:
            raise ValueError(
                f"unknown dalle model option(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**{k: v for k, v in values.items() if k in allowed})


@dataclass(frozen=True)
class JointVocab:
    """Where text, ``<boi>`` and image codes sit in the joint vocabulary."""

    text: TextIds  # the tokenizer's size and special ids
    codebook_size: int  # K, codes of the VQ-VAE

    def __post_init__(self) -> None:
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")

    @property
    def boi(self) -> int:
        return self.text.vocab_size

    @property
    def code_offset(self) -> int:
        return self.text.vocab_size + 1

    @property
    def size(self) -> int:
        return self.text.vocab_size + 1 + self.codebook_size


@dataclass
class SamplingConfig:
    """How codes are drawn (the ``generate:`` section of ``dalle``)."""

    temperature: float = 1.0  # divides the logits; < 1 sharpens, > 1 flattens
    top_k: int = 0  # keep the k most likely codes (0: all)
    top_p: float = 1.0  # keep the smallest set of codes with this much probability (1: all)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 turns it off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


# -- text -------------------------------------------------------------------------------------


def text_tokens(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], text_length: int
) -> torch.Tensor:
    """Captions -> ``LongTensor [B, text_length]``: ``<bos> text <eos>`` then ``<pad>``; a long
    caption loses its end (``<eos>`` is always kept)."""
    if isinstance(texts, str):
        raise ValueError("text_tokens takes a list of texts, not a single string")
    body = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    out = torch.full((len(body), text_length), tokenizer.pad_token_id, dtype=torch.long)
    for i, ids in enumerate(body):
        seq = [tokenizer.bos_token_id, *ids[: text_length - 2], tokenizer.eos_token_id]
        out[i, : len(seq)] = torch.tensor(seq)
    return out


# -- the logits processor ---------------------------------------------------------------------


class ImageCodesOnly(LogitsProcessor):
    """Sets every logit outside the image codes ``[offset, offset + K)`` to ``-inf``, so
    ``generate`` (or :func:`sample_codes`) can only write codes."""

    def __init__(self, code_offset: int, codebook_size: int):
        self.start, self.stop = code_offset, code_offset + codebook_size

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        masked = torch.full_like(scores, float("-inf"))
        masked[:, self.start : self.stop] = scores[:, self.start : self.stop]
        return masked


# -- the model --------------------------------------------------------------------------------


class Dalle(nn.Module):
    """GPT-2 over the joint vocabulary (see the module docstring)."""

    name = "dalle"

    def __init__(
        self,
        gpt: nn.Module,
        config: DalleConfig,
        vocab: JointVocab,
        grid: tuple[int, int],
    ):
        super().__init__()
        self.config = config
        self.vocab = vocab
        self.grid = (int(grid[0]), int(grid[1]))
        self.gpt = gpt  # a GPT2LMHeadModel over the joint vocabulary
        need = self.sequence_length
        have = int(gpt.config.n_positions)
        if have < need:
            raise ValueError(
                f"the transformer has {have} positions but a sequence needs {need} "
                f"(text_length {config.text_length} + <boi> + {self.n_codes} codes)"
            )
        if gpt.get_input_embeddings().num_embeddings != vocab.size:
            raise ValueError("the transformer's vocabulary does not match the joint vocabulary")

    # -- construction --------------------------------------------------------------------

    @classmethod
    def build(
        cls, config: DalleConfig, text: TextIds, codebook_size: int, grid: tuple[int, int]
    ) -> Dalle:
        """A new, randomly initialised DALL-E (seed torch first); ``config.text_length`` must
        be set (see :func:`vlcore.pipeline.dalle.load_preset`)."""
        if config.text_length is None:
            raise ValueError("DalleConfig.text_length is null: resolve it from the tokenizer first")
        vocab = JointVocab(text, int(codebook_size))
        values = {
            "model_type": "gpt2",
            **dict(config.transformer),
            "vocab_size": vocab.size,
            "n_positions": config.text_length + 1 + int(grid[0]) * int(grid[1]),
            "bos_token_id": text.bos,
            "eos_token_id": text.eos,
            "pad_token_id": text.pad,
        }
        gpt = AutoModelForCausalLM.from_config(AutoConfig.for_model(**values))
        return cls(gpt, config, vocab, grid)

    def spec(self) -> dict[str, Any]:
        """Everything :meth:`from_spec` needs to rebuild this architecture."""
        return {
            "config": dataclasses.asdict(self.config),
            "codebook_size": self.vocab.codebook_size,
            "grid": list(self.grid),
            "text": dataclasses.asdict(self.vocab.text),
            "transformer_config": self.gpt.config.to_dict(),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Dalle:
        """The architecture saved by :meth:`spec`, randomly initialised (load weights next)."""
        vocab = JointVocab(TextIds(**spec["text"]), int(spec["codebook_size"]))
        gpt = decoder_from_config(spec["transformer_config"])
        return cls(gpt, DalleConfig.from_dict(spec["config"]), vocab, tuple(spec["grid"]))

    # -- shapes --------------------------------------------------------------------------

    @property
    def n_codes(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def sequence_length(self) -> int:
        return self.config.text_length + 1 + self.n_codes

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def prompt(self, text_ids: torch.Tensor) -> torch.Tensor:
        """``B Lt`` text -> ``B Lt+1`` text followed by ``<boi>``."""
        if text_ids.ndim != 2 or text_ids.shape[1] != self.config.text_length:
            raise ValueError(
                f"text ids must be [B, {self.config.text_length}], got {list(text_ids.shape)}"
            )
        boi = text_ids.new_full((text_ids.shape[0], 1), self.vocab.boi)
        return torch.cat([text_ids, boi], dim=1)

    def sequence(self, text_ids: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """``B Lt`` text and ``B N`` (or ``B h w``) codes -> the ``B L`` joint sequence."""
        codes = codes.reshape(codes.shape[0], -1).long()
        if codes.shape[1] != self.n_codes:
            raise ValueError(f"expected {self.n_codes} codes per image, got {codes.shape[1]}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.vocab.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.vocab.codebook_size})")
        return torch.cat([self.prompt(text_ids), codes + self.vocab.code_offset], dim=1)

    # -- forward -------------------------------------------------------------------------

    def hidden_states(self, text_ids: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The transformer's last hidden states ``B L-1 E`` over the joint sequence minus its
        last token (position ``t`` predicts token ``t + 1``)."""
        seq = self.sequence(text_ids, codes)
        return self.gpt.base_model(input_ids=seq[:, :-1], use_cache=False).last_hidden_state

    def logits(self, text_ids: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``B L-1 V`` over the whole joint vocabulary."""
        return self.gpt.get_output_embeddings()(self.hidden_states(text_ids, codes))

    def losses(
        self, text_ids: torch.Tensor, codes: torch.Tensor, *, text: bool = True
    ) -> dict[str, torch.Tensor]:
        """Mean cross-entropy of the image codes (over the K code logits only) and, when
        ``text``, of the caption tokens after ``<bos>`` up to ``<eos>`` (padding excluded).

        Only the logits a loss needs are computed: the image positions against the code rows
        of the output embedding, the text positions against the text rows.
        """
        hidden = self.hidden_states(text_ids, codes)
        head = self.gpt.get_output_embeddings()
        lt, k0, size = self.config.text_length, self.vocab.code_offset, self.vocab.codebook_size
        code_logits = F.linear(hidden[:, lt:], head.weight[k0 : k0 + size])
        out = {
            "image": F.cross_entropy(
                code_logits.float().reshape(-1, size), codes.reshape(-1).long()
            )
        }
        if text:
            targets = text_ids[:, 1:]
            keep = targets != self.vocab.text.pad
            text_logits = F.linear(
                hidden[:, : lt - 1][keep], head.weight[: self.vocab.text.vocab_size]
            )
            out["text"] = (
                F.cross_entropy(text_logits.float(), targets[keep])
                if keep.any()
                else out["image"].new_zeros(())
            )
        return out

    def forward(
        self, text_ids: torch.Tensor, codes: torch.Tensor, text_weight: float = 0.0
    ) -> torch.Tensor:
        """The training loss ``image + text_weight * text`` (see :meth:`losses`); the loss is
        what ``forward`` computes, so DDP synchronises exactly its gradients."""
        parts = self.losses(text_ids, codes, text=bool(text_weight))
        return parts["image"] + text_weight * parts["text"] if text_weight else parts["image"]

    def logits_processor(self) -> ImageCodesOnly:
        return ImageCodesOnly(self.vocab.code_offset, self.vocab.codebook_size)


# -- sampling ---------------------------------------------------------------------------------


def gumbel_noise(seeds: Sequence[int], n_codes: int, codebook_size: int) -> torch.Tensor:
    """Gumbel(0, 1) noise ``B N K`` on the CPU, row ``i`` drawn from ``seeds[i]`` alone."""
    out = torch.empty(len(seeds), n_codes, codebook_size)
    gen = torch.Generator()
    for i, seed in enumerate(seeds):
        gen.manual_seed(int(seed))
        out[i].uniform_(generator=gen)
    return -torch.log(-torch.log(out.clamp_(1e-20, 1.0 - 1e-7)))


def warpers(sampling: SamplingConfig) -> LogitsProcessorList:
    """Hugging Face's temperature, top-k and top-p warpers, as ``generate`` applies them."""
    out = LogitsProcessorList()
    if sampling.temperature != 1.0:
        out.append(TemperatureLogitsWarper(sampling.temperature))
    if sampling.top_k:
        out.append(TopKLogitsWarper(sampling.top_k))
    if sampling.top_p < 1.0:
        out.append(TopPLogitsWarper(sampling.top_p))
    return out


@torch.no_grad()
def sample_codes(
    model: Dalle,
    text_ids: torch.Tensor,
    seeds: Sequence[int] | None = None,
    sampling: SamplingConfig | None = None,
    *,
    use_cache: bool = True,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> torch.Tensor:
    """Write ``B N`` image codes (raster order, values in ``[0, K)``) for ``B Lt`` captions.

    ``seeds`` (one per row) samples with ``sampling`` (temperature, top-k, top-p) by the
    Gumbel-max trick, each row from its own seed; ``None`` decodes greedily. ``use_cache``
    feeds one token per step with the KV cache (else the whole sequence is recomputed every
    step: the same result, slower). ``autocast`` is a context manager factory (bf16 on CUDA).
    """
    sampling = sampling or SamplingConfig()
    if seeds is not None and len(seeds) != len(text_ids):
        raise ValueError(f"got {len(seeds)} seeds for {len(text_ids)} captions")
    device = model.device
    was_training = model.training
    model.eval()
    processors = LogitsProcessorList([model.logits_processor()])
    if seeds is not None:
        processors.extend(warpers(sampling))
    k0, size = model.vocab.code_offset, model.vocab.codebook_size
    noise = gumbel_noise(seeds, model.n_codes, size) if seeds is not None else None
    seq = model.prompt(text_ids.to(device))
    codes = torch.empty(len(seq), model.n_codes, dtype=torch.long, device=device)
    past = None
    ctx = autocast or contextlib.nullcontext
    try:
        for t in range(model.n_codes):
            if use_cache and past is not None:
                step_ids = seq[:, -1:]
            else:
                step_ids, past = seq, None
            with ctx():
                out = model.gpt(input_ids=step_ids, past_key_values=past, use_cache=True)
            past = out.past_key_values if use_cache else None
            scores = processors(seq, out.logits[:, -1].float())[:, k0 : k0 + size]
            if noise is not None:
                scores = scores + noise[:, t].to(device)
            codes[:, t] = scores.argmax(dim=-1)
            seq = torch.cat([seq, (codes[:, t] + k0)[:, None]], dim=1)
    finally:
        model.train(was_training)
    return codes
