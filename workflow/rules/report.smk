rule table1:
    input:
        summary=f"{RESULTS}/metrics/summary.csv",
        reference=PAPER_YAML,
    output:
        md=report(f"{RESULTS}/tables/table1.md", category="Tables", labels={"table": "1"}),
        csv=f"{RESULTS}/tables/table1.csv",
        tex=f"{RESULTS}/tables/table1.tex",
    log:
        f"logs/tables/{DATASET}_x{SCALE}_table1.log",
    params:
        table=config["tables"]["table1"],
        experiments={k: v.get("label", k) for k, v in EXPERIMENTS.items()},
        dataset=DATASET,
        scale=SCALE,
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/table1.py"
