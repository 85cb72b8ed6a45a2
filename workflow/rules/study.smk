# The sampling study (snakemake --cores all sampling_study): not part of `all`; it reuses the
# trained models and re-runs nothing of the tables when only it changes.
STUDY = config["sampling_study"]


rule sampling_study_run:
    input:
        pairs=f"{RESULTS}/lr/{SPLIT}.json",
        model=lambda w: RUN.checkpoint_of(w.experiment, RUN.train_seeds[0]),
        weights="resources/weights/weights.json",
    output:
        f"{RESULTS}/sampling/{{experiment}}.csv",
    log:
        f"logs/sampling/{DATASET}_x{SCALE}_{{experiment}}.log",
    params:
        method=lambda w: EXPERIMENTS[w.experiment].method_spec(),
        sampling=lambda w: sampling_record(w.experiment),
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
               experiment=RUN.study),
    output:
        md=f"{RESULTS}/tables/sampling.md",
        html=report(
            f"{RESULTS}/tables/sampling.html",
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
