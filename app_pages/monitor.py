"""Monitor: drift of scored batches against the training data, and performance over time."""

import dataclasses
import math
import shlex
import tempfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from core import drift, estimation, health, jobs, labels, metrics, monitoring, registry, retraining
from core.errors import StudioError

next_slot = ui.intro(
    "Monitor",
    "See whether the files a model scored still look like the data it learned from, feature by feature, and how well "
    "it does on them: estimated without the actual outcomes, measured once you add them. When a rule breaks, retrain "
    "the champion to a challenger from here.",
    "app_pages/models.py", "compare champion and challenger on the Models page",
)
ui.show_flash()
settings = ui.settings()
STATUS_ICON = {"stable": ":green[stable]", "moderate": ":orange[moderate]", "significant": ":red[significant]", "no data": "no data",
               drift.TOO_FEW: ":gray[too few rows]"}


def explain(limits: drift.Thresholds) -> None:
    # the tests (statistics with a p-value) and their statistics, from the table of statistics
    tests = [s for s in drift.STATISTICS.values() if s.p_attr and not s.drives_status]
    values = "".join(f"- **{s.value_column}**: {s.help[:1].lower()}{s.help[1:]}\n" for s in tests if s.attr)
    example = tests[0].condition(limits) if tests else f"p < {limits.p_value:g}"
    with st.expander("How to read this"):
        st.markdown(
            f"- **PSI** (population stability index) says how much the share of rows per bin moved. Under "
            f"{limits.psi_moderate:g}: stable; {limits.psi_moderate:g} to {limits.psi_significant:g}: a moderate shift worth "
            f"watching; above {limits.psi_significant:g}: significant, the data has changed. PSI 0.3 means the feature looks "
            "clearly different from what the model learned on.\n"
            f"{values}"
            f"- **p-values** ({', '.join(s.short for s in tests)}) under {limits.p_value:g} only *flag* a feature: on large batches even tiny, "
            "harmless shifts give p-values near 0, so PSI and the KS statistic drive the status. The *flagged* column "
            f"says why, e.g. \"{example} (a real but small shift)\" on a stable feature: the shift is "
            "not chance, but too small to matter; it is blank when the p-value is not under the limit.\n"
            f"- Bins are the reference's deciles; an empty bin's share counts as {drift.EPSILON:g} so PSI stays finite.\n"
            f"- Drift is judged on {drift.MIN_ROWS:,} values or more: on fewer, even rows drawn from the training data "
            "itself often look drifted by chance, so the status says *too few rows* and the page shows the values instead."
        )


def settings_panel(limits: drift.Thresholds) -> None:
    with st.expander("Status rules (settings)"):
        with st.form("monitor.thresholds", border=False):
            c1, c2, c3, c4 = st.columns(4)
            moderate = c1.number_input("Moderate from PSI", 0.001, 10.0, limits.psi_moderate, format="%g")
            significant = c2.number_input("Significant from PSI", 0.001, 10.0, limits.psi_significant, format="%g")
            p_value = c3.number_input("Flag p-values under", 0.0001, 0.5, limits.p_value, format="%g")
            drop = c4.number_input(
                "Performance may fall by", 0.0, 1.0, limits.performance_drop, format="%g",
                help="The performance rule: how far AUC (classification) may fall below its value on the holdout rows "
                     "(0.05 means from 0.80 to 0.75), or RMSE (regression) rise above it, as a share (0.05 means 5%), "
                     "realized or estimated, before the model's health says the rule breaks.")
            if st.form_submit_button("Save"):
                with ui.guarded("saving the rules"):
                    monitoring.save_thresholds(settings, dataclasses.replace(
                        limits, psi_moderate=moderate, psi_significant=significant, p_value=p_value, performance_drop=drop))
                    st.rerun()


def drift_in_words(report: drift.DriftReport) -> None:
    """The verdict in one or two sentences: which features moved, by how much, and what it means."""
    by_status = {status: sorted((f for f in report.features if f.status == status), key=lambda f: -f.psi)
                 for status in ("significant", "moderate")}

    def listed(results) -> str:
        return ", ".join(f"**{ui.md(f.feature)}** (PSI {f.psi:.2f})" for f in results)

    significant, moderate = by_status["significant"], by_status["moderate"]
    total = report.summary["features"]
    if significant:
        st.error(f"Significant drift in {len(significant)} of {total} features: {listed(significant)}. These features look "
                 "clearly different from the data the model learned on, so its predictions on this file are less trustworthy.",
                 icon=":material/warning:")
    if moderate:
        st.warning(f"Moderate drift in {len(moderate)} of {total} features: {listed(moderate)}. Worth watching over the next files.")
    if not significant and not moderate and report.summary["status"] != "no data":
        st.success(f"No feature drifted: all {total} look like the training data.", icon=":material/check_circle:")
    for f in report.features:
        if f.message:
            st.caption(f"{ui.md(f.feature)}: {ui.md(f.message)}")


