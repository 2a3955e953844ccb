"""Home: what the studio is for, the steps with what the workspace holds at each, and where to go next."""


import streamlit as st

import ui
from core import workspace

st.title("ML Studio")
st.markdown(
    "Train machine-learning models on your own tables, keep the good ones, score new files with "
    "them and watch whether the data drifts, all from the browser. Every run is recorded in MLflow."
)
settings = ui.settings()
overview = workspace.local(settings)

STEPS = {
    "app_pages/data.py": ("1. Data", "Upload a table (CSV, parquet or Excel) or load the built-in demo."),
    "app_pages/train.py": ("2. Train", "Pick the column to predict and the algorithms; compare the models."),
    "app_pages/models.py": ("3. Models", "Register the models you keep; name a champion and a challenger."),
    "app_pages/score.py": ("4. Score", "Apply the champion to a production file and download the predictions."),
    "app_pages/monitor.py": ("5. Monitor", "See which features drift from the training data and how the model holds up."),
}
PAGES = {  # core names the steps; which page shows each is the pages' business
    workspace.Step.DATA: "app_pages/data.py",
    workspace.Step.TRAIN: "app_pages/train.py",
    workspace.Step.MODELS: "app_pages/models.py",
    workspace.Step.SCORE: "app_pages/score.py",
    workspace.Step.MONITOR: "app_pages/monitor.py",
}
st.subheader("The steps", anchor=False)
next_link = st.empty()  # filled once we know which step comes next
state = {}
for column, (page, (title, text)) in zip(st.columns(len(STEPS)), STEPS.items(), strict=True):
    with column, st.container(border=True):
        st.markdown(f"**{title}**")
        st.caption(text)
        state[page] = st.empty()
        st.page_link(page, label="Open", icon=":material/arrow_forward:")


def show_state() -> None:
    """What exists at each step; the registry and scoring come from MLflow (after the steps are drawn)."""
    if overview.tables:
        state["app_pages/data.py"].markdown(f":material/check_circle: {ui.plural(len(overview.tables), 'table')}; "
                                            f"newest **{ui.md(overview.tables[0].name)}**")
    else:
        state["app_pages/data.py"].markdown(":material/radio_button_unchecked: no table yet")
    jobs = overview.training_jobs
    if jobs:
        state["app_pages/train.py"].markdown(f":material/check_circle: {ui.plural(len(jobs), 'training job')}; "
                                             f"last {ui.when(jobs[0].created_at)} ({jobs[0].state})")
    else:
        state["app_pages/train.py"].markdown(":material/radio_button_unchecked: nothing trained yet")
    with ui.guarded("reading the model registry"), st.spinner("Reading the model registry..."):
        workspace.complete(settings, overview)
    champions = overview.champions
    if champions:
        named = ", ".join(f"**{ui.md(m.name)}** v{m.champion}" for m in champions[:3])
        state["app_pages/models.py"].markdown(f":material/check_circle: {ui.plural(len(overview.models), 'model')}; champion {named}")
    elif overview.models:
        state["app_pages/models.py"].markdown(f":material/pending: {ui.plural(len(overview.models), 'model')}, no champion yet")
    else:
        state["app_pages/models.py"].markdown(":material/radio_button_unchecked: no model registered yet")
    batch = overview.last_scoring
    if batch is not None:
        state["app_pages/score.py"].markdown(f":material/check_circle: last **{ui.md(batch.input_name)}**, "
                                             f"{batch.rows:,} rows, {ui.when(batch.scored_at)}")
        status = batch.drift_status or "not measured yet"
        colour = {"stable": "green", "moderate": "orange", "significant": "red"}.get(status)
        shown = f":{colour}[**{status}**]" if colour else status
        state["app_pages/monitor.py"].markdown(f":material/check_circle: drift of the last file: {shown}")
    else:
        state["app_pages/score.py"].markdown(":material/radio_button_unchecked: nothing scored yet")
        state["app_pages/monitor.py"].markdown(":material/radio_button_unchecked: waits for a scored file")
    step = PAGES[overview.next_step()]
    title = STEPS[step][0].split(". ")[1]
    with next_link.container():
        if not overview.tables:
            st.info("Nothing here yet. Start with the Data page: upload a table, or load the built-in demo "
                    "(synthetic basketball shots) with one click.")
        st.page_link(step, label=f"Next step: {title}" if overview.tables else "Start here: the Data page",
                     icon=":material/arrow_forward:")


show_state()

st.caption(
    "The built-in demo is synthetic: basketball shots made up by the studio's own generator in the "
    "layout of the Kobe Bryant shot data. Development = 2-point shots, production = 3-point shots."
)
