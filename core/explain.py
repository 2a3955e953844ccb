"""Why a model said what it said: each input column's contribution to a prediction (SHAP values).

A registered model is a pipeline: preprocessing steps (imputers, encoders) and a final estimator.
The estimator is explained on the transformed features it sees, and the contributions of the
columns one input column became (the pieces of a one-hot encoding) are summed back, so every
contribution is named after an **original** input column. For every row,

    base value + sum of the contributions = the output explained

(SHAP's additivity), where the base value is the average output over the background rows (a sample
of the model's own training rows, kept on its training run as ``reference/train.parquet``).

Which output is explained, and by which explainer:

- a tree model (decision tree, random forest, extra trees, gradient boosting, LightGBM): SHAP's tree
  explainer, *interventional* against the background rows. A classifier is explained in
  probability space (the probability of the last class, the positive one of a yes/no target);
  exact, so additivity holds to rounding. A regressor: its prediction.
- a linear model (logistic, linear, ridge, lasso, elastic net, linear SVM): SHAP's linear explainer,
  whose contributions are ``coefficient x (value - background mean)`` on the transformed features.
  A linear classifier is explained in its *score* space, before that score becomes a probability:
  for logistic regression the log-odds of the last class (a sum of contributions in probability
  space would not be exact). A regressor: its prediction.
- any other model (nearest neighbours, naive Bayes, ...): SHAP's permutation explainer on a small
  background sample, in probability space for a classifier, stopped after a time limit.

:class:`Explanation` says which explainer and which output (``output`` and ``output_class``).
shap is imported only when an explanation is computed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import datasets
from core.catalog import CLASSIFICATION
from core.errors import BadInputError, EmptyTableError, NotFoundError

TREE, LINEAR, PERMUTATION = "tree", "linear", "permutation"
PROBABILITY, LOG_ODDS, SCORE, PREDICTION = "probability", "log_odds", "score", "prediction"
# Background rows per explainer (a sample of the training rows). Tree: each row is compared with
# each background row (interventional), so the cost grows with them; SHAP's guidance is ~100.
# Linear: only their mean is used, so many are cheap. Permutation: every evaluation runs the model
# on all of them, so few.
BACKGROUND_ROWS = {TREE: 100, LINEAR: 1_000, PERMUTATION: 50}
TREE_BLOCK = 500  # rows per call of SHAP's tree explainer (~1.5 s for LightGBM on Kobe)
PERMUTATIONS = 10  # permutation explainer: orderings tried per row (each forwards and backwards)
ADDITIVITY = 1e-6  # a tree explanation further than this (relative to the output) from the model's output is redone
TIME_LIMIT = 60.0  # seconds the permutation explainer may take before it stops and says so
DEFAULT_ROWS = 1_000  # CLI: rows of the file explained when --rows is not given
SEED = 0

_TREE_MODULES = ("lightgbm", "xgboost", "catboost")
_TREE_CLASSES = ("DecisionTreeClassifier", "DecisionTreeRegressor", "RandomForestClassifier", "RandomForestRegressor",
                 "ExtraTreesClassifier", "ExtraTreesRegressor", "GradientBoostingClassifier", "GradientBoostingRegressor")


# --- the result --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Explanation:
    """Contributions of each original input column to the output of each explained row.

    ``contributions[i, j]`` is column ``columns[j]``'s contribution to row i; ``base_value`` plus a
    row's contributions equals ``outputs[i]``, the model's output in the space ``output`` names:
    ``probability`` (of ``output_class``), ``log_odds`` (of ``output_class``, before the logistic
    function turns it into a probability), ``score`` (a linear classifier's decision score for
    ``output_class``) or ``prediction`` (a regressor's)."""

    model: str  # name/version
    explainer: str  # tree, linear or permutation
    output: str  # probability, log_odds, score or prediction
    output_class: Any  # the class whose output is explained; None for a regression
    target: str | None
    columns: tuple[str, ...]  # the original input columns, in the model's order
    base_value: float  # the average output over the background rows
    contributions: np.ndarray  # rows x columns
    outputs: np.ndarray  # the model's output per row (in the space ``output`` names)
    values: pd.DataFrame  # the input values explained (original columns, as the model read them)
    background_rows: int
    notes: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return len(self.outputs)

    @property
    def output_label(self) -> str:
        """The output in words: "the probability of 1", "the predicted price"."""
        return output_words(self.output, self.output_class, self.target)

    def frame(self) -> pd.DataFrame:
        """One column per original input (its contribution), then ``base_value`` and ``output``."""
        out = pd.DataFrame(self.contributions, columns=list(self.columns), index=self.values.index)
        out[_free("base_value", self.columns)] = self.base_value
        out[_free("output", self.columns)] = self.outputs
        return out

    def row(self, i: int) -> pd.Series:
        """Row i's contributions by original column, largest effect first."""
        series = pd.Series(self.contributions[i], index=list(self.columns))
        return series.reindex(series.abs().sort_values(ascending=False, kind="stable").index)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "explainer": self.explainer, "output": self.output, "output_class": _plain(self.output_class),
            "target": self.target, "columns": list(self.columns), "base_value": float(self.base_value),
            "contributions": self.contributions.tolist(), "outputs": self.outputs.tolist(),
            "values": [[_plain(v) for v in row] for row in self.values.itertuples(index=False, name=None)],
            "index": [_plain(v) for v in self.values.index], "background_rows": self.background_rows, "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Explanation:
        columns = tuple(data["columns"])
        values = pd.DataFrame(data.get("values") or [], columns=list(columns), index=data.get("index"))
        return cls(
            model=data["model"], explainer=data["explainer"], output=data["output"], output_class=data.get("output_class"),
            target=data.get("target"), columns=columns, base_value=float(data["base_value"]),
            contributions=np.asarray(data["contributions"], dtype=float).reshape(len(data["outputs"]), len(columns)),
            outputs=np.asarray(data["outputs"], dtype=float), values=values,
            background_rows=int(data.get("background_rows", 0)), notes=tuple(data.get("notes") or ()),
        )


def _free(name: str, columns) -> str:
    """``name``, or ``explain_name`` when an input column already has that name."""
    return name if name not in columns else f"explain_{name}"


def _plain(value: Any) -> Any:
    """A value JSON can hold: numpy scalars as Python ones, missing as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return str(value)
    return value


# --- in words ----------------------------------------------------------------------------------


def output_words(output: str, output_class: Any = None, target: str | None = None) -> str:
    shown = _value_text(output_class)
    if output == PROBABILITY:
        return f"the probability of {shown}"
    if output == LOG_ODDS:
        return f"the log-odds of {shown}"
    if output == SCORE:
        return f"the score of {shown}"
    return f"the predicted {target}" if target else "the prediction"


def _value_text(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return "missing"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"  # as the form shows it
    return str(value)


def _amount(value: float, output: str) -> str:
    size = abs(value)
    if output == PROBABILITY:
        return f"{size:.2f}" if size >= 0.005 else _written_out(size)
    if size >= 1000:
        return f"{size:,.0f}"
    return f"{size:.3g}" if size >= 1e-3 else _written_out(size)


def _written_out(size: float) -> str:
    """A small amount with two significant digits, never in scientific notation (0.000047, not 4.7e-05)."""
    if size == 0 or not math.isfinite(size):
        return f"{size:g}"
    decimals = max(0, 1 - math.floor(math.log10(size)))
    return f"{size:.{decimals}f}".rstrip("0").rstrip(".")


def sentence(column: str, value: Any, contribution: float, output: str, output_class: Any = None,
             target: str | None = None) -> str:
    """A contribution in words: "shot_distance = 25 raised the probability of 1 by 0.21"."""
    moved = "raised" if contribution > 0 else "lowered" if contribution < 0 else "did not change"
    words = f"{column} = {_value_text(value)} {moved} {output_words(output, output_class, target)}"
    return words if contribution == 0 else f"{words} by {_amount(contribution, output)}"


def sentences(explanation: Explanation, i: int = 0, top: int | None = None) -> list[str]:
    """Row i's contributions in words, largest effect first (``top``: only that many)."""
    ordered = explanation.row(i)
    if top is not None:
        ordered = ordered.iloc[:top]
    row = explanation.values.iloc[i]
    return [sentence(column, row[column], float(amount), explanation.output, explanation.output_class, explanation.target)
            for column, amount in ordered.items()]


def summary(explanation: Explanation, i: int = 0) -> str:
    """One line on row i: where the output starts (the base value) and where it ends."""
    label = explanation.output_label
    return (f"On average over the training rows {label} is {_value_text(round(explanation.base_value, 4))}; "
            f"for this row it is {_value_text(round(float(explanation.outputs[i]), 4))}.")


# --- importance --------------------------------------------------------------------------------


def global_importance(explanation: Explanation) -> pd.Series:
    """Mean absolute contribution per original column over the explained rows, largest first:
    how much each input moves the output, on average, in the output's own units."""
    values = np.abs(explanation.contributions).mean(axis=0) if explanation.rows else np.zeros(len(explanation.columns))
    series = pd.Series(values, index=list(explanation.columns), name=f"mean |contribution| to {explanation.output_label}")
    return series.sort_values(ascending=False, kind="stable")


# A training run's importance (holdout_importance): on a Kobe job it must add at most a fifth of the
# job's time (benchmarks/training.py --only importance). Linear models always explain the 1,000 rows
# (a product of matrices); a decision tree does so well within the budget; boosted trees (LightGBM:
# ~2 ms a row against 100 background rows) explain as many as it affords.
IMPORTANCE_ROWS = 1_000  # holdout rows a training run's importance is measured on, at most
IMPORTANCE_FIRST_ROWS = 50  # rows explained first, and timed, to size the rest to the time budget (the fewest explained)
IMPORTANCE_SECONDS = 0.5  # a training run's importance: about the seconds it may take (the first rows at least)


@dataclass(frozen=True)
class Importance:
    """Global importance of a model's original input columns, as a training run stores it."""

    values: pd.Series  # per original column, largest first
    measure: str  # what the number is, for the chart's axis: "mean |effect| on the probability of 1"
    explainer: str  # tree or linear
    output: str  # the output the effects are in (probability, score, prediction)
    output_class: Any
    rows: int  # holdout rows explained
    background_rows: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"method": "shap", "explainer": self.explainer, "measure": self.measure, "output": self.output,
                "output_class": _plain(self.output_class), "rows": self.rows, "background_rows": self.background_rows,
                "seconds": round(self.seconds, 3), "importance": {str(k): float(v) for k, v in self.values.items()}}


