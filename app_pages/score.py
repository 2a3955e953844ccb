"""Score: apply a registered model to a production file in batch and download the predictions."""

from pathlib import Path

import streamlit as st

import ui
from core import explain, jobs, scoring, workspace
from core.errors import NotFoundError, StudioError
from ui import Keys

next_slot = ui.intro(
    "Score",
    "Apply a registered model (the champion by default) to a production file, so every row gets a prediction "
    "you can download; if the file holds the true outcome, you also see how the model did on it.",
    "app_pages/monitor.py", "see on the Monitor page whether the scored file drifts from the training data",
)
ui.show_flash()
settings = ui.settings()


def show_report(report: scoring.ScoringReport) -> None:
    st.subheader("Result", anchor=False)
    st.caption(f"{ui.md(report.input_name)} scored with {ui.md(report.model_name)} version {report.model_version} · "
               f"{report.rows:,} rows · MLflow run {report.run_id}")
    used_rule(report)
    for message in report.messages:
        st.info(ui.md(message), icon=":material/info:")
    output = Path(report.output)
    if not output.is_file():
        st.warning("The scored file is no longer in this workspace.")
        return
    preview = scoring.preview(output)
    st.dataframe(preview, hide_index=True)
    st.caption(f"The first {len(preview)} of {report.rows:,} rows. Download the whole file:")
    d1, d2 = st.columns(2)
    stem = Path(report.input_name).stem or "scored"
    # The files are read (and the CSV written, once) only when a button is clicked, not on every rerun.
    d1.download_button("Download as parquet", output.read_bytes, file_name=f"{stem}-scored.parquet",
                       mime="application/octet-stream", icon=":material/download:", key=f"score.dl.pq.{report.run_id}")
    d2.download_button("Download as CSV", lambda: scoring.csv_copy(output).read_bytes(), file_name=f"{stem}-scored.csv",
                       mime="text/csv", icon=":material/download:", key=f"score.dl.csv.{report.run_id}",
                       help="Text cells starting with = + - @ get a leading ' so a spreadsheet shows them instead of running them.")
    why_row(report)
    if report.metrics and report.comparison:
        st.subheader("How the model did on this file", anchor=False)
        ui.performance_against_training(report.comparison)
        with ui.guarded("loading the charts of this file"):
            figures = ui.run_figures(settings.tracking_uri, report.run_id)
            columns = st.columns(2)
            for k, (name, figure) in enumerate(figures.items()):
                columns[k % 2].plotly_chart(figure, key=f"score.fig.{report.run_id}.{name}")


def used_rule(report: scoring.ScoringReport) -> None:
    """How this file's predictions were decided (at the cut-off stored on the version when it scored,
    or the likelier class), and whether the version's cut-off has changed since."""
    from core import registry

    if not any(str(c).startswith("proba_") for c in report.columns_added):
        return  # a number, or a classifier that only says its class: no cut-off to speak of
    used = registry.Cutoff(**report.cutoff) if report.cutoff else None
    if used is not None:
        said = used.sentence(None)
        st.info(f"These predictions used the cut-off {used.shown} stored on version {report.model_version}: "
                f"{ui.md(said[0].lower() + said[1:])} Every other row got the other class.", icon=":material/rule:")
    else:
        st.info(f"These predictions are the likelier class (with two classes: the one whose probability is above 0.5): "
                f"no cut-off was stored on version {report.model_version} when this file was scored.", icon=":material/rule:")
    with ui.guarded("reading the cut-off stored now"):
        try:
            now = registry.cutoff(settings, report.model_name, report.model_version)
        except NotFoundError:  # the version was deleted since: nothing to compare with
            return
        if not registry.Cutoff.same_rule(now, used):
            change = f"is now {now.shown} (class {ui.md(now.positive)})" if now else "has been removed since"
            st.warning(f"The cut-off of version {report.model_version} {change}: these predictions were made before. "
                       "Score the file again to use it.", icon=":material/update:")


