rule super_resolve:
    input:
        pairs=lambda w: f"results/{w.dataset}/x{w.scale}/lr/{config['evaluation']['split']}.json",
        model=lambda w: model_of(w.experiment),
    output:
        "results/{dataset}/x{scale}/sr/{experiment}/seed{seed}.json",
    log:
        "logs/super_resolve/{dataset}_x{scale}_{experiment}_seed{seed}.log",
    params:
        experiment=lambda w: EXPERIMENTS[w.experiment],
        device=config["evaluation"]["device"],
    threads: workflow.cores
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/super_resolve.py"
