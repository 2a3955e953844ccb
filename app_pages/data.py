"""Data: upload a table, reuse a stored one or load the demo; look at its columns and target."""

import streamlit as st

import ui
from core.charts import column_figure, target_figure
from core.datasets import profile_summary, target_balance
from core.demo import store_demo
from core.settings import UPLOAD_LIMIT_MB
from ui import Keys

NEXT_TABLE = "data.next_table"  # the table to select on the next run (a new version replaced the shown one)
UPLOAD_TYPES = ["csv", "tsv", "txt", "parquet", "pq", "xlsx", "xlsm"]

next_slot = ui.intro(
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

# --- what the reader noticed, and the choices it offers --------------------------------------------
def reading_findings(record) -> None:
    """What was noticed and chosen when the file was read (notes, how dates were read, numbers that look
    like codes for missing values) and what was changed since; the user can read dates the other way and
    accept or decline the missing-value codes. Each change stores a new version in place of this one."""
    for note in record.notes:
        st.info(ui.md(note), icon=":material/info:")
    for change in record.changes:
        st.success(ui.md(change), icon=":material/check_circle:")
    for position, date in enumerate(record.dates):
        with st.container(border=True):
            st.markdown(f":material/calendar_month: {ui.md(date.describe())}")
            if date.can_switch and st.button(
                f"Read these dates {date.other_order} instead", key=f"data.date_order.{position}",
                help="Stores the table with day and month swapped in this column, in place of this version.",
            ):
                with ui.guarded("reading the dates the other way"):
                    result = store.switch_date_order(record.table_id, date.column)
                    st.session_state[NEXT_TABLE] = result.record.table_id
                    ui.flash("success", ui.md(f"The dates in '{date.column}' are now read {date.other_order}."))
                    st.rerun()
    if record.sentinels:
        with st.container(border=True):
            listed = "\n".join(f"- {ui.md(s.describe())}" for s in record.sentinels)
            st.warning(
                "These numbers look like codes for a missing value, not measurements. "
                f"Treat them as missing?\n\n{listed}",
                icon=":material/help:",
            )
            columns = [s.column for s in record.sentinels]
            chosen = st.multiselect("Columns where the code means missing", columns, default=columns,
                                    key=f"data.sentinel.columns.{record.table_id}")
            yes, no = st.columns(2)
            if yes.button("Treat as missing", type="primary", key="data.sentinel.apply", disabled=not chosen,
                          help="Stores the table with these values left empty, in place of this version."):
                with ui.guarded("treating the codes as missing"):
                    result = store.treat_as_missing(record.table_id, chosen)
                    st.session_state[NEXT_TABLE] = result.record.table_id
                    ui.flash("success", ui.md(f"Stored '{result.record.name}' with those values as missing."))
                    st.rerun()
            if no.button("Keep them as values", key="data.sentinel.keep", disabled=not chosen):
                with ui.guarded("keeping the values"):
                    store.keep_values(record.table_id, chosen)
                    ui.flash("info", ui.md("Kept those numbers as real values."))
                    st.rerun()


# --- pick a stored table ------------------------------------------------------------------------
def stored_table_view() -> None:
    """The chosen stored table: profile, target balance, rename and delete."""
    records = store.list()
    if not records:
        st.info("No table is stored yet. Upload a file above, or load the demo tables to try the studio.")
        return

    by_id = {r.table_id: r for r in records}
    pending = st.session_state.pop(NEXT_TABLE, None)
    if pending in by_id:
        st.session_state[Keys.TABLE] = pending
    if st.session_state.get(Keys.TABLE) not in by_id:
        st.session_state[Keys.TABLE] = records[0].table_id
    table_id = st.selectbox(
        "Stored table",
        options=list(by_id),
        key=Keys.TABLE,
        format_func=lambda i: f"{by_id[i].name}  ·  {by_id[i].rows:,} rows × {by_id[i].columns} columns  ·  {ui.when(by_id[i].uploaded_at)}",
    )
    record = by_id[table_id]
    ui.next_link(next_slot, "app_pages/train.py", "train models on this table on the Train page", {"table": table_id})

    with ui.guarded("opening the table"):
        frame = ui.load_table(str(store.root), table_id)
        profiles = ui.table_profile(str(store.root), table_id)

        st.subheader(ui.md(record.name), anchor=False)
        c1, c2, c3 = st.columns([1, 1, 3])
        c1.metric("Rows", f"{record.rows:,}")
        c2.metric("Columns", record.columns)
        c3.caption(
            f"Stored on {ui.when(record.uploaded_at)} from the file {ui.md(record.original_name)} ({record.format}).  \n"
            f"Content hash {record.digest[:12]}: models trained on this table record it, so you can always "
            "tell which data a model learned from."
        )
        reading_findings(record)

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
