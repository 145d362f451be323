"""shard_dataset: resize, split and write Parquet shards plus manifest.json."""

from vlcore.logs import rule_logging
from vlcore.pipeline.data import shard

with rule_logging(snakemake.log[0]):
    shard(
        snakemake.params.shard,
        snakemake.input.clean,
        snakemake.output.shards,
        threads=snakemake.threads,
    )
