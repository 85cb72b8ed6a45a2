"""Kill-and-rerun reliability of the workflow, on the smoke preset.

1. An uninterrupted run of the targets in one working directory.
2. The same targets in another: whenever a training job is running, Snakemake and its job are
   killed with SIGKILL after a random delay (a lost node), the directory is unlocked
   (``snakemake --unlock``) and the run restarted with ``--rerun-incomplete``; ``--kills`` times,
   then the run is left to finish.
3. Every checkpoint of the two runs is compared tensor by tensor (raw weights and EMA must be
   bit-identical) and by its metadata (all of it but the measured seconds); no training state
   may be left; every SHA-256 a manifest records must verify.

    python benchmarks/chaos.py [--kills 3] [--seed 0] [--all] [--keep DIR]

The default targets are the trained models of the smoke preset's RRDB, ECDP (stage 1 and 2),
SRDiff and SR3 and the evaluation pairs; ``--all`` runs the whole smoke preset.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ecdp.data.io import sha256_file  # noqa: E402

SMOKE = ROOT / "workflow" / "presets" / "smoke.yaml"
BASE = "results/sample-photos/x4"
TARGETS = [f"{BASE}/lr/test.json"] + [f"{BASE}/models/{m}/train0/model.pt"
                                      for m in ("rrdb", "ecdp", "srdiff", "sr3")]
TRAINING = ("train_rrdb.py", "train_ecdp.py", "train_srdiff.py", "train_sr3.py",
            "finetune_iq.py")


def _command(workdir: Path, targets: list[str], *extra: str) -> list[str]:
    return ["snakemake", *targets, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--cores", "2", *extra, "--configfile", str(SMOKE)]  # targets first: see README


def _training_running(workdir: Path) -> bool:
    """A training script of this working directory is alive (from /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(workdir) in args and any(name in args for name in TRAINING):
            return True
    return False


def _run(workdir: Path, targets: list[str], *extra: str) -> None:
    proc = subprocess.run(_command(workdir, targets, *extra), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed in {workdir}:\n{proc.stderr[-3000:]}")


def _states(workdir: Path) -> list[str]:
    return sorted(str(p.relative_to(workdir))
                  for p in workdir.glob(f"{BASE}/models/*/train*/*.state"))


def _killed_run(workdir: Path, targets: list[str], rng: random.Random) -> bool:
    """Start a run and kill it (SIGKILL, whole process group) a random moment after a
    training job has saved a state: the re-run must resume from it. True when a training job
    was still alive at the kill, False when the run finished first."""
    before = set(_states(workdir))
    proc = subprocess.Popen(_command(workdir, targets, "--rerun-incomplete"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    while proc.poll() is None:
        if _training_running(workdir) and set(_states(workdir)) - before:
            time.sleep(rng.uniform(0.0, 1.0))
            during = _training_running(workdir)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return during
        time.sleep(0.05)
    return False


def _compare(a: Path, b: Path) -> list[str]:
    """Differences between the checkpoints of two runs (empty when bit-identical)."""
    problems = []
    for path in sorted(a.glob(f"{BASE}/models/*/train*/model.pt")):
        rel = path.relative_to(a)
        other = b / rel
        if not other.exists():
            problems.append(f"{rel}: missing in the interrupted run")
            continue
        x, y = (torch.load(p, map_location="cpu", weights_only=True) for p in (path, other))
        for part in ("state", "ema"):
            for key, tensor in x[part].items():
                if not torch.equal(tensor, y[part][key]):
                    problems.append(f"{rel}: {part}.{key} differs")
                    break
        mx, my = (_without_seconds(c["meta"]) for c in (x, y))
        if mx != my or x["step"] != y["step"]:
            problems.append(f"{rel}: metadata differs")
    return problems


def _without_seconds(meta):
    """Checkpoint metadata without what a clock measured (seconds, hours in the budget)."""
    if isinstance(meta, dict):
        return {k: _without_seconds(v) for k, v in meta.items() if k != "seconds"
                and not (k.endswith("budget") and isinstance(v, str))}
    if isinstance(meta, list):
        return [_without_seconds(v) for v in meta]
    return meta


def _verify_manifests(workdir: Path) -> tuple[int, list[str]]:
    """Every recorded sha256 of every manifest, checked against its file."""
    checked, bad = 0, []
    manifests = list(workdir.glob("resources/datasets/*/manifest.json"))
    manifests += list(workdir.glob(f"{BASE}/lr/*.json"))
    for manifest in manifests:
        data = json.loads(manifest.read_text())
        base = manifest.parent if manifest.name == "manifest.json" else manifest.parent.parent
        entries = (sum(data["splits"].values(), []) if "splits" in data else data["pairs"])
        for entry in entries:
            for key in [k for k in entry if k == "sha256" or k.endswith("_sha256")]:
                file = base / entry["path" if key == "sha256" else key[:-len("_sha256")]]
                checked += 1
                if sha256_file(file) != entry[key]:
                    bad.append(str(file))
    return checked, bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="of the random kill moments")
    parser.add_argument("--all", action="store_true", help="the whole smoke preset")
    parser.add_argument("--keep", help="keep the two working directories under this folder")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    targets = ["all"] if args.all else TARGETS
    top = Path(args.keep or tempfile.mkdtemp(prefix="ecdp-chaos-"))
    clean, chaos = top / "uninterrupted", top / "killed"
    start = time.perf_counter()
    _run(clean, targets)
    print(f"uninterrupted run: {time.perf_counter() - start:.0f} s")
    kills, attempts = 0, 0
    while kills < args.kills and attempts < 4 * args.kills:
        attempts += 1
        if _killed_run(chaos, targets, rng):
            kills += 1
            steps = {s: torch.load(chaos / s, weights_only=True)["step"] for s in _states(chaos)}
            print(f"kill {kills}: SIGKILL during a training job; states to resume: {steps}")
        _run(chaos, [], "--unlock")
    _run(chaos, targets, "--rerun-incomplete")
    resumed = sum(log.read_text().count("resumed from step")
                  for log in chaos.glob("logs/train/*.log"))
    print(f"killed {kills} times in {attempts} attempts, then finished; the logs say "
          f"\"resumed from step\" {resumed} times")
    problems = _compare(clean, chaos)
    left = sorted(str(p.relative_to(chaos)) for p in chaos.rglob("*.state"))
    checked, bad = _verify_manifests(chaos)
    n = len(list(clean.glob(f"{BASE}/models/*/train*/model.pt")))
    print(f"checkpoints compared: {n}; differing: {len(problems)}")
    for problem in problems:
        print(f"  {problem}")
    print(f"training states left: {left or 'none'}")
    print(f"manifest checksums verified: {checked}; failing: {bad or 'none'}")
    if not args.keep:
        shutil.rmtree(top)
    ok = kills == args.kills and not problems and not left and not bad and resumed > 0
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