@dataclass(frozen=True)
class _Model:
    """What explaining needs of a model that is not registered yet (a training run's pipeline)."""

    name: str
    version: int | str
    task: str
    classes: tuple[Any, ...]
    target: str | None
    features: tuple[str, ...]


def holdout_importance(pipeline, rows: pd.DataFrame, background: pd.DataFrame, *, task: str, classes, features,
                       target: str | None = None, name: str = "model", max_rows: int = IMPORTANCE_ROWS,
                       budget: float = IMPORTANCE_SECONDS, clock=time.perf_counter) -> Importance | None:
    """Each original input column's global importance for a freshly trained pipeline: the mean
    absolute SHAP contribution (:func:`global_importance`, the one-hot pieces of a column summed back
    row by row) over up to ``max_rows`` of ``rows`` (the holdout rows, sampled with :data:`SEED`),
    against ``background`` (training rows; as many as the explainer uses, :data:`BACKGROUND_ROWS`).

    A yes/no classifier is explained for its last (positive) class, in probability (logistic
    regression's log-odds restated as probability shares, :func:`readable`); a classifier of more
    classes for each class (in the space it is explained in: probability for trees, score for linear
    models), the importances averaged over them. The first :data:`IMPORTANCE_FIRST_ROWS` rows of one
    output are timed, and the rows explained sized so that the whole takes about ``budget`` seconds.

    None when the model is neither a tree nor a linear model, or a tree model SHAP cannot explain
    exactly: then the caller measures permutation importance instead."""
    started = clock()
    _, estimator = split_pipeline(pipeline)
    kind = explainer_kind(estimator)
    if kind == PERMUTATION or rows.empty:
        return None
    model = _Model(name=name, version="", task=task, classes=tuple(classes), target=target, features=tuple(features))
    if len(rows) > max_rows:
        rows = rows.sample(max_rows, random_state=SEED)
    rows = rows[list(features)]
    reference = background[list(features)]
    if len(reference) > BACKGROUND_ROWS[kind]:
        reference = reference.sample(BACKGROUND_ROWS[kind], random_state=SEED)
    explained = [None] if task != CLASSIFICATION or len(model.classes) <= 2 else list(model.classes)
    if kind == TREE and len(explained) > 1 and type(estimator).__module__.partition(".")[0] in _TREE_MODULES:
        return None  # boosted trees of several classes: a softmax SHAP's tree explainer cannot follow (slowly found out)

    def run(part: pd.DataFrame, wanted: Any) -> Explanation:
        return readable(_explain(model, pipeline, part, reference, [], explain_class=wanted, exact=True))

    try:
        first = run(rows.iloc[:IMPORTANCE_FIRST_ROWS], explained[0])
        per_row = (clock() - started) / first.rows  # seconds per row and class
        # every class on the same rows: all of them for a linear model (a product of matrices), else as many
        # as the whole budget affords, and never fewer than the first ones
        n = len(rows) if kind == LINEAR else max(first.rows, min(len(rows), int(budget / max(per_row * len(explained), 1e-9))))
        results = []
        for k, wanted in enumerate(explained):
            if k == 0:
                done = _rows_of(first, n)
                if n > first.rows:
                    done = _joined(done, run(rows.iloc[first.rows:n], wanted))
            else:
                done = run(rows.iloc[:n], wanted)
            results.append(done)
    except _TreeUnsupported:
        return None
    values = sum(global_importance(r).reindex(list(results[0].columns)) for r in results) / len(results)
    values = values.sort_values(ascending=False, kind="stable")
    one = results[0]
    if len(results) > 1:
        space = {PROBABILITY: "probability", LOG_ODDS: "log-odds", SCORE: "score"}.get(one.output, "output")
        measure = f"mean |effect| on the {space} of each class (averaged over the {len(results)} classes)"
    else:
        measure = f"mean |effect| on {one.output_label}"
    values.name = measure
    return Importance(values=values, measure=measure, explainer=one.explainer, output=one.output,
                      output_class=None if len(results) > 1 else one.output_class, rows=one.rows,
                      background_rows=one.background_rows, seconds=clock() - started)


