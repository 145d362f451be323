"""compare_experiments: results/compare.md and .json, the experiments of the run side by side."""

from pathlib import Path

from vlcore.logs import rule_logging
from vlcore.report.compare import compare_experiments

with rule_logging(snakemake.log[0]):
    experiments = snakemake.params.experiments
    data = {
        exp: {"clean_report": report, "manifest": str(Path(shards) / "manifest.json")}
        for exp, report, shards in zip(
            experiments, snakemake.input.clean_reports, snakemake.input.shards, strict=True
        )
    }
    compare_experiments(
        experiments,
        dict(zip(snakemake.params.tables, snakemake.input.tables, strict=True)),
        data,
        snakemake.output.md,
        snakemake.output.json,
        descriptions=snakemake.params.descriptions,
    )
