"""The whole flow in headless Chromium, clicked as a person who does not program would: on the
Kobe files (train on 2-point shots, score the 3-point shots, see the drift), and on the built-in
demo started from the home page following only the links the pages offer.

Every page visited is saved as a screenshot under test-output/e2e/flow-*/ and checked for a
traceback or a Streamlit exception box."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from tests.conftest import KOBE_FEATURES
from tests.e2e.conftest import start_studio, stop

pytestmark = pytest.mark.e2e

JOB_TIMEOUT = 240_000  # ms: a training or scoring job on this 2-core machine, PyCaret's import included


class Visit:
    """One browser tab through the studio; checks and photographs every page it shows."""

    def __init__(self, page, url: str, folder) -> None:
        self.page, self.url, self.folder = page, url, folder
        self.shots = 0
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()

    def idle(self) -> None:
        """Wait until the page's script run is over (Streamlit marks its state on the app root)."""
        self.page.wait_for_timeout(300)
        self.page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(timeout=120_000)

    def check(self, name: str) -> None:
        self.idle()
        assert self.page.locator('[data-testid="stException"]').count() == 0, f"an exception box on {name}"
        body = self.page.inner_text("body")
        assert "Traceback" not in body and 'File "' not in body, f"a traceback on {name}"
        self.shoot(name)

    def shoot(self, name: str) -> None:
        """A screenshot of the whole page: Streamlit scrolls inside its main block, so the window is
        made as tall as that block for the picture."""
        self.shots += 1
        size = self.page.viewport_size
        height = self.page.evaluate("document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight || 0")
        self.page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 40, 12_000))})
        self.page.wait_for_timeout(300)
        self.page.screenshot(path=self.folder / f"{self.shots:02d}-{name}.png", full_page=True)
        self.page.set_viewport_size(size)

    def heading(self, text: str, timeout: int = 60_000) -> None:
        self.page.get_by_role("heading", name=text, exact=True).first.wait_for(timeout=timeout)

    def follow(self, link_text: str, heading: str) -> None:
        """Click a link the page offers (never type a URL) and wait for the next page."""
        self.page.get_by_role("link", name=re.compile(re.escape(link_text))).first.click()
        self.heading(heading)
        self.idle()

    def text(self, text: str, timeout: int = 60_000):
        locator = self.page.get_by_text(text).first
        try:
            locator.wait_for(timeout=timeout)
        except Exception:
            self.shoot("FAILED-waiting-for-text")
            raise
        return locator

    def only(self, label: str, options) -> None:
        """Leave exactly ``options`` chosen in the multiselect labelled ``label``."""
        box = self.page.locator('[data-testid="stMultiSelect"]').filter(has=self.page.get_by_text(label, exact=True))
        chips = box.locator("[data-tag]")
        box.get_by_role("button", name="Clear all").click()
        self.idle()
        for k, option in enumerate(options, start=1):
            box.locator("input").fill(option)  # filter the list, then pick the exact option
            self.page.get_by_role("option", name=option, exact=True).click()
            chips.and_(self.page.get_by_label(option, exact=True)).wait_for()
            self.page.keyboard.press("Escape")  # close the list; each pick reruns the page
            self.idle()
            assert chips.count() == k
        assert sorted(chips.all_inner_texts()) == sorted(options)

    def button(self, name: str) -> None:
        self.page.get_by_role("button", name=name, exact=True).first.click()
        self.idle()

    def select(self, label: str, option: str) -> None:
        """Choose ``option`` in the select box labelled ``label``."""
        box = self.page.locator('[data-testid="stSelectbox"]').filter(has=self.page.get_by_text(label, exact=True))
        box.click()
        box.locator("input").fill(option)
        self.page.get_by_role("option", name=option, exact=True).click()
        self.idle()

    def upload(self, path) -> None:
        self.page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(path))


@pytest.fixture
def visit(browser, tmp_path_factory, screenshots, request):
    root = tmp_path_factory.mktemp("flow")
    process, url = start_studio(root)
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    try:
        yield Visit(page, url, screenshots / f"flow-{request.node.name.removeprefix('test_')}"), root
    finally:
        context.close()
        stop(process)


