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

from core import catalog, drift, evaluation, metrics
from core.catalog import CLASSIFICATION, REGRESSION
from core.datasets import ColumnKind, profile_column
from core.errors import BadInputError, JobCancelled  # noqa: F401 (JobCancelled: part of this module's API)
from core.registry import Registration
from core.settings import PROJECT_ROOT, Settings, redact

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
    # Infinite values (inf, -inf) read as missing: in a feature they are then filled in like any missing
    # value by the pipeline's imputer; in the target their rows are left out. False: they are refused.
    inf_as_missing: bool = False

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
    # How the importance chart was made: {"method": "shap" | "permutation" | "skipped", "measure" (what the
    # number is: the chart's axis), "rows", "of_rows"; for shap "explainer", "output", "output_class",
    # "background_rows", "seconds"; for permutation "repeats", "budget_seconds", "estimated_seconds", "seconds"}.
    importance: dict[str, Any] = field(default_factory=dict)
    # What a random search found: {"metric", "iterations", "untuned_cv", "tuned_cv", "kept": "tuned" | "untuned",
    # "chosen_params"}; None when the model was not tuned.
    tuning: dict[str, Any] | None = None

    def to_summary(self) -> ModelSummary:
        return ModelSummary(
            algorithm=self.algorithm, name=self.name, run_id=self.run_id, model_uri=self.model_uri, status=self.status,
            metrics=_clean(self.metrics), cv_metrics=_clean(self.cv_metrics), error=self.error,
            importance=self.importance, tuning=self.tuning,
        )

    def summary(self) -> dict[str, Any]:
        return self.to_summary().to_dict()


@dataclass(frozen=True)
class ModelSummary:
    """One model of a finished training job as it crosses the job boundary (the job's status holds
    ``to_dict()``): missing metrics are None, the others at full precision."""

    algorithm: str = ""
    name: str = ""
    run_id: str | None = None
    model_uri: str | None = None
    status: str = "RUNNING"  # FINISHED or FAILED
    metrics: dict[str, float | None] = field(default_factory=dict)  # holdout
    cv_metrics: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None
    importance: dict[str, Any] = field(default_factory=dict)  # see ModelResult.importance
    tuning: dict[str, Any] | None = None  # see ModelResult.tuning

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm, "name": self.name, "run_id": self.run_id, "model_uri": self.model_uri,
            "status": self.status, "metrics": dict(self.metrics), "cv_metrics": dict(self.cv_metrics),
            "error": self.error, "importance": dict(self.importance), "tuning": self.tuning,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSummary:
        return cls(
            algorithm=str(data.get("algorithm") or ""), name=str(data.get("name") or ""), run_id=data.get("run_id"),
            model_uri=data.get("model_uri"), status=data.get("status") or "RUNNING", metrics=dict(data.get("metrics") or {}),
            cv_metrics=dict(data.get("cv_metrics") or {}), error=data.get("error"),
            importance=dict(data.get("importance") or {}), tuning=data.get("tuning"),
        )


