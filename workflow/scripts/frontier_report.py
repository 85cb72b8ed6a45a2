"""Rule frontier_report: the frontier's table (tables/frontier.md, .html, .csv) and figure."""
from pathlib import Path

import pandas as pd

from ecdp.figures import frontier_figure, save_figure
from ecdp.frontier import summarize_frontier, write_frontier_table
from ecdp.logs import logged


def main(*, runs: list[str], md: str, figure: str, title: str, compare_nfe: int,
         rehearsal: str | None = None) -> None:
    summary = summarize_frontier(pd.concat([pd.read_csv(r) for r in runs], ignore_index=True))
    provenance = [f"REHEARSAL, numbers mean nothing: {rehearsal}.", ""] if rehearsal else []
    print(write_frontier_table(summary, Path(md).with_suffix(""), title=title,
                               compare_nfe=compare_nfe, provenance=provenance))
    save_figure(frontier_figure(summary), figure)


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(runs=list(snakemake.input), md=snakemake.output.md, figure=snakemake.output.figure,
             title=snakemake.params.title, compare_nfe=int(snakemake.params.compare_nfe),
             rehearsal=snakemake.params.rehearsal)
