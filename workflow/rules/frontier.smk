# The efficiency frontier (snakemake --cores all frontier): not part of `all`; it reuses the
# trained models (every training seed: the table's spread) and re-runs nothing of the tables.
FRONTIER = config["frontier"]


rule frontier_run:
    input:
        pairs=f"{RESULTS}/lr/{SPLIT}.json",
        model=lambda w: RUN.checkpoint_of(w.experiment, w.train_seed),
        weights="resources/weights/weights.json",
    output:
        f"{RESULTS}/frontier/{{experiment}}/train{{train_seed}}.csv",
    log:
        f"logs/frontier/{DATASET}_x{SCALE}_{{experiment}}_train{{train_seed}}.log",
    params:
        method=lambda w: EXPERIMENTS[w.experiment].method_spec(),
        sampling=lambda w: sampling_record(w.experiment),
        family=lambda w: EXPERIMENTS[w.experiment].sampling.family,
        frontier={k: v for k, v in FRONTIER.items() if k not in ("experiments", "compare_nfe")},
        student=lambda w: EXPERIMENTS[w.experiment].distilled is not None,
        scale=SCALE,
    threads: every_core
    resources:
        **sampling_resources(runs=2 + len(FRONTIER["solvers"]) * len(FRONTIER["nfe"]),
                             images=FRONTIER["limit"]),
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/frontier_run.py"


rule frontier_report:
    input:
        [f"{RESULTS}/frontier/{e}/train{s}.csv" for e in RUN.frontier
         for s in EXPERIMENTS[e].train_seeds],
    output:
        md=f"{RESULTS}/tables/frontier.md",
        html=report(
            f"{RESULTS}/tables/frontier.html",
            caption="../report/frontier.rst",
            category="Efficiency frontier",
        ),
        csv=f"{RESULTS}/tables/frontier.csv",
        figure=report(
            f"{RESULTS}/figures/frontier.png",
            caption="../report/frontier.rst",
            category="Efficiency frontier",
        ),
    log:
        f"logs/frontier/{DATASET}_x{SCALE}_report.log",
    params:
        title=f"Efficiency frontier: {DATASET} x{SCALE}",
        compare_nfe=FRONTIER["compare_nfe"],
        rehearsal=config["rehearsal"],
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/frontier_report.py"


rule frontier:
    input:
        rules.frontier_report.output,


# The distilled students' table alone (its rows "not run" unless the students are in `run`):
# snakemake --cores all distilled --config 'run=[ecdp, ecdp-distilled-1, ecdp-distilled-2,
# ecdp-distilled-4]'
rule distilled:
    input:
        [f"{RESULTS}/tables/distilled.md"] if "distilled" in RUN.tables else [],
