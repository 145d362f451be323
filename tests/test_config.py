"""Config schema: defaults are filled, and mistakes stop with a message naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_snakemake
from vlcore.config import (
    ConfigError,
    deep_update,
    load_config,
    load_yaml,
    training_settings,
    validate_config,
)

EXPERIMENT_FILES = sorted((REPO / "config" / "experiments").glob("*.yaml"))


@pytest.fixture
def base() -> dict:
    return load_yaml(REPO / "config" / "config.yaml")


def test_default_config_fills_defaults(base):
    config = validate_config(copy.deepcopy(base))
    exp = config["experiments"]["default"]
    assert exp["clean"]["max_aspect_ratio"] == 3.0
    assert exp["shard"]["split"] == {"val": 0.1, "test": 0.1}
    assert exp["source"]["synthetic"]["n_images"] == 3000
    assert config["run"] == ["default"]


def test_unknown_key_names_key_and_allowed(base):
    base["experiments"]["default"]["clean"]["max_aspect"] = 2
    with pytest.raises(ConfigError) as err:
        validate_config(base)
    msg = str(err.value)
    assert "experiments.default.clean" in msg
    assert "'max_aspect'" in msg
    assert "max_aspect_ratio" in msg  # the allowed keys are listed


def test_wrong_type_and_enum(base):
    base["experiments"]["default"]["shard"]["image_size"] = "big"
    base["experiments"]["default"]["lang"] = "fr"
    with pytest.raises(ConfigError) as err:
        validate_config(base)
    msg = str(err.value)
    assert "experiments.default.shard.image_size: 'big' has the wrong type; expected integer" in msg
    assert "experiments.default.lang: 'fr' is not allowed" in msg


def test_run_must_name_defined_experiment(base):
    base["run"] = ["nope"]
    with pytest.raises(ConfigError, match="experiment 'nope' is not defined"):
        validate_config(base)


def test_run_mapping_merges_across_files_and_list_replaces(tmp_path, base):
    """Snakemake merges mappings of --configfile files and replaces lists: so does `run`."""
    extra = {"experiments": {"other": {"source": {"format": "synthetic", "synthetic": {}}}}}
    files = {
        "add.yaml": {**extra, "run": {"other": True}},
        "only.yaml": {**extra, "run": ["other"]},
        "off.yaml": {**extra, "run": {"default": False, "other": True}},
    }
    for name, content in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(content))
    main = REPO / "config" / "config.yaml"
    assert load_config(main, tmp_path / "add.yaml")["run"] == ["default", "other"]  # by name
    assert load_config(tmp_path / "add.yaml", main)["run"] == ["default", "other"]
    assert load_config(main, tmp_path / "only.yaml")["run"] == ["other"]
    assert load_config(main, tmp_path / "off.yaml")["run"] == ["other"]
    base["run"] = {"default": False}
    with pytest.raises(ConfigError, match="every experiment is switched off"):
        validate_config(copy.deepcopy(base))
    base["run"] = "default"
    with pytest.raises(ConfigError, match="run: 'default' has the wrong form"):
        validate_config(base)


def test_source_section_must_match_format(base):
    base["experiments"]["default"]["source"] = {"format": "url_list"}
    with pytest.raises(ConfigError, match="no 'url_list:' section"):
        validate_config(base)


def test_split_fractions_must_leave_training_data(base):
    base["experiments"]["default"]["shard"] = {"split": {"val": 0.5, "test": 0.5}}
    with pytest.raises(ConfigError, match="val \\+ test must be below 1"):
        validate_config(base)


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: p.stem)
def test_experiment_configs_validate(path):
    config = load_config(REPO / "config" / "config.yaml", path)
    own = list(yaml.safe_load(path.read_text())["run"])  # a list, or a mapping's names
    assert own and set(own) <= set(config["run"]) <= set(config["experiments"])
    assert "default" in config["experiments"]  # merged like --configfile, not replaced


def test_seed_experiments_train_the_defaults_recipes(base):
    """seeds.yaml measures the default's recipes on other seeds (docs/results.md, "Seeds"): a change
    of the default's data, CLIP or captioner settings must be made there too."""
    seeds = load_yaml(REPO / "config" / "experiments" / "seeds.yaml")["experiments"]
    default = base["experiments"]["default"]
    for name in ("seed1", "seed2"):
        other = {k: v for k, v in seeds[name].items() if k not in ("seed", "description")}
        assert other == {k: v for k, v in default.items() if k not in ("seed", "description")}
    prefix = seeds["prefix_seed1"]["captioners"]["clip_prefix"]
    own = default["captioners"]["clip_prefix"]
    assert prefix["train"] == {**own["train"], "seed": 1}
    assert {k: v for k, v in prefix.items() if k != "train"} == {
        k: v for k, v in own.items() if k != "train"
    }