def tiles(report: drift.DriftReport, measured: dict[str, float], comparison, estimated: dict[str, float] | None = None,
          bands: dict[str, float] | None = None) -> None:
    """The verdict in four tiles; ``measured`` holds the batch's labelled metrics (empty without the outcome),
    ``estimated`` and ``bands`` its performance estimated without them."""
    estimated, bands = estimated or {}, bands or {}
    s = report.summary
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Drifted features", f"{s['drifted']} of {s['features']}", help="Features whose status is moderate or significant.")
    c2.metric("Worst feature", s["worst_feature"] or "none", f"PSI {s['worst_psi']:.2f}" if s["worst_psi"] is not None else None,
              delta_color="inverse")
    if report.prediction is not None and math.isfinite(report.prediction.psi):
        c3.metric("Prediction drift (PSI)", f"{report.prediction.psi:.2f}", report.prediction.status, delta_color="off",
                  help="How much the model's scores moved compared with its scores on the training holdout rows.")
    else:
        c3.metric("Prediction drift", "n/a")
    at_training = {r.metric: r for r in comparison or []}
    if measured.get("f1") is not None:
        row = at_training.get("f1")
        c4.metric("F1 on this file", f"{measured['f1']:.3f}", f"{row.change:+.3f} against training" if row else None,
                  help="Balance of precision and recall, from 0 to 1 (higher is better), on this file against the "
                       "training holdout rows. Needs the true outcome in the scored file.")
    elif measured.get("rmse") is not None:
        row = at_training.get("rmse")
        c4.metric("RMSE on this file", f"{measured['rmse']:.3g}", f"{row.change:+.3g} against training" if row else None,
                  delta_color="inverse", help="Typical size of the error (lower is better), against the training holdout rows.")
    elif estimated.get("f1") is not None or estimated.get("rmse") is not None:
        key = "f1" if estimated.get("f1") is not None else "rmse"
        text = _estimate_text(key, estimated[key], bands.get(key))
        c4.metric(f"Estimated {metrics.label(key)}", metrics.fmt(key, estimated[key]),
                  f"range {text.partition('(')[2].rstrip(')')}" if "(" in text else None, delta_color="off",
                  help="Expected from the model's own predictions, without the actual outcomes; add them below to measure it.")
    else:
        c4.metric("Performance", "no labels", help="Add the actual outcomes below to see how the model did on this file.")


def results_table(report: drift.DriftReport) -> pd.DataFrame:
    """A row per feature and a column per value and p-value of the table of statistics, in its order;
    "flagged" after the statistics that can flag. The status statistic (PSI) stays a number to sort by."""
    statistics = list(drift.STATISTICS.values())
    last_flagging = max((k for k, s in enumerate(statistics) if s.threshold is not None), default=len(statistics) - 1)
    status_column = next((s.value_column for s in statistics if s.drives_status), None)
    rows = []
    for f in report.features:
        row = {"feature": f.feature, "kind": f.kind, "status": f.status}
        for k, s in enumerate(statistics):
            value, p = s.of(f)
            if s.attr:
                row[s.value_column] = (None if not math.isfinite(value) else round(value, 3)) if s.drives_status else _r(value)
            if s.p_attr:
                row[s.p_column] = _p(p)
            if k == last_flagging:
                row["flagged"] = drift.flag_reason(f, report.thresholds)
        row["note"] = f.message
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values(status_column, ascending=False, na_position="last") if status_column in table else table


COLUMN_HELP = {
    "status": f"stable, moderate or significant, from the PSI and the rules below the page; too few rows under "
              f"{drift.MIN_ROWS:,} values.",
    **{column: text for s in drift.STATISTICS.values() for column, _, text in s.columns()},
    "flagged": "Why the feature is flagged: its p-value is under the limit, so the shift is not chance. On a stable "
               "feature that is a real but small shift, usually too small to matter: the status comes from PSI. "
               "Blank: not flagged.",
}


def _r(value, digits=3):
    """A measure for the table: rounded, or blank where it does not apply (e.g. KS for categories)."""
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _p(value):
    """A p-value for people: three decimals, and "< 0.001" for the many that are tiny on big files."""
    return "" if value is None or not math.isfinite(value) else "< 0.001" if value < 0.001 else f"{value:.3f}"


# The measures drawn over time (the others are in each batch's table): a few, so the lines stay readable.
HISTORY_METRICS = ("f1", "auc", "log_loss", "log_loss_ratio", "rmse", "mae", "r2")


def history_charts(batches, limits: drift.Thresholds) -> None:
    psi, perf = monitoring.history(batches)
    if psi.empty or len(psi) < 2:
        st.caption("History appears here once this model has scored two or more files.")
        return

    def in_order(fig: go.Figure, frame: pd.DataFrame) -> None:  # a point per file, in the order they were scored
        fig.update_xaxes(tickmode="array", tickvals=list(range(len(frame))),
                         ticktext=[str(b).split(" · ")[0] + "<br>" + str(t)[:16].replace("T", " ")
                                   for b, t in zip(frame["batch"], frame["scored_at"])])

    x = list(range(len(psi)))
    fig = go.Figure()
    for column in [c for c in psi.columns if c not in ("scored_at", "batch")]:
        fig.add_trace(go.Scatter(x=x, y=psi[column], mode="lines+markers", name=column, hovertext=psi["batch"]))
    fig.add_hline(y=limits.psi_moderate, line_dash="dash", annotation_text="moderate", annotation_position="bottom right")
    fig.add_hline(y=limits.psi_significant, line_dash="dash", annotation_text="significant", annotation_position="top right")
    fig.update_layout(title="PSI per feature, batch after batch", yaxis_title="PSI", height=380)
    in_order(fig, psi)
    st.plotly_chart(fig, key="monitor.history.psi")
    wanted = [c for c in HISTORY_METRICS if c in perf.columns]
    if wanted:
        fig = go.Figure([go.Scatter(x=list(range(len(perf))), y=perf[c], mode="lines+markers", name=metrics.label(c),
                                    hovertext=perf["batch"]) for c in wanted])
        fig.update_layout(title="Performance on labelled batches", height=340)
        in_order(fig, perf)
        st.plotly_chart(fig, key="monitor.history.perf")


