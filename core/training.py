"""TrainingSpec -> checked data -> PyCaret experiment -> logged MLflow runs.

``prepare`` checks everything a person can get wrong and raises a :class:`BadInputError` before
any MLflow run starts. ``train`` then records one parent run (the data-preparation facts) and one
child run per model (hyperparameters, CV and holdout metrics, plots, the whole preprocessing +
estimator pipeline as an MLflow model, the training table's lineage and the reference sample that
drift monitoring builds on). A model that fails marks its own run FAILED and the others go on.
PyCaret and MLflow are imported only here, inside the functions that need them.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import catalog, drift, evaluation
from core.catalog import CLASSIFICATION, REGRESSION
from core.datasets import ColumnKind, profile_column
from core.errors import BadInputError, JobCancelled  # noqa: F401 (JobCancelled: part of this module's API)
from core.settings import PROJECT_ROOT, Settings

EXPERIMENT = "studio-training"
MAX_CATEGORIES = 1_000  # a categorical column with more distinct values is left out
REFERENCE_MAX_ROWS = 200_000  # rows of the training data kept with each model for drift monitoring
# What the logged model needs to load elsewhere; pinned from requirements.txt, so MLflow does not
# spend ~14 s inferring them in a subprocess on every log_model (issue 3).
MODEL_PACKAGES = ("mlflow", "pycaret", "scikit-learn", "pandas", "numpy", "scipy", "cloudpickle",
                  "lightgbm", "category-encoders", "joblib", "pyarrow")

Progress = Callable[[str, "str | None", int, int], None]


@dataclass(frozen=True)
class TrainingSpec:
    target: str
    task: str | None = None  # None: inferred from the target
    features: tuple[str, ...] | None = None  # None: every usable column
    algorithms: tuple[str, ...] = ()  # () : the task's defaults (lr, dt)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"dt": {"max_depth": 5}}
    test_size: float = 0.2
    folds: int = 5
    seed: int = 42
    tune_iterations: int = 0  # 0: no tuning; else random-search iterations per tuned algorithm
    tune_metric: str | None = None
    tuned: tuple[str, ...] | None = None  # which algorithms to tune; None: all of them
    compare: bool = False
    compare_budget_minutes: float | None = None
    register_name: str | None = None
    register_alias: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["features"] = list(self.features) if self.features is not None else None
        data["algorithms"] = list(self.algorithms)
        data["tuned"] = list(self.tuned) if self.tuned is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSpec:
        data = dict(data)
        if data.get("features") is not None:
            data["features"] = tuple(data["features"])
        data["algorithms"] = tuple(data.get("algorithms") or ())
        if data.get("tuned") is not None:
            data["tuned"] = tuple(data["tuned"])
        return cls(**data)


@dataclass(frozen=True)
class PreparedData:
    task: str
    target: str
    features: tuple[str, ...]
    excluded: dict[str, str]  # column -> why it was left out
    classes: tuple[Any, ...]  # sorted class labels; () for regression
    train: pd.DataFrame  # features + target
    test: pd.DataFrame
    rows_total: int
    rows_dropped: int  # rows without a target
    algorithms: tuple[str, ...]
    params: dict[str, dict[str, Any]]  # every hyperparameter of every algorithm, checked
    tune_metric: str | None
    notes: tuple[str, ...] = ()
    tuned: tuple[str, ...] = ()  # algorithms that get a random search


@dataclass
class ModelResult:
    algorithm: str
    name: str
    run_id: str | None = None
    model_uri: str | None = None
    status: str = "RUNNING"  # FINISHED or FAILED
    metrics: dict[str, float] = field(default_factory=dict)  # holdout
    cv_metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    logging_seconds: float = 0.0
    training_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm, "name": self.name, "run_id": self.run_id, "model_uri": self.model_uri,
            "status": self.status, "metrics": _clean(self.metrics), "cv_metrics": _clean(self.cv_metrics),
            "error": self.error,
        }


@dataclass
class TrainingResult:
    parent_run_id: str
    experiment_id: str
    task: str
    target: str
    models: list[ModelResult]
    registered: dict[str, Any] | None = None
    leaderboard: list[dict[str, Any]] | None = None  # compare mode: every algorithm ranked by CV
    notes: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """The JSON the CLI prints and the job stores."""
        return {
            "parent_run_id": self.parent_run_id, "experiment_id": self.experiment_id, "task": self.task,
            "target": self.target, "models": [m.summary() for m in self.models], "registered": self.registered,
            "leaderboard": self.leaderboard, "notes": list(self.notes),
        }

    def best(self) -> ModelResult | None:
        return best_model(self.task, self.models)


def best_model(task: str, models: list[ModelResult]) -> ModelResult | None:
    metric, lower = evaluation.PRIMARY_METRIC[task]
    finished = [m for m in models if m.status == "FINISHED" and m.model_uri]
    if not finished:
        return None

    def key(m: ModelResult) -> float:
        value = m.metrics.get(metric, math.nan)
        if math.isnan(value):  # no probabilities (linear SVM): ranked after the others by F1
            return math.inf
        return value if lower else -value

    return min(finished, key=key)


# --- preparing the data -----------------------------------------------------------------------


def infer_task(target: pd.Series) -> str:
    """Regression for a numeric target with many distinct values, else classification."""
    values = target.dropna()
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        return CLASSIFICATION
    distinct = values.nunique()
    integral = bool(np.all(np.asarray(values, dtype=float) == np.round(np.asarray(values, dtype=float))))
    if distinct <= 2 or (integral and distinct <= 20):
        return CLASSIFICATION
    return REGRESSION


_OUTCOME_NAME = re.compile(r"(target|label|outcome|class|flag|churn|default|result|^y$)", re.IGNORECASE)


def suggest_target(frame: pd.DataFrame) -> str | None:
    """A column that looks like the outcome to predict: named like one (target, label, outcome,
    class, flag, churn, default, result, y) and holding 2 to 20 distinct values. Only a suggestion:
    the user picks the target."""
    for column in frame.columns:
        if _OUTCOME_NAME.search(str(column)) and 2 <= frame[column].nunique(dropna=True) <= 20:
            return str(column)
    return None


def default_features(frame: pd.DataFrame, target: str) -> tuple[list[str], dict[str, str]]:
    """Every column but the target that can help a model; the others with the reason."""
    features, excluded = [], {}
    for column in frame.columns:
        if column == target:
            continue
        reason = unusable_reason(frame[column], explicit=False)
        if reason:
            excluded[column] = reason
        else:
            features.append(column)
    return features, excluded


def unusable_reason(series: pd.Series, *, explicit: bool) -> str | None:
    """Why a column is left out of the features, or None. Explicitly chosen columns are left out
    only when they cannot work at all (all missing, constant, free text, far too many categories)."""
    profile = profile_column(series)
    if profile.all_missing:
        return "every value is missing"
    if profile.constant:
        return "it has the same value in every row, so it cannot tell rows apart"
    if profile.kind is ColumnKind.TEXT:
        return f"it is free text ({profile.distinct:,} different values); the studio does not learn from text yet"
    if profile.kind is ColumnKind.CATEGORICAL and profile.distinct > MAX_CATEGORIES:
        return f"it has {profile.distinct:,} categories, too many to learn from (at most {MAX_CATEGORIES:,})"
    if profile.kind is ColumnKind.DATETIME:
        return "it holds dates; the studio leaves dates out (derive e.g. a month column to use them)"
    if not explicit and profile.kind is ColumnKind.ID:
        return "it looks like an identifier (a label for each row), which does not generalise"
    return None


def prepare(frame: pd.DataFrame, spec: TrainingSpec) -> PreparedData:
    """Check the spec against the table and split it; every refusal names what to change."""
    from sklearn.model_selection import train_test_split

    columns = list(frame.columns)
    if spec.target not in columns:
        raise BadInputError(f"The target column '{spec.target}' is not in the table. Columns: {_list(columns)}.")
    target = frame[spec.target]
    if target.isna().all():
        raise BadInputError(f"The target '{spec.target}' is missing in every row. Choose a column that holds what you want to predict.")
    target_kind = profile_column(target).kind
    if target_kind is ColumnKind.ID:
        raise BadInputError(
            f"The target '{spec.target}' looks like an identifier (a different value in nearly every row). "
            "Choose the column that holds the outcome you want to predict."
        )
    task = catalog.check_task(spec.task) if spec.task else infer_task(target)
    if not 0.05 <= spec.test_size <= 0.5:
        raise BadInputError(f"The test size must be between 5% and 50%; got {spec.test_size:.0%}.")
    if not 2 <= spec.folds <= 20:
        raise BadInputError(f"The number of CV folds must be from 2 to 20; got {spec.folds}.")

    notes = []
    labelled = frame[target.notna()].reset_index(drop=True)
    dropped = len(frame) - len(labelled)
    if dropped:
        notes.append(f"{dropped:,} rows without a value in '{spec.target}' were left out ({len(labelled):,} rows remain).")

    if task == REGRESSION and not pd.api.types.is_numeric_dtype(labelled[spec.target]):
        raise BadInputError(f"Regression needs a numeric target; '{spec.target}' holds text. Choose classification instead.")

    # features
    if spec.features is None:
        features, excluded = default_features(labelled, spec.target)
    else:
        unknown = [c for c in spec.features if c not in columns]
        if unknown:
            raise BadInputError(f"These features are not in the table: {_list(unknown)}. Columns: {_list(columns)}.")
        features, excluded = [], {}
        for column in dict.fromkeys(spec.features):
            if column == spec.target:
                raise BadInputError(f"The target '{spec.target}' cannot also be a feature. Remove it from the features.")
            reason = unusable_reason(labelled[column], explicit=True)
            if reason:
                excluded[column] = reason
            else:
                features.append(column)
    for column, reason in excluded.items():
        if spec.features is not None:
            notes.append(f"'{column}' was left out: {reason}.")
    if not features:
        raise BadInputError("No usable feature is left. Choose at least one column with information besides the target.")

    # classes and sizes
    classes: tuple[Any, ...] = ()
    n = len(labelled)
    n_train = n - math.ceil(n * spec.test_size)
    if task == CLASSIFICATION:
        counts = labelled[spec.target].value_counts()
        if len(counts) < 2:
            raise BadInputError(
                f"The target '{spec.target}' has only one class ({_v(counts.index[0])}) once missing values are left out. "
                "A classifier needs at least two; choose another target or add rows of the other class."
            )
        if len(counts) > 50:
            raise BadInputError(
                f"The target '{spec.target}' has {len(counts)} classes, too many for classification. "
                "If it is a number to predict, choose regression."
            )
        single = [c for c, k in counts.items() if k < 2]
        if single:
            raise BadInputError(
                f"In '{spec.target}', class {_list(map(_v, single))} has a single row; a stratified split needs at least 2 rows "
                "per class. Remove those rows or merge the class with another, then try again."
            )
        smallest_class, smallest = counts.index[-1], int(counts.iloc[-1])
        if smallest * (1 - spec.test_size) < spec.folds:
            raise BadInputError(
                f"Class {_v(smallest_class)} of '{spec.target}' has {smallest} rows, too few for {spec.folds}-fold "
                f"cross-validation after the {spec.test_size:.0%} test split. Use fewer folds (at most "
                f"{max(2, int(smallest * (1 - spec.test_size)))}) or more data."
            )
        classes = tuple(sorted(counts.index.tolist()))
    if n_train < max(spec.folds, 2) or n - n_train < 1:
        raise BadInputError(
            f"Only {n:,} rows have a target: too few for a {spec.test_size:.0%} test split and {spec.folds} CV folds. "
            f"Use fewer folds (at least 2) or more data."
        )

    # algorithms and hyperparameters: all checked before any run starts
    keys = spec.algorithms or catalog.DEFAULT_ALGORITHMS[task]
    if spec.compare and not spec.algorithms:
        keys = tuple(a.key for a in catalog.algorithms(task))
    params = {}
    for key in dict.fromkeys(keys):
        algorithm = catalog.get(task, key)
        params[algorithm.key] = algorithm.validate(spec.params.get(algorithm.key, {}))
    extra = set(spec.params) - set(params)
    if extra:
        raise BadInputError(f"Hyperparameters were given for {_list(sorted(extra))}, which is not among the chosen algorithms ({_list(params)}).")
    tune_metric = catalog.check_tune_metric(task, spec.tune_metric) if (spec.tune_iterations or spec.compare) else None
    if spec.tune_iterations < 0 or spec.tune_iterations > 1000:
        raise BadInputError(f"Tuning iterations must be from 0 to 1000; got {spec.tune_iterations}.")
    tuned = tuple(params) if spec.tune_iterations and spec.tuned is None else tuple(spec.tuned or ())
    if set(tuned) - set(params):
        raise BadInputError(f"Only chosen algorithms can be tuned; {_list(sorted(set(tuned) - set(params)))} is not chosen.")

    data = labelled[features + [spec.target]]
    stratify = data[spec.target] if task == CLASSIFICATION else None
    train_df, test_df = train_test_split(data, test_size=spec.test_size, random_state=spec.seed, stratify=stratify)
    return PreparedData(
        task=task, target=spec.target, features=tuple(features), excluded=excluded, classes=classes,
        train=train_df.reset_index(drop=True), test=test_df.reset_index(drop=True), rows_total=len(frame),
        rows_dropped=dropped, algorithms=tuple(params), params=params, tune_metric=tune_metric, notes=tuple(notes),
        tuned=tuned if spec.tune_iterations else (),
    )


# --- training and logging ---------------------------------------------------------------------


def _pinned_requirements() -> list[str]:
    pins = {}
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            pins[name.lower()] = f"{name}=={version}"
    return [pins[p] for p in MODEL_PACKAGES if p in pins]


def _experiment(task: str, settings: Settings):
    # PyCaret opens ./logs.log at import unless told otherwise: keep its log in the workspace.
    settings.workspace.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYCARET_CUSTOM_LOGGING_PATH", str(settings.workspace / "pycaret.log"))
    os.environ.setdefault("PYCARET_CUSTOM_LOGGING_LEVEL", "WARNING")
    if task == CLASSIFICATION:
        from pycaret.classification import ClassificationExperiment

        return ClassificationExperiment()
    from pycaret.regression import RegressionExperiment

    return RegressionExperiment()


def _cv_metrics(cv: pd.DataFrame) -> dict[str, float]:
    """PyCaret's CV table (folds, then Mean and Std rows) -> ``cv_<metric>_mean`` / ``_std``."""
    names = {"Accuracy": "accuracy", "AUC": "auc", "Recall": "recall", "Prec.": "precision", "F1": "f1", "Kappa": "kappa",
             "MCC": "mcc", "MAE": "mae", "MSE": "mse", "RMSE": "rmse", "R2": "r2", "RMSLE": "rmsle", "MAPE": "mape"}
    result = {}
    for column, name in names.items():
        if column in cv.columns:
            for row, suffix in (("Mean", "mean"), ("Std", "std")):
                if row in cv.index:
                    value = float(cv.loc[row, column])
                    if math.isfinite(value):
                        result[f"cv_{name}_{suffix}"] = value
    return result


