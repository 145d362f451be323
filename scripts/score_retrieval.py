"""score_retrieval: image->text and text->image recall@K of the trained CLIP, chance beside it."""

from pathlib import Path

import torch

from vlcore.logs import rule_logging
from vlcore.pipeline.clip import score_retrieval

with rule_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    score_retrieval(
        snakemake.input.shards,
        Path(snakemake.input.model).parent,
        snakemake.params.evaluation["split"],
        snakemake.output.scores,
    )
