"""Home: what the studio is for, the steps, and what the workspace holds already."""

import streamlit as st

import ui

st.title("ML Studio")
st.markdown(
    "Train machine-learning models on your own tables, keep the good ones, score new files with "
    "them and watch whether the data drifts, all from the browser. Every run is recorded in MLflow."
)

tables = ui.table_store().list()

st.subheader("The steps")
steps = [
    ("1. Data", "Upload a table (CSV, parquet or Excel) or load the built-in demo.", "app_pages/data.py"),
    ("2. Train", "Pick a target and algorithms; every model is tracked in MLflow.", "app_pages/train.py"),
    ("3. Models", "Register the models you keep; name a champion and a challenger.", "app_pages/models.py"),
    ("4. Score", "Apply the champion to a production file in batch.", "app_pages/score.py"),
    ("5. Monitor", "See which features drift (KS, PSI) and how the model holds up.", "app_pages/monitor.py"),
]
columns = st.columns(len(steps))
for column, (title, text, page) in zip(columns, steps):
    with column, st.container(border=True):
        st.markdown(f"**{title}**")
        st.caption(text)
        st.page_link(page, label="Open", icon=":material/arrow_forward:")

st.subheader("In your workspace")
if tables:
    st.markdown(f"{len(tables)} stored table{'s' if len(tables) != 1 else ''}; the newest is **{ui.md(tables[0].name)}**.")
    st.page_link("app_pages/data.py", label="Look at your tables", icon=":material/table_chart:")
else:
    st.info(
        "Nothing here yet. Start with the Data page: upload a table, or load the built-in demo "
        "(synthetic basketball shots) with one click."
    )
    st.page_link("app_pages/data.py", label="Go to the Data page", icon=":material/arrow_forward:")

st.caption(
    "The built-in demo is synthetic: basketball shots made up by the studio's own generator in the "
    "layout of the Kobe Bryant shot data. Development = 2-point shots, production = 3-point shots."
)
