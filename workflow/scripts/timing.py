"""Rule timing: seconds per image, NFE and peak memory of one experiment, on the same LR input
(the first evaluation image) for every method."""
from pathlib import Path

import torch

from baselines import method_for
from ecdp.data.io import read_image, write_json
from ecdp.data.pairs import load_pairs
from ecdp.evaluate import to_tensor
from ecdp.logs import logged
from ecdp.tiling import Tiled
from ecdp.timing import time_method
from ecdp.train import resolve_device


def main(*, pairs: str, output: str, method: dict, name: str, scale: int, device: str,
         threads: int, timing: dict, model: str | None = None,
         sampling: dict | None = None, tile: dict | None = None) -> None:
    """method: {method, k}; sampling: the experiment's resolved sampling config; tile:
    evaluation.tile (size None: whole images)."""
    torch.set_num_threads(threads)
    device = resolve_device(device)
    base, manifest = load_pairs(pairs)
    first = manifest["pairs"][0]
    lr = to_tensor(read_image(base / first["lr"]), device)
    resolver = method_for(method, scale=scale, checkpoint=model, device=device,
                          sampling=sampling)
    if tile and tile.get("size"):
        resolver = Tiled(resolver, tile=tile["size"], overlap=tile["overlap"])
    result = time_method(resolver, lr, name=first["name"], **timing)
    result = {"experiment": name, "method": method["method"], "image": first["name"],
              **result, "sampling": getattr(resolver, "sampling", None),
              "tiling": getattr(resolver, "tiling", None),
              **getattr(resolver, "provenance", {})}
    write_json(Path(output), result)
    print(f"{name}: {result['seconds']:.3f} s/image (median of {result['repeats']}), "
          f"NFE {result['nfe']}, LR {result['lr_size']}, {result['device']}, "
          f"peak {result['peak_mib']:.0f} MiB ({result['peak_kind']})")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(pairs=snakemake.input.pairs, output=snakemake.output[0],
             method=dict(snakemake.params.method), name=snakemake.wildcards.experiment,
             scale=int(snakemake.wildcards.scale), device=snakemake.resources.device,
             threads=snakemake.threads, timing=dict(snakemake.params.timing),
             model=snakemake.input.get("model") or None,
             sampling=snakemake.params.sampling, tile=snakemake.params.tile)
