"""Single predictions: a form built from the model's signature and training profile, one prediction
with the place of each value in the training distribution, and the online traffic kept so that the
Monitor page can watch hand-entered inputs drift like a scored file."""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from core import drift
from core.catalog import CLASSIFICATION
from core.errors import BadInputError
from core.registry import Cutoff
from core.scoring.model import ScoringModel, _label, decide
from core.settings import Settings


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # "number", "integer", "toggle" or "category"
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def hint(self) -> str:
        if self.kind in ("number", "integer") and self.low is not None:
            return f"In training: {self.low:,.6g} to {self.high:,.6g} (median {self.default:,.6g})."
        if self.kind == "category":
            return f"{len(self.choices)} values seen in training."
        return ""


def form_spec(model: ScoringModel, profile: drift.ReferenceProfile | None) -> list[FieldSpec]:
    """One field per signature column: numbers with the training range and median, 0/1 columns as
    toggles, text as a choice among the training categories."""
    if not model.features:
        raise BadInputError(f"{model.name} version {model.version} has no signature, so no form can be built for it.")
    fields = []
    for name in model.features:
        p = profile.features.get(name) if profile else None
        kind = model.types.get(name, "double")
        if isinstance(p, drift.NumericProfile) and p.count:
            values, cum = p.values, p.cumcounts
            median = float(values[np.searchsorted(cum, (p.count + 1) / 2)])
            if set(np.unique(values)) <= {0.0, 1.0} and len(values) == 2:
                fields.append(FieldSpec(name, "toggle", bool(median >= 0.5)))
            else:
                integer = kind in ("long", "integer") or bool(np.all(values == np.round(values)))
                fields.append(FieldSpec(name, "integer" if integer else "number", int(median) if integer else median,
                                        float(values[0]), float(values[-1])))
        elif isinstance(p, drift.CategoricalProfile):
            choices = tuple(c for c in p.known) or tuple(c for c in p.categories if c != drift.OTHER)
            fields.append(FieldSpec(name, "category", choices[0] if choices else "", choices=choices))
        elif kind in ("double", "float", "long", "integer"):
            fields.append(FieldSpec(name, "integer" if kind in ("long", "integer") else "number", 0))
        else:
            fields.append(FieldSpec(name, "category", "", choices=tuple(sorted(model.categories.get(name, ())))))
    return fields


@dataclass
class Prediction:
    prediction: Any
    probabilities: dict[str, float] = field(default_factory=dict)
    outside: list[str] = field(default_factory=list)  # plain sentences for values outside training
    cutoff: Cutoff | None = None  # the cut-off the class was decided at (None: the likelier class)


def form_row(model: ScoringModel, values: dict[str, Any], fields: list[FieldSpec]) -> tuple[pd.DataFrame, list[str]]:
    """The one-row table the model is asked about (toggles as 0/1, numbers as numbers), and a
    sentence for each value outside the training range."""
    row = {}
    outside = []
    for f in fields:
        value = values.get(f.name, f.default)
        if f.kind == "toggle":
            value = 1 if value else 0
        elif f.kind in ("number", "integer"):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise BadInputError(f"'{f.name}' must be a number; got {value!r}.") from None
            if f.low is not None and not f.low <= value <= f.high:
                outside.append(f"{f.name} = {value:,.6g} is outside the training range ({f.low:,.6g} to {f.high:,.6g}); "
                               "the model never saw such a value, so treat this prediction with care.")
        row[f.name] = value
    return pd.DataFrame([row], columns=list(model.features)), outside


