rule tabulate_retrieval:
    input:
        scores=expand(rules.score_retrieval.output.scores, exp=RUN),
    output:
        table="results/retrieval.json",
    log:
        "logs/tabulate_retrieval/all.log",
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        experiments=RUN,
    script:
        "../scripts/tabulate_retrieval.py"


rule tabulate_captions:
    input:
        caption_table_files,
    output:
        table="results/cider.json",
    log:
        "logs/tabulate_captions/all.log",
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        tables=caption_tables(),
    script:
        "../scripts/tabulate_captions.py"


rule tabulate_vqa:
    input:
        scores=list(vqa_tables().values()),
    output:
        table="results/vqa.json",
    log:
        "logs/tabulate_vqa/all.log",
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        experiments=list(vqa_tables()),
    script:
        "../scripts/tabulate_vqa.py"


rule tabulate_t2i:
    input:
        scores=expand(rules.score_images.output.scores, exp=RUN),
    output:
        table="results/t2i.json",
    log:
        "logs/tabulate_t2i/all.log",
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        experiments=RUN,
    script:
        "../scripts/tabulate_t2i.py"
