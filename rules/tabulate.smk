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