@dataclass(frozen=True)
class TrainingSummary:
    """What a training job hands back (``python -m core train`` prints it, the Train page shows it): the
    job's status holds ``to_dict()`` as JSON and readers take ``from_dict(job.result)``. Reads the
    summaries of older jobs too (keys missing, a leaderboard in PyCaret's column names)."""

    parent_run_id: str | None = None
    experiment_id: str | None = None
    task: str = CLASSIFICATION
    target: str | None = None
    models: tuple[ModelSummary, ...] = ()
    registered: Registration | None = None  # when the job registered its best model
    leaderboard: tuple[dict[str, Any], ...] | None = None  # compare mode: every algorithm ranked by CV
    notes: tuple[str, ...] = ()
    compare: dict[str, Any] | None = None  # compare mode: ranking metric, folds, what was left out and why

    @property
    def finished(self) -> tuple[ModelSummary, ...]:
        """The models that trained, in the job's order."""
        return tuple(m for m in self.models if m.finished)

    def best(self) -> ModelSummary | None:
        """The finished model with the best primary metric (the one ``results_table`` marks ★)."""
        return best_model(self.task, list(self.models))

    def to_dict(self) -> dict[str, Any]:
        return {
            "parent_run_id": self.parent_run_id, "experiment_id": self.experiment_id, "task": self.task,
            "target": self.target, "models": [m.to_dict() for m in self.models],
            "registered": self.registered.to_dict() if self.registered else None,
            "leaderboard": list(self.leaderboard) if self.leaderboard is not None else None, "notes": list(self.notes),
            "compare": self.compare,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingSummary:
        board = data.get("leaderboard")
        return cls(
            parent_run_id=data.get("parent_run_id"), experiment_id=data.get("experiment_id"),
            task=data.get("task") or CLASSIFICATION, target=data.get("target"),
            models=tuple(ModelSummary.from_dict(m) for m in data.get("models") or ()),
            registered=Registration.from_dict(data["registered"]) if data.get("registered") else None,
            leaderboard=tuple(board) if board is not None else None, notes=tuple(data.get("notes") or ()),
            compare=data.get("compare"),
        )


def _typed(summary: TrainingSummary | dict[str, Any]) -> TrainingSummary:
    return summary if isinstance(summary, TrainingSummary) else TrainingSummary.from_dict(summary)


@dataclass
class TrainingResult:
    parent_run_id: str
    experiment_id: str
    task: str
    target: str
    models: list[ModelResult]
    registered: Registration | None = None
    leaderboard: list[dict[str, Any]] | None = None  # compare mode: every algorithm ranked by CV
    notes: tuple[str, ...] = ()
    compare: dict[str, Any] | None = None  # compare mode: ranking metric, folds, what was left out and why

    def to_summary(self) -> TrainingSummary:
        """What crosses the job boundary (the job stores ``to_summary().to_dict()``)."""
        return TrainingSummary(
            parent_run_id=self.parent_run_id, experiment_id=self.experiment_id, task=self.task, target=self.target,
            models=tuple(m.to_summary() for m in self.models), registered=self.registered,
            leaderboard=tuple(self.leaderboard) if self.leaderboard is not None else None, notes=tuple(self.notes),
            compare=self.compare,
        )

    def summary(self) -> dict[str, Any]:
        """The JSON the CLI prints and the job stores."""
        return self.to_summary().to_dict()

    def best(self) -> ModelResult | None:
        return best_model(self.task, self.models)


def best_model(task: str, models: list) -> Any:
    """The finished model (a ``ModelResult`` or ``ModelSummary``) with the best primary metric, or None."""
    metric = metrics.METRICS[metrics.primary(task)]
    finished = [m for m in models if m.status == "FINISHED" and m.model_uri]
    if not finished:
        return None

    def key(m) -> float:
        value = m.metrics.get(metric.key)
        if value is None or math.isnan(value):  # no probabilities (linear SVM): ranked after the others by F1
            return math.inf
        return value if metric.lower_is_better else -value

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
    """Every column but the target that can help a model; the others with the reason (including the
    columns that give the target away, see ``leakage``)."""
    features, excluded = [], {}
    for column in frame.columns:
        if column == target:
            continue
        reason = unusable_reason(frame[column], explicit=False)
        if reason:
            excluded[column] = reason
        else:
            features.append(column)
    leaks = leakage(frame, target, features) if target in frame.columns else {}
    excluded.update(leaks)
    return [c for c in features if c not in leaks], {c: excluded[c] for c in frame.columns if c in excluded}


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


# --- what makes training meaningless: infinite values, a target copied by a feature ----------------

LEAKAGE_SAMPLE_ROWS = 50_000  # rows the leakage check looks at (a random sample of the rows with a target)
LEAKAGE_MIN_ROWS = 50  # fewer rows with both values than this: too few to tell a copy from chance
LEAKAGE_CORRELATION = 0.98  # |Pearson correlation| of a numeric feature with a numeric target
LEAKAGE_ACCURACY = 0.99  # a feature alone predicting a class target this often (out of sample) ...
LEAKAGE_ERROR_SHARE = 0.2  # ... with at most this share of the errors of always guessing the commonest class
LEAKAGE_MAX_CLASSES = 50  # the accuracy rule applies to targets with at most this many distinct values
LEAKAGE_BINS = 200  # a many-valued numeric feature is cut into at most this many quantile bins
_LEAK = "it would leak the answer"


def infinite_values(frame: pd.DataFrame, target: str, columns) -> dict[str, int]:
    """How many infinite values (inf or -inf) each of ``columns`` holds in the rows with a target
    (the rows a model would train on); only the columns that hold any."""
    rows = frame[frame[target].notna()] if target in frame.columns else frame
    counts = {}
    for column in dict.fromkeys(columns):
        series = rows[column]
        if pd.api.types.is_float_dtype(series.dtype):  # integers, text and dates cannot hold inf
            found = int(np.isinf(series.to_numpy(dtype="float64", na_value=np.nan)).sum())
            if found:
                counts[str(column)] = found
    return counts


def _infinite_message(counts: dict[str, int]) -> str:
    parts = [f"'{c}' holds {n:,} infinite value{'s' if n != 1 else ''}" + (" (inf or -inf)" if k == 0 else "")
             for k, (c, n) in enumerate(counts.items())]
    said = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    which = f"'{next(iter(counts))}'" if len(counts) == 1 else "those columns"
    return (f"{said} in the rows with a target; no model can learn from them. Treat them as missing, so they are filled "
            "in like the other missing values (the checkbox under the features on the Train page, or --inf-as-missing "
            f"on the command line), fix them in the file, or leave {which} out of the features.")


def _codes(values: pd.Series) -> np.ndarray:
    """Integer codes for the mapping rule: a many-valued number cut into quantile bins, anything else its values."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype) \
            and values.nunique() > LEAKAGE_MAX_CLASSES:
        numbers = values.to_numpy(dtype="float64")
        bins = max(2, min(LEAKAGE_BINS, len(numbers) // 20))
        edges = np.unique(np.quantile(numbers, np.linspace(0, 1, bins + 1)[1:-1]))
        return np.searchsorted(edges, numbers, side="right")
    return pd.factorize(values)[0]


def _mapping_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """How often a feature's codes alone predict the target's codes on rows they were not learnt from:
    each half of the rows (in random order) is predicted by the commonest class of its code in the
    other half (the overall commonest class for a code seen only in this half)."""
    order = np.random.default_rng(0).permutation(len(x))
    halves = order[: len(x) // 2], order[len(x) // 2:]
    right = 0
    for learn, check in (halves, halves[::-1]):
        width = y.max() + 1
        counts = np.bincount(x[learn] * width + y[learn], minlength=(x.max() + 1) * width).reshape(-1, width)
        guess = np.where(counts.sum(axis=1) > 0, counts.argmax(axis=1), np.bincount(y[learn]).argmax())
        right += int((guess[x[check]] == y[check]).sum())
    return right / len(x)


def _percent(share: float) -> str:
    return "100%" if share >= 1 else f"{math.floor(share * 1000) / 10:.1f}%"  # never shows 100% unless it is


def _leak_reason(feature: pd.Series, target: pd.Series, target_name: str) -> str | None:
    """Why ``feature`` gives the target away on these rows (both aligned, the target present), or None."""
    present = feature.notna().to_numpy()
    numeric_feature = pd.api.types.is_numeric_dtype(feature.dtype) and not pd.api.types.is_bool_dtype(feature.dtype)
    if numeric_feature:
        present &= np.isfinite(feature.to_numpy(dtype="float64", na_value=np.nan))
    if present.sum() < LEAKAGE_MIN_ROWS:
        return None
    x, y = feature[present], target[present]
    distinct_y = y.nunique()
    if distinct_y < 2 or x.nunique() < 2:
        return None
    if bool((x.astype(object).to_numpy() == y.astype(object).to_numpy()).all()):
        return f"it copies the target (it equals '{target_name}' in every row where it has a value): {_LEAK}"
    distinct_x = x.nunique()
    if distinct_x == distinct_y and distinct_x <= len(x) // 2:  # values repeat, so a 1:1 match means something
        pairs = pd.DataFrame({"x": pd.factorize(x)[0], "y": pd.factorize(y)[0]}).drop_duplicates()
        if len(pairs) == distinct_x:
            return (f"it copies the target under other names (each of its values goes with one value of "
                    f"'{target_name}', and back): {_LEAK}")
    if numeric_feature and pd.api.types.is_numeric_dtype(y.dtype) and not pd.api.types.is_bool_dtype(y.dtype):
        xs, ys = x.to_numpy(dtype="float64"), y.to_numpy(dtype="float64")
        if xs.std() > 0 and ys.std() > 0:
            correlation = float(np.corrcoef(xs, ys)[0, 1])
            if abs(correlation) >= LEAKAGE_CORRELATION:
                how = "copies the target up to scale" if round(abs(correlation), 3) == 1 else "nearly copies the target"
                return f"it {how} (its correlation with '{target_name}' is {correlation:.3f}): {_LEAK}"
    if distinct_y <= LEAKAGE_MAX_CLASSES:
        y_codes = pd.factorize(y)[0]
        majority = float(np.bincount(y_codes).max() / len(y_codes))
        accuracy = _mapping_accuracy(_codes(x), y_codes)
        if accuracy >= LEAKAGE_ACCURACY and 1 - accuracy <= LEAKAGE_ERROR_SHARE * (1 - majority):
            how = "copies" if accuracy >= 1 else "nearly copies"
            return (f"it {how} the target (alone it predicts '{target_name}' right {_percent(accuracy)} of the time, "
                    f"against {_percent(majority)} by always guessing the most common value): {_LEAK}")
    return None


def leakage(frame: pd.DataFrame, target: str, columns) -> dict[str, str]:
    """The columns among ``columns`` that give the target away, with the reason: equal to it, a 1:1
    relabelling of it, a number with |correlation| of at least 0.98 with a numeric target, or a column
    that alone predicts a target of at most 50 values right at least 99% of the time (on rows it was
    not learnt from) while always guessing the commonest value is wrong five times as often. Looks at
    the rows with a target, at most ``LEAKAGE_SAMPLE_ROWS`` of them (a fixed random sample)."""
    columns = [c for c in dict.fromkeys(columns) if c != target]
    y = frame[target]
    rows = frame[y.notna()]
    if pd.api.types.is_float_dtype(y.dtype):
        rows = rows[np.isfinite(rows[target].to_numpy(dtype="float64", na_value=np.nan))]
    if len(rows) > LEAKAGE_SAMPLE_ROWS:
        rows = rows.sample(LEAKAGE_SAMPLE_ROWS, random_state=0)
    found = {}
    for column in columns:
        try:
            reason = _leak_reason(rows[column], rows[target], str(target))
        except (TypeError, ValueError):  # values that cannot be compared or coded (mixed, unhashable): no verdict
            reason = None
        if reason:
            found[column] = reason
    return found


def leak_warning(column: str, reason: str) -> str:
    """What to tell someone who chose a feature that gives the target away (``leakage``'s reason)."""
    return (f"'{column}' {reason.removeprefix('it ')}. It was kept because you chose it: keep it only if its value is "
            "known before the outcome is (else the model will look far better than it will be), or remove it from the features.")


def prepare(frame: pd.DataFrame, spec: TrainingSpec) -> PreparedData:
    """Check the spec against the table and split it; every refusal names what to change."""
    from sklearn.model_selection import train_test_split

    columns = list(frame.columns)
    if spec.target not in columns:
        raise BadInputError(f"The target column '{spec.target}' is not in the table. Columns: {_list(columns)}.")
    target = frame[spec.target]
    infinite_target = infinite_values(frame, spec.target, [spec.target]).get(str(spec.target), 0)
    if infinite_target and not spec.inf_as_missing:
        raise BadInputError(
            f"The target '{spec.target}' holds {infinite_target:,} infinite value{'s' if infinite_target != 1 else ''} "
            "(inf or -inf), which cannot be predicted. Treat them as missing, so those rows are left out (the checkbox "
            "under the features on the Train page, or --inf-as-missing on the command line), or fix them in the file."
        )
    replaced: dict[str, int] = {}  # column -> infinite values read as missing (inf_as_missing)
    if spec.inf_as_missing:  # inf read as missing everywhere, before any column is judged
        floats = [c for c in columns if pd.api.types.is_float_dtype(frame[c].dtype)]
        replaced = infinite_values(frame, spec.target, floats)
        if replaced:
            frame = frame.copy()
            frame[floats] = frame[floats].replace([np.inf, -np.inf], np.nan)
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
        infinite = f" ({infinite_target:,} of them infinite)" if infinite_target else ""
        notes.append(f"{dropped:,} rows without a value in '{spec.target}'{infinite} were left out ({len(labelled):,} rows remain).")

    if task == REGRESSION and not pd.api.types.is_numeric_dtype(labelled[spec.target]):
        raise BadInputError(f"Regression needs a numeric target; '{spec.target}' holds text. Choose classification instead.")
    if task == REGRESSION and labelled[spec.target].nunique() == 1:
        raise BadInputError(
            f"'{spec.target}' has the same value ({_v(labelled[spec.target].iloc[0])}) in every row with a value: there is "
            "nothing to predict (any model would repeat it and look perfect). Choose another target, or add rows where "
            f"'{spec.target}' differs."
        )

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
    # infinite values in the features: refused, or (inf_as_missing) read as missing above and said here
    if not spec.inf_as_missing:
        infinite = infinite_values(labelled, spec.target, features)
        if infinite:
            raise BadInputError(_infinite_message(infinite))
    for column in features:
        if replaced.get(str(column)):
            count = replaced[str(column)]
            notes.append(f"{count:,} infinite value{'s' if count != 1 else ''} (inf or -inf) in '{column}' "
                         f"{'were' if count != 1 else 'was'} treated as missing and filled in like the other missing values.")
    if spec.features is not None:  # chosen columns that give the target away: kept, and said
        for column, reason in leakage(labelled, spec.target, features).items():
            notes.append(leak_warning(column, reason))

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
    # PyCaret opens ./logs.log when first imported unless PYCARET_CUSTOM_LOGGING_PATH says otherwise
    # (read once, at import; there is no API): a training job's processes are started with it set to
    # settings.pycaret_log (core.jobs._start), so nothing here writes the environment.
    if task == CLASSIFICATION:
        from pycaret.classification import ClassificationExperiment

        return ClassificationExperiment()
    from pycaret.regression import RegressionExperiment

    return RegressionExperiment()


def _missing_as_nan():
    """The pipeline's first step: every missing value becomes NaN. A text column read back from the
    studio's tables (Parquet), a JSON null over REST or an empty form field holds ``None``, which
    scikit-learn's imputer PyCaret uses for text columns does not count as missing (it only matches NaN):
    the blanks then reached the one-hot encoder, came out as NaN and failed every model that cannot take
    NaN (logistic regression, SVM, ...). Built from pandas' own ``DataFrame.fillna`` so the pickled model
    needs nothing of the studio to load."""
    from sklearn.preprocessing import FunctionTransformer

    return "missing_as_nan", FunctionTransformer(pd.DataFrame.fillna, kw_args={"value": np.nan})


def _cv_metrics(cv: pd.DataFrame) -> dict[str, float]:
    """PyCaret's CV table (folds, then Mean and Std rows) -> ``cv_<metric>_mean`` / ``_std``."""
    result = {}
    for column in cv.columns:
        name = metrics.from_pycaret(str(column))
        if name:
            for row, suffix in (("Mean", "mean"), ("Std", "std")):
                if row in cv.index:
                    value = float(cv.loc[row, column])
                    if math.isfinite(value):
                        result[f"cv_{name}_{suffix}"] = value
    return result


IMPORTANCE_BUDGET_SECONDS = 5.0  # permutation importance of one model (models without their own importances)
IMPORTANCE_MAX_ROWS = 2_000
IMPORTANCE_MIN_ROWS = 200  # fewer rows than this would make a noisy chart: then none is drawn
IMPORTANCE_MAX_REPEATS = 3


def importance_plan(n_features: int, rows_available: int, seconds_per_call: float, seconds_per_row: float,
                    budget: float | None = None) -> tuple[int, int] | None:
    """(rows, repeats) for permutation importance that fit the time budget, or None when even
    ``IMPORTANCE_MIN_ROWS`` rows once over would not. One evaluation is a prediction costing about
    ``seconds_per_call + seconds_per_row * rows``; permutation importance makes ``1 + n_features * repeats``
    of them. Rows come first (up to ``IMPORTANCE_MAX_ROWS``) at 3 and 2 repeats as long as at least 500
    rows fit; then 1 repeat on as many rows as fit."""
    budget = IMPORTANCE_BUDGET_SECONDS if budget is None else budget
    if budget <= 0:
        return None
    cap = max(1, min(IMPORTANCE_MAX_ROWS, rows_available))
    for repeats in range(IMPORTANCE_MAX_REPEATS, 0, -1):
        calls = 1 + n_features * repeats
        room = budget / calls - seconds_per_call
        if room < 0:
            continue
        affordable = cap if seconds_per_row <= 0 else int(room / seconds_per_row)
        enough = min(cap, 500 if repeats > 1 else IMPORTANCE_MIN_ROWS)
        if affordable >= enough:
            return min(cap, affordable), repeats
    return None


IMPORTANCE_ARTIFACT = "importance.json"  # the importance chart's values, on the model's run


def _importance(pipeline, estimator, test: pd.DataFrame, features: tuple[str, ...], target: str,
                cost: tuple[float, float] = (0.0, 0.0), say: Callable[[str], None] | None = None,
                background: pd.DataFrame | None = None, task: str | None = None, classes=(),
                ) -> tuple[pd.Series, dict[str, Any]]:
    """Each ORIGINAL input column's importance (the one-hot pieces of a column summed back) and how it
    was measured. Tree and linear models: the mean |SHAP contribution| over a bounded sample of the
    holdout rows, against ``background`` training rows (:func:`core.explain.holdout_importance`).
    Other models (or a tree SHAP cannot explain exactly): permutation importance on as many holdout
    rows and repeats as fit ``IMPORTANCE_BUDGET_SECONDS`` (``cost``: measured seconds per prediction
    call and per row). The facts say the ``measure`` (what the number is, the chart's axis title);
    the importances are empty when skipped."""
    if background is not None and task is not None:
        try:
            from core import explain

            if explain.explainer_kind(estimator) != explain.PERMUTATION:
                if say:
                    say("Measuring feature importance (SHAP on the holdout rows)")
                found = explain.holdout_importance(pipeline, test, background, task=task, classes=classes, features=features,
                                                   target=target)
                if found is not None:
                    facts = found.to_dict()
                    facts.pop("importance")
                    return found.values, {**facts, "of_rows": len(test)}
        except Exception as exc:  # noqa: BLE001 - a bug in explaining: logged with an id, permutation importance instead
            from core.errors import unexpected

            unexpected(exc, "measuring SHAP importance at training")
    from sklearn.inspection import permutation_importance

    budget = IMPORTANCE_BUDGET_SECONDS
    per_call, per_row = cost
    plan = importance_plan(len(features), len(test), per_call, per_row, budget)
    if plan is None:
        one_pass = (1 + len(features)) * (per_call + per_row * min(len(test), IMPORTANCE_MIN_ROWS))
        return pd.Series(dtype=float), {"method": "skipped", "budget_seconds": budget, "estimated_seconds": round(one_pass, 1)}
    rows, repeats = plan
    sample = test.sample(rows, random_state=0) if rows < len(test) else test
    started = time.perf_counter()
    # One evaluation of the planned size, timed now (the machine may be busier than when the holdout was
    # scored, and small batches cost more per row); if the plan would overrun, plan again from it.
    pipeline.score(sample[list(features)], sample[target])
    measured = time.perf_counter() - started
    per_row = measured / rows
    estimate = measured + (1 + len(features) * repeats) * measured
    if estimate > budget:
        replanned = importance_plan(len(features), len(test), 0.0, per_row, budget - measured)
        if replanned is None:
            one_pass = (1 + len(features)) * per_row * min(len(test), IMPORTANCE_MIN_ROWS)
            return pd.Series(dtype=float), {"method": "skipped", "budget_seconds": budget, "estimated_seconds": round(one_pass, 1)}
        rows, repeats = min(rows, replanned[0]), replanned[1]
        if rows < len(sample):
            sample = sample.sample(rows, random_state=0)
        estimate = measured + (1 + len(features) * repeats) * per_row * rows
    if say:
        say(f"Measuring feature importance ({rows:,} holdout rows, {repeats} repeat{'s' if repeats > 1 else ''})")
    result = permutation_importance(pipeline, sample[list(features)], sample[target], n_repeats=repeats, random_state=0)
    scored = "accuracy" if task == CLASSIFICATION or (task is None and hasattr(pipeline, "predict_proba")) else "R²"
    facts = {"method": "permutation", "rows": rows, "of_rows": len(test), "repeats": repeats, "budget_seconds": budget,
             "estimated_seconds": round(estimate, 2), "seconds": round(time.perf_counter() - started, 2),
             "measure": f"mean drop in {scored} when the input's values are shuffled"}
    values = pd.Series(result.importances_mean, index=list(features), name=facts["measure"])
    return values.sort_values(ascending=False, kind="stable"), facts


def importance_document(importance: pd.Series, facts: dict[str, Any]) -> dict[str, Any]:
    """What ``importance.json`` on a model's run holds: how the importance was measured (the facts,
    with ``measure``, the chart's axis title) and the value of every original input column, largest first."""
    return {**{k: _v(v) for k, v in facts.items()}, "importance": {str(k): float(v) for k, v in importance.items()}}


def importance_how(facts: dict[str, Any]) -> str | None:
    """How an importance was measured, in a few words for the chart's title."""
    rows, of = int(facts.get("rows") or 0), facts.get("of_rows")
    rows = f"{rows:,} of the {int(of):,} holdout rows" if of and rows < of else f"{rows:,} holdout rows"
    if facts.get("method") == "shap":
        return f"SHAP, {facts.get('explainer')} explainer, on {rows}"
    if facts.get("method") == "permutation":
        return f"permutation, {rows}, {facts.get('repeats')} repeat{'s' if facts.get('repeats') != 1 else ''}"
    return None


def _figures(prepared: PreparedData, y_true, y_pred, proba, importance: pd.Series,
             facts: dict[str, Any] | None = None) -> dict[str, Any]:
    facts = facts or {}
    figures = {"importance": evaluation.importance_figure(importance, facts.get("measure"), importance_how(facts))} \
        if len(importance) else {}
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
        if isinstance(value, np.generic):  # a random search sets numpy numbers (np.int64 max_depth)
            value = value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            params[key] = str(value)[:500]
    return params


def check_registration(settings: Settings, spec: TrainingSpec, prepared: PreparedData) -> None:
    """Refuse, before any training, a registered model name or alias that cannot be used, and a name
    that holds models of another target, task or classes."""
    from core.registry import Contract
    from core.registry import check_registration as check

    check(settings, spec.register_name, spec.register_alias,
          Contract.of(prepared.task, prepared.target, prepared.classes))


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
        check_registration(settings, spec, prepared)
    say = progress or (lambda step, model, done, total: None)
    n_models = len(prepared.algorithms)
    # done/total count units of work: one per model; in compare mode also one per CV fold and one
    # per final fit of every algorithm, so the bar moves during the comparison as well.
    compare_units = n_models * (spec.folds + 1) if spec.compare else 0
    total = compare_units + n_models
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
    leaderboard = registered = comparison = None
    notes = list(prepared.notes)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"train {prepared.target} on {table_name}"[:250], tags=tags) as parent:
        try:
            _log_parent(mlflow, prepared, spec, table_name, table_digest)
            say("Preparing the data", None, 0, total)
            exp = _experiment(prepared.task, settings)
            exp.setup(
                data=prepared.train, test_data=prepared.test, target=prepared.target, session_id=spec.seed, fold=spec.folds,
                verbose=False, html=False, memory=False, n_jobs=1, system_log=False, log_experiment=False, index=False,
                **({"fold_strategy": "stratifiedkfold"} if prepared.task == CLASSIFICATION else {}),
                custom_pipeline=[_missing_as_nan()], custom_pipeline_position=0,
            )
            compared: dict[str, tuple[Any, pd.DataFrame]] = {}
            if spec.compare:
                say("Comparing algorithms by cross-validation", None, 0, total)
                leaderboard, compared, comparison = _compare(exp, prepared, spec, lambda step, done: say(step, None, done, total))
                notes.extend(comparison["notes"])
                mlflow.log_dict({k: v for k, v in comparison.items() if k != "notes"} | {"leaderboard": leaderboard},
                                "comparison.json")
            keys = [k for k in prepared.algorithms if not spec.compare or k in compared]  # compare: the ones it kept
            dataset = _training_dataset(mlflow, prepared, table_digest)
            for done, key in enumerate(keys):
                result = _train_one(mlflow, exp, prepared, spec, key, compared.get(key),
                                    _model_progress(say, prepared.task, key, done, len(keys), compare_units, total, spec.compare),
                                    job_id, table_digest, experiment_id, dataset, settings=settings)
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
        models=models, registered=registered, leaderboard=leaderboard, notes=tuple(notes), compare=comparison,
    )
    return result


