rule clean_pairs:
    input:
        raw=rules.download_dataset.output.raw,
        keywords=keyword_files,
    output:
        clean="results/{exp}/data/clean.parquet",
        report="results/{exp}/data/clean_report.json",
    log:
        "logs/clean_pairs/{exp}.log",
    benchmark:
        "benchmarks/clean_pairs/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        clean=clean_settings,
    script:
        "../scripts/clean_pairs.py"
