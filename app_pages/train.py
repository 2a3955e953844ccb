"""Train: pick a table and a target, choose algorithms and their hyperparameters, train in the
background, compare the results and register the model worth keeping."""

import streamlit as st

import ui
from core import catalog, decisions, jobs, metrics, tracking
from core.registry import register
from core.training import (
    LEADERBOARD_TIME,
    TrainingSpec,
    TrainingSummary,
    default_features,
    infer_task,
    infinite_values,
    leaderboard_help,
    leaderboard_table,
    leak_warning,
    leakage,
    result_notes,
    result_warnings,
    results_help,
    results_table,
    suggest_target,
)
from ui import Keys

ui.intro(
    "Train",
    "Teach models to predict one column of a stored table, compare them on rows they never saw, and "
    "register the one to keep (every model is recorded in MLflow).",
    "app_pages/models.py", "choose the champion among your registered models on the Models page",
)
ui.show_flash()
settings = ui.settings()
store = ui.table_store()
records = store.list()


def show_results(job) -> None:
    summary = TrainingSummary.from_dict(job.result or {})
    if job.state == "failed":
        st.error(ui.md(job.error or "The training job failed."), icon=":material/error:")
    elif job.state == "cancelled":
        st.warning("This training job was cancelled; its runs are marked as killed in MLflow.")
    if not summary.models:
        return
    st.subheader("Results", anchor=False)
    st.caption(
        f"{ui.md(job.title)} · finished {ui.when(job.finished_at or job.created_at)} "
        f"in {job.elapsed:.0f} s. Metrics are measured on the holdout rows the models never saw; ★ marks the best."
    )
    for note in result_notes(summary):
        st.caption(ui.md(note))
    for warning in result_warnings(summary):
        st.warning(ui.md(warning), icon=":material/warning:")
    table, helps = results_table(summary), results_help(summary)
    st.dataframe(table, hide_index=True, placeholder="", column_config={
        c: st.column_config.NumberColumn(help=helps.get(c), format="%.3f") if table[c].dtype.kind == "f"
        else st.column_config.Column(help=helps.get(c)) for c in table.columns})
    with st.expander("What do these numbers mean?"):
        st.markdown("\n".join(f"- **{metrics.label(n)}**: {metrics.help_text(n)}" for n in metrics.for_task(summary.task)))
    board = leaderboard_table(summary)
    if not board.empty:
        with st.expander("Comparison leaderboard (cross-validation on the training rows)", expanded=True):
            board_help = leaderboard_help(summary)
            st.dataframe(board, hide_index=True, placeholder="", column_config={
                "rank": st.column_config.NumberColumn(help=board_help["rank"], format="%d"),
                "model": st.column_config.Column(help=board_help["model"]),
                LEADERBOARD_TIME: st.column_config.NumberColumn(help=board_help[LEADERBOARD_TIME], format="%.1f"),
                **{c: st.column_config.NumberColumn(help=board_help[c], format="%.3f") for c in board.columns[2:-1]}})
    for model in summary.models:
        if model.error:
            st.error(ui.md(model.error))
    comparison_chart(summary, job.job_id)

    finished = list(summary.finished)
    if not finished:
        return
    names = [m.name for m in finished]
    best = summary.best()
    best_index = next((k for k, m in enumerate(finished) if best is not None and m.run_id == best.run_id), 0)
    metric = metrics.primary(summary.task)
    best_value = finished[best_index].metrics.get(metric)
    st.markdown(f"**Best on the holdout rows: {ui.md(names[best_index])}**"
                + (f" ({metrics.label(metric)} {metrics.fmt(metric, best_value)}, {metrics.direction(metric)})."
                   if best_value is not None else ".")
                + " Register it below to keep it.")
    chosen = st.selectbox("Charts of", names, index=best_index, key=f"train.charts.{job.job_id}")
    model = finished[names.index(chosen)]
    st.link_button("Open this run in MLflow", tracking.run_url(settings, summary.experiment_id, model.run_id),
                   icon=":material/open_in_new:", help="Needs the MLflow UI running (make mlflow-ui).")
    st.caption(f"MLflow run id of {ui.md(chosen)}: `{model.run_id}` (the Models page and `python -m core models register` take it).")
    with ui.guarded("loading the charts"):
        figures = ui.run_figures(settings.tracking_uri, model.run_id)
        columns = st.columns(2)
        for k, (name, figure) in enumerate(figures.items()):
            columns[k % 2].plotly_chart(figure, key=f"train.fig.{model.run_id}.{name}")
    if summary.task == catalog.CLASSIFICATION:
        st.subheader("Where to put the cut-off", anchor=False)
        ui.decision_charts(model.run_id, f"train.cut.{model.run_id}", st.columns(3),
                           today="Nothing is stored from this page: once the model is registered, store the cut-off you "
                                 "choose on its version on the Models page (tab Cut-off, gain and lift); scoring, Predict "
                                 "and REST then use it. Until then they predict the likelier class (above 0.5).")

    st.subheader("Keep a model", anchor=False)
    st.caption("Registering a model makes it a version in the model registry; the champion alias marks the one to use for scoring.")
    registered_by_job = summary.registered
    if registered_by_job:
        st.success(f"Registered as version {registered_by_job.version} of '{ui.md(registered_by_job.name)}'"
                   + (f" ({registered_by_job.alias})" if registered_by_job.alias else "") + ".")
    with st.form(key=f"train.register.{job.job_id}", border=True):
        which = st.selectbox("Model", names, index=best_index, help="The best model is chosen already.")
        suggested = ui.suggested_model_name(settings.tracking_uri, finished[best_index].run_id)
        name = st.text_input("Registered model name", value=suggested, placeholder="for example kobe-shots",
                             help="Versions of the same model share a name; a new name starts a new model.")
        alias = st.selectbox("Alias", ["champion", "challenger", "(none)"])
        if st.form_submit_button("Register", type="primary", icon=":material/bookmark_add:"):
            with ui.guarded("registering the model"):
                picked = finished[names.index(which)]
                registered = register(settings, picked.run_id, name.strip(), alias=None if alias == "(none)" else alias,
                                      model_uri=picked.model_uri)
                st.session_state[f"train.registered.{job.job_id}"] = registered.name
                st.success(f"Registered {ui.md(which)} as version {registered.version} of '{ui.md(registered.name)}'"
                           + (f", alias {registered.alias}." if registered.alias else "."))
    registered_name = (st.session_state.get(f"train.registered.{job.job_id}")
                       or (registered_by_job.name if registered_by_job else None))
    st.page_link("app_pages/models.py", label="Next: compare versions and choose the champion on the Models page",
                 icon=":material/arrow_forward:", query_params={"model": registered_name} if registered_name else None)