def _model_progress(say: Progress, task: str, key: str, done: int, count: int, offset: int, total: int,
                    compared: bool) -> Callable[[str], None]:
    """The progress callback of one model's steps. After a comparison the step names the model itself
    ("Random forest (model 3 of 9): ...") and ``model`` stays None, because done/total then count the
    comparison's folds as well, not models."""
    if not compared:
        return lambda step: say(step, key, done, total)
    name = catalog.get(task, key).name
    return lambda step: say(f"{name} (model {done + 1} of {count}): {step}", None, offset + done, total)


def _log_parent(mlflow, prepared: PreparedData, spec: TrainingSpec, table_name: str, table_digest: str) -> None:
    mlflow.log_params({
        "table_name": table_name[:500], "table_digest": table_digest, "target": prepared.target, "task": prepared.task,
        "features": json.dumps(list(prepared.features))[:6000], "n_features": len(prepared.features),
        "test_size": spec.test_size, "train_rows": len(prepared.train), "test_rows": len(prepared.test),
        "seed": spec.seed, "folds": spec.folds, "rows_total": prepared.rows_total, "rows_dropped": prepared.rows_dropped,
        "algorithms": ",".join(prepared.algorithms), "tune_iterations": spec.tune_iterations, "tuned": ",".join(prepared.tuned),
        "tune_metric": prepared.tune_metric or "", "compare": spec.compare, "inf_as_missing": spec.inf_as_missing,
    })
    mlflow.log_dict({"excluded": prepared.excluded, "notes": list(prepared.notes), "classes": [_v(c) for c in prepared.classes],
                     "spec": spec.to_dict()}, "preparation.json")


