"""The one table of the studio's metrics: for each, its label, its task, whether higher is better, how
it is shown, a one-line help and PyCaret's name for it. Every page, table, ranking and comparison
reads its metric facts here.

Orders matter where people read them: :func:`for_task` is the order of a training job's results
(the Train page's columns); :func:`ranked` puts the task's primary metric first (the registry and
the Models page); :func:`tunable` puts the default tuning metric first (the tuning and compare
choices, the leaderboard). Plain Python, no other studio module: anything may import it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

# The task names of core.catalog (not imported: the catalogue builds its tuning choices from this table).
CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)


@dataclass(frozen=True)
class Metric:
    key: str  # the name MLflow records it under (holdout), and "cv_<key>_mean" / "_std" for cross-validation
    label: str  # what people read: "log loss", "AUC", "R²"
    task: str  # "classification" or "regression"
    higher_is_better: bool
    help: str  # one sentence, for tooltips and "what do these numbers mean?"
    format: str = ".3f"  # how one value is written (``fmt``); every page rounds metrics to 3 decimals
    pycaret: str | None = None  # PyCaret's column in its CV table (and its ``optimize=`` name)
    holdout: bool = True  # measured on the holdout rows and on labelled scored files; False: PyCaret's CV only
    tunable: bool = False  # a metric tuning can optimise and a comparison can rank by
    # measured on the predicted classes, so it changes with the cut-off (accuracy, F1, ...); False: on
    # the probabilities or the numbers alone (AUC, log loss; every regression metric)
    at_cutoff: bool = False

    @property
    def lower_is_better(self) -> bool:
        return not self.higher_is_better

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b`` (a tie is not)."""
        return a > b if self.higher_is_better else a < b

    def fmt(self, value: Any, missing: str = "") -> str:
        number = finite(value)
        return missing if number is None else f"{number:{self.format}}"


def _m(key: str, label: str, task: str, higher: bool, help: str, **extra: Any) -> Metric:
    return Metric(key=key, label=label, task=task, higher_is_better=higher, help=help, **extra)


_C, _R = CLASSIFICATION, REGRESSION
METRICS: dict[str, Metric] = {m.key: m for m in (
    # classification's holdout metrics, in the order a job's results show them
    _m("log_loss", "log loss", _C, False, "How far the predicted probabilities are from what happened; lower is better."),
    _m("f1", "F1", _C, True, "Balance of precision and recall, from 0 to 1; higher is better.", pycaret="F1", tunable=True, at_cutoff=True),
    _m("auc", "AUC", _C, True, "How well the model ranks positives above negatives; 0.5 is a coin toss, 1 is perfect.",
       pycaret="AUC", tunable=True),
    _m("accuracy", "accuracy", _C, True, "Share of rows predicted right.", pycaret="Accuracy", tunable=True, at_cutoff=True),
    _m("precision", "precision", _C, True, "Of the rows predicted positive, the share that were.", pycaret="Prec.", tunable=True, at_cutoff=True),
    _m("recall", "recall", _C, True, "Of the positive rows, the share the model found.", pycaret="Recall", tunable=True, at_cutoff=True),
    _m("log_loss_ratio", "log loss / guess", _C, False,
       "Log loss divided by that of always guessing the rows' own class shares: below 1 the model beats that guess, "
       "above 1 it does worse. Unlike log loss it can be compared between files whose class balance differs."),
    # regression's holdout metrics, in the order a job's results show them
    _m("mae", "MAE", _R, False, "Average size of the error, in the target's unit; lower is better.", pycaret="MAE", tunable=True),
    _m("rmse", "RMSE", _R, False, "Typical size of the error, punishing big misses more; lower is better.",
       pycaret="RMSE", tunable=True),
    _m("r2", "R²", _R, True, "Share of the target's variation the model explains; 1 is perfect, 0 is no better than the mean.",
       pycaret="R2", tunable=True),
    _m("mape", "MAPE", _R, False, "Average error as a share of the true value; lower is better.", pycaret="MAPE", tunable=True),
    # PyCaret's other CV columns: in each model's MLflow run as cv_<key>_mean / _std, not measured on holdout rows
    _m("kappa", "kappa", _C, True, "Cohen's kappa: agreement with the true classes beyond chance; 1 is perfect, 0 is chance.",
       pycaret="Kappa", holdout=False, at_cutoff=True),
    _m("mcc", "MCC", _C, True, "Matthews correlation between predicted and true classes, from -1 to 1; higher is better.",
       pycaret="MCC", holdout=False, at_cutoff=True),
    _m("mse", "MSE", _R, False, "Average squared error; lower is better.", pycaret="MSE", holdout=False),
    _m("rmsle", "RMSLE", _R, False, "Typical size of the error of the logarithms, for relative misses; lower is better.",
       pycaret="RMSLE", holdout=False),
)}

