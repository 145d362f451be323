"""train_judge: the attribute judge of a synthetic experiment, scored on real test images."""

from pathlib import Path

import torch

from vlcore.logs import rule_logging
from vlcore.pipeline.judge import train_judge

with rule_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    train_judge(
        snakemake.input.shards,
        snakemake.params.truth,
        snakemake.params.judge,
        Path(snakemake.output.model).parent,
        snakemake.output.scores,
    )
