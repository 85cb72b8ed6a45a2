# The sampling study (snakemake --cores all sampling_study): not part of `all`; it reuses the
# trained models and re-runs nothing of the tables when only it changes.
STUDY = config["sampling_study"]
STUDY_EXPERIMENTS = [e for e in STUDY["experiments"] if e in EXPERIMENTS]
_not_ecdp = [e for e in STUDY_EXPERIMENTS if EXPERIMENTS[e]["method"] != "ecdp"]
if _not_ecdp:
    raise ValueError(f"sampling_study.experiments: {_not_ecdp} are not ECDP experiments")


rule sampling_study_run:
    input:
        pairs=f"{RESULTS}/lr/{config['evaluation']['split']}.json",
        model=lambda w: model_of(w.experiment, TRAIN_SEEDS[0]),
        weights="resources/weights/weights.json",
    output:
        f"{RESULTS}/sampling/{{experiment}}.csv",
    log:
        f"logs/sampling/{DATASET}_x{SCALE}_{{experiment}}.log",
    params:
        method=lambda w: method_of(w.experiment),
        sampling=lambda w: sampling_of(w.experiment),
        study={k: v for k, v in STUDY.items() if k != "experiments"},
        scale=SCALE,
    threads: every_core
    resources:
        **sampling_resources(runs=1 + len(STUDY["tolerances"])
                             + len(STUDY["solvers"]) * len(STUDY["nfe"]), images=STUDY["limit"]),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/sampling_study.py"


rule sampling_report:
    input:
        expand("{results}/sampling/{experiment}.csv", results=RESULTS,
               experiment=STUDY_EXPERIMENTS),
    output:
        md=report(
            f"{RESULTS}/tables/sampling.md",
            caption="../report/sampling.rst",
            category="Sampling study",
        ),
        csv=f"{RESULTS}/tables/sampling.csv",
        figure=report(
            f"{RESULTS}/figures/sampling.png",
            caption="../report/sampling.rst",
            category="Sampling study",
        ),
    log:
        f"logs/sampling/{DATASET}_x{SCALE}_report.log",
    params:
        title=f"Sampling study: {DATASET} x{SCALE}",
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/sampling_report.py"


rule sampling_study:
    input:
        rules.sampling_report.output,
