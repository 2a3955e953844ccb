"""What the pages share: session keys, collaborators built from settings, error display, the
sidebar. Pages read widgets and call ``core``; this module keeps that glue in one place."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import streamlit as st

from core import tables
from core.datasets import ColumnProfile, profile_table
from core.errors import StudioError
from core.formats import when  # noqa: F401 - one way to write a moment, for every page
from core.settings import Settings, load_settings, redact
from core.tables import TableStore

log = logging.getLogger("studio")


class Keys:
    """Every ``st.session_state`` key the pages use. Session state holds ids and small values only."""

    TABLE = "data.table_id"  # the stored table the user is looking at
    UPLOAD_OUTCOME = "data.upload_outcome"  # (file_id, "success" | "info" | "error", message)
    FLASH = "data.flash"  # (kind, message) shown once after an action that reruns the page
    CONFIRM_DELETE = "data.confirm_delete"  # table id waiting for a delete confirmation
    TRAIN_JOB = "train.job_id"  # the training job shown on the Train page
    TRAIN_JOB_SHOWN = "train.job_shown"  # the finished job whose end already triggered a full rerun
    MODEL = "models.name"  # the registered model shown on the Models page
    SCORE_JOB = "score.job_id"  # the scoring job shown on the Score page
    SCORE_SHOWN = "score.job_shown"
    SCORE_RESULT = "score.result_run"  # an earlier scoring run the user chose to open


def intro(title: str, what: str, next_page: str | None = None, next_text: str = ""):
    """A page's title, one sentence on what it does, and a link to what comes next. Returns the
    link's slot: a page redraws it with :func:`next_link` once it knows the context to carry."""
    st.title(title)
    st.markdown(what)
    slot = st.empty()
    if next_page:
        next_link(slot, next_page, next_text)
    return slot


def next_link(where, page: str, text: str, context: dict[str, str | int | None] | None = None) -> None:
    """A "Next: ..." link that carries the context (model, batch, table, job) in its query
    parameters, so the next page opens on what the user just worked on, also after a reload."""
    params = {k: str(v) for k, v in (context or {}).items() if v not in (None, "")}
    where.page_link(page, label=f"Next: {text}", icon=":material/arrow_forward:", query_params=params or None)


def settings() -> Settings:
    return load_settings()


def table_store() -> TableStore:
    return tables.store(settings())


# Stored tables are named by content hash, so (folder, id) always means the same content.
@st.cache_data(max_entries=4, show_spinner="Loading the table...")
def load_table(tables_dir: str, table_id: str) -> pd.DataFrame:
    return TableStore(tables_dir).load(table_id)


@st.cache_data(max_entries=8, show_spinner="Profiling the columns...")
def table_profile(tables_dir: str, table_id: str) -> list[ColumnProfile]:
    return profile_table(load_table(tables_dir, table_id))


@st.cache_data(max_entries=32, show_spinner="Loading the charts...")
def run_figures(tracking_uri: str, run_id: str) -> dict:
    """A training run's charts; runs never change once finished, so (store, run) is a safe key."""
    from core.tracking import load_figures

    return load_figures(settings(), run_id)


@st.cache_data(max_entries=32, ttl=30, show_spinner=False)
def suggested_model_name(tracking_uri: str, run_id: str) -> str:
    """The registered model name a training run's model goes under: the model that already predicts
    the same target and classes, else a free name made from the target (never another model's name)."""
    from core import registry

    return registry.suggest_name_for_run(settings(), run_id)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def md(text: object) -> str:
    """User-derived text (file, table and column names) made inert for ``st.markdown``:
    every markdown, HTML and Streamlit directive character is escaped and shows as itself."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


@contextmanager
def guarded(doing: str) -> Iterator[None]:
    """Show a studio error as ``st.error``; a bug (any other exception) is recorded in the workspace's
    log with its traceback under a short id (:func:`core.errors.unexpected`) and the page says
    "Unexpected error ..., recorded in the log as <id>". No traceback reaches the page, and no
    password: the message and the logs are redacted."""
    try:
        yield
    except StudioError as exc:
        st.error(redact(str(exc)), icon=":material/error:")  # an error may quote a URI with its password
    except Exception as exc:
        if type(exc).__module__.startswith("streamlit"):
            raise  # st.rerun / st.stop use exceptions for control flow
        st.error(md(_unexpected(exc, doing)), icon=":material/error:")  # a path's _ or * shows as itself


def _unexpected(exc: Exception, doing: str) -> str:
    """Record a bug in the workspace's error log (and the server log, both redacted); the sentence for the page."""
    from core.errors import unexpected

    message = unexpected(exc, doing)  # never fails: if the log cannot be written, the traceback goes to stderr
    log.error("%s\n%s", message, redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))).rstrip())
    return message


