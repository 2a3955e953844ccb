"""Home page: the steps, what exists, the store in use."""

from __future__ import annotations

from core.tables import TableStore
from tests.app_pages.conftest import page_text


def test_home_shows_the_steps_and_an_empty_workspace(app):
    text = page_text(app)
    assert "ML Studio" in text
    for step in ("1. Data", "2. Train", "3. Models", "4. Score", "5. Monitor"):
        assert step in text
    assert "Nothing here yet" in text
    assert "synthetic" in text


def test_sidebar_names_the_embedded_store(app, workspace):
    sidebar = "\n".join(str(m.value) for m in app.sidebar.markdown)
    assert "Embedded MLflow store" in sidebar
    assert str(workspace.workspace) in sidebar
    assert "0 stored tables" in sidebar


def test_sidebar_names_a_remote_server(workspace, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.app_pages.conftest import APP

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert any("Team MLflow server at http\\://127\\.0\\.0\\.1\\:5999" in str(m.value) for m in at.sidebar.markdown)


def test_home_counts_stored_tables(app, workspace):
    TableStore(workspace.tables_dir).ingest(b"a,b\n1,2\n", "first <b>table<b>.csv")
    app.run()
    text = page_text(app)
    assert "1 stored table" in text
    assert "first \\<b\\>table\\<b\\>" in text  # the name is escaped, never rendered as HTML
