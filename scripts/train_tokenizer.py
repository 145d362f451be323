"""train_tokenizer: a Hugging Face tokenizer folder from the experiment's training text."""

from vlcore.logs import rule_logging
from vlcore.pipeline.tokenizer import train

with rule_logging(snakemake.log[0]):
    train(
        snakemake.input.shards,
        snakemake.params.tokenizer,
        snakemake.params.lang,
        snakemake.output.tokenizer,
    )
