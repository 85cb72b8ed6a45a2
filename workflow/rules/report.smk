rule table:
    input:
        summary=f"{RESULTS}/metrics/summary.csv",
        reference=PAPER_YAML,
        timing=lambda w: timing_input(w.table),
    output:
        md=report(
            f"{RESULTS}/tables/{{table}}.md",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        csv=f"{RESULTS}/tables/{{table}}.csv",
        tex=f"{RESULTS}/tables/{{table}}.tex",
    log:
        f"logs/tables/{DATASET}_x{SCALE}_{{table}}.log",
    wildcard_constraints:
        table=_alternatives(TABLES),
    params:
        table=lambda w: TABLES[w.table],
        labels={k: v.get("label", k) for k, v in config["experiments"].items()},
        reference_rows={k: v.get("reference_row", k) for k, v in config["experiments"].items()},
        dataset=DATASET,
        scale=SCALE,
        rehearsal=config["rehearsal"],
    conda:
        "../envs/ecdp.yaml"
    script:
        "../scripts/table.py"
