"""Batch scoring throughput and peak memory on generated labelled parquet files of 1, 4 and 8
million rows (drift measured while scoring), and the CSV export of the largest.

A Kobe pipeline (logistic regression on the six numeric shot features, trained on the real
development file) is registered in a temporary workspace. The files resample the real production
file (3-point shots, so the features drift), outcome ``shot_made_flag`` included, in row groups of
500,000 rows. For each size and run, one child process:

1. studio: ``core.scoring.score`` on the file, as the Score page's job runs it: streamed batches
   of 250,000 rows, signature checks and coercion, prediction and probabilities, the output written
   under a temporary name and renamed, the labelled metrics (log loss, F1, AUC, ... and the
   confusion matrix chart), drift against the version's reference profile (KS, PSI, missing rates,
   prediction drift) logged on the run, and the output logged as an MLflow artifact (a copy);
   its peak resident memory is ``ru_maxrss`` of the child read when ``score`` returns (imports and
   the loaded model included);
2. baseline, afterwards in the same process: the six feature columns of the same rows read into
   one pandas DataFrame (not timed), then one call of the same pipeline's ``predict_proba`` on it,
   timed alone: no file reading, no checks, no output, no metrics, no drift, no MLflow; then the
   same call once more, printed beside it (the first call also pays the first allocation of its
   large arrays, which the repeated one reuses: on these files the repeated call is often 1.5-3x
   faster, so both ratios are shown).

The CSV export of the 8M output runs in a child of its own, whose peak comes from ``os.wait4``.
Training and file generation run in children too: Linux counts in a child's peak the peak of the
process that started it, so the parent stays small.

    .venv/bin/python benchmarks/scoring.py [--sizes 1,4,8] [--runs 3] [--no-export]

Targets (hardening item 7): peak memory for 8M rows within 1.2 times that for 1M rows, labels and
drift included; studio throughput at least 0.9 of the baseline at every size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import PROJECT_ROOT  # noqa: E402

KOBE = PROJECT_ROOT.parent / "shared" / "datasets" / "kobe"
FEATURES = ["lat", "lon", "minutes_remaining", "period", "playoffs", "shot_distance"]
TARGET = "shot_made_flag"


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` labelled shots resampled from the real production file, written in row groups
    (benchmarks/monitor.py writes its batches with it too)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pd.read_parquet(KOBE / "dataset_kobe_prod.parquet")[[*FEATURES, TARGET]]
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, 500_000):
        n = min(500_000, rows - start)
        block = source.iloc[rng.integers(0, len(source), n)].reset_index(drop=True)
        block["lat"] += rng.normal(0, 0.001, n)
        table = pa.Table.from_pandas(block, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def child_setup(workspace: str) -> None:
    """Train the Kobe pipeline and register it as kobe-bench@champion."""
    import pandas as pd

    from core import registry
    from core.settings import load_settings
    from core.training import TrainingSpec, train

    settings = load_settings({"STUDIO_WORKSPACE": workspace})
    result = train(settings, TrainingSpec(target=TARGET, features=tuple(FEATURES), algorithms=("lr",)),
                   pd.read_parquet(KOBE / "dataset_kobe_dev.parquet"), table_name="kobe dev", table_digest="0" * 64)
    registry.register(settings, result.models[0].run_id, "kobe-bench", alias="champion")
    print(json.dumps({"run_id": result.models[0].run_id}))


def child_generate(path: str, rows: str) -> None:
    generate(Path(path), int(rows))
    print(json.dumps({"rows": int(rows)}))


def child_score(workspace: str, path: str, keep: str) -> None:
    import resource

    import pandas as pd

    from core import scoring
    from core.settings import load_settings

    settings = load_settings({"STUDIO_WORKSPACE": workspace})
    model, pipeline = scoring.load_model(settings, "kobe-bench@champion")
    source = scoring.open_input(settings, Path(path))
    started = time.perf_counter()
    report = scoring.score(settings, model, pipeline, source, force=True)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if report.drift is None or report.metrics is None:
        raise SystemExit(f"drift or metrics missing: {report.messages}")
    if keep:
        os.replace(report.output, keep)
    else:
        Path(report.output).unlink()
    frame = pd.read_parquet(path, columns=FEATURES)  # the baseline's rows, in memory
    calls = []
    for _ in range(2):  # the first call also pays for its large arrays' first allocation; the second does not
        started = time.perf_counter()
        pipeline.predict_proba(frame)
        calls.append(time.perf_counter() - started)
    baseline, warm = calls
    print(json.dumps({"rows": report.rows, "seconds": seconds, "peak_mb": peak_mb, "baseline_seconds": baseline,
                      "warm_baseline_seconds": warm,
                      "baseline_rows": len(frame), "drift": report.drift["status"], "auc": report.metrics["auc"]}))


def child_export(source: str, destination: str) -> None:
    from core import scoring

    started = time.perf_counter()
    scoring.export(Path(source), Path(destination))
    print(json.dumps({"seconds": time.perf_counter() - started, "bytes": Path(destination).stat().st_size}))


def run_child(*args: str) -> tuple[dict, float]:
    """The child's JSON line and its peak resident memory in MB (``os.wait4`` reaps it).

    Linux counts in a child's peak the peak of the process it was started from (the memory image
    it replaced at exec), so this parent stays small: it imports nothing heavy and leaves training
    and file generation to children too."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, __file__, "--child", *args], cwd=PROJECT_ROOT, stdout=out, stderr=err,
                                   text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise SystemExit(err.read()[-3000:])
        return json.loads(out.read().strip().splitlines()[-1]), usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,8", help="millions of rows, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="runs per size")
    parser.add_argument("--no-export", action="store_true", help="skip the CSV export of the largest output")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        {"setup": child_setup, "generate": child_generate, "score": child_score, "export": child_export}[kind](*rest)
        return
    import resource

    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_child("setup", str(root / "ws"))
        peaks: dict[int, list[float]] = {}
        kept = root / "scored_largest.parquet"
        for millions in sizes:
            path = root / f"shots_{millions}m.parquet"
            run_child("generate", str(path), str(millions * 1_000_000))
            for run in range(1, args.runs + 1):
                keep = str(kept) if millions == max(sizes) and run == args.runs and not args.no_export else ""
                studio, _ = run_child("score", str(root / "ws"), str(path), keep)
                peaks.setdefault(millions, []).append(studio["peak_mb"])
                speed, base = studio["rows"] / studio["seconds"], studio["baseline_rows"] / studio["baseline_seconds"]
                ratio = speed / base
                warm = studio["baseline_rows"] / studio["warm_baseline_seconds"]
                print(f"{millions}M rows, run {run}: studio {speed:,.0f} rows/s ({studio['seconds']:.2f} s, peak "
                      f"{studio['peak_mb']:,.0f} MB, drift {studio['drift']}, AUC {studio['auc']:.3f}); baseline predict_proba "
                      f"in memory {base:,.0f} rows/s ({studio['baseline_seconds']:.2f} s); throughput ratio {ratio:.2f} "
                      f"({'met' if ratio >= 0.9 else 'NOT met'} >= 0.9); against the same call repeated "
                      f"({studio['warm_baseline_seconds']:.2f} s, its arrays already allocated once) {speed / warm:.2f}", flush=True)
            path.unlink()
            for folder in (root / "ws" / "mlartifacts").glob("*/*/artifacts/output"):  # the logged copies
                for f in folder.glob("*.parquet"):
                    f.unlink()
        if 1 in peaks and 8 in peaks:
            growth = max(peaks[8]) / max(peaks[1])
            print(f"peak memory 8M / 1M (highest run of each): {max(peaks[8]):,.0f} / {max(peaks[1]):,.0f} MB = {growth:.2f} "
                  f"({'met' if growth <= 1.2 else 'NOT met'} <= 1.2)", flush=True)
        if kept.is_file():
            for run in range(1, args.runs + 1):
                out, peak = run_child("export", str(kept), str(root / "export.csv"))
                print(f"CSV export of {max(sizes)}M scored rows, run {run}: {out['seconds']:.1f} s, {out['bytes'] / 1e6:,.0f} MB "
                      f"written, peak {peak:,.0f} MB", flush=True)
                (root / "export.csv").unlink()
        print(f"(this parent's own peak, a floor of every child's: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB)")


if __name__ == "__main__":
    main()
