"""Workflow configuration: JSON-schema validation that fills defaults and explains errors.

The schema lives in ``config/schema.yaml``. :func:`validate_config` checks a config dict
against it, fills every default in place, and raises :class:`ConfigError` with one line per
problem, each naming the key path and what is allowed, e.g.::

    experiments.default.clean: unknown key 'max_aspect'; allowed keys: dedupe, keyword_mode, ...
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"


class ConfigError(ValueError):
    """The configuration does not match the schema; the message says what to fix."""


def load_yaml(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _with_defaults(validator_class: type) -> type:
    """Extend a jsonschema validator so that ``properties`` fills in ``default`` values; a
    mapping given in part is completed from its mapping default, key by key."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema) -> Iterator:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" not in subschema:
                    continue
                default = subschema["default"]
                if name not in instance:
                    instance[name] = copy.deepcopy(default)
                elif isinstance(default, dict) and isinstance(instance[name], dict):
                    # a block given in part keeps its section's own defaults for the rest
                    # (clip: {train: {lr: 0.002}} still trains clip's 250 steps)
                    for key, value in default.items():
                        instance[name].setdefault(key, copy.deepcopy(value))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultingValidator = _with_defaults(jsonschema.Draft202012Validator)


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _path(error)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        if allowed:
            return f"{where}: unknown key {', '.join(map(repr, extra))}; allowed keys: {', '.join(allowed)}"
    if error.validator == "oneOf" and error.schema.get("description"):
        return (
            f"{where}: {error.instance!r} has the wrong form: {error.schema['description'].strip()}"
        )
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not allowed; choose one of {error.validator_value}"
    if error.validator == "type":
        return f"{where}: {error.instance!r} has the wrong type; expected {error.validator_value}"
    return f"{where}: {error.message}"


def validate_config(config: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults) and return it; raise :class:`ConfigError`."""
    if schema is None:
        schema = load_yaml(SCHEMA_PATH)
    if not isinstance(config, dict):
        raise ConfigError(f"the configuration must be a mapping, got {type(config).__name__}")
    validator = _DefaultingValidator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e) for e in errors]
    if not problems:
        config["run"] = run_list(config["run"])
        problems = _semantic_problems(config)
    if problems:
        raise ConfigError("invalid vlcore configuration:\n  " + "\n  ".join(problems))
    return config


def run_list(run: list[str] | dict[str, bool]) -> list[str]:
    """The experiments to build: a list as it is (repeats dropped), or the names a mapping
    switches on (``{default: true, synthetic_zh: true}``, merged across config files) sorted
    by name, since the order of a merged mapping depends on how Snakemake merged it."""
    names = sorted(name for name, on in run.items() if on) if isinstance(run, dict) else run
    return list(dict.fromkeys(names))


def _semantic_problems(config: dict[str, Any]) -> list[str]:
    """Checks a JSON schema cannot express clearly."""
    problems = []
    experiments = config["experiments"]
    if not config["run"]:
        problems.append("run: every experiment is switched off; set at least one to true")
    for name in config["run"]:
        if name not in experiments:
            problems.append(
                f"run: experiment {name!r} is not defined; defined: {', '.join(sorted(experiments))}"
            )
    for name, exp in experiments.items():
        fmt = exp["source"]["format"]
        if fmt not in exp["source"]:
            problems.append(
                f"experiments.{name}.source: format is {fmt!r} but there is no '{fmt}:' section "
                f"with its settings (see config/schema.yaml, $defs.source.properties.{fmt})"
            )
        fractions = exp["shard"]["split"]
        if fractions["val"] + fractions["test"] >= 1:
            problems.append(
                f"experiments.{name}.shard.split: val + test must be below 1, got "
                f"{fractions['val']} + {fractions['test']}"
            )
    return problems


def load_config(*paths: str | os.PathLike) -> dict[str, Any]:
    """Load and deep-merge YAML files (later ones win, as Snakemake's --configfile does), then validate."""
    merged: dict[str, Any] = {}
    for path in paths:
        deep_update(merged, load_yaml(path) or {})
    return validate_config(merged)


def deep_update(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def experiment_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The validated settings of experiment ``name``."""
    try:
        return config["experiments"][name]
    except KeyError:
        known = ", ".join(sorted(config.get("experiments", {})))
        raise ConfigError(f"unknown experiment {name!r}; defined: {known}") from None


def training_settings(section: dict[str, Any], experiment_seed: int) -> dict[str, Any]:
    """A model section flattened for its trainer: its own keys and its ``train`` block's in
    one mapping, the experiment seed filling a null ``seed``. ``processes`` is left out: the
    launcher gets it apart (the rules' ``params.processes``)."""
    settings = {k: v for k, v in section.items() if k != "train"}
    train = {k: v for k, v in section["train"].items() if k != "processes"}
    if train["seed"] is None:
        train["seed"] = experiment_seed
    return {**settings, **train}