def job_panel(job_id: str, shown_key: str, what: str) -> None:
    """Live progress of a background job, refreshed every second. When the job ends, the whole page
    reruns once (so it can show the results)."""
    from core import jobs

    @st.fragment(run_every=1.0)
    def live() -> None:
        job = jobs.status(settings(), job_id)
        if job.finished:
            if st.session_state.get(shown_key) != job_id:
                st.session_state[shown_key] = job_id
                st.rerun(scope="app")
            return
        with st.container(border=True):
            st.markdown(f"**{what}:** {md(job.title)}")
            if job.kind == "training":
                label = job.step if not job.model else f"{job.model_name or job.model} (model {job.done + 1} of {job.total}): {job.step}"
            else:
                label = job.step
            st.progress(min(1.0, job.done / job.total) if job.total else 0.0, text=md(label))
            st.caption(f"Running for {job.elapsed:.0f} s. You can leave this page and come back; the job goes on.")
            if st.button("Cancel", key=f"job.cancel.{job_id}", icon=":material/stop_circle:"):
                with guarded("cancelling the job"):
                    jobs.cancel(settings(), job_id)

    live()


def model_picker(prefix: str):
    """Pick a registered model and a version (its champion first); returns the version picked
    (a :class:`core.registry.VersionView`, resolved in the listing the picker shows: no second
    call to the store), or None (with directions) when nothing is registered."""
    from core import registry

    models = [m for m in registry.list_models(settings()) if m.versions]
    if not models:
        st.info("No model is registered yet. Train models and register the one to keep first.")
        st.page_link("app_pages/train.py", label="Go to the Train page", icon=":material/arrow_forward:")
        return None
    names = [m.name for m in models]
    linked = st.query_params.get("model")
    if linked in names and st.session_state.get(f"{prefix}.model_linked") != linked:
        st.session_state[f"{prefix}.model_linked"] = linked  # the link names the model once; the user may change it
        st.session_state[f"{prefix}.model"] = linked
    current = st.session_state.get(Keys.MODEL)

    def keep_in_link() -> None:
        st.query_params["model"] = st.session_state[f"{prefix}.model"]

    c1, c2 = st.columns(2)
    name = c1.selectbox("Model", names, index=names.index(current) if current in names else 0, key=f"{prefix}.model",
                        on_change=keep_in_link)
    model = models[names.index(name)]
    choices = [f"@{a}" for a in sorted(model.aliases, key=lambda a: (a != "champion", a))] + [f"/{v.version}" for v in model.versions]
    labels = {c: (f"{c[1:]} (version {model.aliases[c[1:]]})" if c.startswith("@") else f"version {c[1:]}") for c in choices}
    pick = c2.selectbox("Version", choices, format_func=labels.get, key=f"{prefix}.version.{name}",
                        help="The champion is the version your team chose to use.")
    return registry.resolve_in(models, f"{name}{pick}")


@st.cache_resource(max_entries=4, show_spinner="Loading the model...")
def _loaded_model(tracking_uri: str, name: str, version: int):
    from core import monitoring, scoring

    model, pipeline = scoring.load_model(settings(), f"{name}/{version}")
    try:
        profile = monitoring.reference_profile(settings(), model.run_id)
    except Exception:  # noqa: BLE001 - the form falls back to the signature alone
        profile = None
    return model, pipeline, profile


_FRESH = object()


def scoring_model(tracking_uri: str, name: str, version: int, cutoff=_FRESH):
    """(ScoringModel, pipeline, reference profile) of one registered version. The model files are
    loaded once per server; the cut-off stored on the version can change after that, so the model
    comes back with the cut-off stored now: ``cutoff`` when the caller just read it (the version
    picked in :func:`model_picker`), else read from the store (one tag read)."""
    from dataclasses import replace

    from core.scoring.model import with_current_cutoff

    model, pipeline, profile = _loaded_model(tracking_uri, name, version)
    if cutoff is _FRESH:
        model = with_current_cutoff(settings(), model)
    elif model.task == "classification" and cutoff != model.cutoff:
        model = replace(model, cutoff=cutoff)
    return model, pipeline, profile


