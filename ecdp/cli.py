"""``ecdp`` command line: dataset preparation, weights, and (with a checkpoint) upscaling."""
from __future__ import annotations

import argparse
import sys


def _prepare(args) -> None:
    from .data.datasets import prepare_dataset

    options = {"path": args.path} if args.path else {}
    manifest = prepare_dataset(args.dataset, args.root, **options)
    print({split: len(entries) for split, entries in manifest["splits"].items()})


def _fetch_weights(args) -> None:
    from .weights import fetch_weights

    for name, entry in fetch_weights(args.cache, allow_download=not args.offline).items():
        print(f"{name}: {entry['status']} {entry.get('reason', entry.get('path', ''))}")


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"ecdp {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