def _rows_of(explanation: Explanation, n: int) -> Explanation:
    """The first ``n`` rows of an explanation."""
    if n >= explanation.rows:
        return explanation
    return _with_rows(explanation, explanation.contributions[:n], explanation.outputs[:n], explanation.values.iloc[:n])


def _joined(head: Explanation, tail: Explanation) -> Explanation:
    """Two explanations of one model, output and background, as one (the rows of ``head``, then ``tail``'s)."""
    return _with_rows(head, np.concatenate([head.contributions, tail.contributions]), np.concatenate([head.outputs, tail.outputs]),
                      pd.concat([head.values, tail.values]))


def _with_rows(e: Explanation, contributions: np.ndarray, outputs: np.ndarray, values: pd.DataFrame) -> Explanation:
    return Explanation(model=e.model, explainer=e.explainer, output=e.output, output_class=e.output_class, target=e.target,
                       columns=e.columns, base_value=e.base_value, contributions=contributions, outputs=outputs, values=values,
                       background_rows=e.background_rows, notes=e.notes)


# --- for people: log-odds as probability shares, the chart -------------------------------------

# Said under an explanation whose bars are shares of a log-odds effect (see probability_shares).
SHARES_NOTE = ("Logistic regression adds its evidence up in log-odds, not in probability. Each bar is that input's share "
               "of the log-odds effect, rescaled so that the bars add up exactly to the change in probability from a "
               "typical training row to this one.")
FIGURE_TOP = 10  # bars the chart shows one by one; the smaller effects are summed in one bar
_LABEL_CHARACTERS = 40  # a value longer than this is cut in a chart label (the hover text keeps it whole)


def _logistic(z: np.ndarray | float) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    return np.exp(-np.logaddexp(0.0, -z))  # 1 / (1 + e^-z), without overflow for large |z|


def probability_shares(explanation: Explanation) -> Explanation:
    """A log-odds explanation (binary logistic regression) restated in probability, for people.

    The exact contributions add up in log-odds. Here each row's contributions are rescaled by one
    positive factor so that they add up exactly to ``p - p_base``, the change in probability:

        contribution_p = contribution_logodds x (p - p_base) / (logit(p) - logit(p_base))

    with ``p`` the row's probability, ``p_base`` the probability at the base value (the average
    log-odds over the background rows: a typical training row) and ``logit(p) - logit(p_base)``
    taken as the sum of the row's log-odds contributions (the same number, by additivity, so the sum
    in probability is exact to rounding). When that difference is ~0 (under 1e-12) the factor is the
    logistic curve's slope there, ``p_base x (1 - p_base)``. One factor per row: the order of the
    contributions and their signs are kept. The result's output is ``probability``, its base value
    ``p_base``, and its notes end with :data:`SHARES_NOTE`. An explanation in any other output is
    given back as it is."""
    if explanation.output != LOG_ODDS:
        return explanation
    logit_effect = explanation.contributions.sum(axis=1)
    p = _logistic(explanation.outputs)
    p_base = float(_logistic(explanation.base_value))
    slope = p_base * (1.0 - p_base)
    flat = np.abs(logit_effect) < 1e-12
    factor = np.where(flat, slope, (p - p_base) / np.where(flat, 1.0, logit_effect))
    return Explanation(
        model=explanation.model, explainer=explanation.explainer, output=PROBABILITY, output_class=explanation.output_class,
        target=explanation.target, columns=explanation.columns, base_value=p_base,
        contributions=explanation.contributions * factor[:, None], outputs=p, values=explanation.values,
        background_rows=explanation.background_rows, notes=(*explanation.notes, SHARES_NOTE),
    )


def is_shares(explanation: Explanation) -> bool:
    """Whether the contributions are shares of a log-odds effect (:func:`probability_shares`)."""
    return SHARES_NOTE in explanation.notes


def readable(explanation: Explanation) -> Explanation:
    """The explanation as a page shows it: in probability when the model was explained in log-odds
    (:func:`probability_shares`), else as it is."""
    return probability_shares(explanation)