def _importance(pipeline, estimator, test: pd.DataFrame, features: tuple[str, ...], target: str) -> pd.Series:
    """The estimator's own importances (trees) or |coefficients| (linear models) on the transformed
    columns; else permutation importance on up to 2,000 holdout rows, on the original columns."""
    try:
        transformed = pipeline[:-1].transform(test[list(features)].head(5))
        names = [str(c) for c in transformed.columns]
        if hasattr(estimator, "feature_importances_"):
            values = np.asarray(estimator.feature_importances_, dtype=float)
        elif hasattr(estimator, "coef_"):
            coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=float))
            values = np.abs(coef).mean(axis=0)
        else:
            values = None
        if values is not None and len(values) == len(names):
            return pd.Series(values, index=names)
    except Exception:  # noqa: BLE001 - importance is a nicety; fall back to permutation
        pass
    from sklearn.inspection import permutation_importance

    sample = test.sample(min(len(test), 2_000), random_state=0)
    result = permutation_importance(pipeline, sample[list(features)], sample[target], n_repeats=3, random_state=0)
    return pd.Series(result.importances_mean, index=list(features))


def _figures(prepared: PreparedData, y_true, y_pred, proba, importance: pd.Series) -> dict[str, Any]:
    figures = {"importance": evaluation.importance_figure(importance)}
    if prepared.task == CLASSIFICATION:
        if proba is not None:
            figures["roc"] = evaluation.roc_figure(y_true, proba, prepared.classes)
            figures["precision_recall"] = evaluation.pr_figure(y_true, proba, prepared.classes)
        figures["confusion_matrix"] = evaluation.confusion_figure(y_true, y_pred, prepared.classes)
    else:
        figures["residuals"] = evaluation.residuals_figure(y_true, y_pred)
        figures["predicted_vs_actual"] = evaluation.predicted_vs_actual_figure(y_true, y_pred)
    return figures


