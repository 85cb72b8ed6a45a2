"""The paper's figures, drawn with matplotlib from files the workflow computed.

- ``denoised_predictions`` (Figure 5): the one-step x_0 prediction of each parametrization at
  several noise levels, from the same x_t.
- ``validation_curves`` (Figure 8): validation PSNR during stage-1 training per parametrization.
- ``quality_vs_cost``: PSNR (and LPIPS when measured) against seconds per image and NFE.
- ``crop_grid``: the same crop of one test image from every method, beside LR and HR.
- ``sampling_curves``: the sampling study (``ecdp.study``): quality and distance to the
  reference against NFE and seconds, one line per solver, the released dopri5 solve marked.
"""
from __future__ import annotations

import io
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from .data.io import atomic_write_bytes  # noqa: E402
from .evaluate import to_tensor, to_uint8  # noqa: E402
from .rng import randn_like  # noqa: E402

__all__ = ["denoised_predictions", "validation_curves", "quality_vs_cost", "crop_grid",
           "sampling_curves", "save_figure"]


def save_figure(fig, path: str | os.PathLike) -> None:
    """Write a PNG atomically (a crash never leaves a half-written figure)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


@torch.no_grad()
def denoised_predictions(models: dict, lr: torch.Tensor, hr: torch.Tensor, levels: list[float],
                         generator: torch.Generator) -> tuple[plt.Figure, dict]:
    """Rows: x_t and each model's x_0 prediction; columns: noise levels t. All models see the
    same x_t (same eps) at each t. Returns (figure, {name: [PSNR of the prediction per t]})."""
    from .metrics import PAPER, psnr

    names = list(models)
    first = models[names[0]]
    mu = first.condition(lr)[0]
    feats = {name: model.condition(lr)[1] for name, model in models.items()}
    eps = [randn_like(hr, generator) for _ in levels]
    fig, axes = plt.subplots(len(names) + 1, len(levels), squeeze=False,
                             figsize=(2.2 * len(levels), 2.2 * (len(names) + 1)))
    scores = {name: [] for name in names}
    for j, (t_value, e) in enumerate(zip(levels, eps)):
        t = torch.full((hr.shape[0],), float(t_value))
        x_t = first.sde.perturb(hr, mu, t, e)
        axes[0, j].imshow(to_uint8(x_t.clamp(0, 1)))
        axes[0, j].set_title(f"x_t, t={t_value:g}", fontsize=8)
        for i, name in enumerate(names, start=1):
            model = models[name]
            x0 = model.denoise(x_t, t, mu, feats[name]).clamp(0, 1)
            scores[name].append(float(psnr(x0, hr, protocol=PAPER).mean()))
            axes[i, j].imshow(to_uint8(x0))
            axes[i, j].set_title(f"{name}: {scores[name][-1]:.2f} dB", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("Figure 5: one-step denoised prediction x̂_0(x_t) of each parametrization's "
                 "stage-1 model from the same x_t (title: PSNR to the HR, dB)", fontsize=9)
    fig.tight_layout()
    return fig, scores


def validation_curves(histories: dict[str, list], metric: str = "psnr", *,
                      title: str = "") -> plt.Figure:
    """histories: name -> stage-1 validation records [{"step", metric, ...}], or a list of
    them (one per training seed: the mean is drawn, the std over seeds as a band)."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, runs in histories.items():
        runs = [r for r in (runs if runs and isinstance(runs[0], list) else [runs]) if r]
        if not runs:
            continue
        steps = [r["step"] for r in runs[0]]
        values = np.array([[r[metric] for r in records] for records in runs])
        label = name if len(runs) == 1 else f"{name} (mean ± std, {len(runs)} seeds)"
        line, = ax.plot(steps, values.mean(0), marker="o", label=label)
        if len(runs) > 1:
            std = values.std(0, ddof=1)
            ax.fill_between(steps, values.mean(0) - std, values.mean(0) + std,
                            color=line.get_color(), alpha=0.2)
    steps = sorted({r["step"] for runs in histories.values() for records in
                    (runs if runs and isinstance(runs[0], list) else [runs]) for r in records})
    if 0 < len(steps) <= 12:
        ax.set_xticks(steps)  # the validated steps themselves
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("stage-1 training step")
    ax.set_ylabel(f"validation {metric.upper()} (dB)" if metric == "psnr"
                  else f"validation {metric.upper()}")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(title="parametrization", fontsize=8)
    return fig


