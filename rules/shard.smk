rule shard_dataset:
    input:
        clean=rules.clean_pairs.output.clean,
    output:
        shards=directory("results/{exp}/shards"),
    log:
        "logs/shard_dataset/{exp}.log",
    benchmark:
        "benchmarks/shard_dataset/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        shard=shard_settings,
    script:
        "../scripts/shard_dataset.py"
