rule evaluate:
    input:
        pairs=pairs,
        sr=sr_manifests,
        weights="resources/weights/weights.json",
    output:
        "results/{dataset}/x{scale}/metrics/{experiment}.csv",
    log:
        "logs/evaluate/{dataset}_x{scale}_{experiment}.log",
    params:
        protocols=config["evaluation"]["protocols"],
    resources:
        **LIGHT,
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/evaluate.py"


rule aggregate:
    input:
        expand("{results}/metrics/{experiment}.csv", results=RESULTS, experiment=EXPERIMENTS),
    output:
        f"{RESULTS}/metrics/summary.csv",
    log:
        f"logs/aggregate/{DATASET}_x{SCALE}.log",
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/aggregate.py"