def _scalar_params(estimator) -> dict[str, str]:
    params = {}
    for key, value in estimator.get_params(deep=False).items():
        if value is None or isinstance(value, (bool, int, float, str)):
            params[key] = str(value)[:500]
    return params


def train(
    settings: Settings,
    spec: TrainingSpec,
    frame: pd.DataFrame,
    *,
    table_name: str,
    table_digest: str,
    progress: Progress | None = None,
    job_id: str | None = None,
) -> TrainingResult:
    """Train every algorithm of ``spec`` on ``frame`` and record it all in MLflow."""
    prepared = prepare(frame, spec)  # bad input stops here, before any run
    if spec.register_name:
        from core.registry import check_alias, check_model_name

        check_model_name(spec.register_name)
        if spec.register_alias:
            check_alias(spec.register_alias)
    say = progress or (lambda step, model, done, total: None)
    total = len(prepared.algorithms)
    say("Starting", None, 0, total)

    import logging

    import mlflow

    from core import tracking

    # cloudpickle is deliberate (PyCaret's pipeline steps are not skops-trusted types); the warning
    # would repeat for every model in every job log.
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    experiment_id = tracking.ensure_experiment(settings, EXPERIMENT)
    tracking.use(settings)
    tags = {"studio.kind": "training", "studio.table_digest": table_digest, "studio.table_name": table_name[:250]}
    if job_id:
        tags["studio.job_id"] = job_id
    models: list[ModelResult] = []
    leaderboard = registered = None
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train {prepared.target} on {table_name}"[:250], tags=tags) as parent:
        try:
            _log_parent(mlflow, prepared, spec, table_name, table_digest)
            say("Preparing the data", None, 0, total)
            exp = _experiment(prepared.task, settings)
            exp.setup(
                data=prepared.train, test_data=prepared.test, target=prepared.target, session_id=spec.seed, fold=spec.folds,
                verbose=False, html=False, memory=False, n_jobs=1, system_log=False, log_experiment=False, index=False,
                **({"fold_strategy": "stratifiedkfold"} if prepared.task == CLASSIFICATION else {}),
            )
            compared: dict[str, tuple[Any, pd.Series]] = {}
            if spec.compare:
                say("Comparing algorithms by cross-validation", None, 0, total)
                leaderboard, compared = _compare(exp, prepared, spec)
            for done, key in enumerate(prepared.algorithms):
                if spec.compare and key not in compared:
                    continue  # the time budget ran out before this algorithm
                result = _train_one(mlflow, exp, prepared, spec, key, compared.get(key),
                                    lambda step, k=key, d=done: say(step, k, d, total), job_id, table_digest, experiment_id)
                models.append(result)
            say("Finishing", None, total, total)
            best = best_model(prepared.task, models)
            if spec.register_name and best is not None:
                from core.registry import register

                registered = register(settings, best.run_id, spec.register_name, alias=spec.register_alias, model_uri=best.model_uri, job_id=job_id)
            if best is None:
                mlflow.set_tag("studio.error", "every model failed")
                mlflow.end_run("FAILED")
        except (JobCancelled, KeyboardInterrupt):
            mlflow.set_tag("studio.error", "cancelled by the user")
            mlflow.end_run("KILLED")
            raise
    result = TrainingResult(
        parent_run_id=parent.info.run_id, experiment_id=experiment_id, task=prepared.task, target=prepared.target,
        models=models, registered=registered, leaderboard=leaderboard, notes=prepared.notes,
    )
    return result