class _ReportingFolds:
    """The experiment's own CV splitter (same folds, same order) that says when each fold starts and
    when the last one is done. scikit-learn's ``cross_validate`` with ``n_jobs=1`` draws the folds one
    at a time, so the calls arrive as the folds are fitted."""

    def __init__(self, inner, on_fold: Callable[[int], None], on_done: Callable[[], None]) -> None:
        self.inner, self.on_fold, self.on_done = inner, on_fold, on_done
        self.n_splits = inner.get_n_splits()

    def get_n_splits(self, X=None, y=None, groups=None) -> int:  # noqa: N803 - scikit-learn's names
        return self.inner.get_n_splits(X, y, groups)

    def split(self, X, y=None, groups=None):  # noqa: N803
        for k, fold in enumerate(self.inner.split(X, y, groups), start=1):
            self.on_fold(k)
            yield fold
        self.on_done()

    def __repr__(self) -> str:
        return repr(self.inner)


def _compare(exp, prepared: PreparedData, spec: TrainingSpec, say: Callable[[str, int], None]
             ) -> tuple[list[dict[str, Any]], dict[str, tuple[Any, pd.DataFrame]], dict[str, Any]]:
    """PyCaret's ``compare_models``, one algorithm at a time so progress can name the algorithm and the
    fold: each algorithm with PyCaret's defaults is cross-validated on the experiment's folds and then
    fitted on all training rows (what ``compare_models(n_select=all)`` does), and the algorithms are
    ranked by the CV mean of the ranking metric, rounded to 4 decimals as PyCaret ranks it (ties keep
    the chosen order). An algorithm that fails, or scores 0 everywhere, is left out as
    ``compare_models(errors="ignore")`` leaves it out; no new algorithm starts once the time budget is
    spent. Returns (leaderboard rows, {key: (fitted model, CV table)}, facts and notes)."""
    ranking = metrics.METRICS[prepared.tune_metric]
    pycaret_metric, higher = ranking.pycaret, ranking.higher_is_better
    budget = spec.compare_budget_minutes * 60 if spec.compare_budget_minutes else None
    keys, folds = list(prepared.algorithms), spec.folds
    n = len(keys)
    started = time.perf_counter()
    compared: dict[str, tuple[Any, pd.DataFrame]] = {}
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    skipped: list[str] = []
    for i, key in enumerate(keys, start=1):
        if budget is not None and time.perf_counter() - started > budget:
            skipped = keys[i - 1:]
            break
        name = catalog.get(prepared.task, key).name
        base = (i - 1) * (folds + 1)
        splitter = _ReportingFolds(
            exp.fold_generator,
            on_fold=lambda k, name=name, i=i, base=base: say(f"Comparing: {name}, fold {k} of {folds} (algorithm {i} of {n})", base + k - 1),
            on_done=lambda name=name, i=i, base=base: say(f"Comparing: {name}, fitting on all training rows (algorithm {i} of {n})", base + folds),
        )
        algorithm_started = time.perf_counter()
        try:
            model = exp.create_model(key, fold=splitter, verbose=False)  # CV on the folds, then fitted on all training rows
            cv = exp.pull()
            means = pd.to_numeric(cv.loc["Mean"], errors="coerce")
            if not np.nansum(np.abs(means.to_numpy(dtype=float))):
                raise ValueError("every cross-validation score is 0")
        except (JobCancelled, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - compare_models(errors="ignore") leaves such an algorithm out
            failed[key] = f"{type(exc).__name__}: {redact(str(exc)[:300])}"
            continue
        compared[key] = (model, cv)
        row: dict[str, Any] = {"algorithm": key, "name": name}
        for column, value in cv.loc["Mean"].items():
            metric = metrics.from_pycaret(str(column))
            if metric:
                row[metric] = float(value) if value is not None and math.isfinite(float(value)) else None
        row["seconds"] = time.perf_counter() - algorithm_started
        rows.append(row)
    metric = prepared.tune_metric
    # Python's sort is stable: equal (rounded) scores keep the chosen order; a missing score goes last.
    rows.sort(key=lambda r: (1, 0.0) if r.get(metric) is None else (0, -round(r[metric], 4) if higher else round(r[metric], 4)))
    leaderboard = [{"rank": rank, **row} for rank, row in enumerate(rows, start=1)]
    notes = [f"The comparison cross-validated each algorithm with its default settings on {folds} folds of the training "
             f"rows and ranked them by CV {ranking.label} ({ranking.direction}); "
             f"★ in the results marks the best {metrics.label(metrics.primary(prepared.task))} on the holdout rows."]
    for key, error in failed.items():
        notes.append(f"{catalog.get(prepared.task, key).name} could not be cross-validated and was left out of the "
                     f"comparison ({error}).")
    if skipped:
        names = _list(catalog.get(prepared.task, k).name for k in skipped)
        notes.append(f"The time budget of {spec.compare_budget_minutes:g} minute{'s' if spec.compare_budget_minutes != 1 else ''} "
                     f"was spent after {n - len(skipped)} of {n} algorithms; {names} {'was' if len(skipped) == 1 else 'were'} not compared.")
    facts = {"metric": metric, "pycaret_metric": pycaret_metric, "higher_is_better": higher, "folds": folds,
             "budget_minutes": spec.compare_budget_minutes, "failed": failed, "skipped": skipped,
             "seconds": time.perf_counter() - started, "notes": notes}
    return leaderboard, compared, facts


def _train_one(mlflow, exp, prepared: PreparedData, spec: TrainingSpec, key: str, compared, say, job_id,
               table_digest: str, experiment_id: str, dataset=None, settings: Settings | None = None) -> ModelResult:
    algorithm = catalog.get(prepared.task, key)
    result = ModelResult(algorithm=key, name=algorithm.name)
    # A compared model is PyCaret's default for the algorithm: the catalogue's settings were not asked for.
    kwargs = {} if compared is not None else catalog.estimator_kwargs(algorithm, prepared.params[key])
    with mlflow.start_run(experiment_id=experiment_id, run_name=algorithm.name, nested=True, tags={"studio.kind": "model", "studio.algorithm": key,
                                                                      **({"studio.job_id": job_id} if job_id else {})}) as run:
        result.run_id = run.info.run_id
        started = time.perf_counter()
        try:
            if compared is not None:
                model, cv = compared
            else:
                say("Cross-validating")
                model = exp.create_model(key, fold=spec.folds, verbose=False, **kwargs)
                cv = exp.pull()
            if key in prepared.tuned:
                say(f"Tuning ({spec.tune_iterations} random-search iterations)")
                model, cv, result.tuning = _tune(exp, prepared, spec, key, model, cv)
            say("Scoring the holdout rows")
            pipeline = deepcopy(exp.pipeline)
            pipeline.steps.append(("trained_model", model))
            result.training_seconds = time.perf_counter() - started
            result.cv_metrics = _cv_metrics(cv)
            result.metrics, result.params, result.logging_seconds = _log_model_run(
                mlflow, prepared, pipeline, model, algorithm, result.cv_metrics, kwargs, table_digest, result, say, dataset)
            result.model_uri = result.params.pop("__model_uri")
            result.status = "FINISHED"
        except (JobCancelled, KeyboardInterrupt):
            mlflow.set_tag("studio.error", "cancelled by the user")
            mlflow.end_run("KILLED")
            raise
        except Exception as exc:  # this model fails alone; the job goes on with the others
            from core.errors import StudioError, unexpected

            result.status = "FAILED"
            if isinstance(exc, StudioError):  # written for people already
                result.error = f"{algorithm.name} failed and was left out: {redact(str(exc)[:500])}"
            else:  # a bug: its traceback goes to the workspace log under an id, never raw library text to people
                result.error = (f"{algorithm.name} failed and was left out. "
                                + unexpected(exc, f"training {algorithm.name}", settings))
            mlflow.set_tag("studio.error", result.error[:5000])
            mlflow.end_run("FAILED")
    return result


def _tune(exp, prepared: PreparedData, spec: TrainingSpec, key: str, model, cv: pd.DataFrame
          ) -> tuple[Any, pd.DataFrame, dict[str, Any]]:
    """A random search over PyCaret's grid for the algorithm, on the same folds; the tuned model is kept
    only if its CV mean of the tuning metric beats the untuned one (a tie keeps the untuned, as
    PyCaret's ``choose_better`` does). Unlike ``choose_better`` this neither cross-validates the
    untuned model a second time nor reports the tuned model's CV figures for a kept untuned one."""
    metric = prepared.tune_metric
    pycaret_metric, higher = metrics.METRICS[metric].pycaret, metrics.higher_is_better(metric)
    tuned = exp.tune_model(model, n_iter=spec.tune_iterations, optimize=pycaret_metric, fold=spec.folds, verbose=False,
                           choose_better=False, search_library="scikit-learn", search_algorithm="random")
    tuned_cv = exp.pull()
    before, after = float(cv.loc["Mean", pycaret_metric]), float(tuned_cv.loc["Mean", pycaret_metric])
    better = metrics.better(metric, after, before)
    try:
        searched = list(exp._all_models_internal[key].tune_distribution)  # PyCaret's search space for the algorithm
    except Exception:  # noqa: BLE001 - then name what changed
        searched = []
    old, new = model.get_params(deep=False), tuned.get_params(deep=False)
    names = [n for n in searched if n in new] or [n for n in new if str(new[n]) != str(old.get(n))]
    facts = {"metric": metric, "iterations": spec.tune_iterations, "untuned_cv": before, "tuned_cv": after,
             "higher_is_better": higher, "kept": "tuned" if better else "untuned",
             "chosen_params": {n: _param_text(new[n]) for n in names}}
    return (tuned, tuned_cv, facts) if better else (model, cv, facts)


def _param_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)[:200]


