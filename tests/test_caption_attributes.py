"""bench/caption_attributes.py: shape and colour words checked against the scene truth."""

import json

import pytest

from tests.conftest import load_bench
from vlcore.synthetic.lexicon import COLORS, SHAPES
from vlcore.synthetic.truth import scene_truth


@pytest.fixture(scope="module")
def bench():
    return load_bench("caption_attributes")


def test_right_and_wrong_words_are_counted(bench):
    ids = list(range(1, 21))
    scenes = scene_truth({"seed": 0, "dirty_rate": 0.0}, ids)
    right = [
        {"image_id": i, "caption": f"A {s[0]['color'].upper()} {s[0]['shape']}s."}
        for i, s in zip(ids, scenes, strict=True)
    ]
    counts = bench.attribute_hits(right, scenes)
    assert counts["shape"]["named"] == counts["shape"]["right"] == 20
    assert counts["color"]["named"] == counts["color"]["right"] == 20
    expected_chance = sum(len({o["shape"] for o in s}) / len(SHAPES) for s in scenes)
    assert counts["shape"]["chance"] == pytest.approx(expected_chance)

    wrong = []
    for i, s in zip(ids, scenes, strict=True):
        shape = next(x for x in SHAPES if x not in {o["shape"] for o in s})
        color = next(x for x in COLORS if x not in {o["color"] for o in s})
        wrong.append({"image_id": i, "caption": f"a {color} {shape} and a disk"})
    counts = bench.attribute_hits(wrong, scenes)
    disks = sum(any(o["shape"] == "circle" for o in s) for s in scenes)
    assert counts["shape"] == pytest.approx(
        {"named": 40, "right": disks, "chance": 2 * expected_chance}
    )
    assert counts["color"]["right"] == 0


def test_command_line(bench, tmp_path, capsys):
    scenes = scene_truth({"seed": 3, "dirty_rate": 0.0}, [5])
    path = tmp_path / "captions.json"
    path.write_text(json.dumps([{"image_id": 5, "caption": f"a {scenes[0][0]['shape']}"}]))
    assert bench.main([str(path), "--seed", "3", "--dirty-rate", "0"]) == 0
    out = capsys.readouterr().out
    assert "shape    words right     1 /     1 = 100.0%" in out
    assert "color    words right     0 /     0" in out


def test_fix_shapes_sets_each_coloured_shape_to_the_truth(bench):
    scenes = [[{"shape": "star", "color": "red"}, {"shape": "diamond", "color": "blue"}]]
    results = [{"image_id": 1, "caption": "A red circle and two blue squares, a big disk."}]
    (fixed,) = bench.fix_shapes(results, scenes)
    # "disk" follows no colour word, so nothing says which object it is: left alone
    assert fixed == {"image_id": 1, "caption": "A red star and two blue diamonds, a big disk."}
    assert bench.attribute_hits([fixed], scenes)["shape"]["right"] == 2


def test_sizes_and_positions_are_checked_on_the_object_of_that_colour(bench):
    scenes = [[{"shape": "star", "color": "red", "size": "large", "cell": [0, 0]},
               {"shape": "square", "color": "blue", "size": "small", "cell": [2, 1]}]]  # fmt: skip
    caption = ("A big red disk in the top left corner, a big blue square at the bottom "
               "and a small green star on the right.")  # fmt: skip
    counts = bench.bound_hits([{"image_id": 1, "caption": caption}], scenes)
    # green names no object of the scene: its size and position are not counted
    assert counts["size"] == {"named": 2, "right": 1, "chance": 1.0}
    assert counts["position"] == pytest.approx({"named": 2, "right": 2, "chance": 2 / 9})


def test_shape_ceiling_scores_the_fixed_captions_higher(bench):
    ids = list(range(1, 7))
    scenes = scene_truth({"seed": 0, "dirty_rate": 0.0}, ids)
    refs = {}
    results = []
    for i, scene in zip(ids, scenes, strict=True):
        obj = scene[0]
        truth = f"a {obj['color']} {obj['shape']} in the picture"
        refs[i] = [truth, f"there is a {obj['color']} {obj['shape']}", truth + " here"]
        wrong = next(s for s in SHAPES if s != obj["shape"])
        results.append({"image_id": i, "caption": f"a {obj['color']} {wrong} in the picture"})
    scores = bench.shape_ceiling(results, scenes, refs)
    assert scores["shapes fixed"]["CIDEr"] > scores["as generated"]["CIDEr"]
    assert scores["shapes fixed"]["BLEU-4"] > scores["as generated"]["BLEU-4"]


def test_truth_of_another_seed_is_an_error(bench, tmp_path, monkeypatch, capsys):
    from vlcore.pipeline import evaluate

    ids = list(range(1, 21))
    scenes = scene_truth({"seed": 0, "dirty_rate": 0.0}, ids)
    refs = {
        i: [f"a {o['color']} {o['shape']}" for o in s] for i, s in zip(ids, scenes, strict=True)
    }
    monkeypatch.setattr(evaluate, "references", lambda shards, split: refs)
    path = tmp_path / "captions.json"
    path.write_text(json.dumps([{"image_id": i, "caption": "a shape"} for i in ids]))
    common = [str(path), "--dirty-rate", "0", "--shards", "unused"]
    with pytest.raises(SystemExit, match="pass its config's seed"):
        bench.main([*common, "--seed", "1"])
    monkeypatch.setattr(bench, "shape_ceiling", lambda *args: {})
    assert bench.main([*common, "--seed", "0"]) == 0
    assert "shape    words right     0 /     0" in capsys.readouterr().out
