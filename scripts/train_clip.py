"""train_clip: contrastive image-text training with open_clip on the experiment's shards."""

from pathlib import Path

import torch

from vlcore.logs import rule_logging
from vlcore.pipeline.clip import train_clip
from vlcore.train.launch import launch

with rule_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    # One process here, or torchrun (DDP) when the job has several (GPUs or `processes`).
    launch(
        snakemake,
        train_clip,
        snakemake.input.shards,
        snakemake.input.tokenizer,
        snakemake.params.clip,
        Path(snakemake.output.model).parent,
    )
