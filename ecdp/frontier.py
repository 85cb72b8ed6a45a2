"""The efficiency frontier: every diffusion method under every fast solver, side by side.

For each evaluation image one start draw (the image's seed-0 generator, as ``super_resolve``:
ECDP's prior, a DDPM's x_T) is solved by the method's tight reference (dopri5 at
``reference_tolerance`` on its own probability flow: ECDP's conditional VP-SDE, a DDPM's
``DiscreteVP`` with the denoising step), by the method's tabled sampling (the experiment's
``sampling:``: the release's dopri5 for ECDP, the ancestral chain for SRDiff and SR3), and by
every solver at every NFE budget it can meet. Each solve is scored like the evaluation (paper
protocol: PSNR, SSIM, LPIPS when its weights are there, LR-PSNR), timed (one run, wall clock,
synchronised on CUDA) and measured against the reference (RMS in [0, 1] pixel units).

    rows = run_frontier(sampled, "results/.../lr/test.json", specs=frontier_grid(...))
    summary = summarize_frontier(rows)         # over images, then over training seeds
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
from .samplers import DEFAULT_GRID, RELEASED_SAMPLING
from .sampling import Sampled, Sampling, parse_sampling
from .tables import html_page, welch_p

__all__ = ["frontier_grid", "solver_entry", "solver_label", "run_frontier",
           "summarize_frontier", "write_frontier_table", "FRONTIER_METRICS", "at_equal_nfe"]

FRONTIER_METRICS = ("psnr", "lr_psnr", "ssim", "lpips", "seconds", "nfe", "rms_to_reference",
                    "rms_to_tabled")
QUALITY = {"psnr": ("PSNR", True), "lr_psnr": ("LR-PSNR", True), "ssim": ("SSIM", True),
           "lpips": ("LPIPS", False)}  # name, higher is better


def solver_entry(entry: str | dict) -> dict:
    """A frontier solver: a name (on its default grid) or {solver, grid}."""
    return {"solver": entry} if isinstance(entry, str) else dict(entry)


def solver_label(sampling: Sampling) -> str:
    """A frontier line's name: the solver, with its grid where one was named."""
    grid = sampling.options_dict().get("grid")
    return f"{sampling.solver} ({grid})" if grid else sampling.solver


def _steps(options: dict) -> int:
    """A fixed budget's solver steps: the denoising step is an evaluation but no step."""
    return options["nfe"] - 1 if options.get("denoise") else options["nfe"]


def frontier_grid(family: str, *, solvers: list, nfe: list[int],
                  where: str = "frontier") -> list[Sampling]:
    """Every solver (a name, or {solver, grid}) at every budget it can meet, as ``Sampling``
    values of ``family`` (a DDPM's budgets include its final denoising step). Solves that
    are the same whatever the grid appear once: the prediction from the prior (NFE 1 with the
    denoising step) for every solver, and one step from t = 1 to t_end on a named grid."""
    grid, seen_one = [], False
    named = {e for e in solvers if isinstance(e, str)}
    for entry in solvers:
        entry = solver_entry(entry)
        for n in nfe:
            try:
                sampling = parse_sampling({**entry, "nfe": n}, family=family,
                                          where=f"{where}.{entry['solver']}")
            except ValueError:  # a budget the solver cannot meet (dpm_solver_3 below 3)
                continue
            options = sampling.options_dict()
            if n == 1 and options.get("denoise"):
                if seen_one:  # the prediction from the prior: the same for every solver
                    continue
                seen_one = True
            if "grid" in entry and _steps(options) == 1 and entry["solver"] in named:
                continue  # one step has no inner time: the default grid's line has it
            grid.append(sampling)
    return grid


