"""How few network evaluations ECDP needs: every solver on one trained model, side by side.

For each evaluation image one prior draw (the image's seed-0 generator, as ``super_resolve``)
is integrated by a tight reference (dopri5 at ``reference_tolerance``), by dopri5 at each
tolerance (the released 1e-3 among them) and by each fixed-step solver at each NFE budget.
Every solve is scored like the evaluation (paper protocol: PSNR, SSIM, LPIPS when its weights are
there, LR-PSNR), timed (one run each, wall clock, synchronised on CUDA) and measured against
the reference (RMS in [0, 1] pixel units).

    rows = sampling_study(model, "results/.../lr/test.json", solvers=study_grid(...))
    summary = summarize_study(rows)
"""
from __future__ import annotations

import math
import os
import time

import pandas as pd
import torch
from tqdm import tqdm

from .data.io import atomic_write_text
from .data.pairs import load_pairs, read_pair
from .evaluate import to_tensor
from .metrics import PAPER, load_lpips, quality
from .rng import image_generator
from .samplers import RELEASED_SAMPLING, SOLVERS, make_solver
from .tables import html_page

__all__ = ["study_grid", "sampling_study", "summarize_study", "best_fast", "cheapest_within",
           "write_study_table", "STUDY_METRICS"]

STUDY_METRICS = ("psnr", "lr_psnr", "ssim", "lpips", "seconds", "nfe", "rms_to_reference")


def study_grid(*, tolerances: list[float], solvers: list[str], nfe: list[int]) -> list[dict]:
    """The solver specs of a study: dopri5 at each rtol = atol (as released otherwise), then every
    fixed-step solver at every NFE budget it can meet."""
    grid = [{**RELEASED_SAMPLING, "rtol": tol, "atol": tol} for tol in tolerances]
    for solver in solvers:
        grid += [{"solver": solver, "nfe": n} for n in nfe if n >= SOLVERS[solver].min_nfe]
    return grid


def _setting(spec: dict) -> str:
    return f"tol {spec['rtol']:g}" if "rtol" in spec else f"NFE {spec['nfe']}"


def _released(spec: dict) -> bool:
    return spec == RELEASED_SAMPLING


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def sampling_study(model, pairs_manifest: str | os.PathLike, *, solvers: list[dict],
                   reference_tolerance: float = 1e-6, lpips_weights: dict | None = None,
                   limit: int | None = None, seed: int = 0, experiment: str = "ecdp",
                   temperature: float = 1.0, progress: bool = True) -> pd.DataFrame:
    """One row per (image, solver spec) for an ECDP ``model`` (its sigma, k and device), every
    solver from the same prior draw (scaled by ``temperature``)."""
    base, pairs = load_pairs(pairs_manifest)
    scale = pairs["scale"]
    device = next(model.parameters()).device
    lpips_model, lpips_status = load_lpips(lpips_weights or {"status": "unavailable",
                                                             "reason": "no weights given"})
    reference = make_solver({**RELEASED_SAMPLING, "rtol": reference_tolerance,
                             "atol": reference_tolerance})
    rows = []
    entries = pairs["pairs"][:limit]
    bar = tqdm(total=len(entries) * (len(solvers) + 1), desc=f"sampling study {experiment}",
               disable=not progress)
    with torch.no_grad():
        for pair in entries:
            lr_u8, hr_u8 = read_pair(base, pair)
            lr, hr = to_tensor(lr_u8, device), to_tensor(hr_u8, device)
            mu = model.condition(lr)[0]
            x1 = mu + model.sde.sigma * model.prior(
                mu, image_generator(seed, pair["name"], device=device), temperature)
            ref, ref_nfe = model.sample(lr, x1=x1, solver=reference, image=pair["name"])
            bar.update()
            for spec in solvers:
                solver = make_solver(spec)
                _sync(device)
                start = time.perf_counter()
                x0, nfe = model.sample(lr, x1=x1, solver=solver, image=pair["name"])
                _sync(device)
                seconds = time.perf_counter() - start
                sr = x0.clamp(0, 1)
                rows.append({
                    "experiment": experiment, "image": pair["name"],
                    "solver": spec["solver"], "setting": _setting(spec),
                    "released": _released(spec), "nfe": int(nfe), "seconds": seconds,
                    **quality(sr, hr, lr, scale=scale, protocol=PAPER,
                              lpips_model=lpips_model),
                    "rms_to_reference": float((x0 - ref).pow(2).mean().sqrt()),
                    "reference": f"dopri5 tol {reference_tolerance:g} ({ref_nfe} NFE)",
                    "lpips_weights": lpips_status, "device": str(device),
                    "threads": torch.get_num_threads(), "lr_size": list(lr.shape[-2:]),
                    "protocol": "paper"})
                bar.update()
    bar.close()
    return pd.DataFrame(rows)


