"""rerank_images: score every sample against its prompt (CLIP by default) and keep the best."""

from pathlib import Path

import torch

from vlcore.logs import rule_logging
from vlcore.pipeline.t2i import rerank_images

with rule_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    rerank_images(
        snakemake.input.samples,
        Path(snakemake.input.scorer).parent,
        snakemake.params.rerank,
        snakemake.output.rerank,
    )
