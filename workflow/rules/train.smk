rule train_rrdb:
    input:
        "resources/datasets/{dataset}/manifest.json",
    output:
        "results/{dataset}/x{scale}/models/rrdb/model.pt",
    log:
        "logs/train/{dataset}_x{scale}_rrdb.log",
    params:
        net=lambda w: {k: config["model"]["encoder"][k] for k in ("features", "growth", "blocks")},
        cfg=config["training"]["rrdb"],
        seed=config["training"]["seed"],
        device=training_device(),
    threads: workflow.cores
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_rrdb.py"


rule train_ecdp_stage1:
    input:
        dataset="resources/datasets/{dataset}/manifest.json",
        rrdb="results/{dataset}/x{scale}/models/rrdb/model.pt",
    output:
        "results/{dataset}/x{scale}/models/ecdp-stage1-{parametrization}/model.pt",
    log:
        "logs/train/{dataset}_x{scale}_ecdp-stage1-{parametrization}.log",
    wildcard_constraints:
        parametrization="eps|x0|hybrid",
    params:
        model=lambda w: {**config["model"], "parametrization": w.parametrization},
        cfg=config["training"]["stage1"],
        seed=config["training"]["seed"],
        device=training_device(),
    threads: workflow.cores
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_ecdp.py"


rule train_ecdp_stage2:
    input:
        dataset="resources/datasets/{dataset}/manifest.json",
        stage1=lambda w: (
            f"results/{w.dataset}/x{w.scale}/models/ecdp-stage1-"
            f"{EXPERIMENTS[w.experiment].get('parametrization', 'hybrid')}/model.pt"
        ),
        weights="resources/weights/weights.json",
    output:
        "results/{dataset}/x{scale}/models/{experiment}/model.pt",
    log:
        "logs/train/{dataset}_x{scale}_{experiment}.log",
    wildcard_constraints:
        experiment=STAGE2_PATTERN,
    params:
        cfg=lambda w: {
            **config["training"]["stage2"],
            "sampler": EXPERIMENTS[w.experiment].get("iq", "ode"),
        },
        k=lambda w: EXPERIMENTS[w.experiment].get("k"),
        seed=config["training"]["seed"],
        device=training_device(),
    threads: workflow.cores
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_ecdp.py"
