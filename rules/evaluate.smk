rule score_captions:
    input:
        shards=rules.shard_dataset.output.shards,
        captions=rules.generate_captions.output.coco,
    output:
        scores="results/{exp}/scores/captions/{captioner}.json",
    log:
        "logs/score_captions/{exp}/{captioner}.log",
    benchmark:
        "benchmarks/score_captions/{exp}-{captioner}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        evaluation=evaluation_settings,
        lang=lang,
    script:
        "../scripts/score_captions.py"


rule score_caption_baselines:
    input:
        shards=rules.shard_dataset.output.shards,
        clip=rules.train_clip.output.model,
    output:
        scores="results/{exp}/scores/caption_baselines.json",
    log:
        "logs/score_caption_baselines/{exp}.log",
    benchmark:
        "benchmarks/score_caption_baselines/{exp}.tsv"
    # after the trainers (not between train_clip and clip_prefix, the long path), but among
    # the first jobs after them: it is the longest of the scoring rules (docs/time.md)
    priority: 1
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        evaluation=evaluation_settings,
        lang=lang,
    script:
        "../scripts/score_caption_baselines.py"


rule score_vqa:
    input:
        shards=rules.shard_dataset.output.shards,
        answers=rules.answer_questions.output.answers,
    output:
        scores="results/{exp}/scores/vqa.json",
    log:
        "logs/score_vqa/{exp}.log",
    benchmark:
        "benchmarks/score_vqa/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        evaluation=evaluation_settings,
        captioner=vqa_captioner,
    script:
        "../scripts/score_vqa.py"
