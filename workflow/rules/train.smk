rule train_rrdb:
    input:
        "resources/datasets/{dataset}/manifest.json",
    output:
        "results/{dataset}/x{scale}/models/{rrdb}/seed{tseed}/model.pt",
    log:
        "logs/train/{dataset}_x{scale}_{rrdb}_seed{tseed}.log",
    wildcard_constraints:
        rrdb="rrdb|srdiff-rrdb",
    params:
        net=lambda w: {k: v for k, v in RRDBNETS[w.rrdb].items() if k != "recipe"},
        cfg=lambda w: config["training"][RRDBNETS[w.rrdb]["recipe"]],
        seed=lambda w: int(w.tseed),
    threads: JOB_THREADS * TRAIN_PROCESSES
    resources:
        **training_resources(
            lambda w: ("rrdbnet", rrdbnet_config(RRDBNETS[w.rrdb]["variant"],
                                                 RRDBNETS[w.rrdb]["size"])),
            lambda w: config["training"][RRDBNETS[w.rrdb]["recipe"]]),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_rrdb.py"


rule train_ecdp_stage1:
    input:
        dataset="resources/datasets/{dataset}/manifest.json",
        rrdb="results/{dataset}/x{scale}/models/rrdb/seed{tseed}/model.pt",
    output:
        "results/{dataset}/x{scale}/models/ecdp-stage1-{variant}/seed{tseed}/model.pt",
    log:
        "logs/train/{dataset}_x{scale}_ecdp-stage1-{variant}_seed{tseed}.log",
    wildcard_constraints:
        variant=_alternatives(STAGE1),
    params:
        model=lambda w: {
            **config["model"],
            "parametrization": STAGE1[w.variant]["parametrization"],
            "sde": {**config["model"]["sde"], "sigma": STAGE1[w.variant]["sigma"]},
        },
        cfg=config["training"]["stage1"],
        seed=lambda w: int(w.tseed),
    threads: JOB_THREADS * TRAIN_PROCESSES
    resources:
        **training_resources(lambda w: ("ecdp", ecdp_network()),
                             lambda w: config["training"]["stage1"]),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_ecdp.py"


rule train_ecdp_stage2:
    input:
        dataset="resources/datasets/{dataset}/manifest.json",
        stage1=lambda w: stage1_model(
            stage1_variant(EXPERIMENTS[w.experiment]), w.tseed,
            results=f"results/{w.dataset}/x{w.scale}",
        ),
        weights="resources/weights/weights.json",
    output:
        "results/{dataset}/x{scale}/models/{experiment}/seed{tseed}/model.pt",
    log:
        "logs/train/{dataset}_x{scale}_{experiment}_seed{tseed}.log",
    wildcard_constraints:
        experiment=STAGE2_PATTERN,
    params:
        cfg=lambda w: {
            **config["training"]["stage2"],
            "sampler": iq_of(w.experiment),
        },
        k=lambda w: EXPERIMENTS[w.experiment].get("k"),
        seed=lambda w: int(w.tseed),
    threads: JOB_THREADS * TRAIN_PROCESSES
    resources:
        **training_resources(lambda w: ("ecdp", ecdp_network()),
                             lambda w: config["training"]["stage2"],
                             chain=lambda w: iq_chain(w.experiment)),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_ecdp.py"


rule train_srdiff:
    input:
        dataset="resources/datasets/{dataset}/manifest.json",
        rrdb="results/{dataset}/x{scale}/models/srdiff-rrdb/seed{tseed}/model.pt",
    output:
        "results/{dataset}/x{scale}/models/srdiff/seed{tseed}/model.pt",
    log:
        "logs/train/{dataset}_x{scale}_srdiff_seed{tseed}.log",
    params:
        net={k: v for k, v in config["baselines"]["srdiff"].items() if k != "encoder"},
        cfg=config["training"]["srdiff"],
        seed=lambda w: int(w.tseed),
    threads: JOB_THREADS * TRAIN_PROCESSES
    resources:
        **training_resources(lambda w: ("srdiff", srdiff_network()),
                             lambda w: config["training"]["srdiff"]),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_srdiff.py"


rule train_sr3:
    input:
        dataset="resources/datasets/{dataset}/manifest.json",
    output:
        "results/{dataset}/x{scale}/models/sr3/seed{tseed}/model.pt",
    log:
        "logs/train/{dataset}_x{scale}_sr3_seed{tseed}.log",
    params:
        sr3=config["baselines"]["sr3"],
        cfg=config["training"]["sr3"],
        seed=lambda w: int(w.tseed),
    threads: JOB_THREADS * TRAIN_PROCESSES
    resources:
        **training_resources(lambda w: ("sr3", config["baselines"]["sr3"]),
                             lambda w: config["training"]["sr3"]),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/train_sr3.py"


rule finetune_iq:
    input:
        dataset="resources/datasets/{dataset}/manifest.json",
        base=lambda w: f"results/{w.dataset}/x{w.scale}/models/{EXPERIMENTS[w.experiment]['method']}/seed{w.tseed}/model.pt",
        weights="resources/weights/weights.json",
    output:
        "results/{dataset}/x{scale}/models/{experiment}/seed{tseed}/model.pt",
    log:
        "logs/train/{dataset}_x{scale}_{experiment}_seed{tseed}.log",
    wildcard_constraints:
        experiment=PLUSPLUS_PATTERN,
    params:
        kind=lambda w: EXPERIMENTS[w.experiment]["method"],
        cfg=config["training"]["plusplus"],
        seed=lambda w: int(w.tseed),
    threads: JOB_THREADS * TRAIN_PROCESSES
    resources:
        **training_resources(lambda w: network_of(EXPERIMENTS[w.experiment]["method"]),
                             lambda w: config["training"]["plusplus"],
                             chain=lambda w: iq_chain(w.experiment)),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/finetune_iq.py"
