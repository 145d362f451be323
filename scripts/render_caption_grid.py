"""render_caption_grid: test images with each captioner's caption and the references (HTML)."""

from vlcore.logs import rule_logging
from vlcore.report.samples import caption_grid

with rule_logging(snakemake.log[0]):
    captions = dict(zip(snakemake.params.captioners, snakemake.input.captions, strict=True))
    caption_grid(
        snakemake.input.shards,
        snakemake.params.evaluation["split"],
        captions,
        snakemake.output.grid,
        f"Captions: {snakemake.wildcards.exp}",
        n=snakemake.params.samples,
    )
