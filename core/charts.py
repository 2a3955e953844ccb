"""Plotly figures of a table's columns. Binning happens here, on the server, so a chart of a
million rows sends a few dozen bars to the browser, not a million points."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.datasets import ColumnKind, infer_kind, target_balance

_BAR_COLOR = "#1F4E79"
_MAX_BARS = 20


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str = "rows") -> go.Figure:
    fig.update_layout(
        title=title,
        xaxis_title=x_title,
        yaxis_title=y_title,
        bargap=0.05,
        height=340,
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
        showlegend=False,
    )
    return fig


def column_figure(series: pd.Series, kind: ColumnKind | None = None) -> go.Figure | None:
    """A histogram (numeric, datetime) or bar chart of the most common values (categorical,
    boolean). ``None`` for id-like and free-text columns, whose values are nearly all distinct,
    and for columns without any value."""
    kind = kind or infer_kind(series)
    values = series.dropna()
    name = html.escape(str(series.name))  # Plotly renders tags in titles: a column name stays text
    if values.empty or kind in (ColumnKind.ID, ColumnKind.TEXT):
        return None
    if kind is ColumnKind.NUMERIC:
        array = values.to_numpy(dtype="float64")
        array = array[np.isfinite(array)]
        if array.size == 0:
            return None
        distinct = np.unique(array)
        if distinct.size <= 30 and np.all(distinct == np.round(distinct)):  # few whole values: one bar each
            counts = pd.Series(array).value_counts().sort_index()
            fig = go.Figure(go.Bar(x=counts.index, y=counts.to_numpy(), marker_color=_BAR_COLOR))
        else:
            counts, edges = np.histogram(array, bins=min(40, max(5, distinct.size)))
            centers = (edges[:-1] + edges[1:]) / 2
            fig = go.Figure(go.Bar(x=centers, y=counts, width=np.diff(edges), marker_color=_BAR_COLOR))
        return _layout(fig, f"Distribution of {name}", name)
    if kind is ColumnKind.DATETIME:
        stamps = values if pd.api.types.is_datetime64_any_dtype(values) else pd.to_datetime(values, errors="coerce", format="mixed")
        stamps = stamps.dropna()
        if stamps.empty:
            return None
        counts, edges = np.histogram(stamps.astype("int64").to_numpy(), bins=40)
        centers = pd.to_datetime((edges[:-1] + edges[1:]) / 2)
        fig = go.Figure(go.Bar(x=centers, y=counts, marker_color=_BAR_COLOR))
        return _layout(fig, f"Rows over time: {name}", name)
    counts = values.astype(str).value_counts()
    title = f"Most common values of {name}" if len(counts) > _MAX_BARS else f"Values of {name}"
    if len(counts) > _MAX_BARS:
        counts = pd.concat([counts.iloc[:_MAX_BARS], pd.Series({"(other values)": counts.iloc[_MAX_BARS:].sum()})])
    labels = [html.escape(label) for label in counts.index]
    fig = go.Figure(go.Bar(x=counts.to_numpy(), y=labels, orientation="h", marker_color=_BAR_COLOR))
    fig.update_yaxes(autorange="reversed", type="category")
    return _layout(fig, title, "rows", "")


def target_figure(series: pd.Series) -> go.Figure:
    """Bar chart of a target's balance: rows per class (or per bin for a numeric target)."""
    table = target_balance(series)
    colors = ["#B0B7C3" if v == "(missing)" else _BAR_COLOR for v in table["value"]]
    fig = go.Figure(
        go.Bar(
            x=[html.escape(v) for v in table["value"]],
            y=table["rows"],
            text=[f"{s:.1f}%" for s in table["share %"]],
            textposition="outside",
            marker_color=colors,
        )
    )
    fig.update_xaxes(type="category")
    name = html.escape(str(series.name))
    return _layout(fig, f"Balance of {name}", name)
