rule download_dataset:
    input:
        source_files,
    output:
        raw="results/{exp}/data/raw.parquet",
        stats="results/{exp}/data/download_stats.json",
    log:
        "logs/download_dataset/{exp}.log",
    benchmark:
        "benchmarks/download_dataset/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        source=source_settings,
        lang=lang,
        seed=seed,
    script:
        "../scripts/download_dataset.py"
