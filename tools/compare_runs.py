"""Do two runs of one configuration agree within the spreads their tables print?

    python tools/compare_runs.py RUN_A/results/sample-photos/x4 RUN_B/results/sample-photos/x4

For every experiment and quality metric both runs measured (protocol ``--protocol``, default
paper): each run's mean ± its printed spread (the training-seed std when it has several
training seeds), the difference of the means, whether it is smaller than the larger of the two
printed spreads, and Welch's t-test between the two runs' training-seed replicates. Prints a
Markdown table and a one-line count; exits 0 (it reports, it does not judge).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from ecdp.tables import QUALITY, replicate_means, welch_p


def compare(a: Path, b: Path, protocol: str = "paper") -> pd.DataFrame:
    def load(results: Path) -> pd.DataFrame:
        path = results / "metrics" / "summary.csv"
        if not path.exists():
            raise SystemExit(f"{path}: not found (is {results} a results/<dataset>/x<scale> "
                             "folder?)")
        s = pd.read_csv(path)
        return s[s["protocol_name"] == protocol].set_index("experiment")

    sa, sb = load(a), load(b)
    rows = []
    for experiment in [e for e in sa.index if e in sb.index]:
        ra, rb = sa.loc[experiment], sb.loc[experiment]
        for m in QUALITY:
            ma, mb = ra.get(f"{m}_mean", math.nan), rb.get(f"{m}_mean", math.nan)
            if math.isnan(ma) or math.isnan(mb):
                continue
            spread = pd.Series([ra[f"{m}_std"], rb[f"{m}_std"]]).max()  # NaN when neither has one
            diff = abs(ma - mb)
            rows.append({"experiment": experiment, "metric": m, "a_mean": ma,
                         "a_std": ra[f"{m}_std"], "b_mean": mb, "b_std": rb[f"{m}_std"],
                         "abs_diff": diff, "spread": spread,
                         "within": bool(diff == 0 or diff < spread),  # NaN spread: False
                         "p_value": welch_p(replicate_means(ra.get(f"{m}_replicates", "")),
                                            replicate_means(rb.get(f"{m}_replicates", "")))})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--protocol", default="paper")
    args = ap.parse_args(argv)
    df = compare(args.a, args.b, args.protocol)
    print("| experiment | metric | run A | run B | abs. difference | larger spread | within "
          "| Welch p |")
    print("|---|---|---|---|---|---|---|---|")
    for r in df.itertuples():
        dec = 3 if r.metric in ("lpips", "ssim") else 2
        print(f"| {r.experiment} | {r.metric} | {r.a_mean:.{dec}f} ± {r.a_std:.{dec}f} | "
              f"{r.b_mean:.{dec}f} ± {r.b_std:.{dec}f} | {r.abs_diff:.{dec}f} | "
              f"{r.spread:.{dec}f} | {'yes' if r.within else 'NO'} | "
              f"{'' if math.isnan(r.p_value) else f'{r.p_value:.2f}'} |")
    print(f"\n{int(df['within'].sum())} of {len(df)} means differ by less than the larger printed "
          f"spread; {int((df['p_value'] < 0.05).sum())} of {int(df['p_value'].notna().sum())} "
          f"differ at p < 0.05 (Welch, replicates of the two runs).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