def _range_bars(estimated: pd.Series, band: pd.Series, metric: str) -> dict:
    """The estimate's range as error bars, kept within what the measure can take (0 to 1 for AUC)."""
    band = band.fillna(0)
    up, down = band, band
    if metric in estimation.CLASSIFICATION_METRICS:
        up, down = (1 - estimated).clip(lower=0).combine(band, min), estimated.clip(lower=0).combine(band, min)
    return {"type": "data", "symmetric": False, "array": up.fillna(0), "arrayminus": down.fillna(0), "visible": True}


def timeline_figure(frame: pd.DataFrame, limits: drift.Thresholds) -> go.Figure | None:
    """The model's life in one chart, a point per scored file in the order they were scored: the worst
    feature's PSI (with the status rules), the estimated performance with its band and the realized
    one, and the alias changes as dotted lines between the files they came between."""
    from plotly.subplots import make_subplots

    scored = frame[frame["kind"] == "batch"].reset_index(drop=True)
    if scored.empty:
        return None
    metric = scored["metric"].dropna().iloc[0] if scored["metric"].notna().any() else None
    name = metrics.label(metric) if metric else "performance"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.14,
                        subplot_titles=("Drift: PSI of the most drifted feature",
                                        f"{name}: estimated without the outcomes, realized with them"))
    x = list(range(len(scored)))
    hover = [f"{b}<br>scored by version {v}<br>most drifted: {f or 'n/a'}" for b, v, f in
             zip(scored["batch"], scored["version"], scored["worst_feature"])]
    fig.add_trace(go.Scatter(x=x, y=scored["worst_psi"], mode="lines+markers", name="worst PSI",
                             hovertext=hover, hovertemplate="%{hovertext}<br>PSI %{y:.2f}<extra></extra>"), row=1, col=1)
    for value, text, colour, where in ((limits.psi_moderate, "moderate", "orange", "bottom left"),
                                       (limits.psi_significant, "significant", "red", "top left")):
        fig.add_hline(y=value, line_dash="dash", line_color=colour, annotation_text=text, annotation_position=where, row=1, col=1)
    if scored["estimated"].notna().any():
        fig.add_trace(go.Scatter(x=x, y=scored["estimated"], mode="lines+markers", name=f"estimated {name} (bar: its range)",
                                 error_y=_range_bars(scored["estimated"], scored["band"], metric),
                                 hovertext=hover, hovertemplate="%{hovertext}<br>estimated %{y:.3f}<extra></extra>"), row=2, col=1)
    if scored["realized"].notna().any():
        fig.add_trace(go.Scatter(x=x, y=scored["realized"], mode="markers", name=f"realized {name}",
                                 marker={"symbol": "diamond", "size": 11},
                                 hovertext=hover, hovertemplate="%{hovertext}<br>realized %{y:.3f}<extra></extra>"), row=2, col=1)
    before = (frame["kind"] == "batch").cumsum()  # the files scored before each row (the frame is in time order)
    changes = frame[(frame["kind"] == "alias") & frame["version"].notna()]
    for k, (index, marker) in enumerate(changes.iterrows()):
        position = int(before[index]) - 0.5
        fig.add_shape(type="line", x0=position, x1=position, xref="x", yref="paper", y0=0, y1=1,
                      line={"dash": "dot", "color": "grey"})
        fig.add_annotation(x=position, xref="x", yref="paper", y=1.09 + 0.045 * (k % 2), text=marker.change, showarrow=False,
                           font={"size": 11}, xanchor="center")
    ticks = [f"{n}<br>{str(t)[:16].replace('T', ' ')}" for n, t in zip(scored["input_name"], scored["scored_at"])]
    fig.update_xaxes(tickmode="array", tickvals=x, ticktext=ticks, range=[-0.7, len(x) - 0.3], row=2, col=1)
    fig.update_layout(height=600, margin={"t": 120}, legend={"orientation": "h", "y": -0.18}, hovermode="closest")
    fig.update_yaxes(title_text="PSI", row=1, col=1)
    fig.update_yaxes(title_text=name, row=2, col=1)
    return fig


def timeline_section(model, found: list[monitoring.Batch], limits: drift.Thresholds) -> None:
    """One timeline per model: every batch it scored, which version scored it, and the alias changes."""
    name = model.name
    st.subheader(f"Timeline of {ui.md(name)}", anchor=False)
    frame = None
    with ui.guarded("drawing the timeline"):
        frame = monitoring.timeline(settings, name, found=found, model=model)
    if frame is None:
        return
    figure = timeline_figure(frame, limits)
    if figure is None:
        st.caption("The timeline appears once this model has scored a file.")
        return
    st.plotly_chart(figure, key="monitor.timeline")
    scored = frame[frame["kind"] == "batch"]
    versions = sorted(set(scored["version"]))
    st.caption(f"{ui.plural(len(scored), 'scored file')}, in the order they were scored, by version{'s' if len(versions) > 1 else ''} "
               f"{', '.join(str(v) for v in versions)}. Hover over a point to see which version scored that file. Dotted "
               "lines: the champion or challenger changed there. Realized figures appear once a file has its actual outcomes.")


# An estimate whose band is wider than this (either way) says nothing of a measure between 0 and 1:
# the rows it rests on (predicted positives for precision, ...) are too few.
WIDE_BAND = 0.25


def _estimate_text(key: str, value: float, band: float | None) -> str:
    """An estimate and the range its band gives, kept within what the measure can take (0 to 1 for
    the classification scores, 0 and up for errors): "0.627 (0.590 to 0.664)"."""
    if band is None or metrics.finite(band) is None:
        return metrics.fmt(key, value)
    low, high = value - band, value + band
    metric = metrics.find(key)
    if metric is not None:
        low = max(low, 0.0)
        if metric.task == metrics.CLASSIFICATION and metric.higher_is_better:
            high = min(high, 1.0)
    return f"{metrics.fmt(key, value)} ({metrics.fmt(key, low)} to {metrics.fmt(key, high)})"


