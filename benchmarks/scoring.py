"""Batch scoring throughput and peak memory on generated parquet files of 1, 4 and 8 million rows.

A Kobe pipeline (logistic regression on the six numeric shot features, trained on the real
development file) is registered in a temporary workspace. For each size, in separate processes:
- baseline: the whole table already in memory, one call of the same pipeline's ``predict_proba``;
- studio: ``core.scoring.score`` on the file: streamed batches, signature checks, output written
  and renamed, the MLflow run with the output logged as an artifact.
Each process reports its own peak resident memory (ru_maxrss).

    .venv/bin/python benchmarks/scoring.py [--sizes 1,4,8]

Targets (issue 5): studio throughput at least 0.8 of the baseline; peak memory for 8M rows within
1.2 times that for 1M rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import PROJECT_ROOT  # noqa: E402

KOBE = PROJECT_ROOT.parent / "shared" / "datasets" / "kobe"
FEATURES = ["lat", "lon", "minutes_remaining", "period", "playoffs", "shot_distance"]


def generate(path: Path, rows: int) -> None:
    """``rows`` shots resampled from the real production file, written in row groups."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pd.read_parquet(KOBE / "dataset_kobe_prod.parquet")[FEATURES]
    rng = np.random.default_rng(0)
    writer = None
    for start in range(0, rows, 500_000):
        n = min(500_000, rows - start)
        block = source.iloc[rng.integers(0, len(source), n)].reset_index(drop=True)
        block["lat"] += rng.normal(0, 0.001, n)
        table = pa.Table.from_pandas(block, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def child(mode: str, workspace: str, path: str) -> None:
    import resource
    import time

    import pandas as pd

    from core import scoring
    from core.settings import load_settings

    settings = load_settings({"STUDIO_WORKSPACE": workspace})
    model, pipeline = scoring.load_model(settings, "kobe-bench@champion")
    if mode == "baseline":
        frame = pd.read_parquet(path)
        started = time.perf_counter()
        pipeline.predict_proba(frame[FEATURES])
        seconds = time.perf_counter() - started
        rows = len(frame)
    else:
        source = scoring.open_input(settings, Path(path))
        started = time.perf_counter()
        report = scoring.score(settings, model, pipeline, source, force=True)
        seconds = time.perf_counter() - started
        rows = report.rows
        Path(report.output).unlink()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_mb": peak_mb}))


def run_child(mode: str, workspace: Path, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(workspace), str(path)], cwd=PROJECT_ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,8", help="millions of rows, comma-separated")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    import pandas as pd

    from core import registry
    from core.settings import load_settings
    from core.training import TrainingSpec, train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = load_settings({"STUDIO_WORKSPACE": str(root / "ws")})
        result = train(settings, TrainingSpec(target="shot_made_flag", features=tuple(FEATURES), algorithms=("lr",)),
                       pd.read_parquet(KOBE / "dataset_kobe_dev.parquet"), table_name="kobe dev", table_digest="0" * 64)
        registry.register(settings, result.models[0].run_id, "kobe-bench", alias="champion")
        peaks = {}
        for millions in [int(s) for s in args.sizes.split(",")]:
            path = root / f"shots_{millions}m.parquet"
            generate(path, millions * 1_000_000)
            base = run_child("baseline", root / "ws", path)
            studio = run_child("studio", root / "ws", path)
            peaks[millions] = studio["peak_mb"]
            ratio = (studio["rows"] / studio["seconds"]) / (base["rows"] / base["seconds"])
            print(f"{millions}M rows: baseline predict_proba in memory {base['rows'] / base['seconds']:,.0f} rows/s "
                  f"(peak {base['peak_mb']:,.0f} MB); studio scoring {studio['rows'] / studio['seconds']:,.0f} rows/s "
                  f"in {studio['seconds']:.1f} s (peak {studio['peak_mb']:,.0f} MB); throughput ratio {ratio:.2f} "
                  f"({'met' if ratio >= 0.8 else 'NOT met'} >= 0.8)", flush=True)
            path.unlink()
        if 1 in peaks and 8 in peaks:
            growth = peaks[8] / peaks[1]
            print(f"peak memory 8M / 1M: {growth:.2f} ({'met' if growth <= 1.2 else 'NOT met'} <= 1.2)")


if __name__ == "__main__":
    main()
