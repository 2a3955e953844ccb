"""Algorithms the studio offers and the specs of their main hyperparameters.

One table drives the training form (typed widgets, ranges, defaults), validates what the CLI
receives (``--set dt.max_depth=5``) and tells PyCaret what to build: keys are PyCaret's model ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from core import metrics
from core.errors import BadInputError

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, valid range or choices, default and a one-line help."""

    name: str
    kind: str  # "int", "float", "choice" or "bool"
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    log: bool = False  # a float best moved on a log scale (C, alpha, learning rate)
    help: str = ""

    def describe(self) -> str:
        if self.kind in ("int", "float"):
            return f"a{'n integer' if self.kind == 'int' else ' number'} from {_fmt(self.low)} to {_fmt(self.high)}"
        if self.kind == "bool":
            return "true or false"
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def validate(self, value: Any, *, owner: str = "") -> Any:
        """The value converted to this parameter's type, or a :class:`BadInputError` that says
        which values are valid."""
        label = f"{owner}.{self.name}" if owner else self.name
        wrong = BadInputError(f"{label} must be {self.describe()}; got {value!r}.")
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.strip().lower() in ("true", "yes", "1")
            raise wrong
        if self.kind == "choice":
            for choice in self.choices:
                if value == choice or (isinstance(value, str) and value.strip() == str(choice)):
                    return choice
            raise wrong
        try:
            if isinstance(value, bool):
                raise ValueError
            if self.kind == "int":
                number = float(value)
                if not number.is_integer():
                    raise ValueError
                number = int(number)
            else:
                number = float(value)
                if not math.isfinite(number):
                    raise ValueError
        except (TypeError, ValueError):
            raise wrong from None
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            raise BadInputError(f"{label} = {_fmt(number)} is out of range: it must be {self.describe()}.")
        return number

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "kind", "default", "low", "high", "choices", "log", "help")}


@dataclass(frozen=True)
class Algorithm:
    key: str  # PyCaret's model id
    name: str
    task: str
    params: tuple[Param, ...]
    fixed: dict[str, Any] = field(default_factory=dict)  # always passed (e.g. a convergence budget)
    probabilities: bool = True  # gives class probabilities (needed for log loss, AUC, ROC)
    help: str = ""

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        valid = ", ".join(p.name for p in self.params)
        raise BadInputError(f"'{self.key}' ({self.name}) has no hyperparameter '{name}'. Valid: {valid}.")

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def validate(self, values: dict[str, Any]) -> dict[str, Any]:
        """Every hyperparameter of this algorithm: the given ones checked, the rest at defaults."""
        checked = self.defaults()
        for name, value in values.items():
            checked[name] = self.param(name).validate(value, owner=self.key)
        return checked


def _p(name, kind, default, low=None, high=None, choices=(), log=False, help=""):
    return Param(name, kind, default, low, high, tuple(choices), log, help)


_TREE_DEPTH = _p("max_depth", "int", 6, 1, 50, help="How many questions deep a tree may go; deeper fits more detail and overfits sooner.")
_LEAF = _p("min_samples_leaf", "int", 20, 1, 10_000, help="Fewest rows a leaf may hold; larger gives smoother predictions.")
_TREES = _p("n_estimators", "int", 100, 10, 2_000, help="Number of trees.")
_FOREST_DEPTH = _p("max_depth", "int", 10, 1, 50, help="How deep each tree may go.")
_RATE = _p("learning_rate", "float", 0.1, 0.001, 1.0, log=True, help="How much each new tree corrects the previous ones.")
_NEIGHBOURS = _p("n_neighbors", "int", 25, 1, 500, help="How many similar rows vote on a prediction.")
_KNN_WEIGHTS = _p("weights", "choice", "uniform", choices=("uniform", "distance"), help="Whether closer rows count more.")
_LEAVES = _p("num_leaves", "int", 31, 2, 1_024, help="Leaves per tree.")
_CHILD = _p("min_child_samples", "int", 20, 1, 10_000, help="Fewest rows in a leaf.")
_GB_DEPTH = _p("max_depth", "int", 3, 1, 20, help="Depth of each tree.")
_ALPHA = _p("alpha", "float", 1.0, 1e-6, 1e4, log=True, help="Strength of the penalty on large coefficients.")

