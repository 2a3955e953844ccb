"""The studio image (``make studio-image``): the whole studio in a real container, its workspace on a
volume with the demo data written on the first start, opened in headless Debian Chromium."""

from __future__ import annotations

import uuid

import pytest

from core import images
from tests.containers.conftest import Container, podman, wait_for
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.usefixtures("podman_ready")


@pytest.fixture
def volume():
    name = f"studio-test-{uuid.uuid4().hex[:10]}"
    podman("volume", "create", name)
    yield name
    podman("volume", "rm", "--force", name, check=False)


def test_the_studio_container_shows_its_home_page_with_the_demo_data(studio_image, volume, output):
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/ensure-chromium does).")
    with Container(studio_image.tag, images.STUDIO_PORT, "--volume", f"{volume}:/workspace") as studio:
        wait_for(f"{studio.url}/_stcore/health", studio.name, timeout=120)
        # the first start wrote the demo tables into the volume, not into the image
        listed = podman("exec", studio.name, "ls", "/workspace/data").stdout.split()
        assert {"demo_dev.parquet", "demo_prod.parquet"} <= set(listed)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(studio.url, wait_until="domcontentloaded")
                page.get_by_role("heading", name="ML Studio").wait_for(timeout=60_000)
                page.get_by_text("The steps").wait_for(timeout=30_000)
                page.wait_for_timeout(500)
                page.screenshot(path=output / "studio-home.png", full_page=True)
                body = page.inner_text("body")
                failures = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').count()
            finally:
                browser.close()
        # published as 127.0.0.1:PORT -> 8501: the page loaded, so streamlit listens beyond the container's loopback
        assert "Upload a table" in body
        assert "Traceback" not in body, body[:2000]
        assert failures == 0, body[:2000]