def _log_parent(mlflow, prepared: PreparedData, spec: TrainingSpec, table_name: str, table_digest: str) -> None:
    mlflow.log_params({
        "table_name": table_name[:500], "table_digest": table_digest, "target": prepared.target, "task": prepared.task,
        "features": json.dumps(list(prepared.features))[:6000], "n_features": len(prepared.features),
        "test_size": spec.test_size, "train_rows": len(prepared.train), "test_rows": len(prepared.test),
        "seed": spec.seed, "folds": spec.folds, "rows_total": prepared.rows_total, "rows_dropped": prepared.rows_dropped,
        "algorithms": ",".join(prepared.algorithms), "tune_iterations": spec.tune_iterations, "tuned": ",".join(prepared.tuned),
        "tune_metric": prepared.tune_metric or "", "compare": spec.compare,
    })
    mlflow.log_dict({"excluded": prepared.excluded, "notes": list(prepared.notes), "classes": [_v(c) for c in prepared.classes],
                     "spec": spec.to_dict()}, "preparation.json")


def _compare(exp, prepared: PreparedData, spec: TrainingSpec) -> tuple[list[dict[str, Any]], dict[str, tuple[Any, pd.Series]]]:
    pycaret_metric, _ = catalog.TUNE_METRICS[prepared.task][prepared.tune_metric]
    budget = spec.compare_budget_minutes if spec.compare_budget_minutes else None
    models = exp.compare_models(include=list(prepared.algorithms), n_select=len(prepared.algorithms), sort=pycaret_metric,
                                budget_time=budget, fold=spec.folds, verbose=False, errors="ignore")
    board = exp.pull()
    models = models if isinstance(models, list) else [models]
    compared, leaderboard = {}, []
    by_name = {catalog.get(prepared.task, k).key: k for k in prepared.algorithms}
    for rank, (key, row) in enumerate(board.iterrows(), start=1):
        leaderboard.append({"rank": rank, "algorithm": key, **{str(c): (v if not isinstance(v, float) else round(v, 4)) for c, v in row.items()}})
    for model, (key, row) in zip(models, board.iterrows(), strict=False):
        if key in by_name:
            compared[key] = (model, row)
    return leaderboard, compared


