"""score_vqa: official VQA v2 accuracy of the answers, with the question-type prior beside it."""

from vlcore.logs import rule_logging
from vlcore.pipeline.evaluate import score_vqa

with rule_logging(snakemake.log[0]):
    score_vqa(
        snakemake.input.answers,
        snakemake.input.shards,
        snakemake.params.evaluation["split"],
        snakemake.output.scores,
        captioner=snakemake.params.captioner,
    )
