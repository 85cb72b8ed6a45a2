"""``ecdp`` command line: dataset preparation, weights, published checkpoints, upscaling."""
from __future__ import annotations

import argparse
import json
import sys

from .resources import ASSUMED_ADAPTIVE_NFE


def _prepare(args) -> None:
    from ecdp.data.datasets import prepare_dataset

    options = {"path": args.path} if args.path else {}
    manifest = prepare_dataset(args.dataset, args.root, **options)
    print({split: len(entries) for split, entries in manifest["splits"].items()})


def _fetch_weights(args) -> None:
    from ecdp.weights import fetch_weights

    for name, entry in fetch_weights(args.cache, allow_download=not args.offline).items():
        print(f"{name}: {entry['status']} {entry.get('reason', entry.get('path', ''))}")


def _upscale(args) -> None:
    import torch
    import yaml

    from baselines import method_from_checkpoint

    from ecdp.data.io import check_writable, image_format, read_image, write_image
    from ecdp.evaluate import to_tensor, to_uint8
    from ecdp.rng import image_generator
    from ecdp.tiling import upscale

    # Everything is checked before the (long) sampling.
    image_format(args.output)
    if args.overlap < 0:
        raise ValueError(f"--overlap {args.overlap}: must be 0 or more LR pixels")
    if args.tile is not None and args.tile <= args.overlap:
        raise ValueError(f"--tile {args.tile} must be larger than --overlap {args.overlap}")
    sampling = yaml.safe_load(args.sampling) if args.sampling else None
    if sampling is not None and not isinstance(sampling, dict):
        raise ValueError(f"--sampling {args.sampling!r}: give a mapping, e.g. "
                         f"'{{solver: dpm_solver_3, nfe: 10}}' (ECDP) or '{{steps: 100}}' "
                         f"(SRDiff, SR3)")
    lr_image = read_image(args.input)
    check_writable(args.output)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    method = method_from_checkpoint(args.checkpoint, device=device, weights=args.weights,
                                    sampling=sampling)
    lr = to_tensor(lr_image, device)
    generator = image_generator(args.seed, args.input.rsplit("/", 1)[-1])
    print(f"{args.input} {tuple(lr.shape[-2:])}: {method.name} x{method.scale} on {device}, "
          f"sampling {getattr(method, 'sampling', None) or 'none (deterministic)'}", flush=True)
    sr, nfe = upscale(method, lr, generator=generator, tile=args.tile, overlap=args.overlap,
                      progress=True)
    write_image(args.output, to_uint8(sr))
    print(f"-> {args.output} {tuple(sr.shape[-2:])}, NFE {nfe}, weights "
          f"{method.provenance['weights'] if hasattr(method, 'provenance') else 'n/a'}")


def _import_checkpoint(args) -> None:
    from ecdp.checkpoint import save_checkpoint
    from baselines.importers import import_sr3, import_srdiff

    if args.kind == "srdiff":
        meta, state = import_srdiff(args.input)
    else:
        if args.scale is None:
            raise ValueError("an SR3 checkpoint does not record its scale: give --scale (8 for "
                             "the released 16 -> 128 and 64 -> 512 face models)")
        meta, state = import_sr3(args.input, scale=args.scale, norm_groups=args.norm_groups,
                                 dropout=args.dropout)
    save_checkpoint(args.output, step=0, meta=meta, state=state, ema=state)
    p = meta["provenance"]
    print(f"{args.input} ({p['sha256'][:12]}...) -> {args.output}: {args.kind} x{meta['scale']}, "
          f"{meta['params'] / 1e6:.2f}M parameters, net {meta['net']}")


def _plan(args) -> None:
    from pathlib import Path

    from snakemake.cli import parse_config

    from baselines import costs

    from .memory import format_memory, memory_plan
    from .plan import format_plan, load_run, pending_jobs, probe_plan

    snakefile = Path(args.snakefile or Path(args.directory) / "Snakefile")
    if not snakefile.exists():
        raise ValueError(f"no Snakefile at {snakefile}: run in the suite's folder or give "
                         f"--snakefile")
    config, run = load_run(snakefile, args.configfile,
                           parse_config(args.config) if args.config else {})
    jobs = pending_jobs(snakefile=snakefile, workdir=args.directory,
                        configfiles=args.configfile, config_args=args.config or (),
                        targets=args.targets)
    if not jobs:
        print("Nothing to be done: every target is up to date.")
        return
    plan = {}
    if not args.memory_only:
        plan = probe_plan(jobs, config, run, snakefile=snakefile, workdir=args.directory,
                          probe_dir=args.probe_dir, steps=args.steps, max_batch=args.max_batch,
                          max_patch=args.max_patch, lr_size=args.lr_size,
                          max_sample_steps=args.max_sample_steps,
                          adaptive_nfe=args.adaptive_nfe)
        print(format_plan(plan), end="\n\n")
    plan["memory"] = memory_plan(jobs, config, run, args.directory, costs=costs,
                                 device_gib=args.device_memory)
    print(format_memory(plan["memory"]))
    if args.json:
        Path(args.json).write_text(json.dumps(plan, indent=1))