def comparison_chart(summary: TrainingSummary, job_id: str) -> None:
    """Every trained model's CV mean with its spread over the folds, and its holdout value."""
    choices = decisions.comparison_metrics(summary)
    if not choices or len(summary.finished) < 2:
        return
    st.markdown("**The models side by side**")
    metric = st.selectbox("Compare by", choices, format_func=metrics.label, key=f"train.compare.by.{job_id}")
    st.plotly_chart(decisions.comparison_figure(summary, metric), key=f"train.compare.fig.{job_id}.{metric}")
    st.caption("Dots: the mean over the cross-validation folds of the training rows, the best in green; "
               "the bar either side is one standard deviation across the folds: overlapping bars mean the models may not "
               "really differ. Diamonds: the same metric on the holdout rows.")


# --- the job in context: the one in the link, else a job still running, else this session's last --
def job_in_context() -> str | None:
    """The training job this page shows. The link (``?job=``) says it first, so a reload or a shared
    link opens the same job; a job still running is reattached; a job on another table than the
    one the link asks for is not shown above that table's form."""
    known = {j.job_id: j for j in past}
    wanted_table = st.query_params.get("table")
    job_id = st.query_params.get("job")
    if job_id not in known:
        live = [j for j in past if j.state in jobs.ACTIVE]
        job_id = live[0].job_id if live else st.session_state.get(Keys.TRAIN_JOB)
    if job_id not in known:
        return None
    if wanted_table and jobs.table_of(settings, job_id) != wanted_table:
        return None
    st.query_params["job"] = job_id
    st.session_state[Keys.TRAIN_JOB] = job_id
    return job_id


