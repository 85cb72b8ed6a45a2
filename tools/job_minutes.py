"""What a finished run cost, per rule, from its Snakemake log: jobs, job-minutes (the sum of each
job's start-to-finish wall time; with jobs side by side this exceeds the run's wall time) and the
run's wall time.

    python tools/job_minutes.py .snakemake/log/<the run's log>.snakemake.log

The README's **CPU budget** table compares two runs' outputs of this script.
"""
from __future__ import annotations

import argparse
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$")
_RULE = re.compile(r"^(?:local)?rule (\S+):$")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_DONE = re.compile(r"^Finished job(?:id:)? (\d+)")


def job_minutes(log: str | Path) -> tuple[dict[str, tuple[int, float]], float]:
    """rule -> (jobs, job-minutes), and the wall minutes from the first to the last stamp."""
    stamp = first = None
    rule = None
    started: dict[str, tuple[str, datetime]] = {}
    per_rule: dict[str, list[float]] = defaultdict(list)
    for line in Path(log).read_text().splitlines():
        if m := _STAMP.match(line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
            first = first or stamp
        elif m := _RULE.match(line):
            rule = m.group(1)
        elif (m := _JOBID.match(line)) and rule:
            started[m.group(1)] = (rule, stamp)
        elif (m := _DONE.match(line)) and m.group(1) in started:
            name, begin = started.pop(m.group(1))
            per_rule[name].append((stamp - begin).total_seconds() / 60)
    if first is None:
        raise SystemExit(f"{log}: no Snakemake time stamps (is it a .snakemake/log file?)")
    return ({r: (len(v), sum(v)) for r, v in per_rule.items()},
            (stamp - first).total_seconds() / 60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log")
    args = ap.parse_args()
    rules, wall = job_minutes(args.log)
    print(f"{'rule':<20} {'jobs':>5} {'job-min':>8}")
    for rule, (jobs, minutes) in sorted(rules.items(), key=lambda kv: -kv[1][1]):
        print(f"{rule:<20} {jobs:>5} {minutes:>8.1f}")
    total = sum(m for _, m in rules.values())
    print(f"{'total':<20} {sum(j for j, _ in rules.values()):>5} {total:>8.1f}")
    print(f"wall time {wall:.1f} min")


if __name__ == "__main__":
    main()