def _positive(kind=int):
    """An argparse type: a number > 0 (a count of steps, a batch, a size)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text}: must be more than 0")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecdp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare-dataset", help="download / write a dataset and its manifest")
    p.add_argument("dataset")
    p.add_argument("root", help="folder for the dataset, e.g. resources/datasets/NAME")
    p.add_argument("--path", help="source folder (datasets 'folder' and 'imagenet')")
    p.set_defaults(func=_prepare)
    p = sub.add_parser("fetch-weights", help="obtain AlexNet / VGG19 weights into a cache")
    p.add_argument("cache", nargs="?", default="resources/weights")
    p.add_argument("--offline", action="store_true", help="never download")
    p.set_defaults(func=_fetch_weights)
    p = sub.add_parser("upscale", help="super-resolve an image with any trained suite checkpoint "
                       "(ECDP, RRDB, SRDiff, SR3)")
    p.add_argument("input")
    p.add_argument("output", help="written by extension: .png, .webp (lossless), .jpg (quality 95)")
    p.add_argument("--checkpoint", required=True,
                   help="a suite checkpoint of any method (ECDP, RRDB, SRDiff, SR3; a released "
                        "one after 'ecdp import-checkpoint')")
    p.add_argument("--sampling", default=None,
                   help="the sampler, as a YAML mapping of the method's sampling config, e.g. "
                        "'{solver: dpm_solver_3, nfe: 10}' (ECDP) or '{steps: 100}' (SRDiff, "
                        "SR3); default: the released one (docs/sampling.md)")
    p.add_argument("--tile", type=_positive(), default=None, help="LR tile size (large images)")
    p.add_argument("--overlap", type=int, default=8, help="LR pixels of overlap between tiles")
    p.add_argument("--seed", type=int, default=0,
                   help="sample seed: the noise is drawn from (seed, input file name), as the "
                        "workflow draws it per test image")
    p.add_argument("--weights", choices=["ema", "raw"], default="ema",
                   help="the checkpoint's EMA weights (default, as evaluated) or its raw ones")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if present)")
    p.set_defaults(func=_upscale)
    p = sub.add_parser("import-checkpoint",
                       help="convert a published SRDiff or SR3 checkpoint into this suite's format")
    p.add_argument("kind", choices=["srdiff", "sr3"])
    p.add_argument("input", help="SRDiff: model_ckpt_steps_*.ckpt; SR3: I*_E*_gen.pth")
    p.add_argument("output", help="suite checkpoint to write (e.g. resources/checkpoints/X.pt)")
    p.add_argument("--scale", type=int, help="SR3 only: the upscaling factor (not in its weights)")
    p.add_argument("--norm-groups", type=int, default=32,
                   help="SR3 only: GroupNorm groups (release default 32; 64 -> 512 model: 16)")
    p.add_argument("--dropout", type=float, default=0.2,
                   help="SR3 only: dropout for fine-tuning (16 -> 128 config: 0.2)")
    p.set_defaults(func=_import_checkpoint)
    p = sub.add_parser("plan", help="project the device-hours of a configured run by probing "
                       "each training and sampling job for a few steps on this device")
    p.add_argument("targets", nargs="*", default=["all"])
    p.add_argument("--configfile", nargs="+", default=[], help="presets, as for snakemake")
    p.add_argument("--config", nargs="+", default=[], help="KEY=VALUE overrides, as for snakemake")
    p.add_argument("--directory", default=".", help="the run's working folder (default: here)")
    p.add_argument("--snakefile", default=None, help="default: DIRECTORY/Snakefile")
    p.add_argument("--steps", type=_positive(), default=3, help="training steps per probe (first dropped)")
    p.add_argument("--max-batch", type=_positive(), default=None,
                   help="probe at most this batch and scale linearly (e.g. 2 on a CPU)")
    p.add_argument("--max-patch", type=_positive(), default=None,
                   help="probe at most this HR patch and scale by pixels (e.g. 64 on a CPU)")
    p.add_argument("--lr-size", type=_positive(), default=16, help="LR side of the probed test image")
    p.add_argument("--max-sample-steps", type=_positive(), default=10,
                   help="probe sampling chains (SRDiff / SR3 steps, ECDP's solve, L_IQ's chain) "
                   "in at most this many network evaluations, scaled to theirs")
    p.add_argument("--adaptive-nfe", type=_positive(), default=ASSUMED_ADAPTIVE_NFE,
                   help="NFE to price an adaptive ECDP solve at, forward (probed with fixed "
                   "steps: probe weights make an adaptive NFE meaningless); default 87, what "
                   "the default CPU run's trained ECDP took with the released solve")
    p.add_argument("--probe-dir", default=None, help="keep the probes here (default: a "
                   "temporary folder, removed)")
    p.add_argument("--device-memory", type=_positive(float), default=80.0,
                   help="GiB of the GPU the jobs will run on: jobs whose planned peak exceeds it "
                   "are flagged, and sampling jobs get the LR tile that fits (default 80)")
    p.add_argument("--memory-only", action="store_true",
                   help="only the memory plan (no probes: seconds, not minutes)")
    p.add_argument("--json", default=None, help="also write the plan as JSON")
    p.set_defaults(func=_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        print(f"ecdp {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
