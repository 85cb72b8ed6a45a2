"""Paper tables: each cell is the reproduced value beside the paper's, with the training budget.

Input is the aggregated summary CSV (``ecdp.evaluate.summarize``) and the paper's numbers
(``workflow/reference/paper.yaml``). Output: a tidy long CSV (one row per method and metric),
Markdown and LaTeX. A missing value is never a blank cell: it says why, in a footnote.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import pandas as pd

from .data.io import atomic_write_text
from .metrics import QUALITY

__all__ = ["METRIC_FORMATS", "QUALITY", "build_table", "describe", "orderings",
           "replicate_means", "timing_extra", "welch_p", "write_table"]

METRIC_FORMATS = {  # name: (header with its unit, decimals)
    "lpips": ("LPIPS↓", 3), "psnr": ("PSNR↑ (dB)", 2), "ssim": ("SSIM↑", 3),
    "lr_psnr": ("LR-PSNR↑ (dB)", 2), "params_m": ("#Params (M)", 2),
    "seconds": ("s/image↓", 3), "nfe": ("NFE", 0), "peak_mib": ("peak memory (MiB)", 0),
}
TIMING_METRICS = ("seconds", "nfe", "peak_mib")  # Table 3's, from the timing rule
# What a table's header says for its metrics (only those it shows).
METRIC_NOTES = {
    "lpips": "LPIPS: AlexNet, lpips 0.1, inputs in [-1, 1]",
    "psnr": "PSNR in dB, under the protocol above",
    "lr_psnr": "LR-PSNR: PSNR of the MATLAB-bicubic-downsampled output against the LR input, dB",
}


def _fmt(value, decimals: int, std=None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = f"{value:.{decimals}f}"
    if std is not None and not math.isnan(std) and std > 0:
        text += f" ± {std:.{decimals}f}"
    return text


def build_table(summary: pd.DataFrame, reference: dict, *, rows: dict[str, str],
                metrics: list[str], protocol: str = "paper",
                extra: dict[str, dict] | None = None,
                reference_rows: dict[str, str] | None = None,
                compare_to: str | None = None) -> pd.DataFrame:
    """Long table: one row per (experiment, metric) with reproduced, paper and a note.

    rows: experiment -> label, in display order. extra: experiment -> {metric: value} for
    columns that do not come from evaluation (e.g. parameter counts). reference_rows:
    experiment -> the paper row it reproduces (default: the experiment's own name).
    compare_to: the row every other is tested against (``mark_significance``).
    """
    summary = summary[summary["protocol_name"] == protocol].set_index("experiment")
    paper_rows = reference.get("rows", {})
    out = []
    for experiment, label in rows.items():
        for metric in metrics:
            note = ""
            std = None
            replicates, sample_std = "", float("nan")
            if extra and metric in extra.get(experiment, {}):
                value = extra[experiment][metric]
                if isinstance(value, str):  # not measurable here: the reason
                    value, note = float("nan"), value
            elif experiment not in summary.index:
                value, note = float("nan"), "not run in this configuration"
            elif f"{metric}_mean" not in summary.columns:
                value, note = float("nan"), f"{metric} not measured"
            else:
                row = summary.loc[experiment]
                value, std = float(row[f"{metric}_mean"]), float(row[f"{metric}_std"])
                replicates = str(row.get(f"{metric}_replicates", ""))
                sample_std = float(row.get(f"{metric}_sample_std", float("nan")))
                if metric == "lpips" and math.isnan(value):
                    note = f"LPIPS {row['lpips_weights']}"
            paper = paper_rows.get((reference_rows or {}).get(experiment, experiment),
                                   {}).get(metric)
            budget = (summary.loc[experiment, "budget"] if experiment in summary.index
                      else "none")
            out.append({"experiment": experiment, "label": label, "metric": metric,
                        "reproduced": value, "reproduced_std": std, "paper": paper,
                        "paper_note": "" if paper is not None else "not reported in the paper",
                        "note": note, "protocol": protocol, "budget": budget,
                        "replicates": replicates, "reproduced_sample_std": sample_std,
                        "paper_table": reference.get("caption", "")})
    return mark_significance(pd.DataFrame(out), compare_to)




def replicate_means(text) -> list[float]:
    """The training-seed means a summary's ``_replicates`` column joins by ";"."""
    return [float(v) for v in str(text).split(";") if v not in ("", "nan")]


def welch_p(a: list[float], b: list[float]) -> float:
    """Welch's t-test between two sets of replicates; a one-sample test when one side has a
    single (deterministic) value; NaN when neither has two, or the replicates are identical."""
    from scipy import stats

    with warnings.catch_warnings():  # identical replicates: scipy warns and returns NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        if len(a) >= 2 and len(b) >= 2:
            return float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        if len(a) >= 2 and len(b) == 1:
            return float(stats.ttest_1samp(a, b[0]).pvalue)
        if len(b) >= 2 and len(a) == 1:
            return float(stats.ttest_1samp(b, a[0]).pvalue)
    return float("nan")


def mark_significance(long: pd.DataFrame, compare_to: str | None, *,
                      alpha: float = 0.05) -> pd.DataFrame:
    """Each row's quality metrics against row ``compare_to`` over the training-seed
    replicates: Welch's t-test (one-sample against a row with a single, deterministic value);
    ``significance`` "*" (p < alpha), "≈" (within noise) or "" (fewer than 2 replicates)."""
    long = long.assign(significance="", p_value=float("nan"))
    if compare_to is None or compare_to not in set(long["experiment"]):
        return long
    ref = long[long["experiment"] == compare_to].set_index("metric")["replicates"]
    for i, r in long.iterrows():
        if r["metric"] not in QUALITY or r["experiment"] == compare_to:
            continue
        p = welch_p(replicate_means(r["replicates"]),
                    replicate_means(ref.get(r["metric"], "")))
        if not math.isnan(p):
            long.loc[i, "p_value"] = p
            long.loc[i, "significance"] = "*" if p < alpha else "≈"
    return long


def orderings(long: pd.DataFrame, *, alpha: float = 0.05) -> list[str]:
    """One line per quality metric: the rows best first, each neighbour pair joined by ">" when
    Welch's t-test over their training-seed replicates gives p < ``alpha``, else by "≈" (which
    orderings a reader may draw). Only rows with a value; none without replicates to test."""
    lines = []
    for metric in [m for m in dict.fromkeys(long["metric"]) if m in QUALITY]:
        rows = long[(long["metric"] == metric) & long["reproduced"].notna()]
        rows = rows.sort_values("reproduced", ascending=metric == "lpips", kind="stable")
        reps = [replicate_means(r) for r in rows["replicates"]]
        if len(rows) < 2 or max(len(r) for r in reps) < 2:
            continue
        text = rows["label"].iloc[0]
        for i in range(1, len(rows)):
            p = welch_p(reps[i - 1], reps[i])  # NaN (untestable) joins by "≈"
            text += (" > " if p < alpha else " ≈ ") + rows["label"].iloc[i]
        lines.append(f"Ordering by {METRIC_FORMATS[metric][0]}, best first (\">\": neighbours "
                     f"differ at p < {alpha:g}, Welch's t-test over training seeds; \"≈\": "
                     f"within noise): {text}.")
    return lines


def timing_extra(timing: pd.DataFrame) -> dict[str, dict]:
    """experiment -> {seconds, nfe, peak_mib} from the timing rule's summary CSV. Peak memory
    is a device-memory peak only on CUDA; on a CPU it says why it is not given."""
    out = {}
    for _, row in timing.iterrows():
        values = {m: float(row[m]) for m in TIMING_METRICS}
        if str(row.get("device", "")).startswith("cpu"):
            values["peak_mib"] = ("CPU run: no device-memory peak (the process's RSS growth, "
                                  "in timing/summary.csv, is not comparable)")
        out[row["experiment"]] = values
    return out


def describe(summary: pd.DataFrame, experiments: list[str], metrics: list[str], *,
             protocol: str, timing: pd.DataFrame | None = None,
             compare_to: str | None = None) -> list[str]:
    """The lines above a table: region, images, seeds, what ± is, units, and for timing the
    device and LR size the seconds were measured on."""
    rows = summary[(summary["protocol_name"] == protocol)
                   & summary["experiment"].isin(experiments)]
    lines = []
    if len(rows) and set(metrics) - set(TIMING_METRICS) - {"params_m"}:
        regions = "; ".join(dict.fromkeys(rows["region"])) if "region" in rows else "not recorded"
        images = "/".join(str(n) for n in dict.fromkeys(rows["n_images"]))
        seeds = max(int(n) for n in rows["n_sample_seeds"])
        trains = max(int(n) for n in rows["n_train_seeds"]) if "n_train_seeds" in rows else 1
        lines.append(f"Evaluated on {images} test images, region: {regions}.")
        if "sampled_on" in rows:
            places = "; ".join(str(p) for p in dict.fromkeys(rows["sampled_on"].dropna()))
            lines.append(f"Sampled on {places or 'not recorded'} (per job).")
        if trains > 1:
            lines.append(
                f"Values are means over images, {seeds} sample seed{'s' * (seeds > 1)} "
                f"(stochastic methods) and {trains} training seeds (trained methods); ± is the "
                f"standard deviation (ddof 1) over the training seeds of their means " + (
                    "(the sample-seed spread is the CSV's reproduced_sample_std)." if seeds > 1
                    else "(one sample seed per model, evaluation.sample_seeds 1: the sample-seed "
                    "spread is not measured; it is part of the training-seed spread)."))
            if compare_to:
                lines.append(
                    f"* differs from {compare_to} at p < 0.05, ≈ does not (Welch's t-test over "
                    f"the training-seed means; a one-sample test against a deterministic row).")
        else:
            lines.append(f"Values are means over images; ± is the standard deviation over "
                         f"{seeds} sample seeds of the per-seed means (stochastic methods; "
                         f"deterministic ones run once), not over trainings: each model was "
                         f"trained once.")
    lines += [METRIC_NOTES[m] + "." for m in metrics if m in METRIC_NOTES]
    if "lpips" in metrics and "lpips_weights" in rows:
        used = "; ".join(str(w) for w in dict.fromkeys(rows["lpips_weights"].dropna()))
        lines.append(f"LPIPS weights: {used or 'not recorded'}.")
    if timing is not None and len(timing):
        t = timing[timing["experiment"].isin(experiments)].iloc[0]
        lines.append(f"Timing: {t['device']} ({t['device_name']}, {int(t['threads'])} threads), "
                     f"one LR image of {t['lr_size']} px, batch {int(t['batch'])}, median of "
                     f"{int(t['repeats'])} runs after {int(t['warmup'])} warm-up; the paper's "
                     f"seconds are one GPU on full-size DIV2K (LR about 510x339): compare "
                     f"ratios between rows, not seconds.")
    return lines


def _wide(long: pd.DataFrame) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, body rows and footnotes for the human-readable renderings."""
    notes: list[str] = []

    def mark(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f"[{notes.index(text) + 1}]"

    metrics = list(dict.fromkeys(long["metric"]))
    header = ["Method"]
    for m in metrics:
        header += [METRIC_FORMATS[m][0], "paper"]
    header.append("Training budget")
    body = []
    for experiment, group in long.groupby("experiment", sort=False):
        group = group.set_index("metric")
        cells = [group["label"].iloc[0]]
        for m in metrics:
            r = group.loc[m]
            dec = METRIC_FORMATS[m][1]
            std = r["reproduced_std"] if r["reproduced_std"] is not None else None
            text = _fmt(r["reproduced"], dec, std) or f"n/a {mark(r['note'] or 'not available')}"
            cells.append(text + (f" {r['significance']}" if r.get("significance") else ""))
            cells.append(_fmt(r["paper"], dec) or f"— {mark(r['paper_note'])}")
        cells.append(str(group["budget"].iloc[0]))
        body.append(cells)
    return header, body, notes


def _markdown(long: pd.DataFrame, title: str, description: list[str]) -> str:
    header, body, notes = _wide(long)
    reference = long["paper_table"].iloc[0] or "none"
    lines = [f"# {title}", "",
             f"Protocol: {long['protocol'].iloc[0]}. Reference: {reference}.", *description,
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += [""] + [f"[{i + 1}] {n}" for i, n in enumerate(notes)]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                 ("#", r"\#"), ("±", r"$\pm$"), ("↓", r"$\downarrow$"), ("↑", r"$\uparrow$"),
                 ("—", "---"), ("≈", r"$\approx$")):
        text = text.replace(a, b)
    return text


def _latex(long: pd.DataFrame, title: str, description: list[str]) -> str:
    header, body, notes = _wide(long)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_escape(title)}}}",
             r"\begin{tabular}{l" + "r" * (len(header) - 2) + "l}", r"\toprule",
             " & ".join(_latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_escape(c) for c in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [r"\par\footnotesize " + _latex_escape(n) for n in description]
    lines += [r"\par\footnotesize " + _latex_escape(f"[{i + 1}] {n}") for i, n in enumerate(notes)]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def html_page(markdown_text: str) -> str:
    """A Markdown table page as standalone HTML (Python-Markdown's tables extension): what
    Snakemake's report shows inline, where a .md file is only a download."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    title = markdown_text.splitlines()[0].lstrip("# ") if markdown_text else ""
    style = ("body{font-family:sans-serif;font-size:14px} table{border-collapse:collapse} "
             "th,td{border:1px solid #ccc;padding:3px 8px} th{background:#f2f2f2}")
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{style}</style></head><body>\n{body}\n</body></html>\n")


def write_table(long: pd.DataFrame, stem: str | os.PathLike, *, title: str,
                description: list[str] = ()) -> None:
    """Write ``stem``.csv, .md, .tex and .html (each atomically); ``description``
    (``describe``) goes under the title."""
    stem = Path(stem)
    text = _markdown(long, title, list(description))
    atomic_write_text(stem.with_suffix(".csv"), long.to_csv(index=False))
    atomic_write_text(stem.with_suffix(".md"), text)
    atomic_write_text(stem.with_suffix(".html"), html_page(text))
    atomic_write_text(stem.with_suffix(".tex"), _latex(long, title, list(description)))