def predict_one(model: ScoringModel, pipeline, values: dict[str, Any], fields: list[FieldSpec]) -> Prediction:
    """The model's answer for the form's row: its class decided as scoring decides it
    (:func:`core.scoring.model.decide`, at ``model.cutoff``: pass a model with the cut-off stored
    now, :func:`core.scoring.model.with_current_cutoff`, when it comes from a cache), the
    probabilities, and sentences for values outside the training range."""
    X, outside = form_row(model, values, fields)
    if model.task == CLASSIFICATION and hasattr(pipeline, "predict_proba"):
        proba = np.asarray(pipeline.predict_proba(X), dtype=float)[0]
        labels = model.classes or tuple(range(len(proba)))
        prediction = decide(proba.reshape(1, -1), labels, model.cutoff)[0]
        return Prediction(_plain(prediction), {_label(c): float(p) for c, p in zip(labels, proba, strict=True)}, outside,
                          cutoff=model.cutoff)
    return Prediction(_plain(np.asarray(pipeline.predict(X))[0]), {}, outside)


def explain_one(model: ScoringModel, pipeline, values: dict[str, Any], fields: list[FieldSpec], background: pd.DataFrame):
    """Why the model says what it says for the form's row: each input's contribution
    (:mod:`core.explain`), in probability for a logistic regression (:func:`core.explain.readable`)."""
    from core import explain

    X, _ = form_row(model, values, fields)
    proba = pipeline.predict_proba(X)[0] if model.task == CLASSIFICATION and hasattr(pipeline, "predict_proba") else None
    # with more than two classes, the explanation is about the class predicted (else the positive one)
    wanted = explain.predicted_class(model, proba)
    return explain.readable(explain.explain_rows(model, pipeline, X, background, explain_class=wanted))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def value_figure(profile: drift.Profile | None, name: str, value: Any):
    """Where one entered value lies in the training distribution: the reference shares per bin (or
    per category) with the value marked."""
    import plotly.graph_objects as go

    label = html.escape(name)
    fig = go.Figure()
    if isinstance(profile, drift.NumericProfile) and profile.count:
        edges = profile.edges  # the reference deciles: each bar holds about a tenth of the training rows
        names = drift.bin_labels(edges, profile.values[0], profile.values[-1])
        try:
            at = int(np.searchsorted(edges, float(value), side="right"))
        except (TypeError, ValueError):
            at = -1
        colours = ["#C8102E" if k == at else "#9AA5B1" for k in range(len(names))]
        # positions, not labels, on the axis: two deciles can carry the same rounded label
        fig.add_trace(go.Bar(x=list(range(len(names))), y=profile.proportions, marker_color=colours, hovertext=names))
        fig.update_xaxes(showticklabels=False)
        fig.update_layout(yaxis_tickformat=".0%")
    elif isinstance(profile, drift.CategoricalProfile) and profile.count:
        names = [html.escape(c) for c in profile.categories]
        colours = ["#C8102E" if c == str(value) else "#9AA5B1" for c in profile.categories]
        fig.add_trace(go.Bar(x=names, y=profile.counts / profile.count, marker_color=colours))
        fig.update_layout(yaxis_tickformat=".0%")
    fig.update_layout(title=label, height=200, margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=False)
    return fig


# --- online traffic ----------------------------------------------------------------------------


def online_path(settings: Settings, model_name: str):
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name)
    return settings.online_dir / f"{safe}.jsonl"


def record_online(settings: Settings, model: ScoringModel, values: dict[str, Any], result: Prediction) -> None:
    """Append one prediction (inputs, output, model version, the cut-off it was decided at, time) to the
    model's online log. One write of one line: concurrent sessions cannot interleave within a line."""
    entry = {**{k: _plain(v) for k, v in values.items()}, "prediction": result.prediction,
             **{f"proba_{k}": v for k, v in result.probabilities.items()},
             "model_name": model.name, "model_version": model.version,
             # the rule the class was decided by (None: the likelier class)
             "cutoff": result.cutoff.to_dict() if result.cutoff is not None else None,
             "predicted_at": datetime.now(UTC).isoformat(timespec="seconds")}
    path = online_path(settings, model.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def online_frame(settings: Settings, model_name: str) -> pd.DataFrame:
    path = online_path(settings, model_name)
    if not path.is_file():
        return pd.DataFrame()
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash is skipped, the rest is kept
    return pd.DataFrame(rows)


def is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
