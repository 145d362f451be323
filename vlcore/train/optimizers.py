"""The training loop's optimizer: AdamW, or Muon for the weight matrices and filters.

``optimizer: adamw`` (the default) is AdamW with decoupled weight decay on matrices only.
``optimizer: muon`` steps every hidden weight matrix (the 2-D ``weight`` of a linear layer,
attention's ``in_proj_weight``) and every convolution's filters with :class:`Muon` (Jordan
et al. 2024: momentum, then the update orthogonalised by Newton-Schulz iterations; PyTorch's
step, see the class), and everything else (embeddings and the head tied to them, norms,
biases, positional and projection parameters) with AdamW, as the Muon authors do. Muon's
step is scaled to AdamW's update size (PyTorch's ``match_rms_adamw``, Liu et al. 2025), so
one learning rate and schedule drive both (docs/optimizer.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

OPTIMIZERS = ("adamw", "muon")
MUON_NAMES = ("weight", "in_proj_weight")  # a module's own 2-D parameters Muon takes


def muon_split(
    model: torch.nn.Module, convolutions: bool = True
) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """The trainable parameters as (Muon's, AdamW's): Muon takes every hidden weight matrix
    and, with ``convolutions``, every convolution's filters. An embedding's table stays with
    AdamW wherever else it is used (a language-model head tied to it)."""
    embedding = {
        id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()
    }
    muon, seen = [], set()
    for module in model.modules():
        filters = convolutions and isinstance(module, torch.nn.modules.conv._ConvNd)
        for name, param in module.named_parameters(recurse=False):
            matrix = param.ndim == 2 and name in MUON_NAMES
            take = (matrix or (filters and name == "weight")) and id(param) not in embedding
            if take and param.requires_grad and id(param) not in seen:
                seen.add(id(param))
                muon.append(param)
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    return muon, rest


def _decay_groups(params: Iterable[torch.nn.Parameter], weight_decay: float) -> list[dict]:
    """AdamW's two groups: weight decay on matrices, none on biases and norms."""
    params = list(params)
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def newton_schulz(
    update: torch.Tensor,
    coefficients: tuple[float, float, float],
    steps: int,
    eps: float,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Muon's orthogonalisation of a stack ``N r c`` of updates at once (each as PyTorch's
    quintic Newton-Schulz iteration, ``torch.optim._muon``, computes it), run in ``dtype``."""
    a, b, c = coefficients
    x = update.to(dtype)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x.div(x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps))
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def stacks_of_one_shape(
    matrices: Sequence[torch.Tensor],
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """The matrices grouped by shape up to transposition: each group's positions in
    ``matrices`` and its members stacked wide (``N r c``, r <= c; a tall one transposed)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, matrix in enumerate(matrices):
        groups.setdefault(tuple(sorted(matrix.shape)), []).append(i)
    for members in groups.values():
        yield members, torch.stack([_wide(matrices[i]) for i in members])


def _wide(matrix: torch.Tensor) -> torch.Tensor:
    """The matrix, transposed if it has more rows than columns."""
    return matrix.T if matrix.size(0) > matrix.size(1) else matrix


