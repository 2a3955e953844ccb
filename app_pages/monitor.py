"""Monitor: drift of scored batches against the training data, and performance over time."""

import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from core import drift, metrics, monitoring, registry

ui.intro(
    "Monitor",
    "See whether the files a model scored still look like the data it learned from, feature by feature, "
    "and how its performance holds up; when the data has drifted, retrain on recent data.",
    "app_pages/train.py", "retrain on recent data on the Train page when the data has drifted",
)
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
            c1, c2, c3 = st.columns(3)
            moderate = c1.number_input("Moderate from PSI", 0.001, 10.0, limits.psi_moderate, format="%g")
            significant = c2.number_input("Significant from PSI", 0.001, 10.0, limits.psi_significant, format="%g")
            p_value = c3.number_input("Flag p-values under", 0.0001, 0.5, limits.p_value, format="%g")
            if st.form_submit_button("Save"):
                with ui.guarded("saving the rules"):
                    monitoring.save_thresholds(settings, drift.Thresholds(moderate, significant, p_value))
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


def tiles(report: drift.DriftReport, measured: dict[str, float], comparison) -> None:
    """The verdict in four tiles; ``measured`` holds the batch's labelled metrics (empty without the outcome)."""
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
    else:
        c4.metric("Performance", "no labels", help="Score a file that holds the true outcome to see performance.")


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
    fig = go.Figure()
    for column in [c for c in psi.columns if c not in ("scored_at", "batch")]:
        fig.add_trace(go.Scatter(x=psi["scored_at"], y=psi[column], mode="lines+markers", name=column))
    fig.add_hline(y=limits.psi_moderate, line_dash="dash", annotation_text="moderate")
    fig.add_hline(y=limits.psi_significant, line_dash="dash", annotation_text="significant")
    fig.update_layout(title="PSI per feature, batch after batch", yaxis_title="PSI", height=380)
    st.plotly_chart(fig, key="monitor.history.psi")
    wanted = [c for c in HISTORY_METRICS if c in perf.columns]
    if wanted:
        fig = go.Figure([go.Scatter(x=perf["scored_at"], y=perf[c], mode="lines+markers", name=metrics.label(c)) for c in wanted])
        fig.update_layout(title="Performance on labelled batches", height=340)
        st.plotly_chart(fig, key="monitor.history.perf")


def _linked(key: str) -> str | None:
    """A value the page's address carries (``?model=...&batch=...``): the Score page links here so."""
    value = st.query_params.get(key)
    return value if isinstance(value, str) and value else None


def _keep_model_in_link() -> None:
    st.query_params["model"] = st.session_state["monitor.model"]
    st.query_params.pop("batch", None)  # the batch belonged to the model before


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
        tiles(report, batch.metrics if batch is not None else {}, comparison)
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
        st.subheader("History", anchor=False)
        with ui.guarded("measuring drift of earlier batches"), st.spinner("Measuring drift of earlier batches..."):
            batches = monitoring.complete_history(settings, name, found=batches)
        history_charts(batches, limits)
    settings_panel(limits)


render()
