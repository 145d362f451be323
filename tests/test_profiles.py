"""The profiles: `--profile slurm` is found from the repository root and keeps its resources.

No SLURM needed: a dry run shows the resources every job would be submitted with.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.conftest import REPO, copy_workflow, run_snakemake

SLURM_PROFILE = REPO / "slurm" / "config.yaml"
DEFAULT_PROFILE = REPO / "profiles" / "default" / "config.yaml"


def gpu_rules(workflow: Path = REPO) -> set[str]:
    """Rules whose resources declare a GPU (``gpu=``), read from rules/*.smk."""
    found = set()
    for smk in sorted((workflow / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule \w+:)", smk.read_text(), flags=re.M):
            name = re.match(r"rule (\w+):", block)
            if name and re.search(r"^\s+gpu=", block, flags=re.M):
                found.add(name.group(1))
    return found


def test_profiles_slurm_links_to_the_slurm_profile():
    assert (REPO / "profiles" / "slurm").resolve() == (REPO / "slurm").resolve()


def test_every_gpu_rule_gets_cpus_per_gpu_on_slurm():
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    rules = gpu_rules()
    assert {"train_clip", "train_captioner", "generate_captions"} <= rules
    missing = sorted(r for r in rules if "cpus_per_gpu" not in profile["set-resources"].get(r, {}))
    assert not missing, f"add these GPU rules to set-resources in slurm/config.yaml: {missing}"


def test_slurm_profile_keeps_gpu_requests_to_gpu_rules():
    profile = yaml.safe_load(SLURM_PROFILE.read_text())
    defaults = profile["default-resources"]
    assert {"slurm_partition", "slurm_account", "mem_mb", "runtime"} <= set(defaults)
    # In default-resources the plugin would ask for a GPU for every job.
    assert not {"gpu", "gpu_model", "gres"} & set(defaults)
    assert profile["executor"] == "slurm"


def test_workflow_profile_leaves_the_slurm_keys_alone():
    # The workflow profile replaces the same keys of --profile slurm whole.
    keys = set(yaml.safe_load(DEFAULT_PROFILE.read_text()))
    assert not keys & {"default-resources", "set-resources", "resources", "executor", "jobs"}


def test_profile_slurm_dry_run_from_the_repository_root(tmp_path: Path):
    workdir = copy_workflow(tmp_path)
    (workdir / "tiny.yaml").write_text(
        "experiments: {default: {source: {synthetic: {n_images: 40}}}}\n"
    )
    proc = run_snakemake(
        workdir, "-n", "results/retrieval.json", "--profile", "slurm", "--configfile", "tiny.yaml"
    )
    out = proc.stdout + proc.stderr
    assert "Using profiles slurm and workflow specific profile profiles/default" in out
    jobs = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^rule (\w+):.*?^\s+resources: (.*?)$", out, flags=re.M | re.S)
    }
    assert {"download_dataset", "train_clip", "score_retrieval"} <= set(jobs)
    for rule, resources in jobs.items():
        assert "slurm_partition=gpu" in resources, (rule, resources)
        assert ("gpu=1" in resources) == (rule in gpu_rules()), (rule, resources)
    # The rule's own memory and runtime win over the profile's defaults.
    assert "mem_mb=8000" in jobs["train_clip"] and "runtime=240" in jobs["train_clip"]
    assert "cpus_per_gpu=4" in jobs["train_clip"]
