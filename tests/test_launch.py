"""The trainer launcher: process planning, torchrun command lines, and DDP through the rule.

The end-to-end test runs ``train_clip`` through Snakemake twice on the same data: once in one
process with batch 32, once as 2 torchrun (gloo) processes with batch 16 each. The training
split has exactly 32 rows, so every step sees the same global batch either way: the losses and
the weights must agree up to floating point.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, copy_workflow, run_snakemake
from vlcore.train import launch as launch_mod
from vlcore.train.launch import (
    LaunchPlan,
    gres_gpus,
    launch,
    plan_launch,
    rendezvous_port,
    torchrun_command,
    write_spec,
)


def test_gres_gpus():
    assert gres_gpus(None) == 0
    assert gres_gpus("gpu") == 1
    assert gres_gpus("gpu:4") == 4
    assert gres_gpus("gpu:a100:2") == 2
    assert gres_gpus("shard:1,gpu:h100:8") == 8


@pytest.mark.parametrize(
    "processes, resources, cuda, env, expected",
    [
        (None, {"gpu": 1}, 0, {}, LaunchPlan(1, 1, False)),  # CPU machine: one process
        (None, {"gpu": 4}, 4, {}, LaunchPlan(1, 4, False)),  # one per GPU
        (None, {"gpu": 4}, 2, {}, LaunchPlan(1, 2, False)),  # no more than visible
        (None, {}, 2, {}, LaunchPlan(1, 1, False)),  # no GPU asked for
        (2, {"gpu": 1}, 0, {}, LaunchPlan(1, 2, False)),  # gloo on the CPU
        (None, {"gpu": 8, "nodes": 2}, 4, {"SLURM_JOB_ID": "7"}, LaunchPlan(2, 4, True)),
        (
            None,
            {"gres": "gpu:a100:4", "nodes": 2},
            4,
            {"SLURM_JOB_ID": "7"},
            LaunchPlan(2, 4, True),
        ),
        (None, {"gpu": 2, "nodes": 3}, 0, {}, LaunchPlan(1, 1, False)),  # nodes only under SLURM
    ],
)
def test_plan_launch(processes, resources, cuda, env, expected):
    assert plan_launch(processes, resources, cuda, env) == expected


def test_plan_launch_refuses_more_processes_than_gpus():
    with pytest.raises(ValueError, match="more than the 2 GPU"):
        plan_launch(4, {"gpu": 2}, 2, {})
    with pytest.raises(ValueError, match="processes must be >= 1"):
        plan_launch(0, {}, 0, {})


def test_torchrun_command_local_is_standalone(tmp_path: Path):
    cmd = torchrun_command(LaunchPlan(1, 2, False), tmp_path / "s.json", 2, {}, python="py")
    assert cmd[:3] == ["py", "-m", "torch.distributed.run"]
    assert "--standalone" in cmd and "--nproc-per-node=2" in cmd
    assert cmd[-3:] == ["-m", "vlcore.train.launch", str(tmp_path / "s.json")]


def test_torchrun_command_under_slurm_uses_srun_and_c10d(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(launch_mod, "_slurm_head_node", lambda env: "node17")
    env = {"SLURM_JOB_ID": "4242"}
    cmd = torchrun_command(LaunchPlan(2, 4, True), tmp_path / "s.json", 8, env, python="py")
    assert cmd[0] == "srun" and "--overlap" in cmd
    assert "--nodes=2" in cmd and "--ntasks-per-node=1" in cmd and "--cpus-per-task=8" in cmd
    assert "--nnodes=2" in cmd and "--nproc-per-node=4" in cmd
    assert f"--rdzv-endpoint=node17:{rendezvous_port('4242')}" in cmd
    assert "--rdzv-backend=c10d" in cmd and "--rdzv-id=slurm-4242" in cmd
    assert "--standalone" not in cmd


def test_spec_round_trip_and_refusals(tmp_path: Path):
    spec = write_spec(json.dumps, (tmp_path, {"a": (1, 2)}), {"indent": None}, 3, tmp_path)
    data = json.loads(spec.read_text())
    assert data == {
        "target": "json:dumps",
        "args": [str(tmp_path), {"a": [1, 2]}],
        "kwargs": {"indent": None},
        "threads": 3,
    }
    assert launch_mod._resolve(data["target"]) is json.dumps
    with pytest.raises(TypeError, match="not representable"):
        write_spec(json.dumps, (object(),), {}, 1, tmp_path)
    with pytest.raises(ValueError, match="module-level"):
        write_spec(lambda: None, (), {}, 1, tmp_path)


def _job(processes=None, gpu=0, threads=2):
    return SimpleNamespace(params={"processes": processes}, resources={"gpu": gpu}, threads=threads)


def test_launch_runs_a_single_process_job_in_process(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert launch(_job(), max, 3, 5) == 5


def _ddp_probe(out: str) -> None:
    """Run by the torchrun workers of the test below: each rank writes what it saw."""
    import torch.distributed as dist

    from vlcore.train.runtime import setup_runtime, teardown_runtime

    runtime = setup_runtime("cpu")
    t = torch.tensor([float(runtime.rank + 1)])
    dist.all_reduce(t)
    Path(out, f"rank{runtime.rank}.json").write_text(
        json.dumps({"world": runtime.world_size, "sum": t.item()})
    )
    teardown_runtime(runtime)


@pytest.mark.timeout(300)
def test_launch_starts_torchrun_processes(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the workers import this module
    launch(_job(processes=2), _ddp_probe, str(tmp_path))
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results == [{"world": 2, "sum": 3.0}] * 2
    assert not list((tmp_path / ".snakemake" / "vlcore-launch").iterdir())  # spec removed


def _fails() -> None:
    raise ValueError("boom in a worker")


@pytest.mark.timeout(300)
def test_launch_reports_a_failing_worker(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    with pytest.raises(RuntimeError, match="failed in its torchrun processes"):
        launch(_job(processes=2), _fails)


# fp32: under bf16 autocast (auto on CPUs with AMX) each process rounds its half apart
TRAIN = "max_steps: 3, warmup_steps: 1, val_every: 0, ckpt_every: 0, log_every: 1, precision: fp32"
# 48 synthetic images split 32 train / 7 val / 9 test: one global batch of 32 per step. The
# linear-patch preset: the default's conv stem has BatchNorm, whose statistics are per process
# under DDP (vlcore.models.conv_stem), so 2 processes are not bit-equal to 1 with it.
DDP_CONFIG = """
experiments:
  default:
    source:
      synthetic: {{n_images: 48, dirty_rate: 0.0}}
    shard:
      split: {{val: 0.15, test: 0.25}}
    tokenizer: {{vocab_size: 300}}
    clip:
      model: tiny
      batch_size: {batch}
      train: {{{train}, processes: {processes}}}
