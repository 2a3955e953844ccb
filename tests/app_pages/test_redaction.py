"""No page shows a password: with MLFLOW_TRACKING_URI=http://user:password@host, the sidebar of every
page and the page errors printed it (issue "Hardening", 2)."""

from __future__ import annotations

import logging
import socket

import pytest
from streamlit.testing.v1 import AppTest

from tests.app_pages.conftest import APP, page_text

SECRET = "Sup3rSecretPw"
PAGES = ("app_pages/home.py", "app_pages/data.py", "app_pages/train.py", "app_pages/models.py", "app_pages/score.py",
         "app_pages/monitor.py", "app_pages/predict.py")


def everything(at: AppTest) -> str:
    """Every element of the page as its protobuf text: labels, values, links, help texts, alerts."""
    found = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            found.append(str(proto))
        for child in (getattr(node, "children", None) or {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(found)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_page_shows_the_password_of_the_tracking_uri(workspace, monkeypatch, closed_port, caplog, capfd):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{SECRET}@127.0.0.1:{closed_port}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    caplog.set_level(logging.INFO)
    at = AppTest.from_file(APP, default_timeout=60).run()
    errors = []
    for page in PAGES:
        if page != PAGES[0]:
            at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        shown = everything(at)
        assert SECRET not in shown, f"{page} shows the password"
        assert SECRET not in page_text(at)
        sidebar = "\n".join(str(m.value) for m in at.sidebar.markdown)
        assert f"Team MLflow server at http\\://alice\\:\\*\\*\\*@127\\.0\\.0\\.1\\:{closed_port}" in sidebar, (page, sidebar)
        errors += [str(e.value) for e in at.error]
    # The pages that read the registry say the server cannot be reached, naming it without the password.
    assert any(f"http://alice:***@127.0.0.1:{closed_port} cannot be reached" in e for e in errors), errors
    assert SECRET not in caplog.text  # nor the server log
    printed = capfd.readouterr()
    assert SECRET not in printed.out + printed.err
