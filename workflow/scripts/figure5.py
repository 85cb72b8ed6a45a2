"""Rule figure5: denoised predictions of the eps / x0 / hybrid stage-1 models at several noise
levels, on the same x_t (paper Figure 5)."""
import json
from pathlib import Path

from ecdp.data.io import read_image, write_json
from ecdp.data.pairs import center_crop_pair, load_pairs
from ecdp.evaluate import to_tensor
from ecdp.figures import denoised_predictions, save_figure
from ecdp.logs import logged
from ecdp.model import ECDP
from ecdp.rng import make_generator

CROP = 96  # HR pixels: the figure shows a crop, so the predictions are visible


def main(*, pairs: str, models: list[str], names: list[str], levels: list[float], seed: int,
         output: str) -> None:
    base, manifest = load_pairs(pairs)
    first = manifest["pairs"][0]
    hr, lr = center_crop_pair(read_image(base / first["hr"]), read_image(base / first["lr"]),
                              CROP, manifest["scale"])
    hr, lr = to_tensor(hr), to_tensor(lr)
    loaded = {name: ECDP.load(path) for name, path in zip(names, models)}
    fig, scores = denoised_predictions(loaded, lr, hr, levels, make_generator("figure5", seed))
    save_figure(fig, output)
    write_json(Path(output).with_suffix(".json"),
               {"image": first["name"], "levels": levels, "psnr": scores})
    print(json.dumps({"levels": levels, "psnr": scores}, indent=1))


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(pairs=snakemake.input.pairs, models=list(snakemake.input.models),
             names=list(snakemake.params.names), levels=list(snakemake.params.levels),
             seed=snakemake.params.seed, output=snakemake.output[0])
