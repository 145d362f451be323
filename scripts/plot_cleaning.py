"""plot_cleaning: the clean report of an experiment as a bar chart for the HTML report."""

from vlcore.logs import rule_logging
from vlcore.report.cleaning import plot_cleaning

with rule_logging(snakemake.log[0]):
    plot_cleaning(snakemake.input.report, snakemake.output.chart, snakemake.wildcards.exp)
