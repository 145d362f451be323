"""Where training runs: the precision ``auto`` picks, and bf16 autocast on a CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from vlcore.io import read_json
from vlcore.train import runtime as runtime_module
from vlcore.train.loop import TrainConfig, fit
from vlcore.train.plots import curve_title
from vlcore.train.runtime import Runtime, setup_runtime

CPU_BF16 = Runtime(torch.device("cpu"), precision="bf16")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_a_cpu_is_bf16_only_where_it_is_native(monkeypatch, native, expected):
    monkeypatch.setattr(runtime_module, "cpu_has_native_bf16", lambda: native)
    assert setup_runtime("cpu").precision == expected
    assert setup_runtime("cpu", "fp32").precision == "fp32"
    assert setup_runtime("cpu", "bf16").precision == "bf16"


@pytest.mark.parametrize(
    "flags, native",
    [({"amx_bf16": True, "avx512_bf16": True}, True), ({"avx512_bf16": True}, False), ({}, False)],
)
def test_native_bf16_means_amx_tiles(monkeypatch, flags, native):
    """auto asks for AMX tiles, where bf16 was measured faster (docs/time.md); avx512_bf16
    alone is not enough."""
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: flags)
    assert runtime_module.cpu_has_native_bf16() is native


def test_asking_for_bf16_on_a_cpu_without_amx_warns(monkeypatch, caplog):
    monkeypatch.setattr(runtime_module, "cpu_has_native_bf16", lambda: False)
    assert setup_runtime("cpu", "bf16").precision == "bf16"  # asked for, so given
    assert "slower than fp32" in caplog.text
    caplog.clear()
    monkeypatch.setattr(runtime_module, "cpu_has_native_bf16", lambda: True)
    setup_runtime("cpu", "bf16")
    assert "slower than fp32" not in caplog.text


def test_a_torch_without_cpu_capabilities_trains_in_fp32(monkeypatch):
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    assert runtime_module.cpu_has_native_bf16() is False
    assert setup_runtime("cpu").precision == "fp32"


def test_fp32_runtime_leaves_everything_in_fp32():
    with Runtime(torch.device("cpu"), precision="fp32").autocast():
        assert (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == torch.float32


def _qkv(dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 4, 5, 8, generator=g).to(dtype) for _ in range(3)]


def test_cpu_bf16_autocast_multiplies_in_bf16_and_attends_in_fp32():
    linear = torch.nn.Linear(8, 8)
    q, k, v = _qkv()
    with CPU_BF16.autocast():
        assert linear(torch.ones(2, 8)).dtype == torch.bfloat16
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert attended.dtype == torch.float32
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    assert torch.equal(attended, exact)
    # plain autocast would have attended in bf16: the mode is what changes it
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        assert F.scaled_dot_product_attention(q, k, v).dtype == torch.bfloat16


def test_cpu_bf16_multi_head_attention_trains_in_fp32():
    """nn.MultiheadAttention (clip_prefix's mapping network) goes through its own functional
    path; it too attends in fp32 and gives every parameter a gradient."""
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    x = torch.randn(3, 5, 8)
    with CPU_BF16.autocast():
        out = layer.self_attn(x, x, x, need_weights=False)[0]
        assert out.dtype == torch.float32
        loss = layer(x).float().pow(2).mean()
    loss.backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.dtype == torch.float32, name
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name


def regression_batches(epoch: int) -> list[dict[str, torch.Tensor]]:
    """Six batches of a linear regression, the same on any device (test_gpu.py uses them too)."""
    g = torch.Generator().manual_seed(epoch)
    x = torch.randn(6, 16, 4, generator=g)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5], [3.0]])
    return [{"x": x[i], "y": y[i]} for i in range(6)]


def mse(model, batch):
    return F.mse_loss(model(batch["x"]).float(), batch["y"])


def linear_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def test_the_loop_learns_under_cpu_bf16_and_records_it(tmp_path: Path):
    config = TrainConfig(
        max_steps=60, lr=5e-2, warmup_steps=2, val_every=0, ckpt_every=0, log_every=1,
        device="cpu", precision="bf16",
    )  # fmt: skip
    history = fit(linear_model(), mse, regression_batches, None, config, tmp_path)
    losses = [loss for _, loss, _ in history["train"]]
    assert losses[-1] < 0.2 * losses[0]
    for name, value in load_file(tmp_path / "model.safetensors").items():
        assert value.dtype == torch.float32, name
    assert read_json(tmp_path / "history.json")["runtime"] == {"device": "cpu", "precision": "bf16"}
    assert curve_title(history, "train_clip default") == "train_clip default (cpu, bf16)"
    assert curve_title({"train": [], "val": []}, "an older run") == "an older run"
    assert (tmp_path / "loss_curve.png").stat().st_size > 0
