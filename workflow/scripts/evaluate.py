"""Rule evaluate: per-image metrics (both protocols) for one experiment, all its seeds."""
import json
from pathlib import Path

from ecdp.data.io import atomic_write_text
from ecdp.evaluate import evaluate_sr
from ecdp.logs import logged


def main(*, pairs: str, sr: list[str], weights: str, output: str, experiment: str,
         protocols: list[str]) -> None:
    lpips_weights = json.loads(Path(weights).read_text())["alexnet"]
    table = evaluate_sr(pairs, sr, experiment=experiment, protocols=protocols,
                        lpips_weights=lpips_weights)
    atomic_write_text(output, table.to_csv(index=False))
    print(table.groupby("protocol_name")[["psnr", "ssim", "lpips", "lr_psnr"]].mean())


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(pairs=snakemake.input.pairs, sr=list(snakemake.input.sr),
             weights=snakemake.input.weights, output=snakemake.output[0],
             experiment=snakemake.wildcards.experiment, protocols=list(snakemake.params.protocols))