def test_fp32_experiment_is_the_default_in_fp32():
    """fp32.yaml reproduces the default's fp32 numbers on CPUs where auto picks bf16; with the
    defaults filled in, precision must be the only difference."""
    config = load_config(REPO / "config" / "config.yaml", REPO / "config/experiments/fp32.yaml")
    default = config["experiments"]["default"]
    fp32 = copy.deepcopy(config["experiments"]["default_fp32"])
    sections = [fp32[name] for name in ("clip", "vqvae", "judge", "dalle")]
    sections += [fp32["captioners"][name] for name in ("vit_gpt2", "clip_prefix")]
    for section in sections:
        assert section["train"]["precision"] == "fp32"
        section["train"]["precision"] = "auto"
    fp32["description"] = default["description"]
    assert fp32 == default


def test_a_block_given_in_part_keeps_its_sections_defaults(base):
    """clip's train block defaults to 250 steps (the loop's own default is 300): giving one
    key of it must not lose the others."""
    exp = base["experiments"]["default"]
    exp["clip"] = {"model": "tiny_conv_stem", "train": {"lr": 0.002}}
    exp["vqvae"] = {"train": {"precision": "fp32"}}
    experiment = validate_config(base)["experiments"]["default"]
    clip_train = experiment["clip"]["train"]
    assert clip_train["lr"] == 0.002
    assert (clip_train["max_steps"], clip_train["warmup_steps"], clip_train["val_every"]) == (
        250, 25, 50)  # fmt: skip
    assert clip_train["weight_decay"] == 0.01  # the loop's default, below the section's
    vqvae_train = experiment["vqvae"]["train"]
    assert (vqvae_train["max_steps"], vqvae_train["lr"], vqvae_train["precision"]) == (
        1200, 0.002, "fp32")  # fmt: skip


def test_deep_update_merges_nested():
    base = {"a": {"b": 1, "c": 2}}
    deep_update(base, {"a": {"c": 3}, "d": 4})
    assert base == {"a": {"b": 1, "c": 3}, "d": 4}


@pytest.mark.workflow
@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: p.stem)
def test_experiment_configs_dry_run(workflow_dir, path):
    proc = run_snakemake(workflow_dir, "-n", "--configfile", str(path.relative_to(REPO)))
    for name in yaml.safe_load(path.read_text())["run"]:
        assert f"results/{name}/shards" in proc.stdout


@pytest.mark.workflow
def test_bad_config_stops_snakemake_with_message(workflow_dir: Path):
    bad = workflow_dir / "bad.yaml"
    bad.write_text("experiments:\n  default:\n    clean:\n      max_aspect: 2\n")
    proc = run_snakemake(workflow_dir, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "unknown key 'max_aspect'" in out
    assert "experiments.default.clean" in out


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_shape_keyword_files_match_the_generator(lang):
    from vlcore.pipeline.data import read_keywords
    from vlcore.synthetic import SHAPE_WORDS_EN, SHAPE_WORDS_ZH

    words = read_keywords([REPO / "config" / "keywords" / f"shapes_{lang}.txt"])
    assert set(words) == set(SHAPE_WORDS_EN if lang == "en" else SHAPE_WORDS_ZH)


def test_schema_uses_only_json_schema_keywords():
    """A comma inside an unquoted YAML flow-mapping description splits it into a bogus key
    that JSON Schema silently ignores; every key outside properties/$defs must be a keyword."""
    schema = load_yaml(REPO / "config" / "schema.yaml")
    keywords = {
        "$schema", "$defs", "$ref", "title", "description", "type", "properties",
        "additionalProperties", "required", "default", "enum", "items", "minItems", "maxItems",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "oneOf",
        "anyOf", "pattern", "propertyNames", "minProperties",
    }  # fmt: skip
    odd = []

    def walk(node, path: str, named: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if named:  # the keys are names (of properties or definitions)
                    walk(value, f"{path}/{key}", False)
                    continue
                if key not in keywords:
                    odd.append(f"{path}/{key}")
                if key != "default":  # a default is a value, not a schema
                    walk(value, f"{path}/{key}", key in ("properties", "$defs"))
        elif isinstance(node, list):
            for item in node:
                walk(item, path, False)

    walk(schema, "", False)
    assert not odd, f"not JSON Schema keywords (unquoted comma in a description?): {odd}"


def test_training_settings_flatten_the_train_block_and_fill_the_seed():
    section = {"model": "tiny", "train": {"max_steps": 5, "seed": None, "processes": 2}}
    assert training_settings(section, 7) == {"model": "tiny", "max_steps": 5, "seed": 7}
    section["train"]["seed"] = 3
    assert training_settings(section, 7)["seed"] == 3
    assert section["train"]["processes"] == 2  # the section itself is left as it was
