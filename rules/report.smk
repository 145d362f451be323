# The figures and tables of the HTML report (`snakemake --report report.html`) and the
# comparison of the experiments of a run. All cheap (seconds); all in the default target.
# Per-rule runtimes come from Snakemake's own report ("Statistics").


rule plot_cleaning:
    input:
        report=rules.clean_pairs.output.report,
    output:
        chart=report(
            "results/{exp}/report/cleaning.png",
            caption="../report/cleaning.rst",
            category="Data",
            subcategory="{exp}",
            labels={"figure": "cleaning counts", "experiment": "{exp}"},
        ),
    log:
        "logs/plot_cleaning/{exp}.log",
    benchmark:
        "benchmarks/plot_cleaning/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/plot_cleaning.py"


rule render_caption_grid:
    input:
        shards=rules.shard_dataset.output.shards,
        captions=caption_grid_captions,
    output:
        grid=report(
            "results/{exp}/report/captions.html",
            caption="../report/caption_grid.rst",
            category="Samples",
            subcategory="{exp}",
            labels={"figure": "captions", "experiment": "{exp}"},
        ),
    log:
        "logs/render_caption_grid/{exp}.log",
    benchmark:
        "benchmarks/render_caption_grid/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        captioners=caption_grid_captioners,
        evaluation=evaluation_settings,
        samples=8,
    script:
        "../scripts/render_caption_grid.py"


rule render_vqa_grid:
    input:
        shards=rules.shard_dataset.output.shards,
        answers=rules.answer_questions.output.answers,
        scores=rules.score_vqa.output.scores,
    output:
        grid=report(
            "results/{exp}/report/vqa.html",
            caption="../report/vqa_grid.rst",
            category="Samples",
            subcategory="{exp}",
            labels={"figure": "VQA", "experiment": "{exp}"},
        ),
    log:
        "logs/render_vqa_grid/{exp}.log",
    benchmark:
        "benchmarks/render_vqa_grid/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        evaluation=evaluation_settings,
        samples=6,
        questions_per_image=3,
    script:
        "../scripts/render_vqa_grid.py"


rule compare_experiments:
    input:
        tables=list(metric_tables().values()),
        clean_reports=expand(rules.clean_pairs.output.report, exp=RUN),
        shards=expand(rules.shard_dataset.output.shards, exp=RUN),
    output:
        md="results/compare.md",
        json="results/compare.json",
    log:
        "logs/compare_experiments/all.log",
    benchmark:
        "benchmarks/compare_experiments/all.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        experiments=RUN,
        tables=list(metric_tables()),
        descriptions=descriptions(),
    script:
        "../scripts/compare_experiments.py"


rule render_table:
    input:
        table="results/{table}.json",
    output:
        html=report(
            "results/report/{table}.html",
            caption="../report/metric_table.rst",
            category="Metrics",
            labels={"table": "{table}"},
        ),
    log:
        "logs/render_table/{table}.log",
    benchmark:
        "benchmarks/render_table/{table}.tsv"
    wildcard_constraints:
        table="|".join([*metric_tables(), "compare"]),
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/render_table.py"
