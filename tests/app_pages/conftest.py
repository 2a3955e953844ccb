"""Page tests run the real app script with AppTest against a fresh workspace."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.settings import PROJECT_ROOT

APP = str(PROJECT_ROOT / "app.py")


@pytest.fixture
def app(workspace) -> AppTest:
    """The studio on its home page, with an empty workspace."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def page_text(at: AppTest) -> str:
    """Everything a user can read on the page (markdown, captions, alerts, metrics, titles)."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "success", "warning", "error"):
        parts.extend(str(element.value) for element in at.get(kind))
    parts.extend(f"{m.label} {m.value}" for m in at.metric)
    return "\n".join(parts)


def links(at: AppTest) -> list[tuple[str, str, str]]:
    """Every page link on the page: (label, target page, query string it carries)."""
    found = []
    for element in at.get("page_link"):
        proto = element.proto
        found.append((proto.label, proto.page, proto.query_string))
    return found


def open_page(page: str, **query: str) -> AppTest:
    """A new browser session opening ``page`` from a link (or a reload) carrying ``query``."""
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at