def _train_one(mlflow, exp, prepared: PreparedData, spec: TrainingSpec, key: str, compared, say, job_id,
               table_digest: str, experiment_id: str) -> ModelResult:
    algorithm = catalog.get(prepared.task, key)
    result = ModelResult(algorithm=key, name=algorithm.name)
    kwargs = catalog.estimator_kwargs(algorithm, prepared.params[key])
    with mlflow.start_run(experiment_id=experiment_id, run_name=algorithm.name, nested=True, tags={"studio.kind": "model", "studio.algorithm": key,
                                                                      **({"studio.job_id": job_id} if job_id else {})}) as run:
        result.run_id = run.info.run_id
        started = time.perf_counter()
        try:
            if compared is not None:
                model, row = compared
                cv = pd.DataFrame([row.to_dict()], index=["Mean"])
            else:
                say("Cross-validating")
                model = exp.create_model(key, fold=spec.folds, verbose=False, **kwargs)
                cv = exp.pull()
            if key in prepared.tuned:
                say(f"Tuning ({spec.tune_iterations} random-search iterations)")
                pycaret_metric, _ = catalog.TUNE_METRICS[prepared.task][prepared.tune_metric]
                model = exp.tune_model(model, n_iter=spec.tune_iterations, optimize=pycaret_metric, fold=spec.folds,
                                       verbose=False, choose_better=True, search_library="scikit-learn", search_algorithm="random")
                cv = exp.pull()
            say("Scoring the holdout rows and recording in MLflow")
            pipeline = deepcopy(exp.pipeline)
            pipeline.steps.append(("trained_model", model))
            result.training_seconds = time.perf_counter() - started
            result.cv_metrics = _cv_metrics(cv)
            result.metrics, result.params, result.logging_seconds = _log_model_run(
                mlflow, prepared, pipeline, model, algorithm, result.cv_metrics, kwargs, table_digest)
            result.model_uri = result.params.pop("__model_uri")
            result.status = "FINISHED"
        except (JobCancelled, KeyboardInterrupt):
            mlflow.set_tag("studio.error", "cancelled by the user")
            mlflow.end_run("KILLED")
            raise
        except Exception as exc:  # this model fails alone; the job goes on with the others
            result.status = "FAILED"
            result.error = f"{algorithm.name} failed: {type(exc).__name__}: {str(exc)[:500]}"
            mlflow.set_tag("studio.error", result.error[:5000])
            mlflow.end_run("FAILED")
    return result