def show_job(job_id: str) -> None:
    st.query_params["job"] = job_id
    st.query_params.pop("table", None)
    st.session_state[Keys.TRAIN_JOB] = job_id


def forget_job() -> None:
    """The user turned to another table: the results of a job on a different table go away."""
    job_id = st.session_state.get(Keys.TRAIN_JOB)
    if job_id and jobs.table_of(settings, job_id) != st.session_state.get("train.table"):
        st.session_state.pop(Keys.TRAIN_JOB, None)
        st.query_params.pop("job", None)
    st.query_params["table"] = st.session_state.get("train.table")


past = []
with ui.guarded("listing the training jobs"):
    past = [j for j in jobs.sweep(settings) if j.kind == "training"]  # jobs whose processes died are ended first
job_id = job_in_context()
if past:
    # Labels must not change while a job runs: Streamlit 1.67 keys a select box's value by its label,
    # and a label that changed ("running" -> "succeeded") came back as the value instead of the id.
    labels = {j.job_id: f"{j.title} · {ui.when(j.created_at)}" for j in past[:20]}

    def revisit() -> None:
        picked = st.session_state["train.revisit"]
        if picked in labels:
            show_job(picked)
            table = jobs.table_of(settings, picked)
            if table in {r.table_id for r in records}:
                st.session_state["train.table"] = table

    with st.sidebar:
        st.selectbox("Training jobs", list(labels), format_func=labels.get, index=list(labels).index(job_id) if job_id in labels else None,
                     placeholder="Revisit a training job", key="train.revisit", on_change=revisit)
if job_id:
    with ui.guarded("reading the training job"):
        job = jobs.status(settings, job_id)
        if job.finished:
            show_results(job)
        else:
            ui.job_panel(job_id, Keys.TRAIN_JOB_SHOWN, "Training")
    st.divider()

