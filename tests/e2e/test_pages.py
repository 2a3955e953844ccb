"""The real server in headless Chromium: home and Data pages, uploads good and bad."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.e2e.conftest import start_studio, stop

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio")
    # A 1 MB upload limit lets the test meet the limit with a small file.
    process, url = start_studio(root, "--server.maxUploadSize", "1")
    yield url, root
    stop(process)


@pytest.fixture
def page(browser, studio):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    yield page
    context.close()


def assert_no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    body = page.inner_text("body")
    assert "Traceback" not in body and 'File "' not in body


def open_data_page(page, url: str) -> None:
    page.goto(f"{url}/data")
    page.get_by_role("heading", name="Data", exact=True).wait_for(timeout=30_000)


def upload(page, path) -> None:
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))


def stored_tables(root) -> list[dict]:
    folder = root / "ws" / "tables"
    return [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.exists() else []


def test_home_page_renders(page, studio, screenshots):
    url, _ = studio
    page.goto(url)
    page.get_by_role("heading", name="ML Studio").wait_for(timeout=30_000)
    page.get_by_text("Embedded MLflow store").wait_for()
    assert_no_exception(page)
    page.screenshot(path=screenshots / "home.png", full_page=True)


@pytest.mark.parametrize(("path", "says"), [
    ("", "Start here"), ("data", "Upload a CSV"), ("train", "Load one on the Data page first"),
    ("models", "No model is registered yet"), ("score", "No model is registered yet"),
    ("monitor", "Nothing to monitor yet"), ("predict", "No model is registered yet"),
])
def test_every_page_opened_directly_has_the_studio_chrome_and_says_what_to_do(page, studio, screenshots, path, says):
    """Opening a page's URL directly runs app.py (navigation and sidebar), not the page script alone:
    a folder named pages/ made Streamlit treat it as old-style pages and skip app.py. Before any model
    exists, each page says what to do instead of showing nothing."""
    url, _ = studio
    page.goto(f"{url}/{path}")
    page.get_by_text("Tracking store").wait_for(timeout=60_000)
    # the navigation is drawn in the same script run as the sidebar status, but may reach the
    # browser a moment later on a busy machine: waited for, not counted at once
    page.get_by_role("link", name="Models").first.wait_for(timeout=60_000)
    page.get_by_text(says).first.wait_for(timeout=60_000)
    assert_no_exception(page)
    page.screenshot(path=screenshots / f"first-visit-{path or 'home'}.png", full_page=True)


def test_upload_a_messy_csv(page, studio, screenshots, tmp_path):
    url, root = studio
    messy = tmp_path / "ventes été.csv"
    messy.write_bytes("<b>ville</b>;montant;<b>ville</b>\nMontréal;1,5;x\nQuébec;2,5;y\n".encode("latin-1"))
    open_data_page(page, url)
    upload(page, messy)
    page.get_by_text("Stored 'ventes été'").wait_for(timeout=30_000)
    page.get_by_text("decimal comma").wait_for()
    # Column names holding HTML are shown as text, never rendered.
    page.get_by_text("column 3 is now '<b>ville</b> (2)'").wait_for()
    page.get_by_role("tab", name="Columns").click()
    page.get_by_text("Values of <b>ville</b>").wait_for()  # the chart title, as text
    assert page.locator("b", has_text="ville").count() == 0
    assert_no_exception(page)
    page.screenshot(path=screenshots / "data-messy-csv.png", full_page=True)
    assert [t["name"] for t in stored_tables(root)] == ["ventes été"]


def test_upload_the_kobe_file(page, studio, screenshots, kobe_dev):
    url, root = studio
    open_data_page(page, url)
    upload(page, kobe_dev)
    page.get_by_text("Stored 'dataset_kobe_dev'").wait_for(timeout=30_000)
    page.get_by_text("24,271", exact=True).wait_for()
    assert_no_exception(page)
    page.screenshot(path=screenshots / "data-kobe.png", full_page=True)
    record = next(t for t in stored_tables(root) if t["name"] == "dataset_kobe_dev")
    frame = pd.read_parquet(root / "ws" / "tables" / f"{record['table_id']}.parquet")
    assert frame.shape == (24271, 25)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(200), "photo.csv", "is a PNG image, not a table"),
        (b"a,b,c\n", "header.csv", "but no rows"),
        (b"", "empty.csv", "is empty"),
        (b"PAR1" + bytes(100), "cut.parquet", "cut short or damaged"),
    ],
)
def test_bad_uploads_say_what_is_wrong_and_store_nothing(page, studio, screenshots, tmp_path, content, name, message):
    url, root = studio
    before = len(stored_tables(root))
    bad = tmp_path / name
    bad.write_bytes(content)
    open_data_page(page, url)
    upload(page, bad)
    page.get_by_text(message).wait_for(timeout=30_000)
    assert_no_exception(page)
    assert len(stored_tables(root)) == before
    page.screenshot(path=screenshots / f"data-bad-{name}.png", full_page=True)


def test_file_over_the_limit_is_refused_in_the_browser(page, studio, screenshots, tmp_path):
    url, root = studio
    before = len(stored_tables(root))
    big = tmp_path / "big.csv"
    big.write_text("a,b\n" + "123456789,987654321\n" * 70_000)  # about 1.4 MB, over the 1 MB limit
    open_data_page(page, url)
    upload(page, big)
    page.get_by_text("File must be 1.0MB or smaller").wait_for(timeout=30_000)
    assert_no_exception(page)
    assert len(stored_tables(root)) == before
    page.screenshot(path=screenshots / "data-over-limit.png", full_page=True)