class Muon(torch.optim.Optimizer):
    """Muon (Jordan et al. 2024) as :class:`torch.optim.Muon` computes it, with its update
    scaled to AdamW's size (``adjust_lr_fn="match_rms_adamw"``), and two things PyTorch's
    lacks:

    * the Newton-Schulz iterations run in ``ns_dtype``. PyTorch's always run in bf16, which
      GPUs and CPUs with AMX multiply fastest; on other CPUs a bf16 product is many times
      slower than an fp32 one (``bench/bf16_matmul.py --muon``), so the loop asks for fp32
      where it trains in fp32;
    * a convolution's filters (any weight of more than two dimensions) are stepped as the
      matrix ``out_channels x (in_channels * kernel)``, as Jordan's CIFAR-10 runs do.

    On 2-D weights in bf16 the steps equal PyTorch's bit for bit (``tests/test_optimizers.py``).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
        ns_steps: int = 5,
        eps: float = 1e-7,
        ns_dtype: torch.dtype = torch.bfloat16,
    ):
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=tuple(ns_coefficients),
            ns_steps=ns_steps,
            eps=eps,
        )
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            for param in group["params"]:
                if param.ndim < 2:
                    raise ValueError(
                        f"Muon steps matrices and filters, not a {param.ndim}-D tensor"
                    )

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        if closure is not None:
            raise ValueError("Muon.step takes no closure")
        for group in self.param_groups:
            lr, decay, momentum = group["lr"], group["weight_decay"], group["momentum"]
            params, matrices = [], []
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(
                        grad, memory_format=torch.preserve_format
                    )
                buffer = state["momentum_buffer"]
                buffer.lerp_(grad, 1 - momentum)
                update = grad.lerp(buffer, momentum) if group["nesterov"] else buffer
                params.append(param)
                matrices.append(update.reshape(update.size(0), -1))
            # the matrices of one shape orthogonalised together: one batched product instead
            # of one per matrix (tiny matrices spend their time in the call, not the product)
            for members, stack in stacks_of_one_shape(matrices):
                ortho = newton_schulz(
                    stack, group["ns_coefficients"], group["ns_steps"], group["eps"], self.ns_dtype
                )
                # PyTorch's match_rms_adamw: AdamW's update RMS (about 0.2) for any shape
                scale = 0.2 * math.sqrt(max(stack.shape[1:]))
                for i, matrix in zip(members, ortho.unbind(0), strict=True):
                    param = params[i]
                    step = matrix.T if matrix.shape != matrices[i].shape else matrix
                    param.mul_(1 - lr * decay)
                    param.add_(step.reshape_as(param), alpha=-lr * scale)
        return None


class ChainedOptimizer(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters, stepped, zeroed, saved and scheduled as
    one. ``param_groups`` is the children's own group dicts, read afresh each time (loading
    a state replaces a child's dicts), so a learning-rate scheduler wrapped around this one
    sets every child's rate."""

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]):
        # Optimizer.__init__ would register the parameters a second time; keep only what its
        # API reads (schedulers read param_groups, hooks the dicts below).
        self.optimizers = list(optimizers)
        self.defaults: dict[str, Any] = {}
        self._optimizer_step_pre_hooks = {}
        self._optimizer_step_post_hooks = {}
        self._optimizer_state_dict_pre_hooks = {}
        self._optimizer_state_dict_post_hooks = {}
        self._optimizer_load_state_dict_pre_hooks = {}
        self._optimizer_load_state_dict_post_hooks = {}

    @property
    def param_groups(self) -> list[dict]:  # type: ignore[override]
        return [g for opt in self.optimizers for g in opt.param_groups]

    @property
    def state(self) -> dict:  # type: ignore[override]
        return {k: v for opt in self.optimizers for k, v in opt.state.items()}

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        if closure is not None:
            raise ValueError("ChainedOptimizer.step takes no closure")
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {"optimizers": [opt.state_dict() for opt in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        saved = state_dict.get("optimizers")
        if not isinstance(saved, list) or len(saved) != len(self.optimizers):
            raise ValueError(
                "the checkpoint's optimizer state is not this optimizer's "
                f"({len(self.optimizers)} chained optimizers); train this run from scratch"
            )
        for opt, state in zip(self.optimizers, saved, strict=True):
            opt.load_state_dict(state)


def build_optimizer(
    model: torch.nn.Module,
    optimizer: str,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    ns_dtype: torch.dtype = torch.bfloat16,
    muon_convolutions: bool = True,
    lr_scales: Mapping[int, float] | None = None,
) -> torch.optim.Optimizer:
    """The optimizer ``optimizer`` (one of :data:`OPTIMIZERS`) over ``model``'s trainable
    parameters; weight decay on matrices only. ``ns_dtype``: the dtype of Muon's
    Newton-Schulz iterations (the loop passes its precision's); ``muon_convolutions``: Muon
    steps the convolutions' filters too (False: AdamW does, for comparisons); ``lr_scales``:
    ``id(parameter) -> factor`` on the learning rate of the parameters it names (their own
    groups; a schedule scales every group alike)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
    scales = dict(lr_scales or {})
    if optimizer == "adamw":
        params = [p for p in model.parameters() if p.requires_grad]
        groups = _scaled_groups(_decay_groups(params, weight_decay), lr, scales)
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas))
    muon, rest = muon_split(model, muon_convolutions)
    if not muon:
        raise ValueError("optimizer muon: the model has no weight matrix or filter for Muon")
    muon_groups = _scaled_groups([{"params": muon}], lr, scales)
    chained: list[torch.optim.Optimizer] = [
        Muon(muon_groups, lr=lr, weight_decay=weight_decay, ns_dtype=ns_dtype)
    ]
    if rest:
        groups = _scaled_groups(_decay_groups(rest, weight_decay), lr, scales)
        chained.append(torch.optim.AdamW(groups, lr=lr, betas=tuple(betas)))
    return ChainedOptimizer(chained)


def _scaled_groups(groups: list[dict], lr: float, scales: Mapping[int, float]) -> list[dict]:
    """Each group split by its parameters' learning-rate factor (1 unless ``scales`` names
    them), every part with its ``lr``; empty groups dropped. Without factors: the groups as
    they were, in their order."""
    out = []
    for group in groups:
        by_factor: dict[float, list[torch.nn.Parameter]] = {}
        for param in group["params"]:
            by_factor.setdefault(float(scales.get(id(param), 1.0)), []).append(param)
        for factor, params in by_factor.items():
            out.append({**group, "params": params, "lr": lr * factor})
    return out
