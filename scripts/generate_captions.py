"""generate_captions: beam-search captions for the evaluation split (COCO JSON + EasyNLP TSV)."""

from pathlib import Path

import torch

from vlcore.gpus import claim_job_gpus
from vlcore.logs import rule_logging
from vlcore.pipeline.captioner import generate_captions

with rule_logging(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    claim_job_gpus(snakemake)  # locally: a GPU of its own (CUDA_VISIBLE_DEVICES)
    generate_captions(
        snakemake.wildcards.captioner,
        Path(snakemake.input.model).parent,
        snakemake.input.shards,
        snakemake.params.evaluation["split"],
        snakemake.params.captioner,
        snakemake.output.coco,
        snakemake.output.tsv,
    )