MARKERS = "osD^v<>pPX*h"


def log_axis(ax, values, axis: str = "x") -> None:
    """A log axis whose labels stay legible over any range of ``values``: ticks at 1, 2 and 5
    per decade (1 only beyond two decades) written as plain numbers, no minor labels
    (matplotlib labels the minor ticks of a narrow log range, which then overlap)."""
    from matplotlib import ticker

    getattr(ax, f"set_{axis}scale")("log")
    values = [float(v) for v in values if v and v > 0]
    decades = math.log10(max(values) / min(values)) if values else 0
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(ticker.LogLocator(
        base=10, subs=(1.0,) if decades > 2 else (1.0, 2.0, 5.0), numticks=12))
    target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(ticker.NullFormatter())


def quality_vs_cost(summary: pd.DataFrame, timing: pd.DataFrame, *, protocol: str = "paper",
                    labels: dict[str, str] | None = None) -> plt.Figure:
    """Quality (rows: PSNR, LPIPS if measured) against s/image and NFE (columns); one marker
    per experiment, named in the legend (labels, not keys), the device on the time axis."""
    quality = summary[summary["protocol_name"] == protocol].set_index("experiment")
    data = timing.set_index("experiment")[["seconds", "nfe"]].join(quality, how="inner")
    metrics = ["psnr_mean"] + (["lpips_mean"] if data["lpips_mean"].notna().any() else [])
    first = timing.iloc[0]
    device = f"{first['device']}, LR {first['lr_size']}" if "device" in timing else ""
    fig, axes = plt.subplots(len(metrics), 2, squeeze=False, figsize=(9, 3.3 * len(metrics)))
    for i, metric in enumerate(metrics):
        for j, cost in enumerate(["seconds", "nfe"]):
            ax = axes[i, j]
            for k, (name, row) in enumerate(data.iterrows()):
                ax.errorbar(row[cost], row[metric], yerr=row.get(metric.replace("_mean", "_std")),
                            fmt=MARKERS[k % len(MARKERS)], ms=7, capsize=3,
                            label=(labels or {}).get(name, name))
            if (data[cost] > 0).all():
                log_axis(ax, data[cost])
            ax.set_xlabel(f"seconds per image ({device})" if cost == "seconds"
                          else "network evaluations per image (NFE)")
            unit = " (dB)" if metric == "psnr_mean" else ""
            ax.set_ylabel(metric.removesuffix("_mean").upper() + unit)
            ax.grid(alpha=0.3)
    axes[0, 1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    trains = int(data["n_train_seeds"].max()) if "n_train_seeds" in data else 1
    spread = f"std over {trains} training seeds" if trains > 1 else "std over sample seeds"
    fig.suptitle(f"Quality against inference cost ({protocol} protocol; error bars: {spread})",
                 fontsize=9)
    fig.tight_layout()
    return fig


def crop_grid(images: dict[str, np.ndarray], box: tuple[int, int, int], *,
              title: str = "") -> plt.Figure:
    """images: label -> HxWx3 uint8 (all HR size, LR is upsampled by the caller), the HR under
    "HR"; box: (top, left, size) of the crop. Each panel but HR shows its crop's PSNR to the
    HR crop (dB, RGB)."""
    from .metrics import PAPER, psnr

    top, left, size = box
    crops = {label: image[top:top + size, left:left + size] for label, image in images.items()}
    reference = to_tensor(crops["HR"])
    n = len(crops)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(2.2 * cols, 2.4 * rows))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, crop) in zip(axes.flat, crops.items()):
        ax.imshow(crop, interpolation="nearest")
        if label != "HR":
            label += f"\n{float(psnr(to_tensor(crop), reference, protocol=PAPER)):.2f} dB"
        ax.set_title(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def sampling_curves(summary: pd.DataFrame) -> plt.Figure:
    """Rows: study experiments; columns: PSNR, LR-PSNR and RMS to the reference against NFE,
    and PSNR against seconds per image. One line per solver (dopri5 over its tolerances); the
    released dopri5 solve is the star."""
    experiments = list(dict.fromkeys(summary.experiment))
    panels = [("nfe", "psnr", "PSNR (dB)"), ("nfe", "lr_psnr", "LR-PSNR (dB)"),
              ("nfe", "rms_to_reference", "RMS to reference"), ("seconds", "psnr", "PSNR (dB)")]
    device = summary.device.iloc[0]
    fig, axes = plt.subplots(len(experiments), len(panels), squeeze=False,
                             figsize=(4 * len(panels), 3.2 * len(experiments)))
    for i, experiment in enumerate(experiments):
        rows = summary[summary.experiment == experiment]
        for j, (x, y, label) in enumerate(panels):
            ax = axes[i, j]
            for solver, line in rows.groupby("solver", sort=False):
                line = line.sort_values(x)
                ax.plot(line[x], line[y], marker="o", ms=3, label=solver)
            released = rows[rows.released]
            ax.plot(released[x], released[y], "k*", ms=12, label="released dopri5 (1e-3)")
            log_axis(ax, rows[x])
            if y == "rms_to_reference":
                ax.set_yscale("log")
            ax.set_xlabel("network evaluations (NFE)" if x == "nfe"
                          else f"seconds per image ({device})")
            ax.set_ylabel(label)
            ax.set_title(experiment, fontsize=9)
            ax.grid(alpha=0.3, which="both")
        axes[i, 0].legend(fontsize=7)
    fig.suptitle("Sampling study: every solver on the same prior draws (paper protocol)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def frontier_figure(summary: pd.DataFrame) -> plt.Figure:
    """The efficiency frontier: PSNR and LR-PSNR against NFE and against seconds per image,
    RMS to each method's reference against NFE. Colour: method; marker and line style: solver;
    the tabled sampling of each method a star; error bars: the training seeds' spread."""
    experiments = list(dict.fromkeys(summary.experiment))
    solvers = list(dict.fromkeys(summary[~summary.released].solver))
    colours = dict(zip(experiments, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    styles = dict(zip(solvers, [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"),
                                ("v", "-"), ("P", "--")]))
    panels = [("nfe", "psnr", "PSNR (dB)"), ("seconds", "psnr", "PSNR (dB)"),
              ("nfe", "lr_psnr", "LR-PSNR (dB)"), ("nfe", "rms_to_reference",
                                                   "RMS to reference solve")]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    for ax, (x, y, label) in zip(axes.flat, panels):
        for experiment in experiments:
            rows = summary[summary.experiment == experiment]
            for solver in solvers:
                line = rows[(rows.solver == solver) & ~rows.released].sort_values(x)
                if line.empty:
                    continue
                marker, style = styles.get(solver, ("o", "-"))
                ax.errorbar(line[x], line[y], yerr=line[f"{y}_std"].fillna(0), marker=marker,
                            ls=style, ms=4, lw=1.2, capsize=2, color=colours[experiment],
                            label=f"{experiment} {solver}")
            tabled = rows[rows.released]
            ax.plot(tabled[x], tabled[y], "*", ms=14, color=colours[experiment],
                    markeredgecolor="k", label=f"{experiment} as tabled "
                    f"({tabled.setting.iloc[0] if len(tabled) else ''})")
        log_axis(ax, summary[x])
        if y == "rms_to_reference":
            ax.set_yscale("log")
        ax.set_xlabel("network evaluations (NFE)" if x == "nfe"
                      else f"seconds per image ({summary.device.iloc[0]})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=7,
               frameon=False)
    fig.suptitle("Efficiency frontier: every diffusion method under every solver, same start "
                 "draws (paper protocol)", fontsize=10)
    rows_of_legend = math.ceil(len(labels) / min(5, len(labels) or 1))
    fig.tight_layout(rect=(0, 0.035 * rows_of_legend, 1, 0.97))
    return fig
