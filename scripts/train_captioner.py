"""train_captioner: train one captioner (vit_gpt2 or clip_prefix) on the experiment's shards."""

from pathlib import Path

import torch

from vlcore.logs import rule_logging
from vlcore.pipeline.captioner import train_captioner
from vlcore.train.launch import launch

with rule_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    clip = snakemake.input.get("clip")
    # One process here, or torchrun (DDP) when the job has several (GPUs or `processes`).
    launch(
        snakemake,
        train_captioner,
        snakemake.wildcards.captioner,
        snakemake.input.shards,
        snakemake.input.tokenizer,
        Path(clip).parent if clip else None,
        snakemake.params.captioner,
        Path(snakemake.output.model).parent,
    )