"""
MODEL = "results/default/clip/model.safetensors"


def comparable(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """A parameter without its attention key biases (the middle third of ``in_proj_bias``).

    Their gradient is zero in exact arithmetic (softmax ignores a constant added to all the
    logits of a query), so AdamW turns float noise into steps of about ``lr`` that differ
    between any two summation orders. Every other parameter agrees to about 1e-7.
    """
    tensor = tensor.float()
    if name.endswith("attn.in_proj_bias"):
        third = tensor.shape[0] // 3
        return torch.cat([tensor[:third], tensor[2 * third :]])
    return tensor


@pytest.mark.workflow
@pytest.mark.timeout(900)
def test_train_clip_rule_with_two_gloo_processes_matches_one(tmp_path: Path):
    workdir = copy_workflow(tmp_path)
    runs = {}
    # The second run changes only train_clip's params: Snakemake reruns train_clip alone.
    for name, batch, processes in (("single", 32, 1), ("ddp", 16, 2)):
        config = DDP_CONFIG.format(batch=batch, processes=processes, train=TRAIN)
        (workdir / f"{name}.yaml").write_text(config)
        run_snakemake(workdir, MODEL, "--cores", "2", "--configfile", f"{name}.yaml")
        runs[name] = {
            "weights": load_file(workdir / MODEL),
            "meta": json.loads((workdir / MODEL).with_name("train_config.json").read_text()),
            "history": json.loads((workdir / MODEL).with_name("history.json").read_text()),
            "log": (workdir / "logs/train_clip/default.log").read_text(),
        }

    manifest = json.loads((workdir / "results/default/shards/manifest.json").read_text())
    assert manifest["splits"]["train"]["rows"] == 32, "the test needs exactly 32 train rows"
    single, ddp = runs["single"]["weights"], runs["ddp"]["weights"]
    assert single.keys() == ddp.keys()
    worst = max(
        (comparable(k, single[k]) - comparable(k, ddp[k])).abs().max().item() for k in single
    )
    assert worst < 2e-6, f"2-process DDP differs from 1 process by {worst}"
    losses = [[loss for _, loss, _ in runs[n]["history"]["train"]] for n in ("single", "ddp")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert runs["single"]["meta"]["world_size"] == 1 and runs["ddp"]["meta"]["world_size"] == 2
    assert "launching" not in runs["single"]["log"]
    log = runs["ddp"]["log"]
    assert "launching 2 process(es) on 1 node(s)" in log and "[rank 0]" in log
