"""train_vqvae: the image tokenizer (VQ-VAE) on the experiment's shards, scored on the test split."""

from pathlib import Path

import torch

from vlcore.logs import rule_logging
from vlcore.pipeline.vqvae import train_vqvae
from vlcore.train.launch import launch

with rule_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    # One process here, or torchrun (DDP) when the job has several (GPUs or `processes`).
    launch(
        snakemake,
        train_vqvae,
        snakemake.input.shards,
        snakemake.params.vqvae,
        Path(snakemake.output.model).parent,
        snakemake.output.scores,
    )
