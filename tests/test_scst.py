"""Self-critical fine-tuning (vlcore.train.scst) and its stage in train_captioner."""

import os

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tests.test_captioner import data, settings  # noqa: F401 (the module's data fixture)
from tests.test_train_loop import _free_port
from vlcore.data.shard import sha256_file
from vlcore.io import read_json
from vlcore.models.clip import build_clip, save_clip
from vlcore.models.generation import IGNORE
from vlcore.pipeline.captioner import train_captioner
from vlcore.train.scst import (
    SCSTConfig,
    collate_references,
    leave_one_out_advantages,
    sampled_sequences,
    train_references,
)

BOS, EOS, PAD = 1, 2, 0


def test_sampled_sequences_stop_at_the_first_eos():
    new = torch.tensor([[5, 6, EOS, PAD], [7, EOS, 8, EOS], [5, 6, 7, 8]])
    ids, mask, labels = sampled_sequences(new, BOS, EOS, PAD)
    assert ids.tolist() == [[BOS, 5, 6, EOS, PAD], [BOS, 7, EOS, PAD, PAD], [BOS, 5, 6, 7, 8]]
    assert mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert labels[:, 0].eq(IGNORE).all()
    assert labels[1].tolist() == [IGNORE, 7, EOS, IGNORE, IGNORE]
    assert labels[2].tolist() == [IGNORE, 5, 6, 7, 8]  # cut by max_new_tokens: all learned


def test_baseline_is_the_mean_of_the_other_samples():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    adv = leave_one_out_advantages(rewards)
    torch.testing.assert_close(adv[0], torch.tensor([1.0 - 2.5, 2.0 - 2.0, 3.0 - 1.5]))
    assert adv[1].eq(0).all()  # equal samples teach nothing


def test_scst_settings_are_checked():
    assert SCSTConfig.from_dict({}).steps == 0
    with pytest.raises(ValueError, match="samples must be >= 2"):
        SCSTConfig.from_dict({"steps": 3, "samples": 1})
    with pytest.raises(ValueError, match="unknown scst option"):
        SCSTConfig.from_dict({"step": 3})


def test_references_are_the_training_captions(data):  # noqa: F811
    cider, refs = train_references(data["shards"], SCSTConfig())
    assert refs and all(len(r) >= 1 for r in refs.values())
    key = next(iter(refs))
    # an image's own reference scores far above an empty caption against its references
    row = {"key": key, "image": torch.zeros(3, 8, 8)}
    batch = collate_references([row, {"key": "not-in-train", "image": torch.zeros(3, 8, 8)}], refs)
    assert batch["pixel_values"].shape[0] == 1 and batch["references"][0] is refs[key]
    own = refs[key][0]
    words = [g[0] for g in own.weights[0] for _ in range(int(own.weights[0][g] > 0))]
    assert cider.score(words, refs[key]) > cider.score([], refs[key]) == 0.0


@pytest.mark.parametrize("name", ["vit_gpt2", "clip_prefix"])
def test_training_with_scst_tunes_after_cross_entropy_and_resumes(data, tmp_path, name):  # noqa: F811
    out = tmp_path / name
    run = settings(name, max_steps=2, scst={"steps": 2, "samples": 3, "max_new_tokens": 6})
    history = train_captioner(name, data["shards"], data["tokenizer"], data["clip"], run, out)
    assert len(history["scst"]["reward"]) == 2
    assert all(r >= 0 for r in history["scst"]["reward"])
    assert read_json(out / "history.json")["scst"]["reward"] == history["scst"]["reward"]
    xe = load_file(out / "xe" / "model.safetensors")
    tuned = load_file(out / "model.safetensors")
    assert any(not torch.equal(xe[k], tuned[k]) for k in xe)  # fine-tuning changed weights
    assert (out / "loss_curve.png").is_file()

    # rerun (a job killed during fine-tuning): the cross-entropy stage is reused, not retrained
    (out / "model.safetensors").unlink()
    stamp = (out / "xe" / "model.safetensors").stat().st_mtime_ns
    again = train_captioner(name, data["shards"], data["tokenizer"], data["clip"], run, out)
    assert (out / "xe" / "model.safetensors").stat().st_mtime_ns == stamp
    assert again["scst"]["reward"] == history["scst"]["reward"]  # same seed, same samples
    assert torch.equal(
        next(iter(load_file(out / "model.safetensors").values())), next(iter(tuned.values()))
    )


def test_a_new_clip_retrains_clip_prefix_instead_of_reusing_its_stage(data, tmp_path):  # noqa: F811
    """The rule reruns when train_clip has made new weights: the finished cross-entropy stage
    (and any checkpoint) of the old tower must not be taken for the new one."""
    out = tmp_path / "clip_prefix"
    run = settings("clip_prefix", max_steps=2, scst={"steps": 1, "samples": 2, "max_new_tokens": 4})
    train_captioner("clip_prefix", data["shards"], data["tokenizer"], data["clip"], run, out)
    stamp = (out / "xe" / "model.safetensors").stat().st_mtime_ns
    torch.manual_seed(1)  # another CLIP: the same architecture, other weights
    other = save_clip(build_clip("tiny", tokenizer_dir=data["tokenizer"]), tmp_path / "clip2")
    (out / "model.safetensors").unlink()
    train_captioner("clip_prefix", data["shards"], data["tokenizer"], other, run, out)
    assert (out / "xe" / "model.safetensors").stat().st_mtime_ns != stamp
    meta = read_json(out / "xe" / "train_config.json")
    assert meta["clip_weights"] == {"model.safetensors": sha256_file(other / "model.safetensors")}


def _ddp_worker(rank: int, world: int, port: int, paths: dict, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    run = settings("vit_gpt2", max_steps=2, batch_size=4, scst={"steps": 2, "samples": 2})
    train_captioner("vit_gpt2", paths["shards"], paths["tokenizer"], None, run, out_dir)


def test_scst_runs_under_two_gloo_processes(data, tmp_path):  # noqa: F811
    paths = {"shards": str(data["shards"]), "tokenizer": str(data["tokenizer"])}
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), paths, str(out)), nprocs=2, join=True)
    history = read_json(out / "history.json")
    assert len(history["scst"]["reward"]) == 2
    assert read_json(out / "train_config.json")["world_size"] == 2
    assert (out / "xe" / "model.safetensors").is_file() and (out / "model.safetensors").is_file()
