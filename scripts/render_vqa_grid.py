"""render_vqa_grid: VQA questions with the model's and the humans' answers (HTML)."""

from vlcore.logs import rule_logging
from vlcore.report.samples import vqa_grid

with rule_logging(snakemake.log[0]):
    vqa_grid(
        snakemake.input.shards,
        snakemake.params.evaluation["split"],
        snakemake.input.answers,
        snakemake.input.scores,
        snakemake.output.grid,
        f"VQA: {snakemake.wildcards.exp}",
        n=snakemake.params.samples,
        questions_per_image=snakemake.params.questions_per_image,
    )