def _log_model_run(mlflow, prepared: PreparedData, pipeline, model, algorithm, cv_metrics, kwargs,
                   table_digest: str, result: ModelResult | None = None, say: Callable[[str], None] | None = None,
                   dataset=None) -> tuple[dict[str, float], dict[str, Any], float]:
    """Evaluate on the holdout rows, then record everything; returns (metrics, params, seconds spent logging).
    How the importance was measured goes to ``result.importance``; ``result.tuning`` is logged too.
    ``dataset``: the job's ``mlflow.data`` training table, shared by its models (MLflow infers its schema
    once, ~1 s on 16,000 rows with text columns, instead of once per model)."""
    say = say or (lambda step: None)
    X_test = prepared.test[list(prepared.features)]
    y_test = prepared.test[prepared.target]
    example = X_test.head(5)
    clock = time.perf_counter()
    pipeline.predict(example)
    small_seconds = time.perf_counter() - clock  # one call's fixed cost (the pipeline's steps), nearly
    clock = time.perf_counter()
    y_pred = pipeline.predict(X_test)
    full_seconds = time.perf_counter() - clock
    proba = None
    if prepared.task == CLASSIFICATION:
        if algorithm.probabilities and hasattr(pipeline, "predict_proba"):
            proba = np.asarray(pipeline.predict_proba(X_test), dtype=float)
        holdout = evaluation.classification_metrics(y_test, y_pred, proba, prepared.classes)
    else:
        holdout = evaluation.regression_metrics(y_test, y_pred)
    estimator_params = _scalar_params(model)
    per_row = max(0.0, (full_seconds - small_seconds) / max(1, len(X_test) - len(example)))
    sample = prepared.train if len(prepared.train) <= REFERENCE_MAX_ROWS else prepared.train.sample(REFERENCE_MAX_ROWS, random_state=0)
    # the background of the SHAP importance: the training rows kept with the model, as explanations use them later
    importance, importance_facts = _importance(pipeline, model, prepared.test, prepared.features, prepared.target,
                                               cost=(small_seconds, per_row), say=say, background=sample,
                                               task=prepared.task, classes=prepared.classes)
    if result is not None:
        result.importance = importance_facts
    say("Recording in MLflow")
    figures = _figures(prepared, y_test, y_pred, proba, importance, importance_facts)
    scores = pd.DataFrame({"actual": y_test.to_numpy(), "predicted": np.asarray(y_pred)})
    if proba is not None:
        for k, cls in enumerate(prepared.classes):
            scores[f"proba_{_v(cls)}"] = proba[:, k]
    # Drift monitoring's reference: fitted once here on every training row, logged with the model.
    profile = drift.fit_profile(prepared.train, list(prepared.features), scores=drift_scores(scores))
    # The performance estimate without labels (CBPE / DLE), fitted on the holdout rows and kept with the model.
    estimator, estimator_seconds = _fit_estimator(prepared, X_test, y_test, y_pred, proba)

    started = time.perf_counter()
    mlflow.log_params({"algorithm": algorithm.key, "algorithm_name": algorithm.name,
                       **{f"hp.{k}": v for k, v in estimator_params.items()},
                       **{f"importance.{k}": v for k, v in importance_facts.items() if k in ("method", "rows", "repeats")}})
    tuning = result.tuning if result is not None else None
    if tuning:
        mlflow.log_params({"tune.metric": tuning["metric"], "tune.iterations": tuning["iterations"], "tune.kept": tuning["kept"],
                           "tune.untuned_cv": tuning["untuned_cv"], "tune.tuned_cv": tuning["tuned_cv"],
                           **{f"tune.chosen.{k}": v for k, v in tuning["chosen_params"].items()}})
        mlflow.set_tags({"studio.tuning": tuning_sentence(algorithm.name, tuning)[:5000], "studio.tuning_kept": tuning["kept"]})
    mlflow.log_metrics({**{k: v for k, v in holdout.items() if math.isfinite(v)}, **cv_metrics})
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "plots").mkdir()
        for name, figure in figures.items():
            (tmp_path / "plots" / f"{name}.json").write_text(figure.to_json())
        (tmp_path / "reference").mkdir()
        sample.to_parquet(tmp_path / "reference" / "train.parquet", index=False)
        scores.to_parquet(tmp_path / "reference" / "holdout_scores.parquet", index=False)
        profile.save(tmp_path / "reference")
        from core import estimation

        estimation.log(mlflow, estimator, tmp_path / estimation.FOLDER)
        mlflow.set_tag("studio.estimator_seconds", f"{estimator_seconds:.3f}")
        if len(importance):
            (tmp_path / IMPORTANCE_ARTIFACT).write_text(json.dumps(importance_document(importance, importance_facts), indent=1))
        (tmp_path / "model_info.json").write_text(json.dumps({
            "task": prepared.task, "target": prepared.target, "features": list(prepared.features),
            "classes": [_v(c) for c in prepared.classes], "algorithm": algorithm.key,
            "requested_hyperparameters": dict(kwargs), "holdout_metrics": _clean(holdout),
        }, indent=2, default=str))
        mlflow.log_artifacts(str(tmp_path))
    if dataset is None:
        dataset = _training_dataset(mlflow, prepared, table_digest)
    mlflow.log_input(dataset, context="training")
    from core import model_flavor

    # A classifier with probabilities answers over REST (its pyfunc) with its label and one proba_<class>
    # column per class; the others with the prediction alone (core.model_flavor).
    info = model_flavor.log_model(pipeline, example, task=prepared.task, classes=[_v(c) for c in prepared.classes],
                                  probabilities=proba is not None, pip_requirements=_pinned_requirements())
    from core import integrity

    # The SHA-256 of every file of the model, on the run: nothing loads it unless its files still match.
    client = mlflow.tracking.MlflowClient()
    integrity.record(client, mlflow.active_run().info.run_id, client.get_logged_model(info.model_id).artifact_location)
    return holdout, {"__model_uri": info.model_uri, **estimator_params}, time.perf_counter() - started