def performance_section(batch: monitoring.Batch, version=None) -> None:
    """The batch's performance estimated without its outcomes (with its band), beside the realized one
    once the outcomes are there, the measures of the predicted classes (at the cut-off the batch was
    scored with) apart from those of the probabilities; the assumption in one sentence, concept drift
    when they disagree; gain and lift on the labelled rows of a classifier (``version``: the registered
    version that scored it)."""
    target = getattr(version, "target", None)
    batch_task = getattr(version, "task", None) or next(
        (m.task for m in map(metrics.find, batch.metrics) if m is not None), None)
    st.subheader("Performance on this file", anchor=False)
    estimated, bands = dict(batch.estimated), dict(batch.bands)
    if not estimated and batch.estimate_status is None:  # scored before estimates existed: estimated once, recorded
        with ui.guarded("estimating the performance of this file"), st.spinner("Estimating the performance of this file..."):
            found = estimation.complete(settings, batch.run_id)
            if found is not None:
                estimated, bands = dict(found.values), dict(found.bands)
    realized = {k: v for k, v in batch.metrics.items() if metrics.find(k) is not None}
    attached = None
    if realized:  # outcomes attached later, or held by the scored file
        with ui.guarded("reading the attached outcomes"):
            attached = _memo(f"labels.{batch.run_id}", repr(sorted(realized.items())),
                             lambda: labels.stored_report(settings, batch.run_id))
    on_matched = (attached or {}).get("estimate") or {}
    if on_matched.get("values"):  # compared on the same rows: the estimate of the rows that received an outcome
        estimated, bands = dict(on_matched["values"]), dict(on_matched.get("bands") or {})
        if attached.get("matched", batch.rows) < batch.rows:
            st.caption(f"Outcomes were attached to {attached['matched']:,} of the {batch.rows:,} rows: the estimate below is "
                       "made on those same rows, so the two columns describe the same rows.")
    if not estimated and batch.estimate_status == "failed":
        st.info("The performance of this file could not be estimated when it was scored (the scoring's notes on the Score "
                "page say why); its scores and drift stand.", icon=":material/info:")
    elif not estimated:
        st.info(estimation.UNAVAILABLE, icon=":material/info:")
    keys = [k for k in metrics.ranked() if k in estimated or k in realized]
    if not keys:
        return
    estimate = estimation.Estimate.from_metrics({**{f"est.{k}": v for k, v in estimated.items()},
                                                 **{f"est_band.{k}": v for k, v in bands.items()}}) if estimated else None
    apart = set(estimate.disagreements(realized)) if estimate is not None and realized else set()
    cutoff, rule_read = None, False
    if any(metrics.depends_on_cutoff(k) for k in keys):
        with ui.guarded("reading the cut-off this file was scored with"):
            cutoff = _memo(f"cutoff.{batch.run_id}", batch.run_id, lambda: labels.batch_cutoff(settings, batch.run_id))
            rule_read = True  # a failed read (the error is shown) is never told as "scored without a cut-off"
    rows = []
    for key in keys:
        row = {"measure": metrics.label(key)}
        if estimated:
            row["estimated"] = _estimate_text(key, estimated[key], bands.get(key)) if key in estimated else "not estimated"
        if realized:
            row["realized"] = metrics.fmt(key, realized.get(key), "not measured")
        if estimated and realized:
            wide = (bands.get(key) or 0) >= WIDE_BAND and key in estimation.CLASSIFICATION_METRICS
            row["agree?"] = ("" if key not in realized or key not in estimated else "no: outside the range" if key in apart
                             else "cannot tell: the range is too wide (too few rows count for this measure)" if wide
                             else "yes: within the range")
        rows.append(row)
    column_config = {
        "estimated": st.column_config.Column(help="What the model expects on this file from its own predictions, without the "
                                                  "outcomes; in brackets, the range the true value should fall in."),
        "realized": st.column_config.Column(help="Measured on the rows whose actual outcome is known."),
        "agree?": st.column_config.Column(help="Whether the realized value falls within the range of the estimate."),
    }
    at_cutoff = [row for key, row in zip(keys, rows) if metrics.depends_on_cutoff(key)]
    free = [row for key, row in zip(keys, rows) if not metrics.depends_on_cutoff(key)]
    if at_cutoff and free:  # kept apart: the predicted classes move with the cut-off, AUC and log loss do not
        rule = labels.cutoff_words(cutoff, target) if rule_read else UNREAD_RULE
        st.markdown(f"**Measures of the predicted classes, {ui.md(rule)}**")
        st.dataframe(pd.DataFrame(at_cutoff), hide_index=True, column_config=column_config, key="monitor.performance.cutoff")
        st.markdown("**Measures of the probabilities themselves, the same at any cut-off**")
        st.dataframe(pd.DataFrame(free), hide_index=True, column_config=column_config, key="monitor.performance.free")
    else:
        st.dataframe(pd.DataFrame(rows), hide_index=True, column_config=column_config, key="monitor.performance")
    if estimated:
        st.caption(estimation.ASSUMPTION)
    if apart:
        shown = ", ".join(metrics.label(k) for k in keys if k in apart)
        st.warning(f"{estimation.CONCEPT_DRIFT} Outside the estimate's range: {shown}.", icon=":material/psychology_alt:")
    elif estimated and not realized:
        st.caption("Add the actual outcomes below to see the realized performance beside the estimate.")
    if realized and batch_task == metrics.CLASSIFICATION:
        gain_section(batch)