def _log_model_run(mlflow, prepared: PreparedData, pipeline, model, algorithm, cv_metrics, kwargs,
                   table_digest: str) -> tuple[dict[str, float], dict[str, Any], float]:
    """Evaluate on the holdout rows, then record everything; returns (metrics, params, seconds spent logging)."""
    from mlflow.models import infer_signature

    X_test = prepared.test[list(prepared.features)]
    y_test = prepared.test[prepared.target]
    y_pred = pipeline.predict(X_test)
    proba = None
    if prepared.task == CLASSIFICATION:
        if algorithm.probabilities and hasattr(pipeline, "predict_proba"):
            proba = np.asarray(pipeline.predict_proba(X_test), dtype=float)
        metrics = evaluation.classification_metrics(y_test, y_pred, proba, prepared.classes)
    else:
        metrics = evaluation.regression_metrics(y_test, y_pred)
    estimator_params = _scalar_params(model)
    importance = _importance(pipeline, model, prepared.test, prepared.features, prepared.target)
    figures = _figures(prepared, y_test, y_pred, proba, importance)
    example = X_test.head(5)
    signature = infer_signature(example, pipeline.predict(example))
    scores = pd.DataFrame({"actual": y_test.to_numpy(), "predicted": np.asarray(y_pred)})
    if proba is not None:
        for k, cls in enumerate(prepared.classes):
            scores[f"proba_{_v(cls)}"] = proba[:, k]
    sample = prepared.train if len(prepared.train) <= REFERENCE_MAX_ROWS else prepared.train.sample(REFERENCE_MAX_ROWS, random_state=0)
    # Drift monitoring's reference: fitted once here on every training row, logged with the model.
    profile = drift.fit_profile(prepared.train, list(prepared.features), scores=drift_scores(scores))

    started = time.perf_counter()
    mlflow.log_params({"algorithm": algorithm.key, "algorithm_name": algorithm.name,
                       **{f"hp.{k}": v for k, v in estimator_params.items()}})
    mlflow.log_metrics({**{k: v for k, v in metrics.items() if math.isfinite(v)}, **cv_metrics})
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "plots").mkdir()
        for name, figure in figures.items():
            (tmp_path / "plots" / f"{name}.json").write_text(figure.to_json())
        (tmp_path / "reference").mkdir()
        sample.to_parquet(tmp_path / "reference" / "train.parquet", index=False)
        scores.to_parquet(tmp_path / "reference" / "holdout_scores.parquet", index=False)
        profile.save(tmp_path / "reference")
        (tmp_path / "model_info.json").write_text(json.dumps({
            "task": prepared.task, "target": prepared.target, "features": list(prepared.features),
            "classes": [_v(c) for c in prepared.classes], "algorithm": algorithm.key,
            "requested_hyperparameters": dict(kwargs), "holdout_metrics": _clean(metrics),
        }, indent=2, default=str))
        mlflow.log_artifacts(str(tmp_path))
    dataset = mlflow.data.from_pandas(prepared.train, name="training table", targets=prepared.target, digest=table_digest[:36])
    mlflow.log_input(dataset, context="training")
    info = mlflow.sklearn.log_model(
        pipeline, name="model", signature=signature, input_example=example, pip_requirements=_pinned_requirements(),
        serialization_format="cloudpickle",
    )
    return metrics, {"__model_uri": info.model_uri, **estimator_params}, time.perf_counter() - started


