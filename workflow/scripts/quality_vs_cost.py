"""Rule quality_vs_cost: quality against seconds per image and NFE, for the timed experiments
(Table 3's rows)."""
import pandas as pd

from ecdp.figures import quality_vs_cost, save_figure
from ecdp.logs import logged


def main(*, summary: str, timing: str, protocol: str, labels: dict, output: str) -> None:
    save_figure(quality_vs_cost(pd.read_csv(summary), pd.read_csv(timing), protocol=protocol,
                                labels=labels), output)


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(summary=snakemake.input.summary, timing=snakemake.input.timing,
             protocol=snakemake.params.protocol, labels=dict(snakemake.params.labels),
             output=snakemake.output[0])