# --- the form ------------------------------------------------------------------------------------
def training_form() -> None:
    """Table, target, features, test design and algorithms, then Start."""
    if not records:
        st.info("There is no table to train on yet. Load one on the Data page first (the demo works too).")
        st.page_link("app_pages/data.py", label="Go to the Data page", icon=":material/arrow_forward:")
        return

    st.subheader("1. What to predict", anchor=False)
    by_id = {r.table_id: r for r in records}
    linked = st.query_params.get("table")
    if linked in by_id and st.session_state.get("train.table_linked") != linked:
        st.session_state["train.table_linked"] = linked  # a link (Data page, revisit) names the table once
        st.session_state["train.table"] = linked
    default_table = (jobs.table_of(settings, job_id) if job_id else None) or st.session_state.get(Keys.TABLE)
    table_id = st.selectbox("Table", list(by_id), format_func=lambda i: f"{by_id[i].name} · {by_id[i].rows:,} rows",
                            index=list(by_id).index(default_table) if default_table in by_id else 0, key="train.table",
                            on_change=forget_job)
    frame = ui.load_table(str(store.root), table_id)
    columns = [str(c) for c in frame.columns]
    suggested, from_job = suggest_target(frame), None
    if job_id and jobs.table_of(settings, job_id) == table_id:  # the job shown above: its target again
        from_job = jobs.JobStore(settings).payload(job_id).get("spec", {}).get("target")
        suggested = from_job if from_job in columns else suggested
    if suggested not in columns:
        suggested = None
    options = ["(choose a column)"] + columns
    target = st.selectbox("Target: the column to predict", options, key=f"train.target.{table_id}",
                          index=options.index(suggested) if suggested else 0,
                          help="The column that holds the outcome, for example a yes/no flag or an amount.")
    if target == "(choose a column)":
        st.caption("Pick the column that holds the outcome, for example a yes/no flag or an amount.")
        return
    if target == suggested == from_job:
        st.caption(f"'{ui.md(target)}' is what the training job above predicts; pick another column to predict something else.")
    elif target == suggested:
        st.caption(f"'{ui.md(target)}' looks like the outcome to predict, so it is chosen; pick another column if you "
                   "want to predict something else.")

    inferred = infer_task(frame[target])
    task = st.radio("Task", catalog.TASKS, index=catalog.TASKS.index(inferred), horizontal=True, key=f"train.task.{table_id}.{target}",
                    format_func=lambda t: {"classification": "Classification (predict a class)", "regression": "Regression (predict a number)"}[t])
    missing = int(frame[target].isna().sum())
    values = frame[target].dropna()
    if task == catalog.CLASSIFICATION:
        n_classes = values.nunique()
        st.caption(f"{'Binary' if n_classes == 2 else 'Multiclass'} classification: {n_classes} classes in '{ui.md(target)}'."
                   + (" (inferred from the column)" if task == inferred else ""))
    else:
        st.caption(f"Regression: '{ui.md(target)}' ranges from {values.min():,.4g} to {values.max():,.4g}.")
    if missing:
        st.info(f"{missing:,} rows have no value in '{ui.md(target)}' and will be left out ({len(frame) - missing:,} rows remain).")

    st.subheader("2. Features", anchor=False)
    usable, excluded = default_features(frame, target)
    features = st.multiselect("Columns the models learn from", [c for c in columns if c != target], default=usable,
                              key=f"train.features.{table_id}.{target}")
    if excluded:
        with st.expander(f"{ui.plural(len(excluded), 'column')} {'was' if len(excluded) == 1 else 'were'} left out automatically; why"):
            for column, reason in excluded.items():
                st.markdown(f"- **{ui.md(column)}**: {ui.md(reason)}")
    # Chosen columns that give the target away: allowed (sometimes legitimate), but said before training.
    for column, reason in leakage(frame, target, [c for c in features if c not in usable]).items():
        st.warning(ui.md(leak_warning(column, reason)), icon=":material/warning:")
    infinite = infinite_values(frame, target, [*features, target])
    inf_as_missing = False
    if infinite:
        count = sum(infinite.values())
        names = [ui.md(c) for c in infinite]
        where = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        inf_as_missing = st.checkbox(
            f"Treat the {ui.plural(count, 'infinite value')} in {where} as missing", key=f"train.inf.{table_id}.{target}",
            help="Infinite values (inf or -inf) cannot be learnt from. Treated as missing, they are filled in like the other "
                 "missing values of their column; rows whose target is infinite are left out.")
        if not inf_as_missing:
            st.caption("Training is refused while they are there: tick the box, fix them in the file, or leave those columns out.")

    st.subheader("3. How to test the models", anchor=False)
    c1, c2, c3 = st.columns(3)
    test_pct = c1.slider("Holdout rows (%)", 5, 50, 20, help="Rows kept aside to measure the models; never used to train them.", key="train.test_pct")
    folds = c2.number_input("Cross-validation folds", 2, 20, 5, help="The training rows are split this many times to estimate stability.", key="train.folds")
    seed = c3.number_input("Random seed", 0, 2**31 - 1, 42, help="The same seed gives the same split and the same models.", key="train.seed")
    if task == catalog.CLASSIFICATION:
        st.caption("The split keeps the share of each class the same in training and holdout rows (stratified).")

    st.subheader("4. Algorithms", anchor=False)
    mode = st.radio("Mode", ["choose", "compare"], horizontal=True, key="train.mode",
                    format_func=lambda m: {"choose": "Train the algorithms I choose", "compare": "Compare many and rank them"}[m])
    available = {a.key: a for a in catalog.algorithms(task)}
    params: dict[str, dict] = {}
    tune_iterations, tune_metric, budget, tuned = 0, None, None, []
    if mode == "choose":
        chosen = st.multiselect("Algorithms", list(available), default=list(catalog.DEFAULT_ALGORITHMS[task]),
                                format_func=lambda k: available[k].name, key=f"train.algorithms.{task}")
        for key in chosen:
            algorithm = available[key]
            with st.expander(f"{algorithm.name} settings"):
                st.caption(algorithm.help)
                values = {}
                for p in algorithm.params:
                    widget_key = f"train.hp.{task}.{key}.{p.name}"
                    if p.kind == "int":
                        values[p.name] = st.number_input(p.name, int(p.low), int(p.high), int(p.default), step=1, help=p.help, key=widget_key)
                    elif p.kind == "float":
                        values[p.name] = st.number_input(p.name, float(p.low), float(p.high), float(p.default), help=p.help, key=widget_key, format="%g")
                    elif p.kind == "bool":
                        values[p.name] = st.toggle(p.name, p.default, help=p.help, key=widget_key)
                    else:
                        values[p.name] = st.selectbox(p.name, p.choices, index=p.choices.index(p.default), help=p.help, key=widget_key)
                params[key] = values
                if st.toggle("Tune automatically (random search)", key=f"train.tune.{task}.{key}",
                             help="Tries other hyperparameters around these and keeps the tuned model only if it is better."):
                    tuned.append(key)
        if tuned:
            t1, t2 = st.columns(2)
            tune_iterations = t1.number_input("Tuning iterations per algorithm", 2, 500, 20, key="train.tune.n")
            tune_metric = t2.selectbox("Metric to optimise", list(metrics.tunable(task)), key=f"train.tune.metric.{task}",
                                       format_func=metrics.label)
    else:
        chosen = st.multiselect("Algorithms to compare", list(available), default=list(available),
                                format_func=lambda k: available[k].name, key=f"train.compare.{task}")
        m1, m2 = st.columns(2)
        tune_metric = m1.selectbox("Rank by", list(metrics.tunable(task)), key=f"train.compare.metric.{task}",
                                   format_func=metrics.label)
        budget_minutes = m2.number_input("Time budget (minutes, 0 = none)", 0.0, 600.0, 0.0, step=1.0, key="train.budget")
        budget = budget_minutes or None
        st.caption("Each algorithm is trained with its default settings and ranked by cross-validation; all of them are recorded.")

    if st.button("Start training", type="primary", icon=":material/play_arrow:", disabled=not chosen or not features, key="train.start"):
        with ui.guarded("starting the training job"):
            spec = TrainingSpec(
                target=target, task=task, features=tuple(features), algorithms=tuple(chosen), params=params,
                test_size=test_pct / 100, folds=int(folds), seed=int(seed), tune_iterations=int(tune_iterations),
                tune_metric=tune_metric, tuned=tuple(tuned), compare=mode == "compare", compare_budget_minutes=budget,
                inf_as_missing=inf_as_missing,
            )
            same = jobs.running_like(settings, spec, table_id)
            if same is not None:
                ui.flash("info", "This training is already running (started at "
                         f"{ui.when(same.created_at)}); here it is. Nothing new was started.")
                show_job(same.job_id)
                st.rerun()
            others = jobs.running(settings, "training")
            if others and st.session_state.get("train.confirm_second") != table_id:
                st.session_state["train.confirm_second"] = table_id
            else:
                st.session_state.pop("train.confirm_second", None)
                job = jobs.submit_training(settings, spec, table_id)
                show_job(job.job_id)
                st.rerun()
    if st.session_state.get("train.confirm_second") == table_id:
        others = jobs.running(settings, "training")
        if not others:
            st.session_state.pop("train.confirm_second", None)
        else:
            st.warning(f"Another training job is still running ({ui.md(others[0].title)}). A second one shares this "
                       f"machine and makes both slower (at most {settings.max_jobs} run at once; more wait in a queue). "
                       "Press **Start training** again to start it anyway, or wait for the first one to finish.",
                       icon=":material/hourglass_top:")


training_form()
