"""The loop's optimizers: which parameters Muon takes, and the chained optimizer's contract."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.optimization import get_cosine_schedule_with_warmup

from vlcore.train.optimizers import ChainedOptimizer, Muon, build_optimizer, muon_split


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=50,
        n_positions=16,
        n_embd=16,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(config)


def test_muon_takes_hidden_matrices_and_leaves_embeddings_and_the_tied_head():
    model = tiny_gpt2()
    muon, rest = muon_split(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in muon) == sorted(
        f"transformer.h.0.{n}.weight"
        for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    )
    embeddings = {"transformer.wte.weight", "transformer.wpe.weight"}  # wte is the head too
    rest_names = {names[id(p)] for p in rest}
    assert embeddings <= rest_names
    assert all(p.ndim == 1 for p in rest if names[id(p)] not in embeddings)  # biases, norms
    assert len(muon) + len(rest) == len(list(model.parameters()))


def test_muon_takes_attention_projections_and_leaves_frozen_weights_and_conv_biases():
    attention = torch.nn.MultiheadAttention(8, 2)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), attention, torch.nn.Linear(8, 8))
    model[2].weight.requires_grad_(False)
    muon, rest = muon_split(model)
    assert {id(p) for p in muon} == {
        id(model[0].weight),
        id(attention.in_proj_weight),
        id(attention.out_proj.weight),
    }
    assert id(model[0].bias) in {id(p) for p in rest}
    assert id(model[2].weight) not in {id(p) for p in muon + rest}


def test_the_schedule_sets_both_optimizers_rates():
    model = tiny_gpt2()
    optimizer = build_optimizer(model, "muon", 1e-3, 0.01, (0.9, 0.98))
    assert isinstance(optimizer, ChainedOptimizer)
    kinds = [type(o).__name__ for o in optimizer.optimizers]
    assert kinds == ["Muon", "AdamW"]
    scheduler = get_cosine_schedule_with_warmup(optimizer, 2, 10)
    assert {g["lr"] for g in optimizer.param_groups} == {0.0}
    for _ in range(2):
        model(torch.randint(50, (2, 8)), labels=torch.randint(50, (2, 8))).loss.backward()
        optimizer.step()
        scheduler.step()
    for child in optimizer.optimizers:
        assert all(g["lr"] == pytest.approx(1e-3) for g in child.param_groups)
    assert optimizer.state  # both children keep state after a step
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kind", ["muon", "adamw"])
def test_lr_scales_give_the_named_parameters_their_own_rate_under_the_schedule(kind):
    model = tiny_gpt2()
    block = {id(p) for p in model.transformer.h[0].parameters()}
    plain = build_optimizer(model, kind, 1e-3, 0.01, (0.9, 0.98))
    scaled = build_optimizer(
        model, kind, 1e-3, 0.01, (0.9, 0.98), lr_scales=dict.fromkeys(block, 0.3)
    )
    assert len(plain.param_groups) == (3 if kind == "muon" else 2)  # no factors: as before
    assert len(scaled.param_groups) > len(plain.param_groups)
    scheduler = get_cosine_schedule_with_warmup(scaled, 2, 10)
    for _ in range(2):
        model(torch.randint(50, (2, 8)), labels=torch.randint(50, (2, 8))).loss.backward()
        scaled.step()
        scheduler.step()
    for group in scaled.param_groups:
        inside = {id(p) in block for p in group["params"]}
        assert len(inside) == 1  # a group is all in the block or all out of it
        assert group["lr"] == pytest.approx(3e-4 if inside == {True} else 1e-3)


def test_state_round_trips_and_a_foreign_state_is_refused():
    model = tiny_gpt2()
    optimizer = build_optimizer(model, "muon", 1e-3, 0.01, (0.9, 0.98))
    model(torch.randint(50, (2, 8)), labels=torch.randint(50, (2, 8))).loss.backward()
    optimizer.step()
    saved = optimizer.state_dict()
    again = build_optimizer(model, "muon", 1e-3, 0.01, (0.9, 0.98))
    again.load_state_dict(saved)
    for a, b in zip(optimizer.optimizers, again.optimizers, strict=True):
        for p in a.state:
            for key, value in a.state[p].items():
                if torch.is_tensor(value):
                    assert torch.equal(value, b.state[p][key]), key
    adamw = build_optimizer(model, "adamw", 1e-3, 0.01, (0.9, 0.98))
    with pytest.raises(ValueError, match="train this run from scratch"):
        again.load_state_dict(adamw.state_dict())


def test_unknown_optimizer_and_a_model_without_matrices_are_clear_errors():
    with pytest.raises(ValueError, match="choose one of adamw, muon"):
        build_optimizer(tiny_gpt2(), "sgd", 1e-3, 0.0, (0.9, 0.98))
    with pytest.raises(ValueError, match="no weight matrix or filter"):
        build_optimizer(torch.nn.LayerNorm(4), "muon", 1e-3, 0.0, (0.9, 0.98))


def _muon_after_two_steps(make_optimizer) -> list[torch.Tensor]:
    model = tiny_gpt2()
    muon, _ = muon_split(model)
    optimizer = make_optimizer(muon)
    for seed in (1, 2):
        torch.manual_seed(seed)
        model(torch.randint(50, (2, 8)), labels=torch.randint(50, (2, 8))).loss.backward()
        optimizer.step()
        model.zero_grad()
    return [p.detach().clone() for p in muon]


def test_muon_is_pytorchs_in_bf16_and_its_arithmetic_in_float32():
    torch_muon = _muon_after_two_steps(
        lambda p: torch.optim.Muon(p, lr=1e-2, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    )
    ours_bf16 = _muon_after_two_steps(lambda p: Muon(p, lr=1e-2, weight_decay=0.1))
    ours_fp32 = _muon_after_two_steps(
        lambda p: Muon(p, lr=1e-2, weight_decay=0.1, ns_dtype=torch.float32)
    )
    start = muon_split(tiny_gpt2())[0]
    for theirs, same, fp32, before in zip(torch_muon, ours_bf16, ours_fp32, start, strict=True):
        assert torch.equal(theirs, same)  # the same steps, bit for bit
        assert not torch.equal(fp32, theirs)  # rounded otherwise ...
        moved, moved_fp32 = (theirs - before).flatten(), (fp32 - before).flatten()
        # ... alike: bf16 keeps 3 significant digits through five iterations
        assert torch.nn.functional.cosine_similarity(moved, moved_fp32, 0) > 0.99
        assert (moved - moved_fp32).norm() < 0.15 * moved.norm()


def test_muon_steps_convolution_filters_as_matrices():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    assert {id(p) for p in muon_split(model, convolutions=False)[0]} == {id(model[2].weight)}
    muon, rest = muon_split(model)
    assert {id(p) for p in muon} == {id(model[0].weight), id(model[2].weight)}
    conv = model[0]
    optimizer = Muon([conv.weight], lr=1e-2, weight_decay=0.0, ns_dtype=torch.float32)
    before = conv.weight.detach().clone()
    (conv(torch.randn(16, 3, 5, 5)) * torch.randn(16, 8, 3, 3)).sum().backward()
    gradient = conv.weight.grad.reshape(8, -1).clone()
    optimizer.step()
    step = (conv.weight - before).detach().reshape(8, -1)
    # the 8 x 27 filter matrix's step is orthogonalised: its singular values pulled together
    spread = [float(s.min() / s.max()) for s in map(torch.linalg.svdvals, (gradient, step))]
    assert spread[0] < 0.4 and spread[1] > 0.55
    with pytest.raises(ValueError, match="not a 1-D tensor"):
        Muon([model[0].bias])


def test_the_loop_runs_newton_schulz_in_its_precision_one_stack_per_shape(monkeypatch):
    import vlcore.train.optimizers as optimizers

    calls = []
    real = optimizers.newton_schulz

    def recording(update, *args):
        calls.append((args[-1], tuple(update.shape)))
        return real(update, *args)

    monkeypatch.setattr(optimizers, "newton_schulz", recording)
    model = tiny_gpt2()
    model(torch.randint(50, (2, 8)), labels=torch.randint(50, (2, 8))).loss.backward()
    # c_attn 16 x 48, attn.c_proj 16 x 16, and mlp.c_fc 16 x 64 with mlp.c_proj 64 x 16
    # (transposed) in one stack; the stacked steps are PyTorch's bit for bit (test above)
    stacks = [(1, 16, 48), (1, 16, 16), (2, 16, 64)]
    for dtype in (torch.float32, torch.bfloat16):
        calls.clear()
        build_optimizer(model, "muon", 1e-3, 0.0, (0.9, 0.98), dtype).step()
        assert calls == [(dtype, shape) for shape in stacks]