def summarize_study(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over images per (experiment, solver, setting), in the grid's order."""
    keys = ["experiment", "solver", "setting"]
    mean = rows.groupby(keys, sort=False)[list(STUDY_METRICS)].mean()
    first = rows.groupby(keys, sort=False)[["released", "reference", "lpips_weights", "device",
                                            "threads"]].first()
    images = rows.groupby(keys, sort=False)["image"].nunique().rename("n_images")
    return pd.concat([mean, first, images], axis=1).reset_index()


def best_fast(summary: pd.DataFrame, experiment: str, *, max_nfe: int = 10) -> dict | None:
    """The fixed-step solve with at most ``max_nfe`` evaluations closest to the reference (RMS),
    with its quality differences and time ratio to the released dopri5 solve."""
    rows = summary[summary.experiment == experiment]
    released = rows[rows.released]
    fast = rows[(rows.solver != "dopri5") & (rows.nfe <= max_nfe)]
    if released.empty or fast.empty:
        return None
    return _against(fast.loc[fast.rms_to_reference.idxmin()], released.iloc[0])


def _against(row, ref) -> dict:
    """One solve's quality differences and time ratio to the released solve."""
    return {"solver": row.solver, "setting": row.setting, "nfe": float(row.nfe),
            "d_psnr": float(row.psnr - ref.psnr), "d_lr_psnr": float(row.lr_psnr - ref.lr_psnr),
            "time_ratio": float(row.seconds / ref.seconds) if ref.seconds > 0 else math.nan,
            "released_nfe": float(ref.nfe), "rms_to_reference": float(row.rms_to_reference)}


def cheapest_within(summary: pd.DataFrame, experiment: str, *, d_psnr: float = 0.1,
                    d_lr_psnr: float = 0.2) -> dict | None:
    """The fastest fixed-step solve whose mean PSNR and LR-PSNR are within ``d_psnr`` and
    ``d_lr_psnr`` dB of the released solve's (either side), with its time ratio."""
    rows = summary[summary.experiment == experiment]
    released = rows[rows.released]
    if released.empty:
        return None
    ref = released.iloc[0]
    ok = rows[(rows.solver != "dopri5") & ((rows.psnr - ref.psnr).abs() <= d_psnr)
              & ((rows.lr_psnr - ref.lr_psnr).abs() <= d_lr_psnr)]
    return None if ok.empty else _against(ok.loc[ok.seconds.idxmin()], ref)


def _summary_line(text: str, found: dict) -> str:
    return (f"{text}: {found['solver']} {found['setting']} ({found['nfe']:.0f} NFE vs "
            f"{found['released_nfe']:.1f}): PSNR {found['d_psnr']:+.3f} dB, LR-PSNR "
            f"{found['d_lr_psnr']:+.3f} dB, RMS to reference {found['rms_to_reference']:.5f}, "
            f"{found['time_ratio']:.2f}x the seconds of the released solve.")


_COLUMNS = [("NFE", "nfe", 1), ("s/image", "seconds", 3), ("PSNR", "psnr", 2),
            ("LR-PSNR", "lr_psnr", 2), ("SSIM", "ssim", 3), ("LPIPS", "lpips", 3),
            ("RMS to reference", "rms_to_reference", 5)]


def write_study_table(summary: pd.DataFrame, stem: str | os.PathLike, *, title: str) -> str:
    """``stem``.csv (the summary), ``stem``.md and its .html (``tables.html_page``): one block
    per experiment, the released dopri5 setting marked, and the best fixed-step solve at <= 10
    NFE against it."""
    atomic_write_text(f"{stem}.csv", summary.to_csv(index=False))
    first = summary.iloc[0]
    lines = [f"# {title}", "",
             f"Paper protocol (RGB, 8-bit), mean over {int(first.n_images)} image(s), one prior "
             f"draw each (seed 0); seconds: one run per solve on {first.device} "
             f"({int(first.threads)} threads); RMS in [0, 1] pixel units to the reference "
             f"solve ({first.reference}); LPIPS: {first.lpips_weights}. "
             "`*` = the released solve (dopri5, rtol = atol = 1e-3, z-space, tau = 300 t).", ""]
    for experiment, rows in summary.groupby("experiment", sort=False):
        lines += [f"## {experiment}", "",
                  "| solver | setting | " + " | ".join(h for h, _, _ in _COLUMNS) + " |",
                  "|---|---|" + "---|" * len(_COLUMNS)]
        for _, r in rows.iterrows():
            cells = [("n/a" if isinstance(r[k], float) and math.isnan(r[k]) else f"{r[k]:.{d}f}")
                     for _, k, d in _COLUMNS]
            lines.append(f"| {r.solver}{' *' if r.released else ''} | {r.setting} | "
                         + " | ".join(cells) + " |")
        best = best_fast(summary, experiment)
        if best:
            lines += ["", _summary_line("Closest fixed-step solve at <= 10 NFE (by RMS to the "
                                        "reference)", best)]
        cheap = cheapest_within(summary, experiment)
        lines += ["", _summary_line("Fastest fixed-step solve within 0.1 dB PSNR and 0.2 dB "
                                    "LR-PSNR of the released solve", cheap) if cheap else
                  "No fixed-step solve is within 0.1 dB PSNR and 0.2 dB LR-PSNR of the released "
                  "solve."]
        lines.append("")
    text = "\n".join(lines)
    atomic_write_text(f"{stem}.md", text)
    atomic_write_text(f"{stem}.html", html_page(text))
    return text
