"""Rule prepare_dataset: download / write a dataset and its manifest."""
from pathlib import Path

from ecdp.data.datasets import prepare_dataset
from ecdp.logs import logged


def main(*, dataset: str, manifest: str, options: dict) -> None:
    result = prepare_dataset(dataset, Path(manifest).parent, **options)
    print({split: len(entries) for split, entries in result["splits"].items()})


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(dataset=snakemake.wildcards.dataset, manifest=snakemake.output[0],
             options=dict(snakemake.params.options))
