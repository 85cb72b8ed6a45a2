"""Rule sampling_report: the sampling study's table (tables/sampling.md, .csv) and figure."""
from pathlib import Path

import pandas as pd

from ecdp.figures import sampling_curves, save_figure
from ecdp.logs import logged
from ecdp.study import summarize_study, write_study_table


def main(*, runs: list[str], md: str, figure: str, title: str) -> None:
    summary = summarize_study(pd.concat([pd.read_csv(r) for r in runs], ignore_index=True))
    print(write_study_table(summary, Path(md).with_suffix(""), title=title))
    save_figure(sampling_curves(summary), figure)


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(runs=list(snakemake.input), md=snakemake.output.md, figure=snakemake.output.figure,
             title=snakemake.params.title)
