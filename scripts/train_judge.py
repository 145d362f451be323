"""train_judge: the attribute judge of a synthetic experiment, scored on real test images."""

from pathlib import Path

import torch

from vlcore.logs import rule_logging
from vlcore.pipeline.judge import train_judge
from vlcore.train.launch import launch

with rule_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    # One process here, or torchrun (DDP) when the job has several (GPUs or `processes`).
    launch(
        snakemake,
        train_judge,
        snakemake.input.shards,
        snakemake.params.truth,
        snakemake.params.judge,
        Path(snakemake.output.model).parent,
        snakemake.output.scores,
    )