def drift_scores(scores: pd.DataFrame) -> np.ndarray:
    """The score whose distribution prediction drift follows: the probability of the positive (last)
    class for a classifier, the prediction itself for a regressor."""
    proba = [c for c in scores.columns if str(c).startswith("proba_")]
    column = proba[-1] if proba else "predicted"
    return pd.to_numeric(scores[column], errors="coerce").to_numpy(dtype="float64")


def _v(value: Any) -> Any:
    """A class label as plain JSON (numpy and float 1.0 -> 1)."""
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _clean(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else None) for k, v in metrics.items()}


def _list(items) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:15]) + (f" and {len(items) - 15} more" if len(items) > 15 else "")



METRIC_LABELS = {"log_loss": "log loss", "log_loss_ratio": "log loss / guess", "f1": "F1", "auc": "AUC", "accuracy": "accuracy", "precision": "precision",
                 "recall": "recall", "mae": "MAE", "rmse": "RMSE", "r2": "R²", "mape": "MAPE"}


def _results(summary: dict[str, Any]) -> list[ModelResult]:
    """A finished job's models (from its JSON summary), missing metrics as NaN."""
    models = [ModelResult(**{k: v for k, v in m.items() if k in ModelResult.__dataclass_fields__}) for m in summary.get("models", [])]
    for m in models:
        m.metrics = {k: (math.nan if v is None else v) for k, v in m.metrics.items()}
    return models


