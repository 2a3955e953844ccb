"""Holdout metrics and Plotly figures of a trained model (ROC, precision-recall, confusion matrix,
feature importance; residuals and predicted-vs-actual for regression)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from sklearn import metrics as skm

from core import metrics
from core.catalog import CLASSIFICATION, REGRESSION

# What the two functions below measure, in the order results show them (each metric's facts: core.metrics).
CLASSIFICATION_METRICS = metrics.for_task(CLASSIFICATION)
REGRESSION_METRICS = metrics.for_task(REGRESSION)


def classification_metrics(y_true: Sequence, y_pred: Sequence, proba: np.ndarray | None, classes: Sequence) -> dict[str, float]:
    """Holdout metrics; binary ones for the positive class (the last of ``classes``), macro-averaged
    for more than two classes. Metrics that need probabilities are NaN when there are none."""
    classes = list(classes)
    binary = len(classes) == 2
    average = "binary" if binary else "macro"
    kwargs = {"pos_label": classes[-1]} if binary else {}
    result = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "f1": skm.f1_score(y_true, y_pred, average=average, zero_division=0, **kwargs),
        "precision": skm.precision_score(y_true, y_pred, average=average, zero_division=0, **kwargs),
        "recall": skm.recall_score(y_true, y_pred, average=average, zero_division=0, **kwargs),
        "log_loss": math.nan,
        "auc": math.nan,
    }
    result["log_loss_ratio"] = math.nan
    if proba is not None:
        result["log_loss"] = skm.log_loss(y_true, proba, labels=classes)
        shares = pd.Series(np.asarray(y_true)).value_counts(normalize=True)
        guess = np.tile([shares.get(c, 0.0) for c in classes], (len(proba), 1))
        guess_loss = skm.log_loss(y_true, np.clip(guess, 1e-15, 1), labels=classes)
        if guess_loss > 1e-6:  # one class only: guessing its share is perfect, a ratio to it means nothing
            result["log_loss_ratio"] = result["log_loss"] / guess_loss
        try:
            if binary:
                result["auc"] = skm.roc_auc_score(np.asarray(y_true) == classes[-1], proba[:, 1])
            else:
                result["auc"] = skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes)
        except ValueError:  # a class absent from the holdout: AUC undefined
            pass
    return {k: float(v) for k, v in result.items()}


def regression_metrics(y_true: Sequence, y_pred: Sequence) -> dict[str, float]:
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    nonzero = y_true != 0
    return {
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "rmse": float(math.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "r2": float(skm.r2_score(y_true, y_pred)),
        "mape": float(np.mean(np.abs((y_true[nonzero] - y_pred[nonzero]) / y_true[nonzero]))) if nonzero.any() else math.nan,
    }


# --- figures ---------------------------------------------------------------------------------

_BLUE, _GREY = "#1F4E79", "#9AA5B1"


def _layout(fig: go.Figure, title: str, x: str, y: str, square: bool = False) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=380, margin={"l": 10, "r": 10, "t": 50, "b": 10})
    if square:
        fig.update_xaxes(range=[0, 1], constrain="domain")
        fig.update_yaxes(range=[0, 1.02], scaleanchor="x", scaleratio=1)
    return fig


def _label(value: object) -> str:
    return html.escape(str(int(value)) if isinstance(value, float) and value.is_integer() else str(value))


def roc_figure(y_true: Sequence, proba: np.ndarray, classes: Sequence) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": _GREY}, name="coin toss"))
    targets = [classes[-1]] if len(classes) == 2 else list(classes)
    for cls in targets:
        k = list(classes).index(cls)
        positive = np.asarray(y_true) == cls
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = skm.roc_curve(positive, proba[:, k])
        auc = skm.auc(fpr, tpr)
        fpr, tpr = _thin(fpr, tpr)
        fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"class {_label(cls)} (AUC {auc:.3f})"))
    return _layout(fig, "ROC curve", "false positive rate", "true positive rate", square=True)


def pr_figure(y_true: Sequence, proba: np.ndarray, classes: Sequence) -> go.Figure:
    fig = go.Figure()
    targets = [classes[-1]] if len(classes) == 2 else list(classes)
    for cls in targets:
        k = list(classes).index(cls)
        positive = np.asarray(y_true) == cls
        if not positive.any():
            continue
        precision, recall, _ = skm.precision_recall_curve(positive, proba[:, k])
        ap = skm.average_precision_score(positive, proba[:, k])
        recall, precision = _thin(recall, precision)
        fig.add_trace(go.Scatter(x=recall, y=precision, mode="lines", name=f"class {_label(cls)} (AP {ap:.3f})"))
        fig.add_hline(y=float(positive.mean()), line_dash="dash", line_color=_GREY)
    return _layout(fig, "Precision-recall curve", "recall", "precision", square=True)


def confusion_figure(y_true: Sequence, y_pred: Sequence, classes: Sequence, rows: str = "holdout rows") -> go.Figure:
    matrix = skm.confusion_matrix(y_true, y_pred, labels=list(classes))
    labels = [_label(c) for c in classes]
    fig = go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, colorscale="Blues", text=matrix, texttemplate="%{text}", showscale=False))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return _layout(fig, f"Confusion matrix ({rows})", "predicted", "actual")


IMPORTANCE_BARS = 30  # input columns the importance chart shows, the most important first


def importance_figure(importance: pd.Series, measure: str | None = None, how: str | None = None) -> go.Figure:
    """One bar per input column (the :data:`IMPORTANCE_BARS` most important), largest on top, each
    with its value written on it; ``measure`` says what the number is (the x axis), e.g. "mean
    |effect| on the probability of 1", and ``how`` how it was measured (in the title)."""
    ordered = importance.sort_values(ascending=False, kind="stable")
    top = ordered.head(IMPORTANCE_BARS)[::-1]
    values = top.to_numpy(dtype=float)
    fig = go.Figure(go.Bar(x=values.tolist(), y=[html.escape(str(i)) for i in top.index], orientation="h", marker_color=_BLUE,
                           text=[f"{v:.3g}" for v in values], textposition="outside", cliponaxis=False,
                           hovertemplate="%{y}: %{x:.4g}<extra></extra>"))
    title = "Feature importance" if len(ordered) <= IMPORTANCE_BARS else \
        f"Feature importance: the {IMPORTANCE_BARS} most important of {len(ordered)} inputs"
    if how:
        title += f" ({html.escape(how, quote=False)})"
    fig = _layout(fig, title, html.escape(measure or "importance", quote=False), "")
    fig.update_yaxes(automargin=True, type="category")
    fig.update_xaxes(range=[min(0.0, float(values.min(initial=0.0)) * 1.2), max(float(values.max(initial=0.0)) * 1.2, 1e-12)])
    fig.update_layout(height=max(380, 120 + 26 * len(top)))
    return fig