def _level(value: float, output: str) -> str:
    """An output's level for people: a probability to 4 decimals (0.4875), a large number with
    thousands separators (231,235), else 4 significant digits."""
    if output == PROBABILITY:
        return _value_text(round(float(value), 4))
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def base_line(explanation: Explanation, i: int = 0) -> str:
    """The base value in one line: where the model starts before any input of row i moves it, and
    where row i ends (what :func:`summary` says, with numbers written for people)."""
    label, output = explanation.output_label, explanation.output
    start, end = _level(explanation.base_value, output), _level(float(explanation.outputs[i]), output)
    if is_shares(explanation):
        return (f"For a typical training row (the average log-odds over the training rows) {label} is {start}; "
                f"for this row it is {end}.")
    return f"On average over the training rows {label} is {start}; for this row it is {end}."


def caption(explanation: Explanation) -> str:
    """What the bars are, in one or two sentences for the page."""
    if is_shares(explanation):
        return SHARES_NOTE
    said = {
        PROBABILITY: "Each bar is how much that input moved the probability from the training rows' average to this row's; "
                     "the bars add up exactly to the difference.",
        SCORE: f"Each bar is how much that input moved {explanation.output_label}: the model's score for that class "
               "before the scores of all classes become probabilities; the bars add up exactly to the difference.",
        PREDICTION: "Each bar is how much that input moved the prediction from the training rows' average to this row's; "
                    "the bars add up exactly to the difference.",
    }
    words = said.get(explanation.output, said[PREDICTION])
    if explanation.explainer == PERMUTATION:
        words += " This model is neither a tree nor a linear model, so the bars are estimated by trying it on variations of the row."
    return words


def _signed(value: float, output: str) -> str:
    """A bar's amount with its sign, written out (0.000047, not 4.7e-05)."""
    amount = _amount(value, output)
    if "e" in amount:
        amount = np.format_float_positional(abs(value), precision=2, unique=False, fractional=False, trim="-")
    return f"{'+' if value > 0 else '−' if value < 0 else '±'}{amount}"


def _bar_label(column: str, value: Any) -> str:
    text = _value_text(value)
    if len(text) > _LABEL_CHARACTERS:
        text = text[: _LABEL_CHARACTERS - 1] + "…"
    return f"{column} = {text}"


def figure(explanation: Explanation, i: int = 0, top: int = FIGURE_TOP):
    """Row i's explanation as a horizontal waterfall (plotly): the base value, then each input's
    contribution, largest first, labelled ``column = value``, then the row's output. Past ``top``
    inputs the smaller contributions are summed in one bar. Every label is HTML-escaped (plotly
    reads its text as HTML)."""
    import html

    import plotly.graph_objects as go

    ordered = explanation.row(i)
    row = explanation.values.iloc[i]
    output = explanation.output
    shown, rest = ordered.iloc[:top], ordered.iloc[top:]
    labels = [_bar_label(c, row[c]) for c in shown.index]
    amounts = [float(v) for v in shown.values]
    hover = [sentence(c, row[c], float(v), output, explanation.output_class, explanation.target) for c, v in shown.items()]
    if len(rest):
        labels.append(f"{len(rest)} other inputs")
        amounts.append(float(rest.sum()))
        hover.append(f"the {len(rest)} other inputs together: {_signed(float(rest.sum()), output)}")
    start, end = "average over the training rows", "this row"
    if is_shares(explanation):
        start = "a typical training row"
    base, final = float(explanation.base_value), float(explanation.outputs[i])
    def shown_value(v: float) -> str:
        return _level(v, output)
    y = [html.escape(t) for t in (start, *labels, end)]
    fig = go.Figure(go.Waterfall(
        orientation="h", y=y, x=[base, *amounts, final], measure=["absolute", *["relative"] * len(amounts), "total"],
        text=[shown_value(base), *(_signed(a, output) for a in amounts), shown_value(final)], textposition="outside",
        hovertext=[html.escape(t) for t in (f"{start}: {shown_value(base)}", *hover, f"{end}: {shown_value(final)}")],
        hoverinfo="text", connector={"line": {"color": "#9AA5B1", "width": 1}},
        increasing={"marker": {"color": "#C8102E"}}, decreasing={"marker": {"color": "#1F6FB4"}},
        totals={"marker": {"color": "#5B6770"}},
    ))
    path = np.cumsum([base, *amounts])
    low, high = float(min(path.min(), final, base)), float(max(path.max(), final, base))
    pad = (high - low) * 0.25 or abs(high) * 0.1 or 1.0
    fig.update_xaxes(range=[low - pad, high + pad], title=html.escape(explanation.output_label))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=html.escape(f"What moved {explanation.output_label}"), height=120 + 32 * len(y),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, showlegend=False)
    return fig


# --- a row of a scored file --------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredRow:
    """One row of a scored output: its input values (the model's columns), what scoring said about
    it (its prediction and each class's probability) and which model version scored it."""

    row_number: int
    values: pd.DataFrame  # one row, the model's features
    prediction: Any
    probabilities: dict[str, float]
    model_name: str
    model_version: int

    @property
    def prediction_text(self) -> str:
        """The prediction as people read it: a class as the model knows it (1, not 1.0), a number
        to six significant digits."""
        value = self.prediction
        if isinstance(value, float) and not self.probabilities and not value.is_integer():
            return f"{value:,.6g}"
        return _value_text(value) if isinstance(value, float) else str(value)


