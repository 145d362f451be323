"""encode_images: every split's images as VQ-VAE code indices, beside the shards."""

from pathlib import Path

import torch

from vlcore.gpus import claim_job_gpus
from vlcore.logs import rule_logging
from vlcore.pipeline.vqvae import encode_images

with rule_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    claim_job_gpus(snakemake)  # locally: a GPU of its own (CUDA_VISIBLE_DEVICES)
    encode_images(
        snakemake.input.shards,
        Path(snakemake.input.model).parent,
        snakemake.output.codes,
    )
