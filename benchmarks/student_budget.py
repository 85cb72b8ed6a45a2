"""What a distilled student's training budget buys: students of one trained ECDP at several
(steps, pairs) budgets, against the training-free DPM-Solver++(2M) at 10 NFE, side by side.

For one training seed of a finished run (its ``ecdp`` model, the teacher), each budget
``STEPS:PAIRS`` trains a student of ``--nfe`` evaluations with the run's recipe
(``training.distill`` of config.yaml, schema defaults filled, only steps and pairs changed),
then every student and DPM-Solver++(2M) at 10 NFE on the time-quadratic (its default) and
log-SNR grids solve the evaluation images from the same prior draws as the frontier. Printed:
PSNR, LR-PSNR (paper protocol) and the RMS distance to the teacher's released solve from the
same draw, and each student's RMS as a ratio of each 10-NFE solve's (issue 26's bar: <= 1).
Students are written to ``--out`` (never into the run).

    python benchmarks/student_budget.py --run-dir . --train-seed 0 --budget 300:96 --budget 1200:384
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from ecdp.frontier import run_frontier, solver_label
from ecdp.model import ECDP
from ecdp.sampling import parse_sampling, student_sampling
from ecdp.stages import train_ecdp_distilled
from suite.plan import load_run

ROOT = Path(__file__).resolve().parents[1]


def _budget(text: str) -> tuple[int, int]:
    try:
        steps, pairs = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--budget {text!r}: expected STEPS:PAIRS, e.g. "
                                         "300:96") from None
    if steps < 1 or pairs < 1:
        raise argparse.ArgumentTypeError(f"--budget {text!r}: steps and pairs must be >= 1")
    return steps, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=".", help="the workflow's working directory")
    parser.add_argument("--dataset", default="sample-photos")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--nfe", type=int, default=4)
    parser.add_argument("--budget", type=_budget, action="append", required=True,
                        help="STEPS:PAIRS of a student (repeat for several)")
    parser.add_argument("--out", default="benchmark-students", help="where students go")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config, _ = load_run(ROOT / "Snakefile")
    run_dir = Path(args.run_dir)
    results = run_dir / "results" / args.dataset / f"x{args.scale}"
    teacher_path = results / "models" / "ecdp" / f"train{args.train_seed}" / "model.pt"
    manifest = run_dir / "resources" / "datasets" / args.dataset / "manifest.json"
    pairs_manifest = results / "lr" / "test.json"
    for path in (teacher_path, manifest, pairs_manifest):
        if not path.exists():
            raise SystemExit(f"{path}: missing; run the default workflow first "
                             "(snakemake --cores all all)")
    weights = {"status": "unavailable", "reason": "benchmark: no VGG19 needed (iq_weight 0)"}
    teacher = ECDP.load(teacher_path).eval()
    released = parse_sampling(None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def measure(model, sampling, name, train_seconds=float("nan")) -> dict:
        rows = run_frontier(model, "ecdp", pairs_manifest, specs=[], tabled=sampling,
                            teacher=(teacher, released), reference_tolerance=1e-5,
                            experiment=name, train_seed=args.train_seed, progress=False)
        return {"setting": name, "nfe": int(rows.nfe.iloc[0]), "train_seconds": train_seconds,
                **rows[["psnr", "lr_psnr", "rms_to_tabled"]].mean().to_dict()}

    lines = []
    for grid in ({}, {"grid": "logsnr"}):
        free = parse_sampling({"solver": "dpmpp_2m", "nfe": 10, **grid})
        lines.append(measure(teacher, free, f"training-free {solver_label(free)}"))
    for steps, pairs in args.budget:
        cfg = {**config["training"]["distill"], "steps": steps, "pairs": pairs,
               "save_every": steps}
        path = out / f"student{args.nfe}-train{args.train_seed}-{steps}x{pairs}.pt"
        begin = time.perf_counter()
        train_ecdp_distilled(dataset=manifest, teacher_checkpoint=teacher_path, out=path,
                             weights_status=weights, cfg=cfg, nfe=args.nfe,
                             seed=args.train_seed, progress=True)
        seconds = time.perf_counter() - begin
        sampling = student_sampling(cfg, args.nfe, where="benchmark")
        lines.append(measure(ECDP.load(path).eval(), sampling,
                             f"student {steps} steps x {pairs} pairs", seconds))
    table = pd.DataFrame(lines).set_index("setting")
    for name in table.index[:2]:
        table[f"rms / {name.split(' ', 1)[1]}"] = (table.rms_to_tabled
                                                   / table.loc[name, "rms_to_tabled"])
    pd.set_option("display.width", 200)
    print(f"teacher {teacher_path} (training seed {args.train_seed}); "
          f"{args.nfe}-NFE students, recipe training.distill but steps and pairs; "
          f"{torch.get_num_threads()} thread(s)")
    print(table.round(5).to_string())


if __name__ == "__main__":
    main()