def _fit_estimator(prepared: PreparedData, X_test: pd.DataFrame, y_test, y_pred, proba) -> tuple[Any, float]:
    """(core.estimation's estimator fitted on the holdout rows, or None, seconds it took). A failure
    is a bug recorded in the workspace log; the model is kept without an estimate."""
    from core import estimation

    clock = time.perf_counter()
    try:
        fitted = estimation.fit(prepared.task, prepared.classes, prepared.features, X_test, y_test, y_pred, proba)
    except Exception as exc:  # noqa: BLE001 - the model stands without an estimate (scoring says so)
        from core.errors import unexpected

        unexpected(exc, "fitting the performance estimator")
        fitted = None
    return fitted, time.perf_counter() - clock


def _training_dataset(mlflow, prepared: PreparedData, table_digest: str):
    """The training table's lineage as an ``mlflow.data`` dataset (its schema is inferred on first use)."""
    return mlflow.data.from_pandas(prepared.train, name="training table", targets=prepared.target, digest=table_digest[:36])


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


def _clean(values: dict[str, float]) -> dict[str, float | None]:
    """Metrics as JSON: missing ones None, the others at full precision, exactly as MLflow stores them, so
    every page that rounds them (``round_metric``) shows the same figure. (Rounding here to 6 decimals
    first made the Train page round twice: 0.8105004 -> 0.8105 -> 0.810, against 0.811 on the Models page.)"""
    return {k: (float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None) for k, v in values.items()}


