rule prepare_dataset:
    input:
        dataset_sources,
    output:
        "resources/datasets/{dataset}/manifest.json",
    log:
        "logs/prepare_dataset/{dataset}.log",
    params:
        options=lambda w: dataset_options(w.dataset),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/prepare_dataset.py"


rule degrade:
    input:
        "resources/datasets/{dataset}/manifest.json",
    output:
        "results/{dataset}/x{scale}/lr/{split}.json",
    log:
        "logs/degrade/{dataset}_x{scale}_{split}.log",
    params:
        official_lr=config["evaluation"]["official_lr"],
        limit=config["evaluation"]["limit"],
        crop=lambda w: config["evaluation"]["crop"] if w.split == config["evaluation"]["split"] else None,
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/degrade.py"


rule fetch_weights:
    output:
        "resources/weights/weights.json",
    log:
        "logs/fetch_weights.log",
    params:
        allow_download=config["weights"]["allow_download"],
        timeout=config["weights"]["timeout"],
        sources=config["weights"]["sources"],
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/fetch_weights.py"