def scored_row(output: Path, row_number: int, model) -> ScoredRow:
    """Row ``row_number`` (from 1, the scored output's ``row_number``) of a scored output (see
    :func:`core.scoring.runs.output_path`), read from its parquet row group alone."""
    import pyarrow.parquet as pq

    from core.scoring.model import _label as class_label
    from core.scoring.runs import ADDED

    output = Path(output)
    if not output.is_file():
        raise NotFoundError(f"The scored file {output.name} is no longer in this workspace, so its rows cannot be explained.")
    with pq.ParquetFile(output) as parquet:
        total = parquet.metadata.num_rows
        try:
            wanted = int(row_number)
        except (TypeError, ValueError):
            raise BadInputError(f"A row number is a whole number from 1 to {total:,}; got {row_number!r}.") from None
        if not 1 <= wanted <= total:
            raise BadInputError(f"The scored file has rows 1 to {total:,}; there is no row {wanted:,}. Choose a row number in that range.")
        names = parquet.schema_arrow.names
        # scoring appends: prediction, proba_<class> (a classifier with probabilities), model_name,
        # model_version, scored_at, input_problems, row_number
        tail = len(ADDED) - 1
        probas = 0
        while probas < len(model.classes) and len(names) > tail + probas + 1 and names[-tail - probas - 1].startswith("proba_"):
            probas += 1
        added = names[len(names) - tail - probas - 1:]
        inputs = names[: len(names) - len(added)]
        missing = [f for f in model.features if f not in inputs]
        if missing or not added[-1].startswith("row_number") or not added[0].startswith("prediction"):
            raise BadInputError(f"{output.name} is not a file scored by {model.name} version {model.version}: "
                                f"{'it lacks ' + ', '.join(missing[:5]) if missing else 'its last columns are not the ones scoring adds'}.")
        at, group = wanted - 1, 0
        while at >= parquet.metadata.row_group(group).num_rows:
            at -= parquet.metadata.row_group(group).num_rows
            group += 1
        wanted_columns = [*model.features, *added[: 1 + probas], added[1 + probas], added[2 + probas], added[-1]]
        table = parquet.read_row_group(group, columns=list(dict.fromkeys(wanted_columns))).slice(at, 1).to_pandas()
        found = {c: table[c].iloc[0] for c in table.columns}  # column by column: no upcast of a whole row
        if int(found[added[-1]]) != wanted:
            raise BadInputError(f"{output.name} does not hold its rows in order (row {wanted:,} holds row_number "
                                f"{int(found[added[-1]]):,}), so it was not written by the studio's scoring.")
    classes = [class_label(c) for c in model.classes[:probas]]
    return ScoredRow(
        row_number=wanted, values=table[list(model.features)].reset_index(drop=True), prediction=_plain(found[added[0]]),
        probabilities={c: float(found[n]) for c, n in zip(classes, added[1: 1 + probas], strict=True)},
        model_name=str(found[added[1 + probas]]), model_version=int(found[added[2 + probas]]),
    )


def explain_scored_row(output: Path, row_number: int, model, pipeline, background: pd.DataFrame) -> tuple[ScoredRow, Explanation]:
    """Row ``row_number`` of a scored output and its explanation as a page shows it
    (:func:`readable`), by the model version that scored it (``model``, ``pipeline``: what
    :func:`core.scoring.load_model` returns for that version; another version is refused)."""
    row = scored_row(output, row_number, model)
    if (row.model_name, row.model_version) != (model.name, model.version):
        raise BadInputError(f"Row {row.row_number:,} was scored by {row.model_name} version {row.model_version}, not by "
                            f"{model.name} version {model.version}; explain it with the version that scored it.")
    wanted = row.prediction if len(tuple(getattr(model, "classes", ()) or ())) > 2 else None  # a class of several: the predicted one
    return row, readable(explain_rows(model, pipeline, row.values, background, explain_class=wanted))


# --- the model's parts -------------------------------------------------------------------------


def split_pipeline(pipeline) -> tuple[list[Any], Any]:
    """(the preprocessing steps, the final estimator) of a fitted pipeline."""
    steps = getattr(pipeline, "steps", None)
    if not steps:
        return [], pipeline
    return [step for _, step in steps[:-1] if step is not None and step != "passthrough"], steps[-1][1]


