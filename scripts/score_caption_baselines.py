"""score_caption_baselines: human agreement, nearest-neighbour and most-frequent caption rows."""

from pathlib import Path

from vlcore.logs import rule_logging
from vlcore.pipeline.evaluate import caption_baselines

with rule_logging(snakemake.log[0]):
    caption_baselines(
        snakemake.input.shards,
        Path(snakemake.input.clip).parent,
        snakemake.params.lang,
        snakemake.params.evaluation,
        snakemake.output.scores,
    )