def gain_section(batch: monitoring.Batch) -> None:
    """Cumulative gain and lift per decile on the rows of the batch that have an outcome."""
    from core import decisions

    st.markdown("**How much better than picking rows at random, on this file?**")
    found = None
    with ui.guarded("drawing gain and lift"), st.spinner("Ranking the labelled rows..."):
        found = _memo(f"gain.{batch.run_id}", repr(sorted(batch.metrics.items())),  # repr: NaN equals itself
                      lambda: labels.batch_decisions(settings, batch.run_id))
    if found is None:
        return
    if found.unavailable or found.gain_error:
        st.caption(ui.md(found.unavailable or found.gain_error))
        return
    st.caption(ui.md(found.note))
    left, right = st.columns(2)
    left.plotly_chart(found.figures["gain"], key="monitor.gain")
    left.caption(decisions.GAIN_HELP)
    right.plotly_chart(found.figures["lift"], key="monitor.lift")
    right.caption(decisions.LIFT_HELP)
    with st.expander("The cut-off chart and lift per decile as a table"):
        st.plotly_chart(found.figures["threshold"], key="monitor.threshold")
        st.caption(decisions.THRESHOLD_HELP)
        st.dataframe(found.lift, hide_index=True, column_config={
            c: st.column_config.NumberColumn(format="%.3f") for c in found.lift.columns if found.lift[c].dtype.kind == "f"})


UNREAD_RULE = ("by the rule this batch was scored with, which could not be read (a stored cut-off or the likelier "
               "class; the error above says why)")


def _memo(key: str, signature, compute):
    """``compute()``, kept in the session while ``signature`` (what the value depends on) stays the same: a
    rerun (every widget touch) does not ask the tracking server again for what it already answered."""
    memo = st.session_state.setdefault("monitor.memo", {})
    if key in memo and memo[key][0] == signature:
        return memo[key][1]
    value = compute()
    memo[key] = (signature, value)
    return value


def _batches_signature(found: list[monitoring.Batch]) -> tuple:
    return tuple((b.run_id, b.model_version, b.drift_status, tuple(sorted(b.metrics.items())), tuple(sorted(b.estimated.items())))
                 for b in found)


def health_section(model, found: list[monitoring.Batch], limits: drift.Thresholds) -> None:
    """Is the champion still good: the health check's verdict in words, and when a rule breaks, the
    proposal to retrain it to a challenger."""
    name = model.name
    st.subheader("Health of the champion", anchor=False)
    if "champion" not in model.aliases:
        st.caption("Set the champion alias on a version (Models page) to follow its health here.")
        return
    signature = (tuple(sorted(model.aliases.items())), _batches_signature(found), repr(limits))
    found = None
    with ui.guarded("checking the model's health"):
        found = _memo(f"health.{name}", signature, lambda: health.check(settings, f"{name}@champion", last=5))
    if found is None:
        return
    reasons = " ".join(ui.md(r) for r in found.reasons)
    if found.latest is None:  # nothing scored yet: nothing to judge
        st.info(reasons, icon=":material/info:")
        strategies(name)
        return
    judged_champion = found.latest.version == found.version
    if not judged_champion and found.latest.breaks:  # an earlier version broke it: history, not an alarm
        st.warning(f"**The last file was scored by version {found.latest.version}, not by the champion (version {found.version}), "
                   f"and broke a rule there.** {reasons}",
                   icon=":material/history:")
    elif not judged_champion:
        st.info(reasons, icon=":material/info:")
    elif found.status == health.HEALTHY:
        st.success(f"**Healthy.** {reasons}", icon=":material/check_circle:")
    elif found.status not in (health.DRIFT, health.PERFORMANCE):  # a status added later: said as it is
        st.info(f"**{ui.md(found.status.capitalize())}.** {reasons}", icon=":material/info:")
    elif found.status == health.DRIFT:
        st.warning(f"**A rule breaks: significant drift.** {reasons}", icon=":material/warning:")
    else:
        st.error(f"**A rule breaks: the performance fell too far.** {reasons}", icon=":material/trending_down:")
    for note in found.notes:
        if judged_champion or not note.startswith("The latest batch was scored by version"):  # said below in full
            st.caption(ui.md(note))
    if found.status != health.HEALTHY and not judged_champion:
        st.info(f"The champion is version {found.version} now, and it has not scored a file yet. Score the next file with it "
                "to see how it holds up.",
                icon=":material/info:")
        st.page_link("app_pages/score.py", label="Next: score a file with the champion on the Score page",
                     icon=":material/arrow_forward:", query_params={"model": name})
    retrain_panel(model, proposed=found.status != health.HEALTHY and judged_champion)
    strategies(name)


RETRAIN_JOB = "monitor.retrain"  # per model: the retraining job started from this page


def _retrain_job(name: str) -> str | None:
    """The retraining job of ``name`` to show: the one in the address (a reload keeps it), else one still
    running for this model, else the one started in this session."""
    store = jobs.JobStore(settings)
    mine = []
    for job in jobs.sweep(settings):
        if job.kind != "training":
            continue
        spec = store.payload(job.job_id).get("spec", {})
        if spec.get("register_name") == name and spec.get("register_alias") not in (None, "champion"):
            mine.append(job)
    known = {j.job_id: j for j in mine}
    wanted = _linked("retrain")
    if wanted in known:
        return wanted
    live = [j for j in mine if j.state in jobs.ACTIVE]
    if live:
        return live[0].job_id
    mine_here = st.session_state.get(f"{RETRAIN_JOB}.{name}")
    return mine_here if mine_here in known else None