_ALGORITHMS: tuple[Algorithm, ...] = (
    # classification
    Algorithm("lr", "Logistic regression", CLASSIFICATION, (
        _p("C", "float", 1.0, 1e-4, 1e4, log=True, help="Inverse strength of the penalty; smaller is simpler."),
        _p("class_weight", "choice", "none", choices=("none", "balanced"), help="'balanced' gives rare classes more weight."),
        _p("max_iter", "int", 1000, 50, 100_000, help="Iteration budget of the solver."),
    ), help="A straight-line model of the log-odds; fast and easy to explain."),
    Algorithm("dt", "Decision tree", CLASSIFICATION, (
        _TREE_DEPTH, _LEAF, _p("criterion", "choice", "gini", choices=("gini", "entropy", "log_loss"), help="How splits are scored."),
    ), help="A flowchart of yes/no questions."),
    Algorithm("rf", "Random forest", CLASSIFICATION, (_TREES, _FOREST_DEPTH, _p("min_samples_leaf", "int", 5, 1, 10_000, help=_LEAF.help)),
              help="Many trees on random parts of the data, averaged."),
    Algorithm("et", "Extra trees", CLASSIFICATION, (_TREES, _FOREST_DEPTH, _p("min_samples_leaf", "int", 5, 1, 10_000, help=_LEAF.help)),
              help="Like a random forest with random split points; often faster."),
    Algorithm("knn", "K nearest neighbours", CLASSIFICATION, (_NEIGHBOURS, _KNN_WEIGHTS),
              help="Predicts from the most similar training rows."),
    Algorithm("nb", "Naive Bayes", CLASSIFICATION, (
        _p("var_smoothing", "float", 1e-9, 1e-12, 1.0, log=True, help="Variance added for stability."),
    ), help="Treats features as independent; very fast baseline."),
    Algorithm("svm", "Linear SVM", CLASSIFICATION, (
        _p("alpha", "float", 1e-4, 1e-7, 10.0, log=True, help="Strength of the penalty."),
        _p("max_iter", "int", 1000, 50, 100_000, help="Passes over the data."),
    ), probabilities=False, help="A maximum-margin straight line; gives classes, not probabilities."),
    Algorithm("gbc", "Gradient boosting", CLASSIFICATION, (_TREES, _RATE, _GB_DEPTH),
              help="Trees added one by one, each correcting the last."),
    Algorithm("lightgbm", "LightGBM", CLASSIFICATION, (_TREES, _RATE, _LEAVES, _CHILD), fixed={"verbosity": -1},
              help="Fast gradient boosting for large tables."),
    # regression
    Algorithm("lr", "Linear regression", REGRESSION, (
        _p("fit_intercept", "bool", True, help="Fit a constant term."),
    ), help="A straight-line model; fast and easy to explain."),
    Algorithm("ridge", "Ridge regression", REGRESSION, (_ALPHA,), help="Linear regression with a penalty on large coefficients."),
    Algorithm("lasso", "Lasso regression", REGRESSION, (_p("alpha", "float", 0.01, 1e-6, 1e4, log=True, help=_ALPHA.help),),
              fixed={"max_iter": 10_000}, help="Linear regression that can drop features entirely."),
    Algorithm("en", "Elastic net", REGRESSION, (
        _p("alpha", "float", 0.01, 1e-6, 1e4, log=True, help=_ALPHA.help),
        _p("l1_ratio", "float", 0.5, 0.0, 1.0, help="Mix of lasso (1) and ridge (0) penalties."),
    ), fixed={"max_iter": 10_000}, help="A mix of ridge and lasso."),
    Algorithm("dt", "Decision tree", REGRESSION, (_TREE_DEPTH, _LEAF), help="A flowchart of yes/no questions."),
    Algorithm("rf", "Random forest", REGRESSION, (_TREES, _FOREST_DEPTH, _p("min_samples_leaf", "int", 5, 1, 10_000, help=_LEAF.help)),
              help="Many trees on random parts of the data, averaged."),
    Algorithm("et", "Extra trees", REGRESSION, (_TREES, _FOREST_DEPTH, _p("min_samples_leaf", "int", 5, 1, 10_000, help=_LEAF.help)),
              help="Like a random forest with random split points."),
    Algorithm("knn", "K nearest neighbours", REGRESSION, (_NEIGHBOURS, _KNN_WEIGHTS), help="Averages the most similar rows."),
    Algorithm("gbr", "Gradient boosting", REGRESSION, (_TREES, _RATE, _GB_DEPTH), help="Trees added one by one."),
    Algorithm("lightgbm", "LightGBM", REGRESSION, (_TREES, _RATE, _LEAVES, _CHILD), fixed={"verbosity": -1},
              help="Fast gradient boosting for large tables."),
)