def transform(steps: list[Any], frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The features the final estimator sees, and for each of them the original column it came
    from. A step that keeps a column's name keeps its origin; a column a step creates belongs to
    the column it encodes: the only one the step works on, or the one whose name it extends
    (``shot_type_2PT Field Goal`` comes from ``shot_type``, the longest such name)."""
    origin = {str(c): str(c) for c in frame.columns}
    X = frame
    for step in steps:
        before = [str(c) for c in X.columns]
        X = step.transform(X)
        if isinstance(X, tuple):  # a step that returns (X, y)
            X = X[0]
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(np.asarray(X), index=frame.index, columns=_names_out(step, X))
        worked_on = [str(c) for c in (getattr(step, "_include", None) or []) if str(c) in origin]
        gone = [c for c in before if c not in set(map(str, X.columns))]
        candidates = worked_on or gone
        for column in map(str, X.columns):
            if column in origin:
                continue
            owner = _owner(column, candidates) or _owner(column, before)
            if owner is None:
                owner = origin[candidates[0]] if len(candidates) == 1 else column  # no way to tell: its own name
            origin[column] = origin.get(owner, owner)
    return X, {str(c): origin[str(c)] for c in X.columns}


def _names_out(step, X) -> list[str]:
    try:
        return [str(n) for n in step.get_feature_names_out()]
    except Exception:  # noqa: BLE001 - a transformer without names: numbered columns
        return [f"x{i}" for i in range(np.shape(X)[1])]


def _owner(column: str, candidates) -> str | None:
    matches = [c for c in candidates if column.startswith(f"{c}_")]
    return max(matches, key=len) if matches else None


def explainer_kind(estimator) -> str:
    """Which SHAP explainer fits the estimator: tree, linear or permutation."""
    kind = type(estimator)
    if kind.__module__.partition(".")[0] in _TREE_MODULES or kind.__name__ in _TREE_CLASSES:
        return TREE
    if kind.__module__.startswith(("sklearn.linear_model", "sklearn.svm")) and hasattr(estimator, "coef_") \
            and hasattr(estimator, "intercept_") and np.ndim(estimator.coef_) in (1, 2):
        return LINEAR
    return PERMUTATION


# --- the background ----------------------------------------------------------------------------

# (store, training run) -> its reference rows (the model's features only): a finished run's
# artifacts never change, so they are read once per process.
_REFERENCES: dict[tuple[str, str], pd.DataFrame] = {}


def reference_rows(settings, model) -> pd.DataFrame:
    """The training rows kept with the model's run (``reference/train.parquet``), its features only;
    read once per training run and process."""
    from core import tracking

    if not model.run_id:
        raise NotFoundError(f"{model.name} version {model.version} has no training run in this store, so there are no "
                            "training rows to compare a prediction with. Explain a model trained by the studio.")
    key = (settings.tracking_uri, model.run_id)
    if key not in _REFERENCES:
        try:
            folder = tracking.run_artifact(settings, model.run_id, "reference")
        except Exception as exc:  # noqa: BLE001 - said for what it is: missing, unreachable, or a bug
            tracking.raise_unreachable(settings, exc)
            if not tracking.missing_artifact(exc):
                raise
            raise NotFoundError(f"The training run of {model.name} version {model.version} kept no training rows "
                                "(reference/train.parquet), so its predictions cannot be explained.") from exc
        train = datasets.read_parquet(folder / "train.parquet")
        missing = [f for f in model.features if f not in train.columns]
        if missing:
            raise NotFoundError(f"The training rows kept with {model.name} version {model.version} lack "
                                f"{', '.join(missing)}, so its predictions cannot be explained.")
        if len(_REFERENCES) >= 16:
            _REFERENCES.pop(next(iter(_REFERENCES)))
        _REFERENCES[key] = train[list(model.features)]
    return _REFERENCES[key]


def background(settings, model, pipeline=None, rows: int | None = None) -> pd.DataFrame:
    """A fixed sample of the model's training rows (the same rows every time): as many as its
    explainer uses (:data:`BACKGROUND_ROWS`) unless ``rows`` says otherwise."""
    reference = reference_rows(settings, model)
    if rows is None:
        kind = explainer_kind(split_pipeline(pipeline)[1]) if pipeline is not None else TREE
        rows = BACKGROUND_ROWS[kind]
    if len(reference) <= rows:
        return reference
    return reference.sample(rows, random_state=SEED)


# --- explaining --------------------------------------------------------------------------------


def _checked(model, frame: pd.DataFrame, what: str) -> tuple[pd.DataFrame, list[str]]:
    from core.scoring.inputs import InputReport, coerce_batch, missing_columns

    if not isinstance(frame, pd.DataFrame):
        raise BadInputError(f"The {what} must be a table with the model's columns; got {type(frame).__name__}.")
    missing = missing_columns(model.features, [str(c) for c in frame.columns])
    if missing:
        many = len(missing) > 1
        raise BadInputError(f"The {what} lacks {len(missing)} column{'s' if many else ''} the model needs: {', '.join(missing)}. "
                            f"Nothing was explained. Add {'them' if many else 'it'} (same names as in training) and try again.")
    if frame.empty:
        raise EmptyTableError(f"The {what} holds no rows. Give at least one row to explain.")
    report = InputReport()
    coerced, _ = coerce_batch(model, frame, report)
    return coerced, input_notes(report, len(frame))


def input_notes(report, rows: int) -> list[str]:
    """What the check of the rows to explain found, worded for an explanation (scoring's notes speak
    of its input_problems column, which an explanation has not): a column with no usable value at
    all is said to be unusable and treated as missing, not "converted"."""
    empty = {c for c, n in report.missing_values.items() if n >= rows}
    out = []
    for column, what in report.coerced.items():
        if column not in empty:
            out.append(f"'{column}': {what}.")
    for column, n in report.unusable_values.items():
        if column in empty:
            out.append(f"'{column}' holds no usable value in any of the {rows:,} rows (text where the model expects a number), "
                       "so it was treated as missing in every row: the model filled it in as it learned to, and the "
                       "explanation shows what an unknown value does. Check that column of the file.")
        else:
            out.append(f"'{column}': {n:,} of the {rows:,} rows held a value that is not a number; those values were treated "
                       "as missing (filled in as the model learned to).")
    for column in report.missing_values:
        if column in empty and column not in report.unusable_values:
            out.append(f"'{column}' has no value in any row: the model filled it in as it learned to, so the explanation "
                       "shows what an unknown value does. Check the export of that column.")
    for column, n in report.unseen_categories.items():
        examples = ", ".join(repr(e) for e in report.unseen_examples.get(column, [])[:3])
        out.append(f"'{column}': {n:,} values never seen in training ({examples}); the model treats them as an unknown category.")
    return out


def _class_index(model, estimator, wanted: Any = None) -> tuple[int, Any]:
    """The column of predict_proba explained and that class as people know it: ``wanted`` (a class
    of the model, as its labels are written or read back), else the last class (the positive one
    of a yes/no target)."""
    fitted = getattr(estimator, "classes_", None)
    classes = tuple(model.classes) or tuple(fitted if fitted is not None else ())
    if not classes:
        raise BadInputError(f"{model.name} version {model.version} is a classifier whose classes are not recorded, "
                            "so the probability to explain is unknown.")
    if wanted is not None:
        for k, c in enumerate(classes):
            if c == wanted or _value_text(c) == _value_text(wanted):
                return k, _plain(c)
        raise BadInputError(f"'{wanted}' is not a class of {model.name} version {model.version} "
                            f"({', '.join(_value_text(c) for c in classes)}).")
    return len(classes) - 1, _plain(classes[-1])


def _class_count(model, estimator) -> int:
    fitted = getattr(estimator, "classes_", None)
    return len(tuple(model.classes) or tuple(fitted if fitted is not None else ()))


def predicted_class(model, proba_row) -> Any | None:
    """The class a row's probabilities make the prediction (the likeliest, as scoring takes it) for a
    model of more than two classes, whose explanation is then about that class; None for a yes/no
    model (explained for its positive, last, class) or a regression."""
    classes = tuple(getattr(model, "classes", ()) or ())
    if len(classes) <= 2 or proba_row is None:
        return None
    return _plain(classes[int(np.argmax(np.asarray(proba_row, dtype=float)))])


def explain_rows(model, pipeline, frame: pd.DataFrame, background: pd.DataFrame, *, time_limit: float = TIME_LIMIT,
                 clock=time.monotonic, progress: Callable[[int, int], None] | None = None,
                 explain_class: Any = None) -> Explanation:
    """Each original column's contribution to the model's output for every row of ``frame``,
    against ``background`` (rows of the model's features, usually :func:`background`).

    ``model`` is the :class:`core.scoring.ScoringModel` and ``pipeline`` the fitted pipeline that
    :func:`core.scoring.load_model` returns. The permutation explainer (models that are neither
    trees nor linear) stops after ``time_limit`` seconds with a :class:`BadInputError` that says how
    many rows it managed. ``progress(done, total)`` is told how many rows are explained as it goes
    (tree and permutation explainers; a linear one is done at once). ``explain_class``: the class
    whose output is explained (default: the last class); with more than two classes the pages pass
    the predicted one (:func:`predicted_class`).

    A tree explanation whose contributions do not add up to the model's output (SHAP's tree
    explainer turns each class's score into a probability on its own, which a softmax over several
    classes does not: LightGBM with three classes or more) is made again by permutation, with a note."""
    rows, notes = _checked(model, frame, "table to explain")
    reference, _ = _checked(model, background, "background")
    return _explain(model, pipeline, rows, reference, notes, time_limit=time_limit, clock=clock, progress=progress,
                    explain_class=explain_class)


def _explain(model, pipeline, rows: pd.DataFrame, reference: pd.DataFrame, notes: list[str], *, time_limit: float = TIME_LIMIT,
             clock=time.monotonic, progress=None, explain_class: Any = None, exact: bool = False) -> Explanation:
    """:func:`explain_rows` on rows already checked. ``exact``: a tree model SHAP cannot explain exactly
    raises :class:`_TreeUnsupported` instead of being explained by permutation."""
    import warnings

    steps, estimator = split_pipeline(pipeline)
    kind = explainer_kind(estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # feature-name and convergence chatter of sklearn and LightGBM
        X, origin = transform(steps, rows)
        B, _ = transform(steps, reference)
        names = [str(c) for c in X.columns]
        B = B[X.columns]  # the same steps made the same columns
        Xv, Bv = X.to_numpy(dtype=float), B.to_numpy(dtype=float)
        classification = model.task == CLASSIFICATION
        index, output_class = _class_index(model, estimator, explain_class) if classification else (0, None)
        # a yes/no model's first class is the mirror image of its last: p0 = 1 - p1, and its log-odds
        # or score is minus the last class's; explained as the last class, then mirrored (exactly)
        mirror = classification and index == 0 and _class_count(model, estimator) == 2
        if mirror:
            index = 1
        if kind == TREE:
            try:
                phi, base, outputs, output = _tree(estimator, Xv, Bv, X, classification, index, progress)
                gap = float(np.max(np.abs(base + np.asarray(phi).sum(axis=1) - outputs))) if len(outputs) else 0.0
                if not gap <= ADDITIVITY * max(1.0, float(np.max(np.abs(outputs)))):
                    raise _TreeUnsupported(f"its contributions missed the model's output by up to {gap:.3g}")
            except _TreeUnsupported as exc:  # a tree model SHAP cannot read (or not exactly): explained like any other model
                if exact:
                    raise
                kind = PERMUTATION
                notes = [*notes, f"SHAP's tree explainer cannot explain this model exactly ({exc}); it was explained by "
                                 "permutation instead."]
        if kind == LINEAR:
            phi, base, outputs, output = _linear(estimator, Xv, Bv, X, classification, index)
        elif kind == PERMUTATION:
            phi, base, outputs, output = _permutation(estimator, Xv, Bv, names, classification, index, time_limit, clock, progress)
    if mirror:
        phi = -np.asarray(phi, dtype=float)
        base, outputs = ((1.0 - float(base), 1.0 - np.asarray(outputs, dtype=float)) if output == PROBABILITY
                         else (-float(base), -np.asarray(outputs, dtype=float)))
    columns = tuple(model.features)
    extra = [o for o in dict.fromkeys(origin.values()) if o not in columns]  # encoded columns no input could be found for
    if extra:
        notes = [*notes, f"{len(extra)} encoded column{'s' if len(extra) > 1 else ''} could not be traced to an input "
                 f"column and {'are' if len(extra) > 1 else 'is'} shown under {'their' if len(extra) > 1 else 'its'} own "
                 f"name: {', '.join(extra[:5])}."]
        columns = columns + tuple(extra)
    back = np.zeros((len(names), len(columns)))
    position = {c: j for j, c in enumerate(columns)}
    for i, name in enumerate(names):
        back[i, position[origin[name]]] = 1.0
    return Explanation(
        model=f"{model.name}/{model.version}", explainer=kind, output=output, output_class=output_class if classification else None,
        target=model.target, columns=columns, base_value=float(base), contributions=np.asarray(phi, dtype=float) @ back,
        outputs=np.asarray(outputs, dtype=float), values=rows, background_rows=len(reference), notes=tuple(notes),
    )


class _TreeUnsupported(Exception):  # noqa: N818 - internal: never leaves this module
    """SHAP's tree explainer cannot read this tree model."""


def _tree(estimator, Xv, Bv, X, classification, index, progress):
    import shap

    try:
        explainer = shap.TreeExplainer(estimator, data=Bv, model_output="probability" if classification else "raw",
                                       feature_perturbation="interventional")
    except Exception as exc:  # noqa: BLE001 - SHAP's InvalidModelError, NotImplementedError, ...: said in a note
        from core.settings import redact

        raise _TreeUnsupported(f"{type(exc).__name__}: {redact(exc)}"[:300]) from exc
    if classification:
        outputs = np.asarray(estimator.predict_proba(X))[:, index]
        output = PROBABILITY
    else:
        outputs = np.asarray(estimator.predict(X), dtype=float)
        output = PREDICTION
    # in blocks of rows: SHAP's compiled code prints a progress bar on stderr when one call runs
    # longer than ~10 s, and a block is a point at which to say how far it got
    parts = []
    for start in range(0, len(Xv), TREE_BLOCK):
        parts.append(np.asarray(explainer.shap_values(Xv[start:start + TREE_BLOCK], check_additivity=False)))
        if progress is not None:
            progress(min(start + TREE_BLOCK, len(Xv)), len(Xv))
    phi = np.concatenate(parts, axis=0)
    base = np.ravel(explainer.expected_value)
    if phi.ndim == 3:  # one slice per class: the explained one
        phi, base = phi[..., index], base[index]
    else:  # a binary model explained as one output: the positive (last) class
        base = base[-1]
    return phi, float(base), outputs, output


def _linear(estimator, Xv, Bv, X, classification, index):
    import shap

    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=float))
    intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=float))
    if classification:
        row = index if coef.shape[0] > 1 else 0  # a binary classifier has one row: the last class's score
        scores = np.asarray(estimator.decision_function(X), dtype=float)
        outputs = scores[:, row] if scores.ndim == 2 else scores
        binary_logistic = coef.shape[0] == 1 and type(estimator).__name__ == "LogisticRegression"
        output = LOG_ODDS if binary_logistic else SCORE
    else:
        row = 0
        outputs = np.asarray(estimator.predict(X), dtype=float)
        outputs = outputs[:, 0] if outputs.ndim == 2 else outputs
        output = PREDICTION
    masker = shap.maskers.Independent(Bv, max_samples=len(Bv))
    explainer = shap.LinearExplainer((coef[row], intercept[row if len(intercept) > 1 else 0]), masker)
    phi = np.asarray(explainer.shap_values(Xv))
    return phi, float(np.ravel(explainer.expected_value)[0]), outputs, output


