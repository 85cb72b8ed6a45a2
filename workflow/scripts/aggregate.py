"""Rule aggregate: every experiment's per-image metrics -> one tidy summary CSV."""
import pandas as pd

from ecdp.data.io import atomic_write_text
from ecdp.evaluate import summarize
from ecdp.logs import logged


def main(*, inputs: list[str], output: str) -> None:
    per_image = pd.concat([pd.read_csv(p) for p in inputs], ignore_index=True)
    summary = summarize(per_image)
    atomic_write_text(output, summary.to_csv(index=False))
    print(summary.to_string())


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(inputs=list(snakemake.input), output=snakemake.output[0])
