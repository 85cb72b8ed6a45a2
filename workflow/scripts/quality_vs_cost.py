"""Rule quality_vs_cost: quality against seconds per image and NFE, for every experiment."""
import pandas as pd

from ecdp.figures import quality_vs_cost, save_figure
from ecdp.logs import logged


def main(*, summary: str, timing: str, protocol: str, output: str) -> None:
    save_figure(quality_vs_cost(pd.read_csv(summary), pd.read_csv(timing), protocol=protocol),
                output)


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(summary=snakemake.input.summary, timing=snakemake.input.timing,
             protocol=snakemake.params.protocol, output=snakemake.output[0])
