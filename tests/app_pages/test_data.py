"""Data page: empty state, demo in one click, profile, target balance, rename, delete; what the reader
found (date order, codes for missing values, empty lines) and the choices it offers."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from core.tables import TableStore
from tests.app_pages.conftest import page_text
from tests.core.test_datasets import air_quality_csv


@pytest.fixture
def data_page(app):
    app.switch_page("app_pages/data.py").run()
    assert not app.exception, app.exception
    return app


def test_empty_state_says_what_to_do(data_page):
    text = page_text(data_page)
    assert "No table is stored yet" in text
    assert "load the demo" in text


def test_demo_loads_with_one_click(data_page, workspace):
    data_page.button(key="data.load_demo").click().run()
    assert not data_page.exception, data_page.exception
    text = page_text(data_page)
    assert "Loaded the demo" in text
    names = [r.name for r in TableStore(workspace.tables_dir).list()]
    assert len(names) == 2 and all("synthetic" in n for n in names)
    assert "development" in data_page.selectbox(key="data.table_id").format_func(data_page.selectbox(key="data.table_id").value)
    assert "Rows" in text and "Columns 25" in text
    columns = data_page.dataframe[1].value
    assert list(columns.columns[:4]) == ["column", "kind", "missing %", "distinct"]
    kinds = dict(zip(columns["column"], columns["kind"]))
    assert kinds["shot_distance"] == "numeric" and kinds["shot_id"] == "id-like"


def test_column_and_target_views(data_page, workspace):
    data_page.button(key="data.load_demo").click().run()
    data_page.selectbox(key="data.column").select("shot_distance").run()
    assert not data_page.exception
    assert "Kind numeric" in page_text(data_page)
    data_page.selectbox(key="data.target").select("shot_made_flag").run()
    assert not data_page.exception
    balance = data_page.dataframe[-1].value
    assert sorted(balance["value"]) == ["(missing)", "0", "1"]
    dev = TableStore(workspace.tables_dir).get(data_page.session_state["data.table_id"])
    assert balance["rows"].sum() == dev.rows
    assert balance["share %"].sum() == pytest.approx(100, abs=0.2)


def test_reading_notes_and_renamed_columns_are_shown(data_page, workspace):
    TableStore(workspace.tables_dir).ingest(b"x;x;y\n1,5;2;a\n3,5;4;b\n", "dup.csv")
    data_page.run()
    text = page_text(data_page)
    assert "semicolon" in text and "decimal comma" in text
    assert "column 2 is now 'x \\(2\\)'" in text


def test_rename_then_delete_with_confirmation(data_page, workspace):
    store = TableStore(workspace.tables_dir)
    table_id = store.ingest(b"a,b\n1,2\n3,4\n", "t.csv").record.table_id
    data_page.run()
    data_page.text_input(key=f"data.rename.{table_id}").input("Renamed table").run()
    data_page.button(key="data.rename").click().run()
    assert not data_page.exception
    assert store.get(table_id).name == "Renamed table"
    assert "Renamed to" in page_text(data_page)

    data_page.button(key="data.delete").click().run()
    assert "This cannot be undone" in page_text(data_page)
    assert store.list()  # nothing deleted before the confirmation
    data_page.button(key="data.delete.no").click().run()
    assert store.list()
    data_page.button(key="data.delete").click().run()
    data_page.button(key="data.delete.yes").click().run()
    assert not data_page.exception
    assert store.list() == []
    assert "Deleted" in page_text(data_page)
    assert "No table is stored yet" in page_text(data_page)


def test_rename_refusal_is_shown_not_raised(data_page, workspace):
    store = TableStore(workspace.tables_dir)
    store.ingest(b"a\n1\n", "taken.csv")
    table_id = store.ingest(b"b\n2\n", "other.csv").record.table_id
    data_page.run()
    data_page.selectbox(key="data.table_id").set_value(table_id).run()
    data_page.text_input(key=f"data.rename.{table_id}").input("taken").run()
    data_page.button(key="data.rename").click().run()
    assert not data_page.exception
    assert any("Another table is called 'taken'" in e.value for e in data_page.error)


def test_kobe_table_profiles_on_the_page(data_page, workspace, kobe_dev):
    TableStore(workspace.tables_dir).ingest(kobe_dev.read_bytes(), kobe_dev.name)
    data_page.run()
    assert not data_page.exception
    assert "Rows 24,271" in page_text(data_page)
    preview = data_page.dataframe[0].value
    assert isinstance(preview, pd.DataFrame) and len(preview) == 100


# --- what the reader found: dates, codes for missing values, empty lines -----------------------------


def plain(text: str) -> str:
    """Page text without the escapes that keep file and column names inert in markdown."""
    return re.sub(r"\\(.)", r"\1", text)


@pytest.fixture
def air_page(data_page):
    data_page.file_uploader(key="data.uploader").upload("AirQualityUCI.csv", air_quality_csv(), "text/csv").run()
    assert not data_page.exception, data_page.exception
    return data_page


def test_upload_says_what_was_read_and_chosen(air_page, workspace):
    text = plain(page_text(air_page))
    assert "Stored 'AirQualityUCI': 24 rows, 9 columns." in text
    assert "Dropped 4 empty lines and 2 unnamed empty columns." in text
    assert "Dates in 'Date' were read day-first: 10/03/2004 is 10 March 2004. They run from 10 March 2004 to 3 April 2004" in text
    assert "could be read either way" in text
    assert "-200 appears in 3 rows of 'CO(GT)', far below its other values (1 to 7.3)." in text
    assert "-200 appears in 8 rows of 'NMHC(GT)'" in text
    assert air_page.button(key="data.date_order.0").label == "Read these dates month-first instead"
    assert air_page.multiselect(key=f"data.sentinel.columns.{air_page.session_state['data.table_id']}").value == ["CO(GT)", "NMHC(GT)"]
    assert "column_10" not in air_page.dataframe[0].value.columns


def test_treat_as_missing_from_the_page_replaces_the_table(air_page, workspace):
    store = TableStore(workspace.tables_dir)
    (before,) = store.list()
    air_page.multiselect(key=f"data.sentinel.columns.{before.table_id}").unselect("NMHC(GT)").run()
    air_page.button(key="data.sentinel.apply").click().run()
    assert not air_page.exception, air_page.exception
    (after,) = store.list()
    assert after.table_id != before.table_id and after.name == before.name
    assert air_page.session_state["data.table_id"] == after.table_id
    frame = store.load(after.table_id)
    assert frame["CO(GT)"].isna().sum() == 3 and (frame["NMHC(GT)"] == -200).sum() == 8
    text = plain(page_text(air_page))
    assert "Treated as missing, as you chose: -200 in 'CO(GT)' (3 rows)." in text
    assert "-200 appears in 8 rows of 'NMHC(GT)'" in text and "rows of 'CO(GT)'" not in text
    assert "Rows 24" in page_text(air_page)


def test_keeping_the_values_answers_the_offer(air_page, workspace):
    air_page.button(key="data.sentinel.keep").click().run()
    assert not air_page.exception, air_page.exception
    text = plain(page_text(air_page))
    assert "Kept as real values, as you chose: -200 in 'CO(GT)', -200 in 'NMHC(GT)'." in text
    assert "appears in" not in text
    assert not [b for b in air_page.button if b.key == "data.sentinel.apply"]
    (record,) = TableStore(workspace.tables_dir).list()
    assert (TableStore(workspace.tables_dir).load(record.table_id)["CO(GT)"] == -200).sum() == 3


def test_the_date_order_can_be_changed_from_the_page(air_page, workspace):
    air_page.button(key="data.date_order.0").click().run()
    assert not air_page.exception, air_page.exception
    store = TableStore(workspace.tables_dir)
    (record,) = store.list()
    assert air_page.session_state["data.table_id"] == record.table_id
    assert store.load(record.table_id)["Date"].iloc[0] == pd.Timestamp("2004-10-03")
    text = plain(page_text(air_page))
    assert "Dates in 'Date' were read month-first: 10/03/2004 is 3 October 2004." in text
    assert "you chose month-first" in text
    assert air_page.button(key="data.date_order.0").label == "Read these dates day-first instead"


def test_dates_that_read_only_one_way_offer_no_switch(data_page, workspace):
    TableStore(workspace.tables_dir).ingest(b"when;n\n13/03/2004;1\n01/04/2004;2\n", "d.csv")
    data_page.run()
    assert "can only be read day-first (13 cannot be a month)" in plain(page_text(data_page))
    assert not [b for b in data_page.button if (b.key or "").startswith("data.date_order")]


def test_a_file_that_is_not_a_table_gets_a_message_not_a_traceback(data_page, workspace):
    data_page.file_uploader(key="data.uploader").upload("photo.csv", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "text/csv").run()
    assert not data_page.exception, data_page.exception
    assert any("is a PNG image, not a table" in e.value for e in data_page.error)
    assert TableStore(workspace.tables_dir).list() == []


def test_a_ragged_file_is_refused_with_its_line_on_the_page(data_page, workspace):
    data_page.file_uploader(key="data.uploader").upload("labels.csv", b"a,b\nr1,1,2\nr2,3,4\n", "text/csv").run()
    assert not data_page.exception, data_page.exception
    assert any("line 2 has 3 fields but the header has 2" in plain(e.value) for e in data_page.error)
    assert TableStore(workspace.tables_dir).list() == []


def test_excel_unicode_text_is_stored_and_the_page_says_how_it_was_read(data_page, workspace):
    data = "Name\tCity\nÉlodie\tTōkyō\nJosé\tSão Paulo\n".encode("utf-16")
    data_page.file_uploader(key="data.uploader").upload("export.txt", data, "text/plain").run()
    assert not data_page.exception, data_page.exception
    text = plain(page_text(data_page))
    assert "Stored 'export': 2 rows, 2 columns." in text
    assert "The file is UTF-16 text" in text and "Columns are separated by tabs." in text
    (record,) = TableStore(workspace.tables_dir).list()
    assert TableStore(workspace.tables_dir).load(record.table_id)["City"].tolist() == ["Tōkyō", "São Paulo"]
