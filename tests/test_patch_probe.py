"""bench/patch_probe.py: linear probes per grid cell on an encoder's frozen patch tokens."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from tests.conftest import load_bench
from tests.test_captioner import data, trained  # noqa: F401 (that module's fixtures)
from vlcore.data.stream import ShardStream
from vlcore.synthetic.truth import scene_truth


@pytest.fixture(scope="module")
def bench():
    return load_bench("patch_probe")


@pytest.fixture(scope="module")
def splits(bench, data):  # noqa: F811
    shards = str(data["shards"])
    train_images, train_labels = bench.load_split(shards, "train", 0)
    eval_images, eval_labels = bench.load_split(shards, "test", 0)
    return {"train_images": train_images, "train_labels": train_labels,
            "eval_images": eval_images, "eval_labels": eval_labels}  # fmt: skip


def test_cell_labels_are_the_scene_objects(bench, data):  # noqa: F811
    rows = list(ShardStream(str(data["shards"]), "train", transform=lambda image: None))
    images, labels = bench.load_split(str(data["shards"]), "train", 0)
    assert images.shape == (len(rows), 3, 64, 64) and 0.0 <= images.min() <= images.max() <= 1
    scenes = scene_truth(0, [row["image_id"] for row in rows])
    for i, objects in enumerate(scenes):
        assert int((labels["shape"][i] != bench.EMPTY).sum()) == len(objects)
        for obj in objects:
            cell = obj["cell"][0] * bench.GRID + obj["cell"][1]
            assert bench.SHAPES[labels["shape"][i, cell] - 1] == obj["shape"]
            assert bench.COLORS[labels["colour"][i, cell] - 1] == obj["color"]
            assert bench.SIZES[labels["size"][i, cell] - 1] == obj["size"]
    # the three attributes mark the same cells
    occupied = labels["shape"] != bench.EMPTY
    assert torch.equal(occupied, labels["colour"] != bench.EMPTY)
    assert torch.equal(occupied, labels["size"] != bench.EMPTY)


def test_probe_reads_colours_from_pixels_only_in_the_right_cells(bench, splits):
    # the image itself, 8x8-pooled, is an "encoder" whose cells hold their mean colour: the
    # colour probe finds objects' colours there, and fails when the grid is transposed
    # (cells of one object's row read another's), so labels and cells are aligned
    pixels = bench.probe_encoder(lambda x: F.avg_pool2d(x, 8), splits)
    transposed = bench.probe_encoder(lambda x: F.avg_pool2d(x, 8).transpose(2, 3), splits)
    assert pixels["colour"] > transposed["colour"] + 20.0
    assert set(pixels) == {"shape", "colour", "size"}


@pytest.mark.parametrize("kind", ["clip", "vit_gpt2", "clip_prefix"])
def test_encoders_give_a_square_token_grid(bench, data, trained, kind):  # noqa: F811
    folder = data["clip"] if kind == "clip" else trained[kind]
    encoder = bench.load_encoder(str(folder))
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        grid = encoder(images)
    assert grid.shape[0] == 2 and grid.shape[2] == grid.shape[3] >= 2  # 64 px / patch size
    features = bench.cell_features(encoder, images)
    assert features.shape == (2, 9, grid.shape[1])


def test_stage_folder_has_its_own_weights(bench, trained, tmp_path):  # noqa: F811
    folder = tmp_path / "vit_gpt2"
    shutil.copytree(trained["vit_gpt2"], folder)
    weights = load_file(folder / "model.safetensors")
    stage = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
             for k, v in weights.items()}  # fmt: skip
    (folder / "xe").mkdir()
    save_file(stage, folder / "xe" / "model.safetensors")
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        final = bench.load_encoder(str(folder))(images)
        before = bench.load_encoder(str(folder / "xe"))(images)
    assert before.shape == final.shape and not torch.allclose(before, final)
    save_file(stage, folder / "model.safetensors")  # the stage's weights as the final ones
    with torch.no_grad():
        torch.testing.assert_close(bench.load_encoder(str(folder))(images), before)


def test_a_folder_of_neither_kind_is_named(bench, tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a captioner folder"):
        bench.load_encoder(str(tmp_path))


def test_command_line_prints_the_reference_rows_and_each_folder(bench, data, capsys):  # noqa: F811
    argv = [str(data["clip"]), "--shards", str(data["shards"]), "--stem-steps", "3"]
    assert bench.main([*argv, "--stem-depths", "1", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-3:] == ["shape", "colour", "size"]
    assert lines[1].startswith("random stem")
    assert lines[2].startswith("supervised stem, 3 steps  ")
    assert lines[3].startswith("supervised stem, 3 steps, depth 2")
    assert lines[4].startswith(str(data["clip"]))
    for line in lines[1:5]:
        values = [float(v.rstrip("%")) for v in line.split()[-3:]]
        assert all(0.0 <= v <= 100.0 for v in values)
    assert lines[-1].startswith("(") and "chance: shape 16.7%" in lines[-1]


def test_a_stem_depth_below_one_is_refused_before_any_training(bench, data, capsys):  # noqa: F811
    argv = ["--shards", str(data["shards"]), "--stem-depths", "1", "0"]
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert "--stem-depths must be at least 1" in capsys.readouterr().err


def test_truth_of_another_seed_is_an_error(bench, data):  # noqa: F811
    with pytest.raises(ValueError, match="not the experiment's"):
        bench.load_split(str(data["shards"]), "train", 1)
