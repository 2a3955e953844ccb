"""Data: upload a table, reuse a stored one or load the demo; look at its columns and target."""

import streamlit as st

import ui
from core.charts import column_figure, target_figure
from core.datasets import profile_summary, target_balance
from core.demo import store_demo
from core.settings import UPLOAD_LIMIT_MB
from ui import Keys

UPLOAD_TYPES = ["csv", "tsv", "txt", "parquet", "pq", "xlsx", "xlsm"]

ui.intro(
    "Data",
    "Bring the table you want to learn from (or to score later): upload a file or load the built-in demo, "
    "then check its columns and the column you want to predict.",
    "app_pages/train.py", "train models on a table on the Train page",
)
ui.show_flash()
settings = ui.settings()
store = ui.table_store()

# --- add a table --------------------------------------------------------------------------------
upload_col, demo_col = st.columns([3, 2], gap="large")
with upload_col:
    uploaded = st.file_uploader(
        f"Upload a CSV, parquet or Excel file (up to {UPLOAD_LIMIT_MB // 1024} GB)",
        type=UPLOAD_TYPES,
        key="data.uploader",
        help="The file is stored once in the workspace; uploading the same table again reuses it.",
    )
    if uploaded is not None:
        outcome = st.session_state.get(Keys.UPLOAD_OUTCOME)
        if not outcome or outcome[0] != uploaded.file_id:  # read each upload once, not on every rerun
            outcome = (uploaded.file_id, "error", "")
            with ui.guarded("reading the uploaded file"):
                with st.spinner("Reading and storing the file..."):
                    result = store.ingest(uploaded.getvalue(), uploaded.name, max_bytes=settings.upload_limit_bytes)
                outcome = (uploaded.file_id, "success" if result.created else "info", result.message)
                st.session_state[Keys.TABLE] = result.record.table_id
            st.session_state[Keys.UPLOAD_OUTCOME] = outcome
            if outcome[1] == "success":
                st.rerun()  # so the sidebar and the list of stored tables include it
        if outcome[2]:
            getattr(st, outcome[1])(ui.md(outcome[2]))
with demo_col:
    st.markdown("**No data at hand?**")
    st.caption(
        "The demo is synthetic basketball shots in the layout of the Kobe Bryant shot data: "
        "2-point shots to train on, 3-point shots to score later (where the model will struggle)."
    )
    if st.button("Load the demo tables", icon=":material/sports_basketball:", key="data.load_demo"):
        with ui.guarded("loading the demo"):
            dev, _prod = store_demo(store, settings.data_dir)
            st.session_state[Keys.TABLE] = dev.record.table_id
            ui.flash("success", "Loaded the demo: a development table (2-point shots) and a production table (3-point shots).")
            st.rerun()

# --- pick a stored table ------------------------------------------------------------------------
def stored_table_view() -> None:
    """The chosen stored table: profile, target balance, rename and delete."""
    records = store.list()
    if not records:
        st.info("No table is stored yet. Upload a file above, or load the demo tables to try the studio.")
        return

    by_id = {r.table_id: r for r in records}
    if st.session_state.get(Keys.TABLE) not in by_id:
        st.session_state[Keys.TABLE] = records[0].table_id
    table_id = st.selectbox(
        "Stored table",
        options=list(by_id),
        key=Keys.TABLE,
        format_func=lambda i: f"{by_id[i].name}  ·  {by_id[i].rows:,} rows × {by_id[i].columns} columns  ·  {by_id[i].uploaded_at[:10]}",
    )
    record = by_id[table_id]

    with ui.guarded("opening the table"):
        frame = ui.load_table(str(store.root), table_id)
        profiles = ui.table_profile(str(store.root), table_id)

        st.subheader(ui.md(record.name), anchor=False)
        c1, c2, c3 = st.columns([1, 1, 3])
        c1.metric("Rows", f"{record.rows:,}")
        c2.metric("Columns", record.columns)
        c3.caption(
            f"Stored on {record.uploaded_at[:10]} from the file {ui.md(record.original_name)} ({record.format}).  \n"
            f"Content hash {record.digest[:12]}: models trained on this table record it, so you can always "
            "tell which data a model learned from."
        )
        for note in record.notes:
            st.info(ui.md(note), icon=":material/info:")

        preview_tab, columns_tab, target_tab, manage_tab = st.tabs(["Preview", "Columns", "Target", "Rename or delete"])

        with preview_tab:
            st.caption(f"The first {min(100, record.rows)} of {record.rows:,} rows.")
            st.dataframe(frame.head(100))

        with columns_tab:
            st.caption(
                "Kind is what the studio makes of each column: numeric, categorical, boolean, datetime, "
                "id-like (a label for each row, useless for learning) or free text."
            )
            st.dataframe(profile_summary(profiles), hide_index=True)
            names = [p.name for p in profiles]
            chosen = st.selectbox("Look at one column", names, key="data.column")
            profile = profiles[names.index(chosen)]
            left, right = st.columns([1, 2])
            with left:
                st.metric("Kind", profile.kind.value)
                st.metric("Missing", f"{profile.missing_pct:.1f} %")
                st.metric("Distinct values", f"{profile.distinct:,}")
            with right:
                figure = column_figure(frame[chosen], profile.kind)
                if figure is None:
                    st.info("No chart: this column has no values, or (nearly) every row has its own value.")
                else:
                    st.plotly_chart(figure)

        with target_tab:
            st.caption("The target is the column you want to predict. Its balance tells how often each value occurs.")
            target = st.selectbox("Target column", ["(choose a column)"] + names, key="data.target")
            if target != "(choose a column)":
                left, right = st.columns([1, 2])
                left.dataframe(target_balance(frame[target]), hide_index=True)
                right.plotly_chart(target_figure(frame[target]))

        with manage_tab:
            new_name = st.text_input("New name", value=record.name, key=f"data.rename.{table_id}", max_chars=100)
            if st.button("Rename", key="data.rename"):
                with ui.guarded("renaming the table"):
                    renamed = store.rename(table_id, new_name)
                    ui.flash("success", f"Renamed to '{ui.md(renamed.name)}'.")
                    st.rerun()
            st.divider()
            if st.session_state.get(Keys.CONFIRM_DELETE) == table_id:
                st.warning(f"Delete '{ui.md(record.name)}' from the workspace? This cannot be undone.")
                yes, no = st.columns(2)
                if yes.button("Yes, delete it", type="primary", key="data.delete.yes"):
                    with ui.guarded("deleting the table"):
                        store.delete(table_id)
                        st.session_state.pop(Keys.CONFIRM_DELETE, None)
                        st.session_state.pop(Keys.TABLE, None)
                        ui.flash("success", f"Deleted '{ui.md(record.name)}'.")
                        st.rerun()
                if no.button("Cancel", key="data.delete.no"):
                    st.session_state.pop(Keys.CONFIRM_DELETE, None)
                    st.rerun()
            elif st.button("Delete this table", icon=":material/delete:", key="data.delete"):
                st.session_state[Keys.CONFIRM_DELETE] = table_id
                st.rerun()


stored_table_view()
