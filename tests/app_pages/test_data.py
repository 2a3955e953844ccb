"""Data page: empty state, demo in one click, profile, target balance, rename, delete."""

from __future__ import annotations

import pandas as pd
import pytest

from core.tables import TableStore
from tests.app_pages.conftest import page_text


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
