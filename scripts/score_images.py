"""score_images: CLIP score and judge attribute accuracy of random vs reranked samples."""

from pathlib import Path

import torch

from vlcore.logs import rule_logging
from vlcore.pipeline.t2i import score_images

with rule_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    judge = snakemake.input.get("judge")
    score_images(
        snakemake.input.samples,
        snakemake.input.rerank,
        snakemake.input.shards,
        snakemake.params.evaluation["split"],
        Path(snakemake.input.clip).parent,
        Path(snakemake.input.vqvae).parent,
        Path(judge).parent if judge else None,
        snakemake.params.truth,
        snakemake.params.rerank,
        snakemake.output.scores,
        snakemake.output.grid,
    )
