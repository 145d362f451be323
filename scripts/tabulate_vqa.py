"""tabulate_vqa: results/vqa.json, one entry per experiment (per-question detail left out)."""

from vlcore.logs import rule_logging
from vlcore.pipeline.evaluate import collect_json_table

with rule_logging(snakemake.log[0]):
    paths = dict(zip(snakemake.params.experiments, snakemake.input.scores, strict=True))
    collect_json_table(paths, snakemake.output.table, drop=("per_question",))
