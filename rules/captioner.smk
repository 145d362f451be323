rule train_captioner:
    input:
        unpack(captioner_inputs),
    output:
        model="results/{exp}/captioners/{captioner}/model.safetensors",
        config="results/{exp}/captioners/{captioner}/captioner.json",
        history="results/{exp}/captioners/{captioner}/history.json",
        curve=report(
            "results/{exp}/captioners/{captioner}/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Training",
            subcategory="{exp}",
            labels={"model": "{captioner}", "experiment": "{exp}"},
        ),
    log:
        "logs/train_captioner/{exp}/{captioner}.log",
    benchmark:
        "benchmarks/train_captioner/{exp}-{captioner}.tsv"
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
        captioner=captioner_settings,
        processes=captioner_processes,
    script:
        "../scripts/train_captioner.py"


rule generate_captions:
    input:
        shards=rules.shard_dataset.output.shards,
        model=rules.train_captioner.output.model,
    output:
        coco="results/{exp}/captions/{captioner}.json",
        tsv="results/{exp}/captions/{captioner}.tsv",
    log:
        "logs/generate_captions/{exp}/{captioner}.log",
    benchmark:
        "benchmarks/generate_captions/{exp}-{captioner}.tsv"
    priority: 1
    conda:
        "../envs/vlcore.yaml"
    # one thread: beside a trainer still running, or as two jobs side by side; --set-threads
    # raises it
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    params:
        captioner=captioner_settings,
        evaluation=evaluation_settings,
    script:
        "../scripts/generate_captions.py"


rule answer_questions:
    input:
        shards=rules.shard_dataset.output.shards,
        model=vqa_captioner_model,
    output:
        answers="results/{exp}/vqa/answers.json",
    log:
        "logs/answer_questions/{exp}.log",
    benchmark:
        "benchmarks/answer_questions/{exp}.tsv"
    priority: 1
    conda:
        "../envs/vlcore.yaml"
    # one thread: beside a trainer still running, or as two jobs side by side; --set-threads
    # raises it
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=1,
    params:
        evaluation=evaluation_settings,
    script:
        "../scripts/answer_questions.py"
