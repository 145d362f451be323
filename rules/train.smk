rule train_tokenizer:
    input:
        shards=rules.shard_dataset.output.shards,
    output:
        tokenizer=directory("results/{exp}/tokenizer"),
    log:
        "logs/train_tokenizer/{exp}.log",
    benchmark:
        "benchmarks/train_tokenizer/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        tokenizer=tokenizer_settings,
        lang=lang,
    script:
        "../scripts/train_tokenizer.py"
