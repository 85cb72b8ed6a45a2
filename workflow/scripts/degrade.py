"""Rule degrade: modcropped HR and MATLAB-bicubic LR (or the official LR) for one split."""
from pathlib import Path

from ecdp.data.pairs import make_pairs
from ecdp.logs import logged


def main(*, dataset_manifest: str, output: str, split: str, scale: int, official_lr: bool,
         limit: int | None, crop: int | None = None) -> None:
    out = Path(output).parent.parent  # results/{dataset}/x{scale}
    result = make_pairs(Path(dataset_manifest).parent, out, split=split, scale=scale,
                        official_lr=official_lr, limit=limit, crop=crop)
    print(f"{len(result['pairs'])} pairs, LR from {result['lr_source']}")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(dataset_manifest=snakemake.input[0], output=snakemake.output[0],
             split=snakemake.wildcards.split, scale=int(snakemake.wildcards.scale),
             official_lr=snakemake.params.official_lr, limit=snakemake.params.limit,
             crop=snakemake.params.crop)