def _describe(sampled: Sampled) -> str:
    sampling, options = sampled.value, sampled.value.options_dict()
    if sampling.solver == "ancestral":
        steps = sampled.sampling["steps"]
        whole = " (the whole chain)" if steps == sampled.model.schedule.steps else ""
        return f"ancestral, {steps} steps{whole}"
    if sampling.adaptive:
        return f"{sampling.solver} tol {options.get('rtol', RELEASED_SAMPLING['rtol']):g}"
    if "nfe" not in options:
        return str(sampling.record())
    if options["nfe"] == 1 and options.get("denoise"):
        return "NFE 1, the prediction from the prior"
    if _steps(options) == 1:  # no inner time: no grid to name
        return f"NFE {options['nfe']}, one step"
    grid = options.get("grid", DEFAULT_GRID.get(sampling.solver))
    return f"NFE {options['nfe']}" + (f", {grid} grid" if grid else "")


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run_frontier(model, family: str, pairs_manifest: str | os.PathLike, *,
                 specs: list[Sampling], tabled: Sampling, reference_tolerance: float = 1e-5,
                 lpips_weights: dict | None = None, limit: int | None = None, seed: int = 0,
                 experiment: str = "ecdp", train_seed: int = 0, teacher=None,
                 progress: bool = True) -> pd.DataFrame:
    """One row per (image, sampling) for a trained diffusion ``model`` (its device): the
    ``tabled`` sampling first (``released`` True), then ``specs``; every solve from the same
    start draw, measured against the reference solve from it (``rms_to_reference``) and
    against the tabled solve (``rms_to_tabled``). A distilled student passes ``teacher``
    (its teacher model and the teacher's solve it was trained on): both distances are then to
    the teacher's solves from the same draw, the student's own flow meaning nothing."""
    base, pairs = load_pairs(pairs_manifest)
    scale = pairs["scale"]
    device = next(model.parameters()).device
    lpips_model, lpips_status = load_lpips(lpips_weights or {"status": "unavailable",
                                                             "reason": "no weights given"})
    tight = parse_sampling({"solver": "dopri5", "rtol": reference_tolerance,
                            "atol": reference_tolerance}, family=family,
                           where="frontier.reference")
    reference = Sampled(teacher[0] if teacher else model, tight)
    against = Sampled(*teacher) if teacher else None  # the tabled solve to measure against
    runs = [(Sampled(model, tabled), True)] + [(Sampled(model, s), False) for s in specs]
    entries = pairs["pairs"][:limit]
    rows = []
    bar = tqdm(total=len(entries) * (len(runs) + 1), desc=f"frontier {experiment} "
               f"train{train_seed}", disable=not progress)
    with torch.no_grad():
        for pair in entries:
            lr_u8, hr_u8 = read_pair(base, pair)
            lr, hr = to_tensor(lr_u8, device), to_tensor(hr_u8, device)

            def start():  # the same start draw (and chain noise) for every solve
                return image_generator(seed, pair["name"], device=device)

            ref, ref_nfe = reference.super_resolve(lr, generator=start(), image=pair["name"])
            tabled_sr = (against.super_resolve(lr, generator=start(), image=pair["name"])[0]
                         if against is not None else None)
            bar.update()
            for sampled, released in runs:
                _sync(device)
                begin = time.perf_counter()
                sr, nfe = sampled.super_resolve(lr, generator=start(), image=pair["name"])
                _sync(device)
                seconds = time.perf_counter() - begin
                if tabled_sr is None and released:
                    tabled_sr = sr
                rows.append({
                    "experiment": experiment, "train_seed": train_seed, "image": pair["name"],
                    "solver": solver_label(sampled.value), "setting": _describe(sampled),
                    "released": released, "nfe": int(nfe), "seconds": seconds,
                    **quality(sr, hr, lr, scale=scale, protocol=PAPER,
                              lpips_model=lpips_model),
                    "rms_to_reference": float((sr - ref).pow(2).mean().sqrt()),
                    "rms_to_tabled": float((sr - tabled_sr).pow(2).mean().sqrt()),
                    "reference": (f"{'the teacher' + chr(39) + 's ' if teacher else ''}dopri5 "
                                  f"tol {reference_tolerance:g} ({ref_nfe} NFE)"),
                    "sampling": str(sampled.sampling), "lpips_weights": lpips_status,
                    "device": str(device), "threads": torch.get_num_threads(),
                    "lr_size": list(lr.shape[-2:]), "protocol": "paper"})
                bar.update()
    bar.close()
    return pd.DataFrame(rows)


