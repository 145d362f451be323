# The data model of the workflow: config validation, wildcard constraints and input
# functions. No rules live here.
import os
import re
from pathlib import Path

from vlcore.config import load_yaml, training_settings, validate_config
from vlcore.gpus import apply_local_gpu_limit

# Every job works offline unless the user says otherwise.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

validate_config(config, load_yaml(Path(workflow.basedir) / "config" / "schema.yaml"))

# A local run starts at most as many GPU jobs at once as there are GPUs (none: no cap, and
# GPU rules run on the CPU); `--resources gpu=N` overrides, cluster runs are left alone.
apply_local_gpu_limit(workflow)

EXPERIMENTS = config["experiments"]
RUN = config["run"]


wildcard_constraints:
    exp="|".join(re.escape(name) for name in EXPERIMENTS),
    captioner="vit_gpt2|clip_prefix",


def experiment(wildcards):
    return EXPERIMENTS[wildcards.exp]


# Config keys of each source format that name input files or folders.
SOURCE_PATH_KEYS = (
    "path",
    "json",
    "images_dir",
    "captions_file",
    "captions_json",
    "karpathy_json",
    "questions_json",
    "annotations_json",
)


def source_settings(wildcards):
    source = experiment(wildcards)["source"]
    fmt = source["format"]
    return {"format": fmt, fmt: source[fmt]}


def source_files(wildcards):
    """The source's input files that exist now, so a change to them reruns the download.

    Missing ones are left to download_dataset, which stops with a message naming the key.
    """
    settings = source_settings(wildcards)
    section = settings[settings["format"]]
    paths = (section.get(key) for key in SOURCE_PATH_KEYS)
    return [p for p in paths if p and Path(p).is_file()]


def clean_settings(wildcards):
    return {**experiment(wildcards)["clean"], "lang": experiment(wildcards)["lang"]}


def keyword_files(wildcards):
    path = experiment(wildcards)["clean"]["keywords_file"]
    return [path] if path else []


def shard_settings(wildcards):
    return experiment(wildcards)["shard"]


def tokenizer_settings(wildcards):
    return experiment(wildcards)["tokenizer"]


def flatten_training(section, wildcards):
    """A model section flattened for its trainer (vlcore.config.training_settings)."""
    return training_settings(section, experiment(wildcards)["seed"])


def clip_settings(wildcards):
    return flatten_training(experiment(wildcards)["clip"], wildcards)


def captioner_settings(wildcards):
    """The captioner's section for its trainer; self-critical rewards tokenise the captions
    as the experiment's evaluation does (its language and Chinese segmenter)."""
    exp = experiment(wildcards)
    settings = flatten_training(exp["captioners"][wildcards.captioner], wildcards)
    scst = {**settings.get("scst", {}), "lang": exp["lang"]}
    scst["segmenter"] = exp["evaluation"]["segmenter"]
    return {**settings, "scst": scst}


def vqvae_settings(wildcards):
    return flatten_training(experiment(wildcards)["vqvae"], wildcards)


def vqvae_processes(wildcards):
    return experiment(wildcards)["vqvae"]["train"]["processes"]


def judge_settings(wildcards):
    return flatten_training(experiment(wildcards)["judge"], wildcards)


def judge_processes(wildcards):
    return experiment(wildcards)["judge"]["train"]["processes"]


def is_synthetic(name):
    return EXPERIMENTS[name]["source"]["format"] == "synthetic"


# train_judge matches synthetic experiments only (a pattern that never matches when none is).
SYNTHETIC_PATTERN = (
    "|".join(re.escape(n) for n in EXPERIMENTS if is_synthetic(n)) or "(?!)"
)


def judge_truth(wildcards):
    """What regenerates each image's scene: the generator's seed and dirty rate."""
    exp = experiment(wildcards)
    return {"seed": exp["seed"], "dirty_rate": exp["source"]["synthetic"]["dirty_rate"]}


def clip_processes(wildcards):
    """Training processes per node (vlcore.train.launch); null: one per GPU of the job."""
    return experiment(wildcards)["clip"]["train"]["processes"]


def captioner_processes(wildcards):
    captioner = experiment(wildcards)["captioners"][wildcards.captioner]
    return captioner["train"]["processes"]


def captioner_inputs(wildcards):
    """clip_prefix starts from the experiment's trained CLIP image encoder."""
    inputs = {
        "shards": rules.shard_dataset.output.shards.format(exp=wildcards.exp),
        "tokenizer": rules.train_tokenizer.output.tokenizer.format(exp=wildcards.exp),
    }
    if wildcards.captioner == "clip_prefix":
        inputs["clip"] = rules.train_clip.output.model.format(exp=wildcards.exp)
    return inputs


def vqa_captioner(wildcards):
    """The captioner that answers the experiment's VQA questions (``captioners: vqa_with``)."""
    return experiment(wildcards)["captioners"]["vqa_with"]


def vqa_captioner_model(wildcards):
    name = vqa_captioner(wildcards)
    return rules.train_captioner.output.model.format(exp=wildcards.exp, captioner=name)


