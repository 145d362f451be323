# vlcore: raw image-text data -> trained vision-language models -> honest benchmark numbers.
# Run the embedded default:  snakemake --cores 2
# Another experiment:        snakemake --cores 2 --configfile config/experiments/<name>.yaml
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/clean.smk"
include: "rules/shard.smk"
include: "rules/train.smk"
include: "rules/clip.smk"
include: "rules/captioner.smk"
include: "rules/vqvae.smk"
include: "rules/judge.smk"
include: "rules/dalle.smk"
include: "rules/evaluate.smk"
include: "rules/tabulate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
