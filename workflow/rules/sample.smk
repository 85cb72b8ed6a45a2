rule super_resolve:
    input:
        pairs=lambda w: f"results/{w.dataset}/x{w.scale}/lr/{config['evaluation']['split']}.json",
        model=lambda w: model_of(w.experiment, w.tseed),
    output:
        "results/{dataset}/x{scale}/sr/{experiment}/train{tseed}/seed{seed}.json",
    log:
        "logs/super_resolve/{dataset}_x{scale}_{experiment}_train{tseed}_seed{seed}.log",
    params:
        method=lambda w: method_of(w.experiment),
        sampling=lambda w: sampling_of(w.experiment),
        tile=config["evaluation"]["tile"],
    threads: JOB_THREADS
    resources:
        **sampling_resources(),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/super_resolve.py"


rule timing:
    input:
        pairs=lambda w: f"results/{w.dataset}/x{w.scale}/lr/{config['evaluation']['split']}.json",
        model=lambda w: model_of(w.experiment, TRAIN_SEEDS[0]),  # the first replicate
    output:
        "results/{dataset}/x{scale}/timing/{experiment}.json",
    log:
        "logs/timing/{dataset}_x{scale}_{experiment}.log",
    benchmark:
        "results/{dataset}/x{scale}/timing/{experiment}.benchmark.tsv"
    params:
        method=lambda w: method_of(w.experiment),
        sampling=lambda w: sampling_of(w.experiment),
        timing=config["evaluation"]["timing"],
        tile=config["evaluation"]["tile"],
    threads: every_core
    resources:
        **sampling_resources(runs=sum(config["evaluation"]["timing"][k]
                                      for k in ("warmup", "repeats")), images=1),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/timing.py"


rule aggregate_timing:
    input:
        expand("{results}/timing/{experiment}.json", results=RESULTS, experiment=TIMED),
    output:
        f"{RESULTS}/timing/summary.csv",
    log:
        f"logs/aggregate/{DATASET}_x{SCALE}_timing.log",
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/aggregate_timing.py"
