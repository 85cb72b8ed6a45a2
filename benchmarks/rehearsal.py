"""Every paper preset rehearsed end to end on a CPU, at the paper's network sizes.

    python benchmarks/rehearsal.py [--presets paper-div2k paper-celeba ...] [--workdir DIR]
                                   [--srdiff-release PATH]

For each preset, in a fresh folder, with ``workflow/presets/rehearsal.yaml`` merged on top
(steps, batches, patches, image counts and chain lengths shrunk; networks, recipes, protocols,
tables and figures kept):

1. synthetic datasets in the real layouts (DIV2K train/valid HR and official x4 LR zips,
   Flickr2K's tar, CelebA's aligned-images zip with its partition file, an ImageNet folder of
   class subfolders) are served by a local HTTP server, so the real download, checksum,
   extraction and preparation code runs; AlexNet and VGG19 weight files of the real names and
   shapes (random values: stand-ins, recorded as not the published weights) are served
   likewise, so LPIPS and L_IQ take the weights-present path;
2. ``published-srdiff-div2k`` samples an SRDiff checkpoint of the paper's size saved by the
   SRDiff release's own code (``--srdiff-release``: a checkout of LeiaLi/SRDiff) and converted
   by ``ecdp import-checkpoint``;
3. ``snakemake -n`` counts the jobs, ``snakemake --cores 2`` runs them, and the script checks
   that the run executed exactly the dry run's jobs, wrote every table and figure, and that
   every checkpoint loads strictly into its network.

Prints one line per preset (jobs, wall time, tables and figures written, checkpoints loaded)
and ends with PASS or FAIL. Needs no network. About an hour for all four on 2 cores.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torchvision
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ROOT / "workflow" / "presets"
ALL = ("paper-div2k", "paper-celeba", "paper-imagenet", "published-srdiff-div2k")


# ---------------------------------------------------------------------- synthetic data

def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random image (low-passed noise, some edges): uint8 (h, w, 3)."""
    coarse = torch.from_numpy(rng.random((1, 3, max(2, h // 16), max(2, w // 16)))).float()
    img = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic")[0]
    img = img + 0.05 * torch.from_numpy(rng.standard_normal((3, h, w))).float()
    return (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def _encode(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, quality=95)
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def synthetic_files(imagenet_dir: Path) -> dict[str, bytes]:
    """URL path -> bytes of every archive the paper presets download; writes the ImageNet
    folder (which the suite never downloads) under ``imagenet_dir``."""
    from ecdp.degradation import degrade

    rng = np.random.default_rng(0)
    valid = {"0801": _photo(rng, 96, 128), "0802": _photo(rng, 264, 360)}  # one over 256 px
    files = {
        "/DIV2K_train_HR.zip": _zip({f"DIV2K_train_HR/{i:04d}.png":
                                     _encode(_photo(rng, 200, 296), "PNG") for i in (1, 2, 3)}),
        "/DIV2K_valid_HR.zip": _zip({f"DIV2K_valid_HR/{n}.png": _encode(im, "PNG")
                                     for n, im in valid.items()}),
        "/DIV2K_valid_LR_bicubic_X4.zip": _zip({
            f"DIV2K_valid_LR_bicubic/X4/{n}x4.png": _encode(degrade(im, 4), "PNG")
            for n, im in valid.items()}),
        "/Flickr2K.tar": _tar({f"Flickr2K/Flickr2K_HR/{i:06d}.png":
                               _encode(_photo(rng, 200, 296), "PNG") for i in (1, 2)}),
    }
    faces = {f"{i:06d}.jpg": _encode(_photo(rng, 218, 178), "JPEG") for i in range(1, 13)}
    files["/img_align_celeba.zip"] = _zip({f"img_align_celeba/{n}": d for n, d in faces.items()})
    splits = [0] * 8 + [1] * 2 + [2] * 2  # the official file's format: "<image> <0|1|2>"
    files["/list_eval_partition.txt"] = "".join(
        f"{n} {s}\n" for n, s in zip(faces, splits)).encode()
    for split, count in (("train/n01440764", 3), ("train/n01443537", 2), ("val", 2)):
        folder = imagenet_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(_photo(rng, 300, 400)).save(folder / f"img{i}.JPEG", quality=95)
    return files


def stand_in_weights() -> dict[str, bytes]:
    """AlexNet's and VGG19's state dicts with the real names and shapes, random values."""
    out = {}
    for name, build in (("alexnet-owt-7be5be79.pth", torchvision.models.alexnet),
                        ("vgg19-dcbb9e9d.pth", torchvision.models.vgg19)):
        torch.manual_seed(0)
        buf = io.BytesIO()
        torch.save(build(weights=None).state_dict(), buf)
        out[f"/weights/{name}"] = buf.getvalue()
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(folder: Path):
    """A static HTTP server on 127.0.0.1 for ``folder``: (base URL, server)."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def sources_overlay(url: str, files: dict[str, bytes], imagenet_dir: Path) -> dict:
    """The config that points every download at the local server (with pinned checksums)."""
    def src(path):
        return {"url": f"{url}{path}", "sha256": hashlib.sha256(files[path]).hexdigest()}

    return {
        "datasets": {
            "div2k": {"sources": {"train_hr": src("/DIV2K_train_HR.zip"),
                                  "valid_hr": src("/DIV2K_valid_HR.zip"),
                                  "valid_lr_x4": src("/DIV2K_valid_LR_bicubic_X4.zip")}},
            "flickr2k": {"sources": {"train_hr": src("/Flickr2K.tar")}},
            "celeba": {"sources": {"aligned": src("/img_align_celeba.zip"),
                                   "partition": src("/list_eval_partition.txt")}},
            "imagenet": {"path": str(imagenet_dir)},
        },
        "weights": {"sources": {"alexnet": src("/weights/alexnet-owt-7be5be79.pth"),
                                "vgg19": src("/weights/vgg19-dcbb9e9d.pth")}},
    }


# ---------------------------------------------------------------------- the published model

def release_srdiff_checkpoint(release: Path, preset: dict, out: Path) -> Path:
    """An SRDiff of the preset's size, initialised and saved by the release's own code."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from released_equivalence import release_on_path

    srdiff = preset["baselines"]["srdiff"]
    enc = srdiff["encoder"]
    with release_on_path(release, ("models", "utils", "tasks")):
        from utils.hparams import hparams
        hparams.clear()
        hparams.update({"sr_scale": preset["scale"], "rrdb_num_block": enc["blocks"],
                        "use_attn": False, "res": True, "up_input": False, "use_wn": False,
                        "weight_init": False, "beta_schedule": "cosine", "beta_s": 0.008,
                        "beta_end": 0.02, "use_rrdb": True, "fix_rrdb": True,
                        "aux_l1_loss": False, "aux_ssim_loss": False,
                        "aux_percep_loss": False, "res_rescale": 2.0, "clip_input": True})
        from models.diffsr_modules import RRDBNet, Unet
        from models.diffusion import GaussianDiffusion
        from utils.utils import save_checkpoint

        torch.manual_seed(0)
        rrdb = RRDBNet(3, 3, enc["features"], enc["blocks"], enc["growth"])
        unet = Unet(srdiff["dim"], out_dim=3, cond_dim=enc["features"],
                    dim_mults=tuple(srdiff["mults"]))
        model = GaussianDiffusion(unet, rrdb, timesteps=srdiff["steps"], loss_type="l1")
        out.mkdir(parents=True, exist_ok=True)
        save_checkpoint(model, torch.optim.Adam(unet.parameters(), lr=2e-4), str(out), 0, 1)
    return out / "model_ckpt_steps_0.ckpt"


# ---------------------------------------------------------------------- one preset

def _snakemake(work: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
                           *args], capture_output=True, text=True)


def _job_stats(out: str) -> dict[str, int]:
    stats = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    jobs = {}
    for line in stats.splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            jobs[parts[0]] = int(parts[1])
    return jobs


def _checkpoints_load(work: Path) -> list[str]:
    """Every checkpoint of the run, loaded strictly into its network by the suite's loaders."""
    from baselines import method_from_checkpoint

    loaded = []
    for path in sorted((work / "results").rglob("model.pt")) + sorted(
            (work / "resources" / "checkpoints").glob("*.pt")):
        method_from_checkpoint(path)  # strict: a missing or extra tensor raises
        loaded.append(str(path.relative_to(work)))
    return loaded


def rehearse(name: str, work: Path, overlay: Path, *, cores: int) -> dict:
    files = [str(PRESETS / "paper-div2k.yaml")] if name == "published-srdiff-div2k" else []
    files += [str(PRESETS / f"{name}.yaml"), str(PRESETS / "rehearsal.yaml"), str(overlay)]
    dry = _snakemake(work, "-n", "all", "--configfile", *files)
    if dry.returncode != 0:
        return {"ok": False, "error": dry.stdout[-3000:] + dry.stderr[-3000:]}
    planned = _job_stats(dry.stdout)
    start = time.perf_counter()
    run = _snakemake(work, "all", "--cores", str(cores), "--configfile", *files)
    minutes = (time.perf_counter() - start) / 60
    log = run.stdout + run.stderr
    if run.returncode != 0:
        return {"ok": False, "minutes": minutes, "error": log[-6000:]}
    done = _job_stats(log)
    merged = {}
    for f in files:
        merged.update({k: v for k, v in (yaml.safe_load(Path(f).read_text()) or {}).items()
                       if k in ("dataset", "scale")})
    results = work / "results" / merged["dataset"] / f"x{merged['scale']}"
    tables = sorted(p.name for p in (results / "tables").glob("*.md"))
    figures = sorted(p.name for p in (results / "figures").glob("*.png"))
    wanted_tables = set(re.findall(r"tables/(\w+)\.md", dry.stdout))
    wanted_figures = set(re.findall(r"figures/(\w+)\.png", dry.stdout))
    loaded = _checkpoints_load(work)
    rehearsal_line = all("REHEARSAL" in (results / "tables" / t).read_text() for t in tables)
    ok = (done == planned and {t[:-3] for t in tables} == wanted_tables
          and {f[:-4] for f in figures} == wanted_figures and rehearsal_line and loaded)
    return {"ok": ok, "minutes": minutes, "jobs": sum(planned.values()), "planned": planned,
            "done": done, "tables": tables, "figures": figures, "checkpoints": len(loaded),
            "rehearsal_line": rehearsal_line}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(ALL), choices=ALL)
    parser.add_argument("--workdir", default=None, help="keep every run here (default: a "
                        "temporary folder, removed)")
    parser.add_argument("--srdiff-release", default=None,
                        help="a checkout of LeiaLi/SRDiff, for published-srdiff-div2k")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)
    base = Path(args.workdir or tempfile.mkdtemp(prefix="ecdp-rehearsal-"))
    base.mkdir(parents=True, exist_ok=True)
    served = base / "served"
    imagenet = base / "imagenet"
    files = {**synthetic_files(imagenet), **stand_in_weights()}
    for path, data in files.items():
        (served / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (served / path.lstrip("/")).write_bytes(data)
    url, server = serve(served)
    overlay = base / "local-sources.yaml"
    overlay.write_text(yaml.safe_dump(sources_overlay(url, files, imagenet)))
    results, failed = {}, 0
    try:
        for name in args.presets:
            work = base / name
            if name == "published-srdiff-div2k":
                if not args.srdiff_release:
                    print(f"{name}: skipped (needs --srdiff-release, a checkout of "
                          f"LeiaLi/SRDiff, to save the checkpoint with the release's own code)")
                    continue
                preset = yaml.safe_load((PRESETS / "paper-div2k.yaml").read_text())
                saved = release_srdiff_checkpoint(Path(args.srdiff_release), preset,
                                                  base / "srdiff-release")
                subprocess.run([sys.executable, "-m", "suite.cli", "import-checkpoint", "srdiff",
                                str(saved),
                                str(work / "resources" / "checkpoints" / "srdiff-div2k.pt")],
                               check=True)
            print(f"{name}: running ...", flush=True)
            result = rehearse(name, work, overlay, cores=args.cores)
            results[name] = result
            if result["ok"]:
                print(f"  PASS {name}: {result['jobs']} jobs (the dry run's), "
                      f"{result['minutes']:.1f} min on {args.cores} cores; tables "
                      f"{', '.join(result['tables'])}; figures {', '.join(result['figures'])}; "
                      f"{result['checkpoints']} checkpoints load strictly", flush=True)
            else:
                failed += 1
                print(f"  FAIL {name}: {result.get('error') or result}", flush=True)
    finally:
        server.shutdown()
    print("all rehearsals pass" if not failed and results else f"{failed} rehearsal(s) failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    raise SystemExit(main())