def best_in(summary: dict[str, Any]) -> str | None:
    """The run id of a finished job's best model (the one ``results_table`` marks ★)."""
    best = best_model(summary.get("task", CLASSIFICATION), _results(summary))
    return best.run_id if best else None


def results_table(summary: dict[str, Any]) -> pd.DataFrame:
    """A job's models as people compare them: holdout metrics rounded, the best one marked."""
    task = summary.get("task", CLASSIFICATION)
    metric_names = evaluation.CLASSIFICATION_METRICS if task == CLASSIFICATION else evaluation.REGRESSION_METRICS
    models = _results(summary)
    best = best_model(task, models)
    cv_key = "cv_auc_mean" if task == CLASSIFICATION else "cv_rmse_mean"
    rows = []
    for m in models:
        row: dict[str, Any] = {"best": "★" if best is not None and m.run_id == best.run_id else "", "model": m.name,
                               "status": "trained" if m.status == "FINISHED" else "failed"}
        for name in metric_names:
            value = m.metrics.get(name)
            row[METRIC_LABELS[name]] = None if value is None or not math.isfinite(value) else round(value, 3)
        cv = (m.cv_metrics or {}).get(cv_key)
        row[f"CV {METRIC_LABELS[cv_key[3:-5]]}"] = None if cv is None else round(cv, 3)
        rows.append(row)
    return pd.DataFrame(rows)