def residuals_figure(y_true: Sequence, y_pred: Sequence, rows: str = "holdout rows") -> go.Figure:
    y_true, y_pred = _sample(np.asarray(y_true, float), np.asarray(y_pred, float))
    fig = go.Figure(go.Scattergl(x=y_pred, y=y_true - y_pred, mode="markers", marker={"size": 4, "color": _BLUE, "opacity": 0.5}))
    fig.add_hline(y=0, line_dash="dash", line_color=_GREY)
    return _layout(fig, f"Residuals ({rows})", "predicted", "actual - predicted")


def predicted_vs_actual_figure(y_true: Sequence, y_pred: Sequence, rows: str = "holdout rows") -> go.Figure:
    y_true, y_pred = _sample(np.asarray(y_true, float), np.asarray(y_pred, float))
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    fig = go.Figure(go.Scattergl(x=y_true, y=y_pred, mode="markers", marker={"size": 4, "color": _BLUE, "opacity": 0.5}))
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", line={"dash": "dash", "color": _GREY}))
    fig.update_layout(showlegend=False)
    return _layout(fig, f"Predicted vs actual ({rows})", "actual", "predicted")


BATCH_ROWS_LABEL = "rows of this file"


def batch_figures(task: str, y_true: Sequence, y_pred: Sequence, classes: Sequence = ()) -> dict[str, go.Figure]:
    """The charts of a labelled scored file, by the name they are logged under (``plots/<name>.json``
    of its scoring run): the confusion matrix for a classifier; predicted vs actual and the
    residuals for a regression model."""
    if task == CLASSIFICATION:
        return {"confusion_matrix": confusion_figure(y_true, y_pred, classes, BATCH_ROWS_LABEL)}
    return {"predicted_vs_actual": predicted_vs_actual_figure(y_true, y_pred, BATCH_ROWS_LABEL),
            "residuals": residuals_figure(y_true, y_pred, BATCH_ROWS_LABEL)}


