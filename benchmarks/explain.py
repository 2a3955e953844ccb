"""Explanation speed on Kobe: one prediction (what the Predict page asks) and 10,000 rows of a file.

Trains a logistic regression (linear explainer), a LightGBM model (tree explainer) and a naive Bayes
model (permutation explainer, for reference) on the Kobe development file (the six numeric shot
features and combined_shot_type, which is one-hot encoded), registers them in a temporary
workspace and loads them the verified way (core.scoring.load_model).

Timed, several runs each, in this process:
- one prediction: ``explain.background`` (the training rows, read once per run and then cached)
  plus ``explain.explain_rows`` on one production shot: the pipeline's steps on the row and on the
  background, the SHAP explainer built and run, the contributions summed back to the input columns.
  The import of shap (once per process) is timed apart, in a fresh interpreter; so is each model's
  first explanation in this process (the permutation explainer compiles SHAP's numba code then).
- 10,000 rows of a file (Kobe production shots drawn with replacement, written as parquet): what
  ``python -m core explain`` does after loading the model: read the rows, explain them, write the
  contributions.

Baseline, in the same process on the same rows: the same pipeline's ``predict_proba`` (the score
that is being explained). Prints seconds and the ratio to the baseline.

    .venv/bin/python benchmarks/explain.py [--runs 5] [--big-runs 3] [--rows 10000]

Target (issue 18): one explanation under 1 s for the tree and the linear model on Kobe.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

KOBE = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "kobe"
FEATURES = ("lat", "lon", "minutes_remaining", "period", "playoffs", "shot_distance", "combined_shot_type")


def timed(call, runs: int) -> tuple[list[float], object]:
    seconds, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def shown(seconds: list[float]) -> str:
    return f"median {statistics.median(seconds):.4f} s (min {min(seconds):.4f}, max {max(seconds):.4f}, {len(seconds)} runs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of the one-prediction timings")
    parser.add_argument("--big-runs", type=int, default=3, help="runs of the many-rows timings")
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    from core import explain, registry, scoring
    from core.settings import load_settings
    from core.training import TrainingSpec, train

    folder = tempfile.TemporaryDirectory(prefix="bench-explain-")
    root = Path(folder.name)
    settings = load_settings({"STUDIO_WORKSPACE": str(root / "ws"), "STUDIO_DATA_DIR": str(root / "data")})
    started = time.perf_counter()
    result = train(settings, TrainingSpec(target="shot_made_flag", features=FEATURES, algorithms=("lr", "lightgbm", "nb"), folds=2),
                   pd.read_parquet(KOBE / "dataset_kobe_dev.parquet"), table_name="kobe dev", table_digest="d" * 64)
    for m in result.models:
        registry.register(settings, m.run_id, f"kobe-{m.algorithm}", alias="champion")
    print(f"set-up: trained and registered {len(result.models)} Kobe models in {time.perf_counter() - started:.1f} s (not timed below)")

    production = pd.read_parquet(KOBE / "dataset_kobe_prod.parquet")
    one = production.head(1)
    many = production.sample(args.rows, replace=True, random_state=0).reset_index(drop=True)
    source = root / "data" / "shots.parquet"
    source.parent.mkdir(parents=True, exist_ok=True)
    many.to_parquet(source, index=False)

    # shap's import, in a fresh interpreter that has already imported what loading a model imports
    cold = subprocess.run([sys.executable, "-c", "import time, pandas, sklearn, lightgbm, mlflow.sklearn\n"
                           "started = time.perf_counter()\nimport shap\nprint(time.perf_counter() - started)"],
                          capture_output=True, text=True, check=True)
    print(f"import shap (once per process, after pandas, sklearn, lightgbm and mlflow): {float(cold.stdout.split()[-1]):.2f} s")
    import shap  # noqa: F401

    print(f"\none prediction ({len(FEATURES)} input columns), target under 1 s:")
    for name in ("kobe-lr", "kobe-lightgbm", "kobe-nb"):
        model, pipeline = scoring.load_model(settings, f"{name}@champion")
        features = list(model.features)
        explain.background(settings, model, pipeline)  # first read of the training rows (cached from here on)

        def page(model=model, pipeline=pipeline):
            return explain.explain_rows(model, pipeline, one, explain.background(settings, model, pipeline))

        first, _ = timed(page, 1)  # the permutation explainer's first call compiles SHAP's numba code
        explained, e = timed(page, args.runs)
        predicted, _ = timed(lambda pipeline=pipeline, features=features: pipeline.predict_proba(one[features]), args.runs)
        ratio = statistics.median(explained) / statistics.median(predicted)
        print(f"  {name:14s} {e.explainer:11s} explain {shown(explained)}; the process's first call {first[0]:.3f} s")
        print(f"  {'':14s} {'':11s} baseline predict_proba {shown(predicted)}; explain / baseline = {ratio:.0f}x; "
              f"every call under 1 s: {'yes' if max(explained + first) < 1 else 'no'}")
        print(f"  {'':14s} {'':11s} e.g. {explain.sentences(e, 0, top=1)[0]}")

    print(f"\n{args.rows:,} rows of a file (read, explain, write parquet; model already loaded):")
    for name in ("kobe-lr", "kobe-lightgbm"):
        model, pipeline = scoring.load_model(settings, f"{name}@champion")
        features = list(model.features)

        def cli(model=model, pipeline=pipeline):
            frame, _ = explain.read_rows(settings, model, source, args.rows)
            e = explain.explain_rows(model, pipeline, frame, explain.background(settings, model, pipeline))
            explain.write(e, root / "out.parquet")
            return e

        explained, e = timed(cli, args.big_runs)
        predicted, _ = timed(lambda pipeline=pipeline, features=features: pipeline.predict_proba(many[features]), args.big_runs)
        ratio = statistics.median(explained) / statistics.median(predicted)
        per_row = statistics.median(explained) / args.rows * 1000
        print(f"  {name:14s} {e.explainer:11s} explain {shown(explained)}, {per_row:.2f} ms a row, "
              f"background {e.background_rows} rows")
        print(f"  {'':14s} {'':11s} baseline predict_proba {shown(predicted)}; explain / baseline = {ratio:.0f}x")
    folder.cleanup()


if __name__ == "__main__":
    main()
