rule train_clip:
    input:
        shards=rules.shard_dataset.output.shards,
        tokenizer=rules.train_tokenizer.output.tokenizer,
    output:
        # Files, not the folder: Snakemake would delete a directory() output before the job,
        # and with it the checkpoint a restarted job resumes from.
        model="results/{exp}/clip/model.safetensors",
        config="results/{exp}/clip/open_clip_config.json",
        history="results/{exp}/clip/history.json",
        curve=report(
            "results/{exp}/clip/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Training",
            subcategory="{exp}",
            labels={"model": "CLIP", "experiment": "{exp}"},
        ),
    log:
        "logs/train_clip/{exp}.log",
    benchmark:
        "benchmarks/train_clip/{exp}.tsv"
    # trainers first: they are the long path to the results (a free core takes the scoring)
    priority: 2
    conda:
        "../envs/vlcore.yaml"
    # one thread: the tiny default models train faster as two one-thread jobs side by side
    # than one after the other with two threads each (bench/main_job.py); --set-threads raises it
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        clip=clip_settings,
        processes=clip_processes,
    script:
        "../scripts/train_clip.py"


rule score_retrieval:
    input:
        shards=rules.shard_dataset.output.shards,
        model=rules.train_clip.output.model,
    output:
        scores="results/{exp}/scores/retrieval.json",
    log:
        "logs/score_retrieval/{exp}.log",
    benchmark:
        "benchmarks/score_retrieval/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        evaluation=evaluation_settings,
    script:
        "../scripts/score_retrieval.py"