DEFAULT_ALGORITHMS = {CLASSIFICATION: ("lr", "dt"), REGRESSION: ("lr", "dt")}

# Metrics a user can optimise in tuning / sort a comparison by, the default first: our name -> (PyCaret's
# name, higher is better). Read from core.metrics, the one table of metric facts.
TUNE_METRICS = {task: {key: (metrics.METRICS[key].pycaret, metrics.higher_is_better(key)) for key in metrics.tunable(task)}
                for task in TASKS}
DEFAULT_TUNE_METRIC = {task: metrics.default_tune(task) for task in TASKS}


def algorithms(task: str) -> list[Algorithm]:
    check_task(task)
    return [a for a in _ALGORITHMS if a.task == task]


def get(task: str, key: str) -> Algorithm:
    for algorithm in algorithms(task):
        if algorithm.key == key:
            return algorithm
    valid = ", ".join(f"{a.key} ({a.name})" for a in algorithms(task))
    raise BadInputError(f"There is no {task} algorithm '{key}'. Valid: {valid}.")


def check_task(task: str) -> str:
    if task not in TASKS:
        raise BadInputError(f"The task must be 'classification' or 'regression'; got {task!r}.")
    return task


def check_tune_metric(task: str, metric: str | None) -> str:
    metric = metric or DEFAULT_TUNE_METRIC[task]
    if metric not in TUNE_METRICS[task]:
        raise BadInputError(f"Cannot optimise '{metric}' for {task}. Valid: {', '.join(TUNE_METRICS[task])}.")
    return metric


def parse_set_options(task: str, options: list[str]) -> dict[str, dict[str, Any]]:
    """``["dt.max_depth=5", "lr.C=0.5"]`` -> ``{"dt": {"max_depth": 5}, "lr": {"C": 0.5}}``, validated."""
    result: dict[str, dict[str, Any]] = {}
    for option in options:
        key_name, sep, raw = option.partition("=")
        algorithm_key, dot, name = key_name.strip().partition(".")
        if not sep or not dot or not name:
            raise BadInputError(f"--set expects ALGORITHM.PARAM=VALUE, like dt.max_depth=5; got {option!r}.")
        algorithm = get(task, algorithm_key)
        result.setdefault(algorithm.key, {})[name] = algorithm.param(name).validate(raw.strip(), owner=algorithm.key)
    return result


def estimator_kwargs(algorithm: Algorithm, values: dict[str, Any]) -> dict[str, Any]:
    """What PyCaret's ``create_model`` receives: checked values, fixed extras, 'none' meaning None."""
    kwargs = {**algorithm.fixed, **algorithm.validate(values)}
    return {k: (None if v == "none" else v) for k, v in kwargs.items()}


def _fmt(number: float | None) -> str:
    if number is None:
        return "?"
    if float(number).is_integer() and abs(number) < 1e6:
        return str(int(number))
    return f"{number:g}"
