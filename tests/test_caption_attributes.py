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
    assert "shape  words right     1 /     1 = 100.0%" in out
    assert "color  words right     0 /     0" in out
