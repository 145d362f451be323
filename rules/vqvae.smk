# One thread each: these small convnets gain little from a second one, and with
# `--cores 2` train_vqvae and train_judge then run side by side.


rule train_vqvae:
    input:
        shards=rules.shard_dataset.output.shards,
    output:
        # Files, not the folder: Snakemake would delete a directory() output before the job,
        # and with it the checkpoint a restarted job resumes from.
        model="results/{exp}/vqvae/model.safetensors",
        config="results/{exp}/vqvae/vqvae.json",
        history="results/{exp}/vqvae/history.json",
        curve=report(
            "results/{exp}/vqvae/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Training",
            subcategory="{exp}",
            labels={"model": "VQ-VAE", "experiment": "{exp}"},
        ),
        reconstructions=report(
            "results/{exp}/vqvae/reconstructions.png",
            caption="../report/vqvae_reconstructions.rst",
            category="Text to image",
            subcategory="{exp}",
            labels={"figure": "VQ-VAE reconstructions", "experiment": "{exp}"},
        ),
        scores="results/{exp}/scores/vqvae.json",
    log:
        "logs/train_vqvae/{exp}.log",
    benchmark:
        "benchmarks/train_vqvae/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    params:
        vqvae=vqvae_settings,
        processes=vqvae_processes,
    script:
        "../scripts/train_vqvae.py"


rule encode_images:
    input:
        shards=rules.shard_dataset.output.shards,
        model=rules.train_vqvae.output.model,
        config=rules.train_vqvae.output.config,
    output:
        codes=directory("results/{exp}/codes"),
    log:
        "logs/encode_images/{exp}.log",
    benchmark:
        "benchmarks/encode_images/{exp}.tsv"
    conda:
        "../envs/vlcore.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    script:
        "../scripts/encode_images.py"
