"""generate_images: DALL-E samples for every test prompt, decoded by the VQ-VAE."""

from pathlib import Path

import torch

from vlcore.logs import rule_logging
from vlcore.pipeline.dalle_generate import generate_images

with rule_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    generate_images(
        Path(snakemake.input.model).parent,
        Path(snakemake.input.vqvae).parent,
        snakemake.input.shards,
        snakemake.params.evaluation["split"],
        snakemake.params.dalle,
        snakemake.output.samples,
    )
