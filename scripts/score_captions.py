"""score_captions: BLEU/METEOR/ROUGE-L/CIDEr-D of one captioner over the whole evaluation split."""

from vlcore.logs import rule_logging
from vlcore.pipeline.evaluate import score_model_captions

with rule_logging(snakemake.log[0]):
    score_model_captions(
        snakemake.input.captions,
        snakemake.input.shards,
        snakemake.params.lang,
        snakemake.params.evaluation,
        snakemake.output.scores,
    )
