rule figure5:
    input:
        pairs=f"{RESULTS}/lr/{config['evaluation']['split']}.json",
        models=lambda w: [stage1_model(p, TRAIN_SEEDS[0]) for p in PARAMETRIZATIONS],
    output:
        report(
            f"{RESULTS}/figures/figure5.png",
            caption="../report/figure5.rst",
            category="Figures",
            labels={"figure": "5"},
        ),
    log:
        f"logs/figures/{DATASET}_x{SCALE}_figure5.log",
    params:
        names=PARAMETRIZATIONS,
        levels=config["figures"]["noise_levels"],
        seed=config["training"]["seed"],
    resources:
        **LIGHT,
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/figure5.py"


rule figure8:
    input:
        models=lambda w: [stage1_model(p, t) for p in PARAMETRIZATIONS for t in TRAIN_SEEDS],
    output:
        report(
            f"{RESULTS}/figures/figure8.png",
            caption="../report/figure8.rst",
            category="Figures",
            labels={"figure": "8"},
        ),
    log:
        f"logs/figures/{DATASET}_x{SCALE}_figure8.log",
    params:
        names=[p for p in PARAMETRIZATIONS for t in TRAIN_SEEDS],
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/figure8.py"


rule quality_vs_cost:
    input:
        summary=f"{RESULTS}/metrics/summary.csv",
        timing=f"{RESULTS}/timing/summary.csv",
    output:
        report(
            f"{RESULTS}/figures/quality_vs_cost.png",
            caption="../report/quality_vs_cost.rst",
            category="Figures",
            labels={"figure": "quality vs cost"},
        ),
    log:
        f"logs/figures/{DATASET}_x{SCALE}_quality_vs_cost.log",
    params:
        protocol=config["evaluation"]["protocols"][0],
        labels={e: EXPERIMENTS[e].get("label", e) for e in TIMED},
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/quality_vs_cost.py"


rule crop_grid:
    input:
        pairs=f"{RESULTS}/lr/{config['evaluation']['split']}.json",
        sr=expand("{results}/sr/{experiment}/train{tseed}/seed0.json", results=RESULTS,
                  experiment=GRID, tseed=TRAIN_SEEDS[0]),
    output:
        report(
            f"{RESULTS}/figures/crops.png",
            caption="../report/crops.rst",
            category="Figures",
            labels={"figure": "crops"},
        ),
    log:
        f"logs/figures/{DATASET}_x{SCALE}_crops.log",
    params:
        labels=[EXPERIMENTS[e].get("label", e) for e in GRID],
        size=config["figures"]["crop"],
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/crop_grid.py"
