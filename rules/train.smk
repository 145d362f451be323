rule train_tokenizer:
    input:
        shards=rules.shard_dataset.output.shards,
    output:
        tokenizer=directory("results/{exp}/tokenizer"),
    log:
        "logs/train_tokenizer/{exp}.log",
    benchmark:
        "benchmarks/train_tokenizer/{exp}.tsv"
    params:
        tokenizer=tokenizer_settings,
        lang=lang,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        "../envs/vlcore.yaml"
    script:
        "../scripts/train_tokenizer.py"
