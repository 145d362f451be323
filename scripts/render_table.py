"""render_table: a top-level results/<table>.json as an HTML page for the report."""

from vlcore.logs import rule_logging
from vlcore.report.tables import render_table

with rule_logging(snakemake.log[0]):
    render_table(snakemake.wildcards.table, snakemake.input.table, snakemake.output.html)
