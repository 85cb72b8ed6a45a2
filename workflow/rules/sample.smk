# Sampling (every experiment x training seed x sample seed) and Table 3's timing.
rule super_resolve:
    input:
        pairs=pairs,
        model=model_input,
    output:
        "results/{dataset}/x{scale}/sr/{experiment}/train{train_seed}/sample{sample_seed}.json",
    log:
        "logs/super_resolve/{dataset}_x{scale}_{experiment}_train{train_seed}_sample{sample_seed}.log",
    params:
        method=lambda w: EXPERIMENTS[w.experiment].method_spec(),
        sampling=lambda w: sampling_record(w.experiment),
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
        pairs=pairs,
        model=lambda w: RUN.checkpoint_of(w.experiment, RUN.train_seeds[0],
                                          f"results/{w.dataset}/x{w.scale}"),  # first replicate
    output:
        "results/{dataset}/x{scale}/timing/{experiment}.json",
    log:
        "logs/timing/{dataset}_x{scale}_{experiment}.log",
    benchmark:
        "results/{dataset}/x{scale}/timing/{experiment}.benchmark.tsv"
    params:
        method=lambda w: EXPERIMENTS[w.experiment].method_spec(),
        sampling=lambda w: sampling_record(w.experiment),
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
        expand("{results}/timing/{experiment}.json", results=RESULTS, experiment=RUN.timed),
    output:
        f"{RESULTS}/timing/summary.csv",
    log:
        f"logs/aggregate/{DATASET}_x{SCALE}_timing.log",
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/aggregate_timing.py"