def _permutation(estimator, Xv, Bv, names, classification, index, time_limit, clock, progress):
    import shap

    def predict(values: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame(values, columns=names)
        if classification:
            return np.asarray(estimator.predict_proba(frame))[:, index]
        out = np.asarray(estimator.predict(frame), dtype=float)
        return out[:, 0] if out.ndim == 2 else out

    started = clock()
    masker = shap.maskers.Independent(Bv, max_samples=len(Bv))
    explainer = shap.PermutationExplainer(predict, masker, seed=SEED)
    evaluations = PERMUTATIONS * (2 * Xv.shape[1] + 1)
    phi = np.empty_like(Xv)
    for i in range(len(Xv)):
        if clock() - started > time_limit:
            raise BadInputError(
                f"Explaining this model (neither a tree nor a linear model, so each row is explained by trying the model on "
                f"many variations) took longer than {time_limit:.0f} s: {i:,} of {len(Xv):,} rows were done. "
                f"Ask for fewer rows (about {max(1, i):,}).")
        phi[i] = explainer(Xv[i:i + 1], max_evals=evaluations, silent=True).values[0]
        if progress is not None and (i + 1 == len(Xv) or (i + 1) % 100 == 0):
            progress(i + 1, len(Xv))
    base = float(np.mean(predict(Bv)))
    return phi, base, predict(Xv), PROBABILITY if classification else PREDICTION


# --- headless ----------------------------------------------------------------------------------


def read_rows(settings, model, path: Path, rows: int | None) -> tuple[pd.DataFrame, str]:
    """The first ``rows`` rows of a file (every row when None), read batch by batch as scoring
    reads files, and the file's name; its missing columns and an empty file are refused."""
    from core.scoring.inputs import input_columns, iter_batches, missing_columns, open_input

    source = open_input(settings, Path(path))
    missing = missing_columns(model.features, input_columns(source))
    if missing:
        many = len(missing) > 1
        raise BadInputError(f"'{source.name}' lacks {len(missing)} column{'s' if many else ''} the model needs: "
                            f"{', '.join(missing)}. Nothing was explained. Add {'them' if many else 'it'} (same names as in "
                            "training) and try again.")
    parts, have = [], 0
    for batch in iter_batches(source, batch_rows=min(rows, 250_000) if rows else 250_000):
        part = batch.to_pandas()
        parts.append(part if rows is None else part.iloc[: rows - have])
        have += len(parts[-1])
        if rows is not None and have >= rows:
            break
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=input_columns(source))
    if frame.empty:
        raise EmptyTableError(f"'{source.name}' holds no rows (column names only). Choose a file with data rows.")
    return frame, source.name


