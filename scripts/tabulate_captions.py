"""tabulate_captions: results/cider.json, every experiment x captioner beside reference rows."""

from vlcore.logs import rule_logging
from vlcore.pipeline.evaluate import collect_caption_table

with rule_logging(snakemake.log[0]):
    collect_caption_table(snakemake.params.tables, snakemake.output.table)