def retrain_panel(model, proposed: bool) -> None:
    from core.training import TrainingSummary

    name = model.name
    job_id = job = None
    with ui.guarded("reading the retraining job"):
        job_id = _retrain_job(name)
        job = jobs.status(settings, job_id) if job_id else None
    if job is not None:
        st.query_params["retrain"] = job_id
        if not job.finished:
            ui.job_panel(job_id, f"{RETRAIN_JOB}.shown", "Retraining")
            return
        if job.state == "succeeded":
            registered = TrainingSummary.from_dict(job.result or {}).registered
            if registered and model.aliases.get(registered.alias) == registered.version:  # not promoted or moved since
                st.success(f"The retrained model is version {registered.version} of '{ui.md(registered.name)}', registered as the "
                           f"**{ui.md(registered.alias)}**. The champion still scores. Compare them on the same labelled rows on "
                           "the Models page, and promote the challenger if it is better.", icon=":material/task_alt:")
                st.page_link("app_pages/models.py", label="Next: compare champion and challenger on the Models page",
                             icon=":material/arrow_forward:", query_params={"model": name})
                return  # retraining again now would replace the challenger before it was compared
        elif job.state == "failed":
            st.error(f"The retraining failed, and nothing was registered: {ui.md(job.error or 'no reason was recorded')}",
                     icon=":material/error:")
        else:
            st.info("The retraining was cancelled; nothing was registered.")
    if not proposed:
        return
    recipe = None
    with ui.guarded("reading how the champion was trained"):  # a version's recipe never changes
        recipe = _memo(f"recipe.{name}", model.aliases.get("champion"), lambda: retraining.recipe(settings, f"{name}@champion"))
    if recipe is None:
        return
    from core import catalog

    with st.container(border=True):
        st.markdown("**Proposal: retrain the champion to a challenger**")
        algorithm = catalog.get(recipe.task, recipe.algorithm).name
        settings_text = ", ".join(f"{k} = {v}" for k, v in recipe.params.items()) or "its default settings"
        st.markdown(f"Train **{ui.md(algorithm)}** again, with the champion's hyperparameters ({ui.md(settings_text)}) and its "
                    f"{len(recipe.features)} features ({ui.md(', '.join(recipe.features))}), on newer data. The new version is "
                    "registered as the **challenger**: the champion goes on scoring until you promote the challenger on the "
                    "Models page.")
        stored = {r.table_id: r for r in ui.table_store().list()}
        options = [retraining.TRAINING_PLUS_LABELLED, *stored]
        source = st.radio("Train on", options, key=f"monitor.retrain.source.{name}", format_func=lambda o: (
            "The training table plus the files that received their actual outcomes" if o == retraining.TRAINING_PLUS_LABELLED
            else f"The stored table '{stored[o].name}' ({stored[o].rows:,} rows)"),
            help="With the training table plus the files that received their outcomes, the latest of those files is kept "
                 "out of the training, so that the Models page can compare champion and challenger on rows neither has seen.")
        if st.button("Start the retraining", type="primary", icon=":material/model_training:", key=f"monitor.retrain.go.{name}"):
            with ui.guarded("starting the retraining"):
                planned = retraining.plan(settings, f"{name}@champion", source)
                job = retraining.submit(settings, planned)
                st.session_state[f"{RETRAIN_JOB}.{name}"] = job.job_id
                st.query_params["retrain"] = job.job_id
                ui.flash("info", ui.md(planned.description))
                st.rerun()


def strategies(name: str) -> None:
    """The two ways to keep a model healthy, with the commands a scheduler runs."""
    from core.settings import PROJECT_ROOT

    root, folder = ".venv/bin/python -m core", shlex.quote(str(PROJECT_ROOT))
    with st.expander("How to keep a model healthy: react to a broken rule, or retrain on a schedule"):
        st.markdown(
            "**Reactive**: a rule breaks → retrain → challenger → compare → promote. When the check above says a rule "
            "breaks, start the retraining it proposes; the new version becomes the challenger; the Models page compares it "
            "with the champion on the same labelled rows; promote it with one click if it is better. The same without "
            "the browser (the check exits with 0 when healthy, 3 on significant drift, 4 when the performance breaks its rule):")
        st.code(f"{root} monitor --model {name}@champion\n"
                f"{root} retrain --model {name}@champion --data training+labelled", language="bash")
        st.markdown(
            "**Predictive**: retrain on a schedule, before a rule breaks, for example every Monday at 6:00 with a "
            "cron line (run `crontab -e` and add it):")
        st.code(f"0 6 * * 1  cd {folder} && {root} retrain --model {name}@champion --data training+labelled",
                language="bash")
        st.markdown("Or check every day and retrain only when a rule breaks:")
        st.code(f"0 6 * * *  cd {folder} && {root} monitor --model {name}@champion; "
                f"case $? in 3|4) {root} retrain --model {name}@champion --data training+labelled;; esac",
                language="bash")


def _key_label(column: str) -> str:
    return f"{column} (the row's position in the scored file, from 1)" if column == labels.ROW_NUMBER else column


