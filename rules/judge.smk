# The attribute judge exists for synthetic experiments only: their images have a ground truth.


rule train_judge:
    input:
        shards=rules.shard_dataset.output.shards,
    output:
        model="results/{exp}/judge/model.safetensors",
        config="results/{exp}/judge/judge.json",
        history="results/{exp}/judge/history.json",
        curve=report(
            "results/{exp}/judge/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Training",
            subcategory="{exp}",
            labels={"model": "attribute judge", "experiment": "{exp}"},
        ),
        scores="results/{exp}/scores/judge.json",
    log:
        "logs/train_judge/{exp}.log",
    benchmark:
        "benchmarks/train_judge/{exp}.tsv"
    wildcard_constraints:
        exp=SYNTHETIC_PATTERN,
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    params:
        judge=judge_settings,
        truth=judge_truth,
        processes=judge_processes,
    script:
        "../scripts/train_judge.py"