def download_scored_csv(page, folder) -> pd.DataFrame:
    """The Score page's result downloaded as CSV, as a person saves it, read back."""
    with page.expect_download() as download:
        page.locator('[data-testid="stDownloadButton"]').filter(has_text="Download as CSV").click()
    saved = folder / "scored.csv"
    download.value.save_as(saved)
    return pd.read_csv(saved)


def register_the_best_as_champion(v: Visit, name: str) -> str:
    """On the Train page's results: the best model is preselected; give it a name, alias champion."""
    best = v.text("Best on the holdout rows:", timeout=JOB_TIMEOUT).inner_text()
    v.check("train-results")
    form = v.page.locator('[data-testid="stForm"]')
    form.get_by_label("Registered model name", exact=True).fill(name)
    form.get_by_role("button", name="Register", exact=True).click()
    v.text(f"version 1 of '{name}', alias champion")
    v.check("train-registered")
    return best


def test_kobe_from_upload_to_drift(visit, kobe_dev, kobe_prod, tmp_path):
    v, root = visit
    page = v.page
    page.goto(v.url)
    v.heading("ML Studio")
    v.check("home-empty")

    # Data: upload the development file through the upload widget.
    v.follow("Start here", "Data")
    v.upload(kobe_dev)
    v.text("Stored 'dataset_kobe_dev': 24,271 rows, 25 columns.")
    v.check("data-kobe-dev")

    # Train: logistic regression and a decision tree on the six numeric features.
    v.follow("Next: train models", "Train")
    v.text("looks like the outcome to predict")
    v.only("Columns the models learn from", KOBE_FEATURES)
    chosen = page.locator('[data-testid="stMultiSelect"]').filter(has=page.get_by_text("Algorithms", exact=True)).inner_text()
    assert "Logistic regression" in chosen and "Decision tree" in chosen
    v.check("train-form")
    v.button("Start training")
    best = register_the_best_as_champion(v, "kobe")
    assert "Decision tree" in best or "Logistic regression" in best

    # Models: the champion is there.
    v.follow("Next: compare versions", "Models")
    v.text("champion")
    v.check("models")

    # Score: upload the production file, score it, download the predictions.
    v.follow("Next: score a production file", "Score")
    v.upload(kobe_prod)
    v.text("The file has every column the model needs")
    v.check("score-ready")
    v.button("Score the file")
    v.text("How the model did on this file", timeout=JOB_TIMEOUT)
    v.text("Worse than at training")
    v.check("score-result")
    scored = download_scored_csv(page, tmp_path)
    production = pd.read_parquet(kobe_prod)
    assert len(scored) == len(production)
    assert {"prediction", "proba_1.0"} <= set(scored.columns) or any(c.startswith("proba_") for c in scored.columns)
    assert scored["prediction"].notna().all()

    # Monitor: shot_distance drifted significantly; F1 and log loss against guessing are worse.
    v.follow("Next: see how this file drifts", "Monitor")
    verdict = v.text("Significant drift in").inner_text()
    assert "shot_distance" in verdict
    v.page.locator(".js-plotly-plot").first.wait_for()
    worse = v.text("Worse than at training on").inner_text()
    assert "F1" in worse and "log loss / guess" in worse
    f1 = page.locator('[data-testid="stMetric"]').filter(has_text="F1 on this file").inner_text()
    assert re.search(r"-0\.\d+ against training", f1), f1
    v.check("monitor")

    # Predict: one shot from the form, which starts from typical training values.
    v.page.get_by_role("link", name="Predict", exact=True).click()
    v.heading("Predict")
    v.button("Predict")
    v.text("Prediction:")
    probabilities = page.locator('[data-testid="stMetric"]').filter(has_text="Probability of").all_inner_texts()
    assert len(probabilities) == 2 and all(re.search(r"\d+\.\d%", p) for p in probabilities), probabilities
    v.check("predict")