# The one holdout metric that ranks the models of a job (the Train page's ★).
_PRIMARY = {CLASSIFICATION: "log_loss", REGRESSION: "rmse"}
# What tuning optimises and a comparison ranks by when nobody says (also the results' CV column).
_DEFAULT_TUNE = {CLASSIFICATION: "auc", REGRESSION: "rmse"}
_BY_PYCARET = {m.pycaret: m.key for m in METRICS.values() if m.pycaret}

K = TypeVar("K")


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool); else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"The task must be 'classification' or 'regression'; got {task!r}.")
    return task


def find(key: str) -> Metric | None:
    return METRICS.get(key)


def label(key: str) -> str:
    """The metric's label; an unknown name as it is."""
    metric = METRICS.get(key)
    return metric.label if metric else str(key)


def help_text(key: str) -> str:
    """The metric's one-line help; "" for an unknown name."""
    metric = METRICS.get(key)
    return metric.help if metric else ""


def _base_key(name: str) -> str:
    """The metric a recorded name measures: "cv_f1_mean" and "cv_f1_std" measure "f1"."""
    name = str(name)
    if name.startswith("cv_") and name.endswith(("_mean", "_std")):
        return name[3:].rsplit("_", 1)[0]
    return name


def depends_on_cutoff(name: str) -> bool:
    """Whether a metric is measured on the predicted classes, so that it changes with the cut-off
    (accuracy, F1, precision, recall, kappa, MCC; also their "cv_..._mean" / "_std"), rather than on
    the probabilities alone (AUC, log loss: threshold-free) or on numbers (regression). Pages label
    the first "at the cut-off" and keep them apart from the others. An unknown name: False."""
    metric = METRICS.get(_base_key(name))
    return bool(metric and metric.at_cutoff)


# The classification metrics that no cut-off changes (AUC, log loss, log loss / guess).
THRESHOLD_FREE = frozenset(k for k, m in METRICS.items() if m.task == CLASSIFICATION and not m.at_cutoff)


def higher_is_better(key: str) -> bool:
    """Whether a higher value is better; an unknown name counts as a score (higher is better)."""
    metric = METRICS.get(key)
    return metric.higher_is_better if metric else True


def direction(key: str) -> str:
    """``"higher is better"`` or ``"lower is better"``."""
    return "higher is better" if higher_is_better(key) else "lower is better"


def better(key: str, a: float, b: float) -> bool:
    """Whether ``a`` is strictly better than ``b`` by this metric."""
    return a > b if higher_is_better(key) else a < b


def is_worse(key: str, value: float, before: float) -> bool:
    """Whether ``value`` is strictly worse than ``before`` (a file against the training holdout)."""
    return better(key, before, value)


def best(key: str, values: Mapping[K, Any]) -> K | None:
    """Which of ``values`` (anything -> a figure) is best by this metric, missing and infinite figures
    left out; the first of equals; None when no figure is there."""
    figures = {k: v for k, v in ((k, finite(x)) for k, x in values.items()) if v is not None}
    if not figures:
        return None
    pick = max if higher_is_better(key) else min
    return pick(figures, key=figures.get)


def fmt(key: str, value: Any, missing: str = "") -> str:
    """One value as people read it (3 decimals); ``missing`` when there is none (None, NaN, infinite)."""
    metric = METRICS.get(key)
    if metric is not None:
        return metric.fmt(value, missing)
    number = finite(value)
    return missing if number is None else f"{number:.3f}"


def for_task(task: str) -> tuple[str, ...]:
    """The task's holdout metrics (what core.evaluation measures), in the order a job's results show them."""
    _check_task(task)
    return tuple(m.key for m in METRICS.values() if m.task == task and m.holdout)


def primary(task: str) -> str:
    """The holdout metric that ranks the models of a job (log loss; RMSE)."""
    return _PRIMARY[_check_task(task)]


def default_tune(task: str) -> str:
    """The metric tuning optimises and a comparison ranks by unless told otherwise (AUC; RMSE)."""
    return _DEFAULT_TUNE[_check_task(task)]


def _first(head: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    return (head, *(k for k in keys if k != head))


def ranked(task: str | None = None) -> tuple[str, ...]:
    """The task's holdout metrics with the primary one first; every task's, one task after the other,
    for None (a version whose task is not known)."""
    if task is None:
        return tuple(k for t in TASKS for k in ranked(t))
    return _first(primary(task), for_task(task))


def tunable(task: str) -> tuple[str, ...]:
    """The metrics tuning can optimise and a comparison can rank by, the default one first."""
    _check_task(task)
    return _first(default_tune(task), tuple(m.key for m in METRICS.values() if m.task == task and m.tunable))


def from_pycaret(name: str) -> str | None:
    """The studio's name of a column of PyCaret's CV table ("Prec." -> "precision"); None for others."""
    return _BY_PYCARET.get(str(name))


def lower_is_better() -> frozenset[str]:
    """Every metric where lower is better."""
    return frozenset(k for k, m in METRICS.items() if not m.higher_is_better)


def labels() -> dict[str, str]:
    return {k: m.label for k, m in METRICS.items()}


def helps() -> dict[str, str]:
    return {k: m.help for k, m in METRICS.items()}
