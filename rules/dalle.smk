# Text to image: DALL-E on the VQ-VAE codes, sampling, CLIP reranking and the honest numbers.


rule train_dalle:
    input:
        codes=rules.encode_images.output.codes,
        tokenizer=rules.train_tokenizer.output.tokenizer,
    output:
        # Files, not the folder: Snakemake would delete a directory() output before the job,
        # and with it the checkpoint a restarted job resumes from.
        model="results/{exp}/dalle/model.safetensors",
        config="results/{exp}/dalle/dalle.json",
        history="results/{exp}/dalle/history.json",
        curve=report(
            "results/{exp}/dalle/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Training",
            subcategory="{exp}",
            labels={"model": "DALL-E", "experiment": "{exp}"},
        ),
    log:
        "logs/train_dalle/{exp}.log",
    benchmark:
        "benchmarks/train_dalle/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        dalle=dalle_train_settings,
        processes=dalle_processes,
    script:
        "../scripts/train_dalle.py"


rule generate_images:
    input:
        model=rules.train_dalle.output.model,
        vqvae=rules.train_vqvae.output.model,
        shards=rules.shard_dataset.output.shards,
    output:
        samples="results/{exp}/t2i/samples.parquet",
    log:
        "logs/generate_images/{exp}.log",
    benchmark:
        "benchmarks/generate_images/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    params:
        dalle=dalle_generate_settings,
        evaluation=evaluation_settings,
    script:
        "../scripts/generate_images.py"


rule rerank_images:
    input:
        samples=rules.generate_images.output.samples,
        scorer=rerank_scorer_model,
    output:
        rerank="results/{exp}/t2i/rerank.json",
    log:
        "logs/rerank_images/{exp}.log",
    benchmark:
        "benchmarks/rerank_images/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        rerank=rerank_settings,
    script:
        "../scripts/rerank_images.py"


rule score_images:
    input:
        unpack(score_images_inputs),
    output:
        scores="results/{exp}/scores/t2i.json",
        grid=report(
            "results/{exp}/t2i/grid.png",
            caption="../report/t2i_grid.rst",
            category="Text to image",
            subcategory="{exp}",
            labels={
                "figure": "DALL-E samples, random and reranked",
                "experiment": "{exp}",
            },
        ),
    log:
        "logs/score_images/{exp}.log",
    benchmark:
        "benchmarks/score_images/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        rerank=rerank_settings,
        evaluation=evaluation_settings,
        truth=scene_truth_settings,
    script:
        "../scripts/score_images.py"