def labels_section(batch: monitoring.Batch, target: str | None) -> None:
    """Outcomes that arrive later: upload them, pick the key and the outcome column, see the plan
    (rows matched, not matched, replaced?), then attach them to the batch."""
    from core.datasets import read_table

    st.subheader("Add the actual outcomes", anchor=False)
    st.markdown("When the real outcomes of these rows are known (did the shot go in?), upload them here: the file needs a "
                "column that finds each row in the scored file, and the outcome column. The model's realized performance "
                "is then measured and shown beside its estimate.")
    attached = st.session_state.get(f"monitor.labels.done.{batch.run_id}", 0)  # a new uploader once outcomes are attached
    uploaded = st.file_uploader("File with the actual outcomes (CSV, parquet or Excel)",
                                key=f"monitor.labels.upload.{batch.run_id}.{attached}")
    if uploaded is None:
        return
    columns = None
    with ui.guarded("reading the outcomes file"):
        columns = [str(c) for c in read_table(uploaded.getvalue(), uploaded.name).frame.columns]
    if not columns:
        return
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".outcomes-", dir=settings.tmp_dir) as folder:
        path = Path(folder) / f"outcomes{Path(uploaded.name).suffix.lower()}"
        path.write_bytes(uploaded.getvalue())
        suggested_key = f"monitor.labels.suggested.{batch.run_id}.{uploaded.file_id}"
        if suggested_key not in st.session_state:  # the column both files share that names each row once, if one does
            try:
                st.session_state[suggested_key] = (labels.plan(settings, batch.run_id, path, name=uploaded.name).key, None)
            except StudioError as exc:
                st.session_state[suggested_key] = (labels.ROW_NUMBER if labels.ROW_NUMBER in columns else None, str(exc))
            except Exception as exc:  # noqa: BLE001 - a bug: logged with an id, and the key is asked for
                st.session_state[suggested_key] = (None, ui._unexpected(exc, "suggesting the key column"))
        suggested, why_not = st.session_state[suggested_key]
        c1, c2 = st.columns(2)
        key = c1.selectbox("Key: the column that finds each row in the scored file", columns, key=f"monitor.labels.key.{uploaded.file_id}",
                           index=columns.index(suggested) if suggested in columns else None, format_func=_key_label,
                           placeholder="Choose the key column", help=labels.KEY_HELP)
        outcomes = [c for c in columns if c != key]
        outcome = c2.selectbox("Outcome: the column with the actual result", outcomes,
                               key=f"monitor.labels.target.{uploaded.file_id}.{key}",
                               index=outcomes.index(target) if target in outcomes else (0 if len(outcomes) == 1 else None),
                               placeholder="Choose the outcome column",
                               help=f"The column that holds what really happened ('{target}' in training)." if target else None)
        if suggested is None:  # no column finds the rows: how to key a file without an id
            st.caption(ui.md(labels.KEY_HELP))
        if key is None:
            st.info(ui.md(why_not or "Choose the key column."), icon=":material/key:")
        if key is None or outcome is None:
            return
        planned = None
        with ui.guarded("checking the outcomes"):
            planned = labels.plan(settings, batch.run_id, path, key=key, target=outcome, name=uploaded.name)
        if planned is None:
            st.caption("Nothing was attached.")
            return
        m1, m2, m3 = st.columns(3)
        m1.metric("Rows matched", f"{planned.matched:,} of {planned.batch_rows:,}", help="Rows of the scored file that receive an outcome.")
        m2.metric("Rows without an outcome", f"{planned.unmatched_batch_rows:,}",
                  help="Rows of the scored file that this file has no outcome for; they are left out of the measures.")
        m3.metric("Outcomes in the file", f"{planned.label_rows:,}")
        for message in planned.messages:
            st.caption(ui.md(message))
        refusal = planned.refusal()
        if refusal is not None:
            st.warning(ui.md(str(refusal)), icon=":material/content_copy:")
            go_ = st.button("Replace the outcomes", key=f"monitor.labels.replace.{batch.run_id}", icon=":material/swap_horiz:")
        else:
            go_ = st.button("Attach the outcomes", type="primary", key=f"monitor.labels.attach.{batch.run_id}",
                            icon=":material/fact_check:")
        if go_:
            with ui.guarded("attaching the outcomes"), st.spinner("Measuring the model on the matched rows..."):
                report = labels.attach(settings, planned, replace=refusal is not None)
                st.session_state[f"monitor.labels.done.{batch.run_id}"] = attached + 1
                ui.flash("success", f"Attached the outcomes of {report.matched:,} rows"
                                    + (" (the earlier ones were replaced)" if report.replaced else "")
                                    + ". The realized performance is now shown beside the estimate.")
                st.rerun()


def _linked(key: str) -> str | None:
    """A value the page's address carries (``?model=...&batch=...``): the Score page links here so."""
    value = st.query_params.get(key)
    return value if isinstance(value, str) and value else None


def _keep_model_in_link() -> None:
    st.query_params["model"] = st.session_state["monitor.model"]
    st.query_params.pop("batch", None)  # the batch (and the retraining job) belonged to the model before
    st.query_params.pop("retrain", None)


def _keep_batch_in_link(model: str, key: str) -> None:
    st.query_params["model"] = model
    st.query_params["batch"] = st.session_state[key]


def _keep_source_in_link() -> None:
    if st.session_state.get("monitor.source") != "batch":
        st.query_params.pop("batch", None)


def too_few_rows(report: drift.DriftReport, profile, current: pd.DataFrame) -> None:
    """A batch too small to judge: say so, and show its values beside the training data."""
    st.info(report.summary["message"], icon=":material/info:")
    if profile is None or current is None:
        return
    table = drift.values_beside_reference(profile, current)
    st.dataframe(table, hide_index=True, column_config={
        "in training": st.column_config.Column(help="The training rows' median and range, or their most common category."),
    })
    st.caption("Each value beside the training data: where it lies among the training rows, or whether its "
               f"category was seen in training. Drift is judged once {drift.MIN_ROWS:,} rows or more are compared.")


