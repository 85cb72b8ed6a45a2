"""Rule timing: seconds per image, NFE and peak memory of one experiment, on the same LR input
(the first evaluation image) for every method."""
from pathlib import Path

import torch

from baselines import method_for
from ecdp.data.io import read_image, write_json
from ecdp.data.pairs import load_pairs
from ecdp.evaluate import to_tensor
from ecdp.logs import logged
from ecdp.timing import time_method
from ecdp.train import resolve_device


def main(*, pairs: str, output: str, experiment: dict, name: str, scale: int, device: str,
         threads: int, timing: dict, model: str | None = None,
         sample_steps: int | None = None) -> None:
    torch.set_num_threads(threads)
    device = resolve_device(device)
    base, manifest = load_pairs(pairs)
    first = manifest["pairs"][0]
    lr = to_tensor(read_image(base / first["lr"]), device)
    method = method_for(experiment, scale=scale, checkpoint=model, device=device,
                        sample_steps=sample_steps)
    result = time_method(method, lr, name=first["name"], **timing)
    result = {"experiment": name, "method": experiment["method"], "image": first["name"],
              **result, **getattr(method, "provenance", {})}
    write_json(Path(output), result)
    print(f"{name}: {result['seconds']:.3f} s/image (median of {result['repeats']}), "
          f"NFE {result['nfe']}, LR {result['lr_size']}, {result['device']}, "
          f"peak {result['peak_mib']:.0f} MiB ({result['peak_kind']})")


if "snakemake" in globals():
    with logged(snakemake.log[0]):
        main(pairs=snakemake.input.pairs, output=snakemake.output[0],
             experiment=dict(snakemake.params.experiment), name=snakemake.wildcards.experiment,
             scale=int(snakemake.wildcards.scale), device=snakemake.params.device,
             threads=snakemake.threads, timing=dict(snakemake.params.timing),
             model=snakemake.input.get("model") or None,
             sample_steps=snakemake.params.sample_steps)
