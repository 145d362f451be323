"""download_dataset: ingest an experiment's source into results/<exp>/data/raw.parquet."""

from vlcore.logs import rule_logging
from vlcore.pipeline.data import download

with rule_logging(snakemake.log[0]):
    download(
        snakemake.params.source,
        snakemake.output.raw,
        snakemake.output.stats,
        lang=snakemake.params.lang,
        seed=snakemake.params.seed,
    )
