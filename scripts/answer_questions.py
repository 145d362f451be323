"""answer_questions: answer the evaluation split's VQA questions by prompt."""

from pathlib import Path

import torch

from vlcore.gpus import claim_job_gpus
from vlcore.logs import rule_logging
from vlcore.pipeline.captioner import answer_questions

with rule_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    claim_job_gpus(snakemake)  # locally: a GPU of its own (CUDA_VISIBLE_DEVICES)
    answer_questions(
        Path(snakemake.input.model).parent,
        snakemake.input.shards,
        snakemake.params.evaluation["split"],
        {},
        snakemake.output.answers,
    )
