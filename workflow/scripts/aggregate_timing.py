"""Rule aggregate_timing: every experiment's timing JSON as one tidy CSV."""
import json
from pathlib import Path

import pandas as pd

from ecdp.data.io import atomic_write_text
from ecdp.logs import logged

COLUMNS = ["experiment", "method", "seconds", "nfe", "peak_mib", "peak_kind", "lr_size",
           "batch", "warmup", "repeats", "device", "device_name", "threads", "params",
           "weights", "budget"]


def main(*, inputs: list[str], output: str) -> None:
    rows = [json.loads(Path(p).read_text()) for p in inputs]
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table["lr_size"] = table["lr_size"].map(lambda s: "x".join(map(str, s)))
    atomic_write_text(output, table.to_csv(index=False))
    print(table[["experiment", "seconds", "nfe", "peak_mib"]].to_string(index=False))


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(inputs=list(snakemake.input), output=snakemake.output[0])