def render() -> None:
    models = None
    with ui.guarded("reading the model registry"):
        models = [m for m in registry.list_models(settings) if m.versions]
    if models is None:
        return
    if not models:
        st.info("Nothing to monitor yet: train and register a model, then score a file with it.")
        st.page_link("app_pages/train.py", label="Go to the Train page", icon=":material/arrow_forward:")
        return
    limits = monitoring.thresholds(settings)
    names = [m.name for m in models]
    # The address names the model and batch to open (the Score page links so; a reload keeps them):
    # applied before the widgets are drawn, and kept in step when the user changes them. Unknown
    # values are ignored.
    if _linked("model") in names:
        st.session_state["monitor.model"] = _linked("model")
    name = st.selectbox("Model", names, key="monitor.model", on_change=_keep_model_in_link)
    ui.next_link(next_slot, "app_pages/models.py", "compare champion and challenger on the Models page", {"model": name})
    batches = monitoring.batches(settings, name)
    by_id = {b.run_id: b for b in batches}
    batch_key = f"monitor.batch.{name}"
    if _linked("batch") in by_id:
        st.session_state["monitor.source"] = "batch"
        st.session_state[batch_key] = _linked("batch")
    source = st.radio("Compare", ["batch", "online", "file"], horizontal=True, key="monitor.source",
                      on_change=_keep_source_in_link,
                      format_func={"batch": "A file this model scored", "online": "Predictions made on the Predict page",
                                   "file": "Upload a file to compare directly"}.get)
    report = current = batch = comparison = version = opened = None
    if source == "batch":
        if not batches:
            st.info("This model has not scored any file yet. Score one on the Score page, then come back.")
            st.page_link("app_pages/score.py", label="Go to the Score page", icon=":material/arrow_forward:")
            return
        run_id = st.selectbox("Scored file", list(reversed(list(by_id))), format_func=lambda r: by_id[r].label, key=batch_key,
                              on_change=_keep_batch_in_link, args=(name, batch_key))
        batch = by_id[run_id]
        version = batch.model_version
        with ui.guarded("measuring drift"), st.spinner("Comparing with the training data..."):
            opened = monitoring.open_batch(settings, batch)  # the report recorded on the run: no rows read
            report, comparison = opened.report, opened.comparison
    elif source == "online":
        from core.predict import online_frame

        current = online_frame(settings, name)
        if current.empty:
            st.info("No prediction has been made on the Predict page with this model yet.")
            st.page_link("app_pages/predict.py", label="Go to the Predict page", icon=":material/arrow_forward:")
            return
        version = int(current["model_version"].iloc[-1])
        st.caption(f"{len(current):,} online predictions, compared with the training data of version {version}.")
        with ui.guarded("measuring drift"):
            report = monitoring.file_drift(settings, f"{name}/{version}", current)
    else:
        model = models[names.index(name)]
        version = st.selectbox("Against version", [v.version for v in model.versions], key=f"monitor.version.{name}",
                               index=0, format_func=lambda v: f"version {v}")
        uploaded = st.file_uploader("Parquet, CSV or Excel", key="monitor.upload",
                                    help="The file needs the model's feature columns; it is compared, not scored or kept.")
        if uploaded is None:
            st.caption("Upload a file with the same columns as the training data to see how far it has moved.")
            return
        with ui.guarded("measuring drift"):
            from core.datasets import read_table

            current = read_table(uploaded.getvalue(), uploaded.name).frame
            report = monitoring.file_drift(settings, f"{name}/{version}", current)
    if report is None:
        return
    st.subheader(f"Drift: {STATUS_ICON.get(report.summary['status'], report.summary['status'])}", anchor=False)
    profile = None
    with ui.guarded("reading the training data"):
        profile = opened.profile if opened is not None else monitoring.training_profile(settings, name, version)
    if report.summary["status"] == drift.TOO_FEW:
        if opened is not None:  # a small batch: its rows are few, read them whole
            current = monitoring.batch_head(opened.output, list(profile.features) if profile else [], drift.MIN_ROWS)
        too_few_rows(report, profile, current)
        explain(limits)
    else:
        drift_in_words(report)
        tiles(report, batch.metrics if batch is not None else {}, comparison,
              batch.estimated if batch is not None else None, batch.bands if batch is not None else None)
        explain(limits)
        st.plotly_chart(drift.psi_figure(report), key="monitor.psi")
        st.dataframe(results_table(report), hide_index=True, column_config={
            column: st.column_config.Column(help=text) for column, text in COLUMN_HELP.items()})
        if comparison:
            st.subheader("Performance against training", anchor=False)
            ui.performance_against_training(comparison)
        features = [f.feature for f in sorted(report.features, key=lambda f: -(f.psi if math.isfinite(f.psi) else -1))]
        chosen = st.selectbox("Look at one feature", features, key=f"monitor.feature.{name}")
        with ui.guarded("drawing the feature"):
            values = None
            if opened is not None:  # one column of the scored file, sampled evenly when it is large
                values, rows = monitoring.feature_values(opened.output, chosen) if chosen in profile.features else (None, 0)
                if values is not None and len(values) < rows:
                    st.caption(f"The charts show {len(values):,} rows spread evenly over the {rows:,} of this file; "
                               "the table above measures every row.")
            elif current is not None and chosen in current.columns:
                values = current[chosen]
            if profile is not None and chosen in profile.features and values is not None:
                columns = st.columns(2)
                for k, figure in enumerate(drift.feature_figures(profile.features[chosen], values)):
                    columns[k % 2].plotly_chart(figure, key=f"monitor.feature.fig.{k}")
    if source == "batch":
        performance_section(batch, next((v for v in models[names.index(name)].versions
                                         if v.version == batch.model_version), None))
        labels_section(batch, next((v.target for v in models[names.index(name)].versions
                                    if v.version == batch.model_version), None))
        health_section(models[names.index(name)], batches, limits)
        timeline_section(models[names.index(name)], batches, limits)
        st.subheader("Each feature and measure, file after file", anchor=False)
        with ui.guarded("measuring drift of earlier batches"), st.spinner("Measuring drift of earlier batches..."):
            batches = monitoring.complete_history(settings, name, found=batches)
        history_charts(batches, limits)
    settings_panel(limits)


render()
