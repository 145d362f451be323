"""train_dalle: DALL-E (GPT-2 over caption tokens and VQ-VAE codes) on the experiment's codes."""

from pathlib import Path

import torch

from vlcore.logs import rule_logging
from vlcore.pipeline.dalle import train_dalle
from vlcore.train.launch import launch

with rule_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    # One process here, or torchrun (DDP) when the job has several (GPUs or `processes`).
    launch(
        snakemake,
        train_dalle,
        snakemake.input.codes,
        snakemake.input.tokenizer,
        snakemake.params.dalle,
        str(Path(snakemake.output.model).parent),
    )
