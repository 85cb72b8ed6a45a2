"""Rule table1: the main comparison for the dataset, reproduced beside the paper."""
from pathlib import Path

import pandas as pd
import yaml

from ecdp.logs import logged
from ecdp.tables import build_table, write_table


def main(*, summary: str, reference: str, output_stem: str, table: dict, experiments: dict,
         dataset: str, scale: int) -> None:
    paper = yaml.safe_load(Path(reference).read_text())[table["reference"]]
    long = build_table(pd.read_csv(summary), paper, rows=experiments, metrics=table["metrics"],
                       protocol=table["protocol"])
    title = f"Table 1: {dataset} x{scale}, reproduced beside {paper['caption']}"
    write_table(long, output_stem, title=title)
    print(Path(output_stem).with_suffix(".md").read_text())


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(summary=snakemake.input.summary, reference=snakemake.input.reference,
             output_stem=str(Path(snakemake.output.md).with_suffix("")),
             table=dict(snakemake.params.table), experiments=dict(snakemake.params.experiments),
             dataset=snakemake.params.dataset, scale=snakemake.params.scale)