def _list(items) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:15]) + (f" and {len(items) - 15} more" if len(items) > 15 else "")


def best_in(summary: TrainingSummary | dict[str, Any]) -> str | None:
    """The run id of a finished job's best model (the one ``results_table`` marks ★)."""
    best = _typed(summary).best()
    return best.run_id if best else None


def round_metric(value: Any, places: int = 3) -> float | None:
    """The one rounding rule of every metric a person reads: the stored (full-precision) value rounded
    to 3 decimals, half to even, as Python's ``round`` does (``f"{x:.3f}"`` agrees); None when missing."""
    number = metrics.finite(value)
    return None if number is None else round(number, places)


def _number(value: Any, places: int = 3) -> float:
    """``round_metric`` for a table cell: NaN (a blank with ``placeholder=""``) when missing."""
    rounded = round_metric(value, places)
    return math.nan if rounded is None else rounded


def _name(task: str, key: str) -> str:
    try:
        return catalog.get(task, key).name
    except BadInputError:
        return str(key)


def results_table(summary: TrainingSummary | dict[str, Any]) -> pd.DataFrame:
    """A job's models as people compare them: holdout metrics rounded by ``round_metric`` (3 decimals,
    from the same full-precision value MLflow holds), missing ones NaN, the best one marked ★, and the CV
    mean of the ranking metric (labelled "CV ..." so it is not taken for the holdout figure)."""
    summary = _typed(summary)
    best = summary.best()
    cv = metrics.default_tune(summary.task)
    rows = []
    for m in summary.models:
        row: dict[str, Any] = {"best": "★" if best is not None and m.run_id == best.run_id else "", "model": m.name,
                               "status": "trained" if m.finished else "failed"}
        for name in metrics.for_task(summary.task):
            row[metrics.label(name)] = _number(m.metrics.get(name))
        row[f"CV {metrics.label(cv)}"] = _number(m.cv_metrics.get(f"cv_{cv}_mean"))
        rows.append(row)
    return pd.DataFrame(rows)


def results_help(summary: TrainingSummary | dict[str, Any]) -> dict[str, str]:
    """Help text per column of ``results_table`` (for ``st.column_config``)."""
    task = _typed(summary).task
    cv = metrics.default_tune(task)
    helps = {"best": "★ marks the model with the best " + metrics.label(metrics.primary(task)) + " on the holdout rows.",
             "model": "The algorithm.", "status": "Whether the model trained; a failed one says why below."}
    helps.update({metrics.label(n): f"{metrics.help_text(n)} Measured on the holdout rows." for n in metrics.for_task(task)})
    helps[f"CV {metrics.label(cv)}"] = (f"{metrics.help_text(cv)} Mean over the cross-validation folds of the training "
                                        "rows, not the holdout rows.")
    return helps