def test_demo_from_the_home_page(visit):
    v, root = visit
    page = v.page
    page.goto(v.url)
    v.heading("ML Studio")
    v.text("Nothing here yet")

    v.follow("Start here", "Data")
    v.button("Load the demo tables")
    v.text("Loaded the demo")
    v.check("data-demo")

    v.follow("Next: train models", "Train")
    v.text("looks like the outcome to predict")
    v.check("train-form")
    v.button("Start training")
    register_the_best_as_champion(v, "demo-shots")

    v.follow("Next: compare versions", "Models")
    v.check("models")

    v.follow("Next: score a production file", "Score")
    v.text("Or score a table you stored already")
    page.get_by_test_id("stRadioGroup").get_by_text("A stored table", exact=True).click()
    v.idle()
    chosen = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text("Stored table", exact=True))
    shown = chosen.inner_text() + " ".join(chosen.locator("input").evaluate_all("els => els.map(e => e.value)"))
    assert "Demo shots: production" in shown, shown  # not the training table: preselected
    v.text("The file has every column the model needs")
    v.button("Score the file")
    v.text("Result", timeout=JOB_TIMEOUT)
    v.check("score-result")

    v.follow("Next: see how this file drifts", "Monitor")
    v.text("Significant drift in")
    page.locator(".js-plotly-plot").first.wait_for()
    v.check("monitor")

    # Home now tells what exists at each step.
    v.follow("Home", "ML Studio")
    v.text("champion")
    v.text("drift of the last file")
    v.check("home-after")

    # A second, different model: scikit-learn's public diabetes table (regression), new to the studio.
    from sklearn.datasets import load_diabetes

    diabetes = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "disease_progression"})
    table = root / "diabetes.csv"
    diabetes.to_csv(table, index=False)
    v.page.get_by_role("link", name="Data", exact=True).click()
    v.heading("Data")
    v.upload(table)
    v.text("Stored 'diabetes': 442 rows, 11 columns.")
    v.follow("Next: train models", "Train")
    assert v.page.get_by_text("Keep a model").count() == 0  # the demo job's results stay with the demo table
    v.select("Target: the column to predict", "disease_progression")
    v.text("Regression: 'disease_progression' ranges from")
    v.check("train-second-form")
    v.button("Start training")
    v.text("Training:")
    page.reload()  # a reload mid-training finds the job again
    v.heading("Train")
    # still shown: under way, or finished already with its results (never the empty form alone)
    page.get_by_text("Training:").or_(page.get_by_text("Best on the holdout rows:")).first.wait_for(timeout=60_000)
    v.check("train-second-reloaded")
    v.text("Best on the holdout rows:", timeout=JOB_TIMEOUT)
    form = page.locator('[data-testid="stForm"]')
    name = form.get_by_label("Registered model name", exact=True)
    for _ in range(50):  # the results rerun once when the job ends: wait for the form to settle
        if name.input_value():
            break
        page.wait_for_timeout(200)
    assert name.input_value() == "disease-progression"  # its own name, not demo-shots
    name.fill("demo-shots")
    form.get_by_role("button", name="Register", exact=True).click()
    v.text("'demo-shots' already holds models that predict 'shot_made_flag'")
    v.check("train-second-refused")
    name.fill("disease-progression")
    form.get_by_role("button", name="Register", exact=True).click()
    v.text("version 1 of 'disease-progression', alias champion")

    # Score it with the labels in the file: no error box, the regression charts shown.
    v.follow("Next: compare versions", "Models")
    v.text("disease-progression")
    v.follow("Next: score a production file", "Score")
    page.get_by_test_id("stRadioGroup").get_by_text("A stored table", exact=True).click()
    v.idle()
    v.text("The file has every column the model needs")
    v.check("score-second-ready")
    v.button("Score the file")
    v.text("How the model did on this file", timeout=JOB_TIMEOUT)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    page.locator(".js-plotly-plot").first.wait_for()
    assert page.locator(".js-plotly-plot").count() >= 2
    v.check("score-second-result")
    v.follow("Next: see how this file drifts", "Monitor")
    box = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text("Model", exact=True)).first
    chosen = box.inner_text() + " ".join(box.locator("input").evaluate_all("els => els.map(e => e.value)"))
    assert "disease-progression" in chosen, chosen  # the model just scored, not the demo's
    v.check("monitor-second")
