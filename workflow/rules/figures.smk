rule figure5:
    input:
        pairs=f"{RESULTS}/lr/{SPLIT}.json",
        models=[RUN.model_path(f"ecdp-stage1-{p}", RUN.train_seeds[0])
                for p in RUN.parametrizations],
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
        names=list(RUN.parametrizations),
        levels=config["figures"]["noise_levels"],
        seed=RUN.train_seeds[0],
    resources:
        **LIGHT,
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/figure5.py"


rule figure8:
    input:
        models=[RUN.model_path(f"ecdp-stage1-{p}", t) for p in RUN.parametrizations
                for t in RUN.train_seeds],
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
        names=[p for p in RUN.parametrizations for t in RUN.train_seeds],
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
        labels={e: EXPERIMENTS[e].label for e in RUN.timed},
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/quality_vs_cost.py"


rule crop_grid:
    input:
        pairs=f"{RESULTS}/lr/{SPLIT}.json",
        sr=[sr_manifest(e, RUN.train_seeds[0], 0) for e in RUN.grid],
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
        labels=[EXPERIMENTS[e].label for e in RUN.grid],
        size=config["figures"]["crop"],
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/crop_grid.py"
