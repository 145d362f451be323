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


def test_muon_leaves_convolutions_attention_projections_and_frozen_weights():
    attention = torch.nn.MultiheadAttention(8, 2)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), attention, torch.nn.Linear(8, 8))
    model[2].weight.requires_grad_(False)
    muon, rest = muon_split(model)
    assert {id(p) for p in muon} == {id(attention.in_proj_weight), id(attention.out_proj.weight)}
    assert id(model[0].weight) in {id(p) for p in rest}
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
    with pytest.raises(ValueError, match="no 2-D weight matrix"):
        build_optimizer(torch.nn.Conv2d(3, 3, 3), "muon", 1e-3, 0.0, (0.9, 0.98))


def _muon_after_two_steps(step) -> list[torch.Tensor]:
    model = tiny_gpt2()
    muon, _ = muon_split(model)
    optimizer = Muon(muon, lr=1e-2, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    for seed in (1, 2):
        torch.manual_seed(seed)
        model(torch.randint(50, (2, 8)), labels=torch.randint(50, (2, 8))).loss.backward()
        step(optimizer)
        model.zero_grad()
    return [p.detach().clone() for p in muon]


def test_muon_in_float32_is_pytorchs_arithmetic_in_another_dtype():
    torch_muon = _muon_after_two_steps(lambda opt: torch.optim.Muon.step(opt))
    ours_bf16 = _muon_after_two_steps(lambda opt: opt._step_in(torch.bfloat16))
    ours_fp32 = _muon_after_two_steps(lambda opt: opt._step_in(torch.float32))
    start = muon_split(tiny_gpt2())[0]
    for theirs, same, fp32, before in zip(torch_muon, ours_bf16, ours_fp32, start, strict=True):
        assert torch.equal(theirs, same)  # the same steps, bit for bit
        assert not torch.equal(fp32, theirs)  # rounded otherwise ...
        moved, moved_fp32 = (theirs - before).flatten(), (fp32 - before).flatten()
        # ... alike: bf16 keeps 3 significant digits through five iterations
        assert torch.nn.functional.cosine_similarity(moved, moved_fp32, 0) > 0.99
        assert (moved - moved_fp32).norm() < 0.15 * moved.norm()


def test_the_loop_runs_newton_schulz_in_its_precision(monkeypatch):
    dtypes = []
    monkeypatch.setattr(Muon, "_step_in", lambda self, dtype: dtypes.append(dtype))
    model = tiny_gpt2()
    model(torch.randint(50, (2, 8)), labels=torch.randint(50, (2, 8))).loss.backward()
    build_optimizer(model, "muon", 1e-3, 0.0, (0.9, 0.98), torch.float32).step()
    assert dtypes == [torch.float32]
    bf16 = build_optimizer(model, "muon", 1e-3, 0.0, (0.9, 0.98), torch.bfloat16)
    bf16.step()  # PyTorch's own step
    assert dtypes == [torch.float32]
    assert bf16.optimizers[0].state
