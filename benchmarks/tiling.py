"""What sampling in tiles changes: every method on whole test images against LR tiles.

    python benchmarks/tiling.py --results results/sample-photos/x4 [--tile 32] [--overlap 8]

Takes the trained checkpoints of a run (training seed ``--train-seed``, default the first),
super-resolves each whole test photo (no evaluation crop) once as one image and once in
overlapping LR tiles (``ecdp.tiling.Tiled``, the ``evaluation.tile`` setting), both from the
same per-image generator, and prints per method: PSNR (paper protocol) of each against the HR,
their difference, and the largest and mean absolute pixel difference between the two outputs
(0-255). A deterministic method differs only near tile borders (the networks see less context
there); a stochastic one also draws its noise per tile, so its two outputs are two samples.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from baselines import method_for
from ecdp.data.sample_photos import SPLITS, load_photo
from ecdp.degradation import degrade, modcrop
from ecdp.evaluate import to_tensor, to_uint8
from ecdp.metrics import PAPER, psnr
from ecdp.rng import image_generator
from ecdp.tiling import Tiled

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = {"bicubic": None, "rrdb": "rrdb", "srdiff": "srdiff", "sr3": "sr3",
               "ecdp": "ecdp"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results/sample-photos/x4")
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--tile", type=int, default=32, help="LR tile side (px)")
    parser.add_argument("--overlap", type=int, default=8, help="LR px shared by neighbours")
    parser.add_argument("--configfile", default=str(ROOT / "config.yaml"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = yaml.safe_load(Path(args.configfile).read_text())
    results = Path(args.results)
    print(f"LR tiles of {args.tile} px, overlap {args.overlap} px; whole test photos "
          f"{', '.join(SPLITS['test'])}; models {results}/models/*/train{args.train_seed}")
    print(f"| method | PSNR whole (dB) | PSNR tiled (dB) | tiled - whole (dB) | max pixel "
          f"difference | mean abs difference |")
    print("|---|---|---|---|---|---|")
    for experiment, model in EXPERIMENTS.items():
        spec = config["experiments"][experiment]
        checkpoint = None
        if model is not None:
            checkpoint = results / "models" / model / f"train{args.train_seed}" / "model.pt"
            if not checkpoint.exists():
                print(f"| {spec['label']} | not trained in this run ({checkpoint}) | | | | |")
                continue
        sampling = config["sampling"].get(spec["method"])
        whole = method_for(spec, scale=config["scale"], checkpoint=checkpoint,
                           sampling=sampling)
        tiled = Tiled(whole, tile=args.tile, overlap=args.overlap)
        scores, max_diff, mean_diff = {"whole": [], "tiled": []}, 0, []
        for name in SPLITS["test"]:
            hr_u8 = modcrop(load_photo(name), config["scale"])
            lr, hr = to_tensor(degrade(hr_u8, config["scale"])), to_tensor(hr_u8)
            outputs = {}
            for how, method in (("whole", whole), ("tiled", tiled)):
                with torch.no_grad():
                    sr, _ = method.super_resolve(lr, generator=image_generator(0, name),
                                                 image=name)
                outputs[how] = to_uint8(sr)
                scores[how].append(float(psnr(to_tensor(outputs[how]), hr, protocol=PAPER)))
            diff = (outputs["whole"].astype(int) - outputs["tiled"].astype(int)).__abs__()
            max_diff = max(max_diff, int(diff.max()))
            mean_diff.append(float(diff.mean()))
        a, b = (sum(v) / len(v) for v in scores.values())
        print(f"| {spec['label']} | {a:.2f} | {b:.2f} | {b - a:+.3f} | {max_diff} | "
              f"{sum(mean_diff) / len(mean_diff):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