def _thin(x: np.ndarray, y: np.ndarray, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` points of a curve: the chart looks the same and stays small."""
    if len(x) <= points:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, points).astype(int))
    return x[keep], y[keep]


def _sample(a: np.ndarray, b: np.ndarray, n: int = 5_000) -> tuple[np.ndarray, np.ndarray]:
    if len(a) <= n:
        return a, b
    keep = np.random.default_rng(0).choice(len(a), n, replace=False)
    return a[keep], b[keep]


def overlay_figure(task: str, scores: dict[str, pd.DataFrame]) -> go.Figure:
    """Several models' holdout rows in one chart: ROC curves (classification, the positive / last
    class against the rest) or residuals (regression). ``scores`` maps a label to a table with
    ``actual``, ``predicted`` and, for classifiers, ``proba_<class>`` columns."""
    fig = go.Figure()
    if task == CLASSIFICATION:
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": _GREY}, name="coin toss"))
        for label, table in scores.items():
            proba = [c for c in table.columns if c.startswith("proba_")]
            if not proba:
                continue
            positive_class = proba[-1].removeprefix("proba_")
            positive = table["actual"].map(_label).map(html.unescape) == positive_class
            if positive.all() or not positive.any():
                continue
            fpr, tpr, _ = skm.roc_curve(positive, table[proba[-1]])
            auc = skm.auc(fpr, tpr)
            fpr, tpr = _thin(fpr, tpr)
            fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{html.escape(label)} (AUC {auc:.3f})"))
        return _layout(fig, "ROC curves on each version's holdout rows", "false positive rate", "true positive rate", square=True)
    for label, table in scores.items():
        actual, predicted = _sample(table["actual"].to_numpy(float), table["predicted"].to_numpy(float))
        fig.add_trace(go.Scattergl(x=predicted, y=actual - predicted, mode="markers", name=html.escape(label),
                                   marker={"size": 4, "opacity": 0.5}))
    fig.add_hline(y=0, line_dash="dash", line_color=_GREY)
    return _layout(fig, "Residuals on each version's holdout rows", "predicted", "actual - predicted")


# --- decisions: cut-off, cost, gain and lift (tables from core.decisions) --------------------

_ORANGE, _GREEN, _RED = "#D98C1F", "#2E7D32", "#B23B3B"


def threshold_figure(table: pd.DataFrame, positive: str, rows: str = "holdout rows") -> go.Figure:
    """Precision, recall, F1 and the share of rows predicted positive against the cut-off."""
    fig = go.Figure()
    for column, name, colour, dash in (("precision", "precision", _BLUE, None), ("recall", "recall", _ORANGE, None),
                                       ("f1", "F1", _GREEN, None), ("share_positive", "share of rows flagged", _GREY, "dot")):
        fig.add_trace(go.Scatter(x=table["cutoff"], y=table[column], mode="lines", name=name,
                                 line={"color": colour, "dash": dash},
                                 hovertemplate=f"cut-off %{{x:.2f}}<br>{name} %{{y:.3f}}<extra></extra>"))
    fig.add_vline(x=0.5, line_dash="dash", line_color=_GREY, annotation_text="usual 0.5", annotation_position="top")
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    return _layout(fig, f"Finding {positive}: the cut-off ({rows})", "cut-off (probability of the positive class)", "share")


def cost_figure(costs: pd.DataFrame, choice, rows: str = "holdout rows") -> go.Figure:
    """The expected cost per row against the cut-off, with the cheapest cut-off marked (its value
    printed exactly, never rounded to one that flags other rows: :func:`core.decisions.cutoff_text`)."""
    from core.decisions import cutoff_text

    fig = go.Figure(go.Scatter(x=costs["cutoff"], y=costs["cost_per_row"], mode="lines", name="expected cost per row",
                               line={"color": _RED}, hovertemplate="cut-off %{x:.2f}<br>cost %{y:.3f} per row<extra></extra>"))
    if not choice.flags_nobody:
        fig.add_trace(go.Scatter(x=[choice.cutoff], y=[choice.cost_per_row], mode="markers", name=f"lowest cost: cut-off {cutoff_text(choice.cutoff)}",
                                 marker={"size": 11, "color": _GREEN, "symbol": "diamond"}))
    fig.update_xaxes(range=[0, 1])
    return _layout(fig, f"Expected cost of mistakes per row ({rows})", "cut-off (probability of the positive class)", "cost per row")


def gain_figure(gain: pd.DataFrame, rows: str = "holdout rows") -> go.Figure:
    """Cumulative gain: the share of positives found against the share of rows taken, highest scores first."""
    x, y = _thin(gain["share_of_rows"].to_numpy(), gain["share_of_positives"].to_numpy())
    found = int((gain["share_of_positives"].diff() > 0).sum())  # one step up per positive row
    positives_share = found / max(1, len(gain) - 1)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": _GREY}, name="random order"))
    fig.add_trace(go.Scatter(x=[0, positives_share, 1], y=[0, 1, 1], mode="lines", line={"dash": "dot", "color": _GREEN},
                             name="perfect order"))
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line={"color": _BLUE}, name="this model",
                             hovertemplate="top %{x:.0%} of rows<br>%{y:.0%} of the positives<extra></extra>"))
    fig.update_xaxes(tickformat=".0%")
    fig.update_yaxes(tickformat=".0%")
    return _layout(fig, f"Cumulative gain ({rows})", "share of rows, highest scores first", "share of all positives found", square=True)


def lift_figure(lift: pd.DataFrame, rows: str = "holdout rows") -> go.Figure:
    """Lift per decile, highest scores first, with 1 (random) marked."""
    fig = go.Figure(go.Bar(x=lift["decile"], y=lift["lift"], marker_color=_BLUE, name="lift",
                           text=[f"{v:.2f}" for v in lift["lift"]], textposition="outside",
                           hovertemplate="decile %{x}<br>lift %{y:.2f}<extra></extra>"))
    fig.add_hline(y=1, line_dash="dash", line_color=_GREY, annotation_text="random", annotation_position="top right")
    fig.update_xaxes(tickmode="linear", dtick=1)
    fig.update_yaxes(range=[0, max(1.2, float(lift["lift"].max()) * 1.15)])
    return _layout(fig, f"Lift per decile ({rows})", "decile (1 = the tenth of rows with the highest scores)", "lift")


def comparison_figure(table: pd.DataFrame, metric: str, folds: int | None = None) -> go.Figure:
    """Each model's cross-validation mean of ``metric`` with ± one standard deviation across the folds
    (the best mean highlighted) and, as a diamond, its value on the holdout rows."""
    label = metrics.label(metric)
    over = f"the {folds} folds" if folds else "the folds"
    names = [html.escape(str(n)) + (" (best CV)" if best else "") for n, best in zip(table["model"], table["best"], strict=True)]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=table["cv_mean"].tolist(), y=names, mode="markers", name=f"CV {label}: mean ± one standard deviation over {over}",
        marker={"size": 11, "color": [_GREEN if b else _BLUE for b in table["best"]]},
        error_x={"type": "data", "array": table["cv_std"].tolist(), "visible": True, "color": _GREY, "thickness": 2},
        customdata=table["cv_std"].tolist(), hovertemplate="%{y}<br>CV mean %{x:.3f} ± %{customdata:.3f}<extra></extra>"))
    holdout = table["holdout"].astype(float)
    if holdout.notna().any():
        fig.add_trace(go.Scatter(x=holdout.tolist(), y=names, mode="markers", name=f"{label} on the holdout rows",
                                 marker={"size": 9, "symbol": "diamond-open", "color": _ORANGE, "line": {"width": 2}},
                                 hovertemplate="%{y}<br>holdout %{x:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(legend={"orientation": "h", "y": -0.25, "itemsizing": "constant"})
    fig = _layout(fig, f"Models compared by {label} ({metrics.direction(metric)})", label, "")
    fig.update_layout(height=max(300, 120 + 40 * len(table)), margin={"l": 10, "r": 10, "t": 50, "b": 80})
    return fig
