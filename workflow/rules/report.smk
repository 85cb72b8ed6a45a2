rule table:
    input:
        summary=f"{RESULTS}/metrics/summary.csv",
        reference=PAPER_YAML,
        timing=lambda w: timing_input(w.table),
    output:
        md=f"{RESULTS}/tables/{{table}}.md",
        html=report(
            f"{RESULTS}/tables/{{table}}.html",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        csv=f"{RESULTS}/tables/{{table}}.csv",
        tex=f"{RESULTS}/tables/{{table}}.tex",
    log:
        f"logs/tables/{DATASET}_x{SCALE}_{{table}}.log",
    wildcard_constraints:
        table=_alternatives(RUN.tables),
    params:
        table=lambda w: {k: v for k, v in RUN.tables[w.table].items() if k != "in_all"},
        labels=RUN.labels,
        reference_rows=RUN.reference_rows,
        dataset=DATASET,
        scale=SCALE,
        rehearsal=config["rehearsal"],
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/table.py"