def summarize_frontier(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (experiment, solver, setting): the mean over images for each training seed, then
    the mean over seeds with the seeds' standard deviation (``<metric>_std``, NaN for one
    seed) and their means joined by ";" (``<metric>_replicates``, for Welch's t-test)."""
    keys = ["experiment", "solver", "setting"]
    per_seed = rows.groupby(keys + ["train_seed"], sort=False)[list(FRONTIER_METRICS)].mean()
    per_seed = per_seed.reset_index()
    grouped = per_seed.groupby(keys, sort=False)
    out = grouped[list(FRONTIER_METRICS)].mean()
    for metric in FRONTIER_METRICS:
        out[f"{metric}_std"] = grouped[metric].std(ddof=1)
    for metric in QUALITY:
        out[f"{metric}_replicates"] = grouped[metric].agg(
            lambda v: ";".join(f"{x:.6f}" for x in v))
    first = rows.groupby(keys, sort=False)[["released", "reference", "sampling",
                                            "lpips_weights", "device", "threads"]].first()
    counts = pd.concat([rows.groupby(keys, sort=False)["image"].nunique().rename("n_images"),
                        grouped["train_seed"].nunique().rename("n_train_seeds")], axis=1)
    return pd.concat([out, first, counts], axis=1).reset_index()


def at_equal_nfe(summary: pd.DataFrame, nfe: int, *, alpha: float = 0.05) -> list[str]:
    """At exactly ``nfe`` evaluations, each method's best solver (by PSNR) and, per quality
    metric, the methods best first, neighbours joined by ">" (Welch's t-test over training
    seeds, p < alpha), "≈" (within noise) or "?" (untestable: fewer than two seeds)."""
    rows = summary[(summary.nfe == nfe) & ~summary.released]
    if rows.empty:
        return [f"No solve at exactly {nfe} NFE."]
    best = rows.loc[rows.groupby("experiment", sort=False)["psnr"].idxmax()]
    lines = ["At " + f"{nfe} NFE, each method's best solver: " + "; ".join(
        f"{r.experiment} {r.solver}" for r in best.itertuples()) + "."]
    for metric, (name, higher) in QUALITY.items():
        if best[metric].isna().all():
            continue
        ordered = best.sort_values(metric, ascending=not higher, kind="stable")
        text = f"{ordered.experiment.iloc[0]} {ordered[metric].iloc[0]:.3f}"
        for i in range(1, len(ordered)):
            p = welch_p(_reps(ordered.iloc[i - 1], metric), _reps(ordered.iloc[i], metric))
            mark = "?" if math.isnan(p) else (">" if p < alpha else "≈")
            text += f" {mark} {ordered.experiment.iloc[i]} {ordered[metric].iloc[i]:.3f}"
        lines.append(f"{name}: {text}")
    return lines


def _reps(row, metric) -> list[float]:
    return [float(v) for v in str(row[f"{metric}_replicates"]).split(";") if v not in ("", "nan")]


_COLUMNS = [("NFE", "nfe", 1), ("s/image", "seconds", 3), ("PSNR", "psnr", 2),
            ("LR-PSNR", "lr_psnr", 2), ("SSIM", "ssim", 3), ("LPIPS", "lpips", 3),
            ("RMS to reference", "rms_to_reference", 4), ("RMS to tabled", "rms_to_tabled", 4)]


def _cell(row, key: str, decimals: int) -> str:
    value = row[key]
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    std = row.get(f"{key}_std")
    spread = (f" ± {std:.{decimals}f}" if key in QUALITY and std is not None
              and not math.isnan(std) else "")
    return f"{value:.{decimals}f}{spread}"


def write_frontier_table(summary: pd.DataFrame, stem: str | os.PathLike, *, title: str,
                         compare_nfe: int = 10, provenance: list[str] = ()) -> str:
    """``stem``.csv (the summary), ``stem``.md and its .html: one block per method (its
    tabled sampling marked `*`), then the line comparing the methods at ``compare_nfe``."""
    atomic_write_text(f"{stem}.csv", summary.to_csv(index=False))
    first = summary.iloc[0]
    seeds = sorted(set(summary.n_train_seeds))
    lines = [f"# {title}", "", *provenance,
             f"Paper protocol (RGB, 8-bit), mean over {int(first.n_images)} image(s), one start "
             f"draw each (seed 0), then over {'/'.join(str(s) for s in seeds)} training "
             f"seed(s) (± their standard deviation where more than one); seconds: one run per "
             f"solve on {first.device} ({int(first.threads)} threads); RMS in [0, 1] pixel "
             f"units to the method's own reference solve from the same draw (a student: its "
             f"teacher's) and to its tabled solve (a student: its teacher's); LPIPS: "
             f"{first.lpips_weights}. `*` = the sampling the method's table rows use. A DDPM's "
             "fast solves run on its chain's continuous-time schedule (DPM-Solver's "
             "interpolation) and end with the denoising step, counted in the NFE.", ""]
    for experiment, rows in summary.groupby("experiment", sort=False):
        lines += [f"## {experiment}", "", f"Reference: {rows.reference.iloc[0]}.", "",
                  "| solver | setting | " + " | ".join(h for h, _, _ in _COLUMNS) + " |",
                  "|---|---|" + "---|" * len(_COLUMNS)]
        for _, r in rows.iterrows():
            lines.append(f"| {r.solver}{' *' if r.released else ''} | {r.setting} | "
                         + " | ".join(_cell(r, k, d) for _, k, d in _COLUMNS) + " |")
        lines.append("")
    lines += ["## At equal NFE", "", *[f"- {line}" for line in at_equal_nfe(summary,
                                                                            compare_nfe)], ""]
    text = "\n".join(lines)
    atomic_write_text(f"{stem}.md", text)
    atomic_write_text(f"{stem}.html", html_page(text))
    return text
