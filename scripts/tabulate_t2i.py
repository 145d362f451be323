"""tabulate_t2i: results/t2i.json, one entry per experiment of the run."""

from vlcore.logs import rule_logging
from vlcore.pipeline.evaluate import collect_json_table

with rule_logging(snakemake.log[0]):
    paths = dict(zip(snakemake.params.experiments, snakemake.input.scores, strict=True))
    collect_json_table(paths, snakemake.output.table)
