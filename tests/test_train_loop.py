"""The shared training loop: it learns, resumes bit for bit, and DDP matches one process."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from vlcore.io import read_json
from vlcore.train.loop import TrainConfig, fit
from vlcore.train.runtime import setup_runtime

TRUE_W = torch.tensor([[1.5, -2.0, 0.5, 3.0]])


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 1)
    )


def epoch_batches(
    epoch: int, batch_size: int = 16, n_batches: int = 6, rank: int = 0, world: int = 1
):
    """Deterministic regression batches; with world > 1 each rank gets its slice of every batch."""
    g = torch.Generator().manual_seed(1000 + epoch)
    out = []
    for _ in range(n_batches):
        x = torch.randn(batch_size, 4, generator=g)
        y = x @ TRUE_W.T + 0.01 * torch.randn(batch_size, 1, generator=g)
        per = batch_size // world
        out.append({"x": x[rank * per : (rank + 1) * per], "y": y[rank * per : (rank + 1) * per]})
    return out


def mse(model, batch):
    return torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])


def config(**kw) -> TrainConfig:
    base = dict(
        max_steps=20, lr=1e-2, warmup_steps=2, val_every=10, ckpt_every=0, log_every=1, device="cpu"
    )
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_fit_learns_and_writes_outputs(tmp_path: Path, optimizer: str):
    model = make_model()
    history = fit(
        model,
        mse,
        epoch_batches,
        lambda: epoch_batches(99),
        # Muon's orthogonalised steps have a fixed size: this toy regression wants a larger one
        config(max_steps=60, lr=5e-2 if optimizer == "adamw" else 1e-1, optimizer=optimizer),
        tmp_path,
    )
    losses = [loss for _, loss, _ in history["train"]]
    assert losses[-1] < 0.2 * losses[0]
    for name in ("model.safetensors", "history.json", "loss_curve.png", "train_config.json"):
        assert (tmp_path / name).is_file()
    assert read_json(tmp_path / "history.json")["val"][-1][0] == 60
    assert not (tmp_path / "checkpoint").exists()


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_after_kill_is_bit_identical(tmp_path: Path, optimizer: str):
    straight = make_model()
    settings = config(ckpt_every=5, optimizer=optimizer)
    fit(straight, mse, epoch_batches, None, settings, tmp_path / "a")

    calls = {"n": 0}

    def dying_loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 13:  # killed during step 13, after the step-10 checkpoint
            raise Boom
        return mse(model, batch)

    with pytest.raises(Boom):
        fit(make_model(), dying_loss, epoch_batches, None, settings, tmp_path / "b")
    assert (tmp_path / "b" / "checkpoint" / "model.safetensors").is_file()
    assert not (tmp_path / "b" / "model.safetensors").exists()

    torch.manual_seed(123)  # a fresh process would start from other RNG state: resume restores it
    resumed = make_model()
    fit(resumed, mse, epoch_batches, None, settings, tmp_path / "b")
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


_counter = {"n": 0}


def _raise_after(model, batch):
    _counter["n"] += 1
    if _counter["n"] > 7:
        raise Boom
    return mse(model, batch)


def test_other_config_ignores_stale_checkpoint(tmp_path: Path, caplog):
    _counter["n"] = 0
    with pytest.raises(Boom):
        fit(make_model(), _raise_after, epoch_batches, None, config(ckpt_every=5), tmp_path)
    history = fit(make_model(), mse, epoch_batches, None, config(ckpt_every=5, lr=5e-3), tmp_path)
    assert "belongs to another configuration" in caplog.text
    assert history["train"][0][0] == 1  # started from step 1, not from the checkpoint


def test_empty_training_data_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ValueError, match="fewer rows than one batch"):
        fit(make_model(), mse, lambda epoch: [], None, config(), tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(
    rank: int, world: int, port: int, out_dir: str, precision: str, optimizer: str
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    runtime = setup_runtime("cpu", precision)
    model = make_model()
    model[2].p = 0.0  # dropout draws differ per process; the equivalence is about gradients
    fit(
        model,
        mse,
        lambda e: epoch_batches(e, rank=rank, world=world),
        None,
        config(precision=precision, optimizer=optimizer),
        out_dir,
        runtime=runtime,
    )
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize(
    "precision, optimizer, tolerance",
    # under bf16 autocast each process rounds its half of the batch's products on its own
    [
        ("fp32", "adamw", dict(rtol=1e-5, atol=1e-6)),
        ("bf16", "adamw", dict(rtol=1e-2, atol=1e-3)),
        ("fp32", "muon", dict(rtol=1e-5, atol=1e-6)),
    ],
)
def test_two_process_ddp_matches_single_process(tmp_path: Path, precision, optimizer, tolerance):
    single = make_model()
    single[2].p = 0.0
    settings = config(precision=precision, optimizer=optimizer)
    fit(single, mse, epoch_batches, None, settings, tmp_path / "single")
    mp.spawn(
        _ddp_worker,
        args=(2, _free_port(), str(tmp_path / "ddp"), precision, optimizer),
        nprocs=2,
        join=True,
    )
    a = load_file(tmp_path / "single" / "model.safetensors")
    b = load_file(tmp_path / "ddp" / "model.safetensors")
    for key in a:
        assert not torch.equal(a[key], make_model().state_dict()[key]), key
        torch.testing.assert_close(a[key], b[key], **tolerance)


@pytest.mark.skipif(not shutil.which("c++"), reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_training_matches_eager(tmp_path: Path):
    """``compile: true`` trains the same weights in fp32 (no dropout: inductor draws its own
    random numbers; under bf16 autocast it rounds in other places), records the switch, and
    saves the model's own parameter names."""

    def model_without_dropout():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    eager = config(max_steps=8, precision="fp32")
    fit(model_without_dropout(), mse, epoch_batches, None, eager, tmp_path / "a")
    compiled = config(max_steps=8, precision="fp32", compile=True)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    fit(model_without_dropout(), mse, epoch_batches, None, compiled, tmp_path / "b")
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() == {"0.weight", "0.bias", "2.weight", "2.bias"}
    for key in a:
        assert not torch.equal(a[key], model_without_dropout().state_dict()[key]), key
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it did compile
    assert read_json(tmp_path / "b" / "train_config.json")["train"]["compile"] is True


def test_a_compiler_crash_says_to_train_without_compile(tmp_path: Path, monkeypatch):
    """An internal compiler error (as inductor raised on CUDA under torch 2.11 for clip_prefix)
    names the way out instead of ending in a compiler traceback alone."""

    def crashing_backend(graph_module, example_inputs):
        raise AssertionError("an internal compiler assertion")

    real_compile = torch.compile
    monkeypatch.setattr(
        torch, "compile", lambda model, **kw: real_compile(model, backend=crashing_backend, **kw)
    )
    torch._dynamo.reset()
    with pytest.raises(RuntimeError, match="set `compile: false`"):
        fit(make_model(), mse, epoch_batches, None, config(max_steps=2, compile=True), tmp_path)
    torch._dynamo.reset()