def why_row(report: scoring.ScoringReport) -> None:
    """Pick a row of the scored file by its row_number and see each input's contribution to its prediction."""
    st.subheader("Why a row got its prediction", anchor=False)
    key = f"score.why.{report.run_id}"
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    number = c1.number_input("Row number", min_value=1, max_value=max(1, report.rows), value=1, step=1, key=f"{key}.row",
                             help="The row's row_number in the scored file: its position in the file, from 1.")
    if c2.button("Explain this row", key=f"{key}.go", icon=":material/help:"):
        st.session_state[key] = int(number)
    chosen = st.session_state.get(key)
    if chosen is None:
        st.caption("Choose a row and see how much each of its values raised or lowered its prediction.")
        return
    with ui.guarded("explaining the row"):
        model, pipeline, _ = ui.scoring_model(settings.tracking_uri, report.model_name, report.model_version)
        try:
            background = ui.explanation_background(settings.tracking_uri, report.model_name, report.model_version)
        except NotFoundError as exc:  # a version trained before the studio kept its training rows
            st.info(f"{ui.md(exc)} To see why a model predicts what it does, retrain it on the Train page and register "
                    "the new version.", icon=":material/info:")
            return
        row, shown = explain.explain_scored_row(Path(report.output), chosen, model, pipeline, background)
        chances = ", ".join(f"probability of {ui.md(c)} {p:.1%}" for c, p in row.probabilities.items())
        st.markdown(f"**Row {row.row_number:,}** was predicted **{ui.md(row.prediction_text)}**" + (f" ({chances})." if chances else "."))
        ui.explanation_panel(shown, f"{key}.chart")


def next_step(report: scoring.ScoringReport) -> None:
    context = {"model": report.model_name, "batch": report.run_id}
    ui.next_link(st, "app_pages/monitor.py", "see how this file drifts from the training data on the Monitor page", context)
    ui.next_link(next_slot, "app_pages/monitor.py", "see on the Monitor page whether this file drifts from the training data",
                 context)


def choose_file(training_digest: str | None, features: list[str]):
    """(path, name, digest) of the file to score, or None. Only stored tables that hold every column
    the model needs are offered, new data first (the model's training table last)."""
    source = st.radio("Production file", ["upload", "table", "folder"], horizontal=True, key="score.source",
                      format_func={"upload": "Upload a file", "table": "A stored table",
                                   "folder": "A large file in the data folder"}.get)
    fit, lacking = workspace.tables_fitting(settings, features, training_digest)
    fresh = [r for r in fit if r.digest != training_digest]
    if source == "upload" and fresh:
        st.caption(f"Or score a table you stored already that has this model's columns, such as '{ui.md(fresh[0].name)}': "
                   "choose *A stored table* above.")
    if source == "upload":
        uploaded = st.file_uploader("Parquet, CSV or Excel", type=["parquet", "pq", "csv", "tsv", "txt", "xlsx", "xlsm"], key="score.upload")
        if uploaded is None:
            return None
        path, digest = scoring.save_upload(settings, uploaded.getvalue(), uploaded.name)
        return path, uploaded.name, digest
    if source == "table":
        if lacking:
            with st.expander(f"{ui.plural(len(lacking), 'stored table')} cannot be scored by this model (columns missing)"):
                st.markdown("\n".join(f"- **{ui.md(r.name)}** lacks {ui.md(', '.join(m[:5]))}" + (f" and {len(m) - 5} more" if len(m) > 5 else "")
                                       for r, m in lacking))
        if not fit:
            st.info("No stored table has the columns this model needs. Upload a file with them here, or load one on the "
                    "Data page.", icon=":material/info:")
            return None
        by_id = {r.table_id: r for r in fit}
        table_id = st.selectbox("Stored table", list(by_id), key="score.table",
                                format_func=lambda i: f"{by_id[i].name} · {by_id[i].rows:,} rows"
                                + (" · the model's training table" if by_id[i].digest == training_digest else ""))
        record = by_id[table_id]
        return ui.table_store().path(table_id), record.name, record.digest
    st.caption(f"For files larger than the upload limit: put the file in {settings.data_dir} and type its name.")
    name = st.text_input("File name in the data folder", key="score.folder", placeholder="for example march_shots.parquet")
    if not name.strip():
        return None
    path = scoring.data_file(settings, name.strip())
    return path, path.name, None