def captioners_of(name):
    return EXPERIMENTS[name]["captioners"]["run"]


def has_vqa(name):
    return EXPERIMENTS[name]["captioners"]["vqa_with"] is not None


def caption_tables():
    """Per experiment of the run: its captioners' score files and its baseline file."""
    return {
        name: {
            "lang": EXPERIMENTS[name]["lang"],
            "scores": [
                rules.score_captions.output.scores.format(exp=name, captioner=c)
                for c in captioners_of(name)
            ],
            "baselines": rules.score_caption_baselines.output.scores.format(exp=name),
        }
        for name in RUN
    }


def caption_table_files(wildcards):
    return [
        f
        for entry in caption_tables().values()
        for f in [*entry["scores"], entry["baselines"]]
    ]


def vqa_tables():
    return {
        name: rules.score_vqa.output.scores.format(exp=name)
        for name in RUN
        if has_vqa(name)
    }


def dalle_train_settings(wildcards):
    """The dalle section for train_dalle: its sampling part is left to generate_images."""
    settings = flatten_training(experiment(wildcards)["dalle"], wildcards)
    return {k: v for k, v in settings.items() if k != "generate"}


def dalle_generate_settings(wildcards):
    """Sampling and prompts for generate_images, with the seed and device of training."""
    settings = flatten_training(experiment(wildcards)["dalle"], wildcards)
    return {k: settings[k] for k in ("generate", "seed", "device")}


def dalle_processes(wildcards):
    return experiment(wildcards)["dalle"]["train"]["processes"]


def rerank_settings(wildcards):
    return experiment(wildcards)["rerank"]


def rerank_scorer_model(wildcards):
    """The model file of the scorer rerank_images uses (rerank.scorer); clip: the trained CLIP."""
    scorer = rerank_settings(wildcards)["scorer"]
    if scorer == "clip":
        return rules.train_clip.output.model.format(exp=wildcards.exp)
    raise ValueError(f"rerank scorer {scorer!r} has no model file in the workflow")


def score_images_inputs(wildcards):
    """Samples, their ranking, the real images, CLIP, the VQ-VAE (for reconstructions of the
    real images) and the judge of synthetic data."""
    inputs = {
        "samples": rules.generate_images.output.samples.format(exp=wildcards.exp),
        "rerank": rules.rerank_images.output.rerank.format(exp=wildcards.exp),
        "shards": rules.shard_dataset.output.shards.format(exp=wildcards.exp),
        "clip": rules.train_clip.output.model.format(exp=wildcards.exp),
        "vqvae": rules.train_vqvae.output.model.format(exp=wildcards.exp),
    }
    if is_synthetic(wildcards.exp):
        inputs["judge"] = rules.train_judge.output.model.format(exp=wildcards.exp)
    return inputs


def scene_truth_settings(wildcards):
    """The judge's ground truth (synthetic experiments), else None."""
    return judge_truth(wildcards) if is_synthetic(wildcards.exp) else None


def evaluation_settings(wildcards):
    return experiment(wildcards)["evaluation"]


def lang(wildcards):
    return experiment(wildcards)["lang"]


def seed(wildcards):
    return experiment(wildcards)["seed"]


def metric_tables():
    """The top-level tables of the run by name (`results/<name>.json`): what
    compare_experiments puts side by side and render_table draws for the report."""
    tables = {
        "cider": rules.tabulate_captions.output.table,
        "retrieval": rules.tabulate_retrieval.output.table,
    }
    if vqa_tables():
        tables["vqa"] = rules.tabulate_vqa.output.table
    tables["t2i"] = rules.tabulate_t2i.output.table
    return tables


def descriptions():
    return {name: EXPERIMENTS[name]["description"] for name in RUN}


def caption_grid_captioners(wildcards):
    return captioners_of(wildcards.exp)


def caption_grid_captions(wildcards):
    """The generated captions (COCO results) of each captioner of the experiment."""
    return [
        rules.generate_captions.output.coco.format(exp=wildcards.exp, captioner=name)
        for name in captioners_of(wildcards.exp)
    ]


def report_figures():
    """The figures and tables of the HTML report (rules/report.smk) for the run."""
    with_captioners = [name for name in RUN if captioners_of(name)]
    with_vqa = [name for name in RUN if has_vqa(name)]
    return [
        *expand(rules.plot_cleaning.output.chart, exp=RUN),
        *expand(rules.render_caption_grid.output.grid, exp=with_captioners),
        *expand(rules.render_vqa_grid.output.grid, exp=with_vqa),
        *expand(rules.render_table.output.html, table=[*metric_tables(), "compare"]),
    ]


def get_final_output():
    """What `snakemake` with no target builds: every artifact of each experiment in `run`,
    the top-level tables, their comparison and the figures of the report."""
    return [
        *expand(rules.clean_pairs.output.report, exp=RUN),
        *metric_tables().values(),
        rules.compare_experiments.output.md,
        *report_figures(),
    ]