@st.cache_resource(max_entries=8, show_spinner="Reading the training rows...")
def explanation_background(tracking_uri: str, name: str, version: int):
    """The training rows a prediction of one registered version is explained against
    (:func:`core.explain.background`), sampled once per server and version. Shared: never changed."""
    from core import explain

    model, pipeline, _ = scoring_model(tracking_uri, name, version)
    return explain.background(settings(), model, pipeline)


def plural(n: int, word: str) -> str:
    """``3 tables``, ``1 table``: counts for people."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def flash(kind: str, message: str) -> None:
    """Keep a message to show after the next rerun."""
    st.session_state[Keys.FLASH] = (kind, message)


def show_flash() -> None:
    kind, message = st.session_state.pop(Keys.FLASH, (None, None))
    if kind:
        getattr(st, kind)(message)


def sidebar_status() -> None:
    """Which MLflow store the studio records into (its password redacted), and what the workspace holds."""
    s = settings()
    with st.sidebar:
        st.caption("Tracking store")
        if s.is_remote:
            st.markdown(f":material/cloud: {md(s.describe_store())}")
        else:
            st.markdown(f":material/database: Embedded MLflow store  \n`{s.workspace}`")
        count = len(tables.store(s).list())
        st.caption("Workspace")
        st.markdown(f"{plural(count, 'stored table')}")


def performance_against_training(comparison) -> None:
    """How a model did on a labelled file against its holdout rows at training
    (:class:`core.scoring.MetricComparison` rows): a sentence naming what got worse (with both
    figures), then the whole table and what each measure means."""
    from core import metrics

    worse = [row for row in comparison if row.worse]
    if worse:
        listed = "; ".join(f"{metrics.label(r.metric)} {metrics.fmt(r.metric, r.value)} against "
                           f"{metrics.fmt(r.metric, r.at_training)}" for r in worse)
        st.warning(f"Worse than at training on {len(worse)} of {len(comparison)} measures: {listed}. "
                   "The data may have changed since training: check for drift before trusting these predictions.",
                   icon=":material/trending_down:")
    else:
        st.success("The model does at least as well on this file as at training.")
    table = pd.DataFrame([{"measure": metrics.label(r.metric), "this file": round(r.value, 3), "at training": round(r.at_training, 3),
                           "change": round(r.change, 3), "": "worse" if r.worse else "same or better"} for r in comparison])
    st.dataframe(table, hide_index=True)
    with st.expander("What do these measures mean?"):
        st.markdown("\n".join(f"- **{metrics.label(r.metric)}**: {metrics.help_text(r.metric)}" for r in comparison))


def explanation_panel(shown, key: str) -> None:
    """A :class:`core.explain.Explanation` of one row drawn: where the model starts, the waterfall
    chart, what its bars are, the contributions in words (the five largest, then the others folded)."""
    from core import explain

    st.markdown(md(explain.base_line(shown)))
    st.plotly_chart(explain.figure(shown), key=key)
    st.caption(md(explain.caption(shown)))
    said = explain.sentences(shown)
    st.markdown("\n".join(f"- {md(s)}" for s in said[:5]))
    if len(said) > 5:
        with st.expander(f"The other {len(said) - 5} inputs"):
            st.markdown("\n".join(f"- {md(s)}" for s in said[5:]))
    for note in shown.notes:
        if note != explain.SHARES_NOTE:
            st.info(md(note), icon=":material/info:")


def prediction_rule(cutoff, version: int, target: str | None) -> str:
    """How the predictions of a classifier's version are made, for people: at the cut-off stored on
    it (a :class:`core.registry.Cutoff`), or the likelier class when none is stored."""
    if cutoff is not None:
        said = cutoff.sentence(target)
        return (f"Predictions use the cut-off {cutoff.shown} stored on version {version}: {said[0].lower()}{said[1:]} "
                "Every other row gets the other class.")
    return (f"Predictions are the likelier class: no cut-off is stored on version {version}, so with two classes a row "
            "gets the class whose probability is above 0.5. To flag rows from another cut-off, store one on the Models "
            "page (tab Cut-off, gain and lift).")


def cutoff_metrics(found) -> None:
    """The decisions scoring makes on the holdout rows (at the stored cut-off, else the likelier class),
    labelled apart from the metrics no cut-off changes (AUC, log loss)."""
    from core import decisions

    if found.at_cutoff is None or found.threshold_free is None:
        return
    left, right = st.columns(2)
    if found.stored is not None:
        left.markdown(f"**At the stored cut-off {decisions.cutoff_text(found.stored)}** (the predictions scoring makes, on the holdout rows)")
    else:
        left.markdown("**At the usual 0.5** (the likelier class: what scoring does while no cut-off is stored; holdout rows)")
    left.dataframe(decisions.at_cutoff_rows(found.at_cutoff), hide_index=True)
    if found.at_cutoff.metric_note:
        left.caption(md(found.at_cutoff.metric_note))
    right.markdown("**Threshold-free** (the same whatever the cut-off)")
    right.dataframe(decisions.threshold_free_rows(found.threshold_free), hide_index=True)


def decision_charts(run_id: str, key: str, widget_columns, *, stored=None, today: str | None = None, store=None):
    """A classifier's cut-off on its training run's holdout rows (core.decisions.for_run): the cost
    inputs (and the class to find, beyond two classes) in ``widget_columns`` (three), the cheapest
    cut-off in one sentence, the cut-off and cost charts, the metrics at the cut-off scoring uses
    (``stored``, a :class:`core.registry.Cutoff`, else the likelier class) apart from the
    threshold-free ones, ``store(found)`` (the Models page's panel to store a cut-off), gain and
    lift. ``today``: what scoring does with this model's predictions, said under the help. The
    widgets keep their values in the session under ``key``. Returns the :class:`core.decisions.Decisions` drawn."""
    from core import decisions

    found = None
    with guarded("drawing the cut-off charts"):
        positive = stored.positive if stored is not None else st.session_state.get(f"{key}.positive")
        found = decisions.for_run(settings(), run_id, positive, st.session_state.get(f"{key}.fp", 0.0),
                                  st.session_state.get(f"{key}.fn", 0.0), stored=stored.value if stored is not None else None)
    if found is None:
        return None
    if found.unavailable:
        st.info(md(found.unavailable), icon=":material/info:")
        return found
    c1, c2, c3 = widget_columns
    c1.number_input("Cost of a false alarm", 0.0, 1e12, 0.0, step=1.0, key=f"{key}.fp", format="%g",
                    help="What one row wrongly flagged as positive costs you, in any unit (money, hours). "
                         "Optional: leave both costs at 0 to skip.")
    c2.number_input("Cost of a missed positive", 0.0, 1e12, 0.0, step=1.0, key=f"{key}.fn", format="%g",
                    help="What one positive row the model fails to flag costs you, in the same unit.")
    if len(found.classes) > 2:
        c3.selectbox("Class to find", found.classes, index=found.classes.index(found.positive), key=f"{key}.positive",
                     help="With more than two classes, the charts treat this class as positive and all the others as negative.")
        today = "A cut-off is for two classes: scoring predicts the likeliest class."
    st.caption(md(found.note) + " " + decisions.THRESHOLD_HELP + (f" {md(today)}" if today else ""))
    if found.cost:
        st.info(md(found.cost), icon=":material/savings:")
    left, right = st.columns(2)
    left.plotly_chart(found.figures["threshold"], key=f"{key}.threshold")
    if "cost" in found.figures:
        right.plotly_chart(found.figures["cost"], key=f"{key}.cost")
    else:
        right.caption("Enter the cost of a false alarm and of a missed positive above to see which cut-off costs least.")
    cutoff_metrics(found)
    if store is not None:
        store(found)
    st.markdown("**How much better than picking rows at random?**")
    if found.gain_error:
        st.caption(md(found.gain_error))
        return found
    left, right = st.columns(2)
    left.plotly_chart(found.figures["gain"], key=f"{key}.gain")
    left.caption(decisions.GAIN_HELP)
    right.plotly_chart(found.figures["lift"], key=f"{key}.lift")
    right.caption(decisions.LIFT_HELP)
    with st.expander("Lift per decile as a table"):
        st.dataframe(found.lift, hide_index=True, column_config={
            c: st.column_config.NumberColumn(format="%.3f") for c in found.lift.columns if found.lift[c].dtype.kind == "f"})
    return found
