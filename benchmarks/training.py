"""Wall time of the default training job on the real Kobe data, and MLflow logging time per model.

Default job: logistic regression + decision tree, 5-fold CV, full MLflow logging (params, CV and
holdout metrics, plots, reference sample, lineage, the pipeline model with signature), on
``../shared/datasets/kobe/dataset_kobe_dev.parquet`` (target shot_made_flag, six numeric features).

Baseline, in the same process: the same two estimators in plain scikit-learn (5-fold
``cross_validate`` + fit + holdout predictions), no PyCaret, no MLflow. The ratio shows what the
studio's preprocessing pipeline and recording cost on top of the learning itself.

    .venv/bin/python benchmarks/training.py

Targets (issue 3, 2-core machine): whole job under 30 s; under 1 s of MLflow logging per model.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402

from core.settings import PROJECT_ROOT, load_settings  # noqa: E402

KOBE_DEV = PROJECT_ROOT.parent / "shared" / "datasets" / "kobe" / "dataset_kobe_dev.parquet"
FEATURES = ("lat", "lon", "minutes_remaining", "period", "playoffs", "shot_distance")


def baseline(frame: pd.DataFrame) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split
    from sklearn.tree import DecisionTreeClassifier

    started = time.perf_counter()
    data = frame.dropna(subset=["shot_made_flag"])
    X, y = data[list(FEATURES)], data["shot_made_flag"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=42)
    for model in (LogisticRegression(max_iter=1000), DecisionTreeClassifier(max_depth=6, min_samples_leaf=20)):
        cross_validate(model, X_train, y_train, cv=StratifiedKFold(5, shuffle=True, random_state=42),
                       scoring=["accuracy", "roc_auc", "f1", "precision", "recall"])
        model.fit(X_train, y_train).predict_proba(X_test)
    return time.perf_counter() - started


def main() -> None:
    frame = pd.read_parquet(KOBE_DEV)
    base = [baseline(frame) for _ in range(3)]

    started = time.perf_counter()
    import pycaret.classification  # noqa: F401
    import_seconds = time.perf_counter() - started
    from core.training import TrainingSpec, train

    spec = TrainingSpec(target="shot_made_flag", features=FEATURES, algorithms=("lr", "dt"), folds=5)
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"STUDIO_WORKSPACE": tmp})
        timings = []
        for _ in range(3):  # the first run also creates the new sqlite store's tables
            started = time.perf_counter()
            result = train(settings, spec, frame, table_name="kobe dev", table_digest="0" * 64)
            timings.append((time.perf_counter() - started, result))
    with tempfile.TemporaryDirectory() as tmp:  # the user's view: the CLI on a fresh workspace
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "core", "train", "--data", str(KOBE_DEV), "--target", "shot_made_flag",
                              "--features", ",".join(FEATURES)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             env={**__import__("os").environ, "STUDIO_WORKSPACE": tmp})
        cli_seconds = time.perf_counter() - started
        assert out.returncode == 0, out.stderr[-2000:]

    warm = [t for t, _ in timings[1:]]
    print(f"baseline (scikit-learn only, no MLflow):    median {statistics.median(base):.2f} s")
    print(f"import PyCaret (cold, once per process):    {import_seconds:.2f} s")
    print(f"studio job, new sqlite store:               {timings[0][0]:.2f} s")
    print(f"studio job, existing store:                 median {statistics.median(warm):.2f} s "
          f"(ratio to baseline {statistics.median(warm) / statistics.median(base):.1f}x)")
    print(f"whole CLI job on a fresh workspace:         {cli_seconds:.2f} s (process start, imports, store, training, logging)")
    for _, result in timings[1:2]:
        for m in result.models:
            print(f"  {m.algorithm}: training {m.training_seconds:.2f} s, MLflow logging {m.logging_seconds:.2f} s, "
                  f"log loss {m.metrics['log_loss']:.4f}, F1 {m.metrics['f1']:.3f}")
    worst_logging = max(m.logging_seconds for _, r in timings[1:] for m in r.models)
    print(f"targets: whole job under 30 s: {'met' if cli_seconds < 30 else 'NOT met'}; "
          f"logging under 1 s per model: {'met' if worst_logging < 1 else 'NOT met'} (worst {worst_logging:.2f} s)")


if __name__ == "__main__":
    main()
