"""clean_pairs: filter raw pairs; write the kept rows and a per-reason cleaning report."""

from vlcore.logs import rule_logging
from vlcore.pipeline.data import clean

with rule_logging(snakemake.log[0]):
    clean(
        snakemake.params.clean,
        snakemake.input.raw,
        snakemake.output.clean,
        snakemake.output.report,
        keyword_files=list(snakemake.input.keywords),
    )