def write(explanation: Explanation, destination: Path) -> Path:
    """The contributions as parquet or CSV (by extension), written under a temporary name and
    renamed: a reader never sees half a file. The first column, ``row_number``, is the row's
    position in the input file, from 1 (as a scored file's row_number)."""
    from core.scoring.export import export

    destination = Path(destination)
    table = explanation.frame()
    table.insert(0, _free("row_number", explanation.columns), np.arange(1, len(table) + 1))
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.part")
    try:
        table.to_parquet(tmp, index=False)
        if destination.suffix.lower() == ".csv":
            export(tmp, destination, "csv")  # atomic too; text that a spreadsheet would run is neutralised
        else:
            os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    return destination


def command(args: argparse.Namespace) -> int:
    """``python -m core explain``: explain rows of a file with a registered model, write the
    contributions, print a JSON summary (and the first row in words on stderr)."""
    import json

    from core import scoring
    from core.settings import load_settings, redact

    settings = load_settings()
    destination = Path(args.output)
    if destination.suffix.lower() not in (".parquet", ".csv"):
        raise BadInputError(f"--output must end in .parquet or .csv; got '{destination.name}'.")
    if args.rows is not None and args.rows < 0:
        raise BadInputError(f"--rows must be 0 (every row) or a positive number of rows; got {args.rows}.")
    if not Path(args.input).is_file():
        raise BadInputError(f"There is no file at '{args.input}'. Check the path given to --input.")
    from core.scoring.export import check_destination

    check_destination(destination, inputs=(Path(args.input),))
    model, pipeline = scoring.load_model(settings, args.model)
    chosen = getattr(args, "explain_class", None)
    if chosen is not None and model.task != CLASSIFICATION:
        raise BadInputError(f"--class is for a classifier; {model.name} version {model.version} predicts a number. "
                            "Leave --class out.")
    wanted = DEFAULT_ROWS if args.rows is None else (args.rows or None)  # 0: every row
    frame, name = read_rows(settings, model, Path(args.input), wanted)
    explanation = explain_rows(model, pipeline, frame, background(settings, model, pipeline),
                               progress=lambda done, total: print(f"explained {done:,} of {total:,} rows", file=sys.stderr, flush=True),
                               explain_class=chosen)
    write(explanation, destination)
    classes = [_value_text(c) for c in tuple(getattr(model, "classes", ()) or ())] if model.task == CLASSIFICATION else []
    class_note = None
    if len(classes) > 2 and chosen is None:
        class_note = (f"This model has {len(classes)} classes ({', '.join(classes)}); the explanation is about the last one, "
                      f"{_value_text(explanation.output_class)} ({explanation.output_label}). --class chooses another.")
    for note in (*explanation.notes, *([class_note] if class_note else [])):
        print(f"note: {redact(note)}", file=sys.stderr)
    print(f"row 1: {summary(explanation, 0)}", file=sys.stderr)
    for line in sentences(explanation, 0, top=3):
        print(f"  {line}", file=sys.stderr)
    importance = global_importance(explanation)
    print(json.dumps({
        "model": explanation.model, "input": name, "rows": explanation.rows, "output": str(destination),
        "explainer": explanation.explainer, "explained": explanation.output_label, "output_kind": explanation.output,
        "output_class": _plain(explanation.output_class), **({"classes": classes} if classes else {}),
        **({"class_note": class_note} if class_note else {}), "base_value": explanation.base_value,
        "background_rows": explanation.background_rows, "columns": list(explanation.columns),
        "importance": {k: float(v) for k, v in importance.items()},
    }, indent=2, ensure_ascii=False, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m core.explain ...``: the same as ``python -m core explain ...`` (its arguments and
    exit codes are the command line's, core/__main__.py)."""
    from core.__main__ import main as cli

    return cli(["explain", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
