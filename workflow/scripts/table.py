"""Rule table: one paper table, each cell the reproduced value beside the paper's."""
from pathlib import Path

import pandas as pd
import yaml

from ecdp.logs import logged
from ecdp.tables import build_table, describe, orderings, timing_extra, write_table


def main(*, summary: str, reference: str, output_stem: str, name: str, table: dict,
         labels: dict, dataset: str, scale: int, timing: str | None = None,
         reference_rows: dict | None = None, rehearsal: str | None = None) -> None:
    """rehearsal: what workflow/presets/rehearsal.yaml shrank (printed first: the numbers of a
    rehearsal say the pipeline runs, not how well a method does)."""
    paper = (yaml.safe_load(Path(reference).read_text())[table["reference"]]
             if table.get("reference") else {"caption": None, "rows": {}})
    rows = {e: labels.get(e, e) for e in table["experiments"]}
    timing = pd.read_csv(timing) if timing else None
    extra = timing_extra(timing) if timing is not None else None
    summary = pd.read_csv(summary)
    compare_to = table.get("compare_to") or ("ecdp" if "ecdp" in rows else next(iter(rows)))
    long = build_table(summary, paper, rows=rows, metrics=table["metrics"],
                       protocol=table["protocol"], extra=extra, reference_rows=reference_rows,
                       compare_to=compare_to)
    description = describe(summary, list(rows), table["metrics"], protocol=table["protocol"],
                           timing=timing, compare_to=rows[compare_to]) + orderings(long)
    if rehearsal:
        description.insert(0, f"REHEARSAL, numbers mean nothing: {rehearsal}.")
    title = f"{table.get('title') or name}: {dataset} x{scale}"
    if paper["caption"]:
        title += f", reproduced beside {paper['caption']}"
    write_table(long, output_stem, title=title, description=description)
    print(Path(output_stem).with_suffix(".md").read_text())


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(summary=snakemake.input.summary, reference=snakemake.input.reference,
             output_stem=str(Path(snakemake.output.md).with_suffix("")),
             name=snakemake.wildcards.table, table=dict(snakemake.params.table),
             labels=dict(snakemake.params.labels), dataset=snakemake.params.dataset,
             scale=snakemake.params.scale, timing=snakemake.input.get("timing") or None,
             reference_rows=dict(snakemake.params.reference_rows),
             rehearsal=snakemake.params.rehearsal)