def scoring_job_in_context() -> str | None:
    """The scoring job in the link (a reload keeps it), else the one this session started."""
    for candidate in (st.query_params.get("job"), st.session_state.get(Keys.SCORE_JOB)):
        if candidate:
            try:
                if jobs.JobStore(settings).read(candidate).kind == "scoring":
                    return candidate
            except StudioError:
                continue  # an id that names no scoring job is ignored
    return None


def render() -> None:
    job_id = scoring_job_in_context()
    if job_id:
        with ui.guarded("reading the scoring job"):
            job = jobs.status(settings, job_id)
            if job.state == "succeeded":
                report = scoring.ScoringReport.from_dict(job.result)
                show_report(report)
                next_step(report)
            elif job.finished:
                if job.error:
                    st.error(ui.md(job.error), icon=":material/error:")
                else:
                    st.warning("The scoring was cancelled; nothing was kept.")
            else:
                ui.job_panel(job_id, Keys.SCORE_SHOWN, "Scoring")
        st.divider()
    earlier = st.session_state.get(Keys.SCORE_RESULT)
    if earlier and not job_id:
        with ui.guarded("opening the earlier result"):
            report = scoring.load_report(settings, earlier)
            show_report(report)
            next_step(report)
        st.divider()

    st.subheader("1. Model", anchor=False)
    view = None
    with ui.guarded("reading the model registry"):
        view = ui.model_picker("score")
    if view is None:
        return
    if view.task == "classification":
        st.info(ui.md(ui.prediction_rule(view.cutoff, view.version, view.target)), icon=":material/rule:")
    st.subheader("2. File to score", anchor=False)
    chosen = None
    with ui.guarded("reading the file"):
        if not job_id and not earlier:
            ui.next_link(next_slot, "app_pages/monitor.py", "see on the Monitor page whether the files this model scored drift",
                         {"model": view.name})
        chosen = choose_file(view.table_digest, scoring.signature(settings, view).features)
    if chosen is None:
        return
    path, name, digest = chosen
    with ui.guarded("checking the file"):
        planned = scoring.plan(settings, view, path, name=name, digest=digest)  # the model and the file, checked once
        if planned.missing:
            st.error(f"'{ui.md(name)}' lacks {len(planned.missing)} column(s) the model needs: {ui.md(', '.join(planned.missing))}. "
                     "Nothing can be scored until they are added (same names as in training).", icon=":material/error:")
            return
        if planned.problem:
            st.error(ui.md(planned.problem), icon=":material/error:")
            return
        rows = f"{planned.source.rows:,} rows, " if planned.source.rows is not None else ""
        st.success(f"The file has every column the model needs ({rows}{len(planned.columns)} columns; "
                   f"{len(planned.extra)} more are carried through untouched).")
        force = False
        if planned.earlier is not None:
            st.info(f"This file was already scored with {ui.md(view.name)} version {view.version} (run {planned.earlier.run_id}).")
            c1, c2 = st.columns(2)
            if c1.button("Open that result", key="score.open_previous"):
                st.session_state[Keys.SCORE_RESULT] = planned.earlier.run_id
                st.session_state.pop(Keys.SCORE_JOB, None)
                st.query_params.pop("job", None)
                st.rerun()
            force = c2.checkbox("Score it again anyway", key="score.force")
            if not force:
                return
        if st.button("Score the file", type="primary", icon=":material/play_arrow:", key="score.start"):
            job = jobs.submit_scoring(settings, planned, force=force)
            st.session_state[Keys.SCORE_JOB] = job.job_id
            st.query_params["job"] = job.job_id
            st.session_state.pop(Keys.SCORE_RESULT, None)
            st.rerun()


render()