# The leaderboard shows the metrics a comparison can rank by (metrics.tunable; PyCaret's kappa, MCC, MSE
# and RMSLE are left out: they are in each model's MLflow run as cv_<name>_mean).
LEADERBOARD_TIME = "time (s)"


def _leaderboard_metric(summary: TrainingSummary) -> str | None:
    return (summary.compare or {}).get("metric") or None


def leaderboard_table(summary: TrainingSummary | dict[str, Any]) -> pd.DataFrame:
    """The compare leaderboard for people: rank, the studio's algorithm names, the CV means labelled with
    the studio's metric names ("CV AUC"; the ranking metric first), ``round_metric`` rounding, NaN where
    there is no figure (shown blank with ``placeholder=""``) and the seconds each algorithm took, to a
    tenth. Empty when the job did not compare. Reads old summaries too (PyCaret's column names)."""
    summary = _typed(summary)
    task = summary.task
    ranked = _leaderboard_metric(summary)
    names = list(metrics.tunable(task))
    if ranked in names:
        names.remove(ranked)
        names.insert(0, ranked)
    rows = []
    for k, entry in enumerate(summary.leaderboard or (), start=1):
        values = {metrics.from_pycaret(str(c)) or c: v for c, v in entry.items()}
        key = str(entry.get("algorithm", ""))
        row: dict[str, Any] = {"rank": int(entry.get("rank", k)), "model": _name(task, key)}
        for name in names:
            row[f"CV {metrics.label(name)}"] = _number(values.get(name))
        seconds = entry.get("seconds", entry.get("TT (Sec)"))
        row[LEADERBOARD_TIME] = _number(seconds, 1)
        rows.append(row)
    columns = ["rank", "model", *(f"CV {metrics.label(n)}" for n in names), LEADERBOARD_TIME]
    return pd.DataFrame(rows, columns=columns)


def leaderboard_help(summary: TrainingSummary | dict[str, Any]) -> dict[str, str]:
    """Help text per column of ``leaderboard_table`` (for ``st.column_config``)."""
    summary = _typed(summary)
    folds = (summary.compare or {}).get("folds")
    over = f"the {folds} cross-validation folds" if folds else "the cross-validation folds"
    ranked = _leaderboard_metric(summary)
    helps = {"rank": f"Position by CV {metrics.label(ranked)}." if metrics.find(ranked) else "Position in the comparison.",
             "model": "The algorithm, with its default settings."}
    for name in metrics.tunable(summary.task):
        helps[f"CV {metrics.label(name)}"] = f"{metrics.help_text(name)} Mean over {over} of the training rows."
    helps[LEADERBOARD_TIME] = "Seconds this algorithm took: cross-validation on every fold, then the fit on all training rows."
    return helps


def _figure(value: float, other: float) -> tuple[str, str]:
    """Two CV figures at 3 decimals, or 4 when 3 would show a difference as a tie."""
    places = 3 if round_metric(value) != round_metric(other) or value == other else 4
    return f"{round_metric(value, places):.{places}f}", f"{round_metric(other, places):.{places}f}"


def tuning_sentence(name: str, tuning: dict[str, Any]) -> str:
    """What a random search chose and whether it beat the untuned model, by the tuning metric."""
    metric = tuning.get("metric", "")
    label = metrics.label(metric)
    direction = "higher" if tuning.get("higher_is_better", True) else "lower"
    chosen = ", ".join(f"{k}={v}" for k, v in (tuning.get("chosen_params") or {}).items()) or "no different setting"
    tuned, untuned = _figure(tuning["tuned_cv"], tuning["untuned_cv"])
    iterations = tuning.get("iterations")
    search = f" ({iterations} random-search iterations)" if iterations else ""
    if tuning.get("kept") == "tuned":
        return (f"Tuning {name}{search} chose {chosen}. It beat the untuned model on CV {label} ({direction} is better): "
                f"{tuned} against {untuned}, so the tuned model is kept.")
    return (f"Tuning {name}{search} found {chosen}, but it did not beat the untuned model on CV {label} ({direction} is "
            f"better): {tuned} against {untuned}, so the untuned model is kept.")


def importance_sentence(name: str, facts: dict[str, Any]) -> str | None:
    """How a model's importance chart was measured, when it was bounded; None for built-in importances."""
    method = (facts or {}).get("method")
    budget = facts.get("budget_seconds") if facts else None
    if method == "permutation":
        repeats, rows = facts["repeats"], facts["rows"]
        which = f"all {rows:,}" if rows == facts.get("of_rows") else f"{rows:,} of the {facts['of_rows']:,}" if facts.get("of_rows") else f"{rows:,}"
        return (f"Feature importance of {name}: permutation importance from {which} holdout rows, {repeats} "
                f"repeat{'s' if repeats != 1 else ''} (sized to a {budget:g} s budget).")
    if method == "skipped":
        return (f"Feature importance of {name} was not measured: permutation importance on even {IMPORTANCE_MIN_ROWS} holdout "
                f"rows would take about {facts.get('estimated_seconds', 0):g} s, over the {budget:g} s budget.")
    return None


def result_notes(summary: TrainingSummary | dict[str, Any]) -> list[str]:
    """Every sentence the results should show, in order: the preparation and comparison notes, what
    tuning chose and whether it helped, and how bounded importances were measured."""
    summary = _typed(summary)
    notes = list(summary.notes)
    for model in summary.finished:
        if model.tuning:
            notes.append(tuning_sentence(model.name, model.tuning))
        sentence = importance_sentence(model.name, model.importance)
        if sentence:
            notes.append(sentence)
    return notes


def result_warnings(summary: TrainingSummary | dict[str, Any]) -> list[str]:
    """One sentence per trained model that does no better than a constant guess on the holdout rows:
    R² below 0, AUC at or under 0.5, or log loss at least that of always guessing the class shares."""
    summary = _typed(summary)
    warnings = []
    for model in summary.finished:
        values = model.metrics
        reasons = []
        if summary.task == CLASSIFICATION:
            auc, ratio = round_metric(values.get("auc"), 12), round_metric(values.get("log_loss_ratio"), 12)
            if auc is not None and auc <= 0.5:
                reasons.append(f"its {metrics.label('auc')} is {round_metric(auc):.3f}, and 0.5 is what a coin toss gets")
            if ratio is not None and ratio >= 1:
                reasons.append(f"its log loss is {round_metric(ratio):.3f} times that of always predicting the class shares")
        else:
            r2 = round_metric(values.get("r2"), 12)
            if r2 is not None and r2 < 0:
                shown = f"{round_metric(r2):.3f}, below 0" if round_metric(r2) != 0 else "just below 0"
                reasons.append(f"its {metrics.label('r2')} is {shown}, so predicting the average for every row would be closer")
        if reasons:
            warnings.append(f"{model.name} does no better than a constant guess on the holdout rows: {'; '.join(reasons)}. "
                            f"Do not use it as it is; its features may say little about '{summary.target or 'the target'}'.")
    return warnings
