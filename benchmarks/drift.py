"""Drift comparison speed: 1M reference x 1M current rows, 20 numeric and 5 categorical columns.

Fits the reference profile once (timed apart, as at training), then times the comparison alone.
Baseline, in the same run on the same data: a loop of ``scipy.stats.ks_2samp`` + a numpy PSI on
reference deciles + ``scipy.stats.chi2_contingency`` per column. Prints the ratio, and the peak
memory the comparison allocates (tracemalloc) relative to the size of the current data.

    .venv/bin/python benchmarks/drift.py [--rows 1000000]

Targets (issue 6, 2-core machine): comparison under 1.5 s, at least 5 times faster than the loop,
memory under 3 times the size of the current data.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import chi2_contingency, ks_2samp  # noqa: E402

from core import drift  # noqa: E402


def make(rows: int, seed: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {f"num_{i:02d}": rng.normal(shift * (i % 3), 1 + 0.1 * (i % 4), rows) for i in range(20)}
    levels = np.array([f"level_{k}" for k in range(12)])
    for j in range(5):
        weights = np.linspace(1, 2 + j + shift * 5, len(levels))
        data[f"cat_{j}"] = levels[rng.choice(len(levels), rows, p=weights / weights.sum())]
    frame = pd.DataFrame(data)
    frame.iloc[rng.integers(0, rows, rows // 100), 0] = np.nan  # a few missing values
    return frame


def baseline(reference: pd.DataFrame, current: pd.DataFrame) -> float:
    started = time.perf_counter()
    for column in reference.columns:
        if column.startswith("num"):
            r, c = reference[column].dropna().to_numpy(), current[column].dropna().to_numpy()
            ks_2samp(r, c)
            cuts = np.quantile(r, np.arange(1, 10) / 10)
            rp = np.maximum(np.bincount(np.digitize(r, cuts), minlength=10) / len(r), 1e-4)
            cp = np.maximum(np.bincount(np.digitize(c, cuts), minlength=10) / len(c), 1e-4)
            np.sum((cp - rp) * np.log(cp / rp))
        else:
            table = pd.concat([reference[column].value_counts(), current[column].value_counts()], axis=1).fillna(0).T.to_numpy()
            chi2_contingency(table)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    reference, current = make(args.rows, 1, 0.0), make(args.rows, 2, 0.05)

    started = time.perf_counter()
    profile = drift.fit_profile(reference)
    fit_seconds = time.perf_counter() - started

    runs = []
    for _ in range(3):
        started = time.perf_counter()
        report = drift.compare(profile, current)
        runs.append(time.perf_counter() - started)
    tracemalloc.start()
    drift.compare(profile, current)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    data_bytes = current.memory_usage(deep=True).sum()
    loop = baseline(reference, current)
    best = min(runs)

    print(f"profile fit (once, at training):      {fit_seconds:.2f} s")
    print(f"comparison, {args.rows:,} x {args.rows:,} rows, 25 columns: best {best:.2f} s ({', '.join(f'{r:.2f}' for r in runs)})")
    print(f"baseline loop (ks_2samp + numpy PSI + chi2_contingency): {loop:.2f} s")
    print(f"speed-up: {loop / best:.1f}x; memory allocated at peak: {peak / 2**20:,.0f} MB = {peak / data_bytes:.2f} x the current data "
          f"({data_bytes / 2**20:,.0f} MB)")
    print(f"drifted features found: {report.summary['drifted']} of {report.summary['features']}")
    print(f"targets: under 1.5 s {'met' if best < 1.5 else 'NOT met'}; 5x faster {'met' if loop / best >= 5 else 'NOT met'}; "
          f"memory under 3x {'met' if peak / data_bytes < 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
