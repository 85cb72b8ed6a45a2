"""Rule crop_grid: the same crop of the first test image from every experiment (seed 0), beside
the LR (its pixels, enlarged) and the HR, each with its crop's PSNR."""
import json
from pathlib import Path


from ecdp.data.io import read_image
from ecdp.data.pairs import load_pairs
from ecdp.figures import crop_grid, save_figure
from ecdp.logs import logged


def main(*, pairs: str, sr: list[str], labels: list[str], size: int, output: str) -> None:
    base, manifest = load_pairs(pairs)
    first = manifest["pairs"][0]
    hr = read_image(base / first["hr"])
    lr = read_image(base / first["lr"])
    s = manifest["scale"]
    images = {f"LR (each pixel {s}x{s})": lr.repeat(s, axis=0).repeat(s, axis=1), "HR": hr}
    for label, path in zip(labels, sr):
        entry = {i["name"]: i for i in json.loads(Path(path).read_text())["images"]}[first["name"]]
        images[label] = read_image(Path(path).with_suffix("") / entry["path"])
    size = min(size, *hr.shape[:2])
    top, left = (hr.shape[0] - size) // 2, (hr.shape[1] - size) // 2
    title = (f"{first['name']}: central {size}x{size} HR crop at (row {top}, column {left}) of "
             f"the {hr.shape[0]}x{hr.shape[1]} evaluated image, x{s}; first training seed, sample "
             f"seed 0 of each method")
    save_figure(crop_grid(images, (top, left, size), title=title), output)
    print(f"{first['name']}: crop {size}px at ({top}, {left}) from {len(images)} images")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(pairs=snakemake.input.pairs, sr=list(snakemake.input.sr),
             labels=list(snakemake.params.labels), size=snakemake.params.size,
             output=snakemake.output[0])
