"""Pretrained backbone weights (AlexNet for LPIPS, VGG19 for L_IQ) in an explicit cache.

``fetch_weights(cache)`` tries to obtain each file (already in the cache, in torch.hub's cache,
or downloaded), checks it against the SHA-256 prefix torchvision publishes, and writes
``cache/weights.json``: for each backbone either ``{"status": "ok", "path", "sha256"}`` or
``{"status": "unavailable", "reason"}``. Nothing downstream crashes on "unavailable": LPIPS is
reported as unavailable, and L_IQ falls back to seeded random weights only where allowed.
"""
from __future__ import annotations

import json
import os
import shutil
from importlib import resources as importlib_resources
from pathlib import Path

import torch
import yaml

from .data.download import DownloadError, download
from .data.io import sha256_file, write_json

__all__ = ["BACKBONES", "fetch_weights", "weights_status", "load_backbone_state",
           "describe_weights"]


def _specs() -> dict:
    text = importlib_resources.files("ecdp.data").joinpath("sources.yaml").read_text()
    return yaml.safe_load(text)["weights"]


BACKBONES = tuple(_specs())


def _try_one(name: str, spec: dict, cache: Path, *, allow_download: bool, timeout: float,
             override: dict | None = None) -> dict:
    """One backbone; ``override`` ({url, sha256}: ``weights.sources.<name>``) fetches another
    file under the same name, which must match its own full sha256 and is recorded as not the
    published one (the rehearsal's stand-ins, a mirror's re-encoded copy)."""
    published, filename = spec["sha256_prefix"], Path(spec["url"]).name
    if override:
        spec = {**spec, **override}
    target = cache / filename
    if not target.exists():
        hub = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if hub.exists() and not override:
            shutil.copyfile(hub, target)
        elif allow_download:
            try:
                download(spec["url"], target, timeout=timeout, progress=False)
            except DownloadError as err:
                return {"status": "unavailable",
                        "reason": f"cannot download {spec['url']} ({err.__cause__ or err})"}
        else:
            return {"status": "unavailable", "reason": f"{filename} not in {cache} and downloads "
                    "are disabled"}
    digest = sha256_file(target)
    expected = spec.get("sha256") or spec["sha256_prefix"]
    if not digest.startswith(expected):
        target.unlink()
        return {"status": "unavailable", "reason": f"{filename}: sha256 {digest} does not start "
                f"with {'the pinned' if override else 'the published'} {expected}; file "
                f"removed"}
    return {"status": "ok", "path": str(target.resolve()), "sha256": digest,
            "published": digest.startswith(published)}


def describe_weights(name: str, entry: dict) -> str:
    """Provenance of an available backbone: its hash, and whether it is the published file."""
    text = f"{name} sha256 {entry['sha256'][:12]}"
    if entry.get("published") is False:
        text += " (NOT the published weights: a weights.sources override, e.g. a stand-in)"
    return text


def fetch_weights(cache: str | os.PathLike, *, allow_download: bool = True,
                  timeout: float = 20.0, sources: dict | None = None) -> dict:
    """Obtain every backbone into ``cache``; write and return ``cache/weights.json``.
    ``sources``: {name: {url, sha256}} overrides (``weights.sources``)."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    sources = sources or {}
    unknown = set(sources) - set(_specs())
    if unknown:
        raise ValueError(f"weights.sources: unknown backbone(s) {sorted(unknown)}; the suite "
                         f"uses {', '.join(_specs())}")
    status = {name: _try_one(name, spec, cache, allow_download=allow_download, timeout=timeout,
                             override=sources.get(name))
              for name, spec in _specs().items()}
    write_json(cache / "weights.json", status)
    return status


def weights_status(status_file: str | os.PathLike | None, name: str) -> dict:
    """The recorded status of one backbone; "unavailable" when no status file is given."""
    if status_file is None:
        return {"status": "unavailable", "reason": "no weights status file given"}
    status = json.loads(Path(status_file).read_text())
    if name not in status:
        raise KeyError(f"{status_file} has no entry for backbone {name!r}")
    return status[name]


def load_backbone_state(entry: dict) -> dict:
    """The state dict of an available backbone entry (strict, weights only)."""
    if entry.get("status") != "ok":
        raise FileNotFoundError(f"backbone weights unavailable: {entry.get('reason')}")
    return torch.load(entry["path"], map_location="cpu", weights_only=True)
