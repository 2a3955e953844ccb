"""The stored cut-off in headless Chromium, clicked as a person who does not program would: train on
the Kobe development file, look at the cut-off chart on the Train results, register the best model,
give the cost of a false alarm and of a missed shot on the Models page, store the cheapest cut-off on
the version, see it in the history, score the production file and find its predictions made at that
cut-off (the download's labels are probability >= cut-off), then ask the Predict page about one shot
and read why it got its class and each input's contribution.

Every page visited is saved as a screenshot under test-output/e2e/flow-cutoff/."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from tests.conftest import KOBE_FEATURES
from tests.e2e.conftest import start_studio, stop
from tests.e2e.test_flow import JOB_TIMEOUT, Visit, download_scored_csv, register_the_best_as_champion

pytestmark = pytest.mark.e2e


@pytest.fixture
def visit(browser, tmp_path_factory, screenshots):
    from core.settings import load_settings

    root = tmp_path_factory.mktemp("cutoff")
    process, url = start_studio(root)
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    settings = load_settings({"STUDIO_WORKSPACE": str(root / "ws"), "STUDIO_DATA_DIR": str(root / "data")})
    try:
        yield Visit(page, url, screenshots / "flow-cutoff"), settings
    finally:
        context.close()
        stop(process)


def open_tab(v: Visit, name: str) -> None:
    tab = v.page.get_by_role("tab", name=name)
    for _ in range(60):  # a page that just reran may show its old tab bar a moment: wait for one
        v.idle()
        if tab.count() == 1:
            break
        v.page.wait_for_timeout(500)
    tab.click()
    v.idle()


def test_store_the_cheapest_cut_off_score_at_it_and_predict_one_shot(visit, kobe_dev, kobe_prod, tmp_path):
    from core import registry

    v, settings = visit
    page = v.page
    page.goto(v.url)
    v.heading("ML Studio")
    v.idle()

    # Data, Train: the six numeric shot features; the results chart the cut-off and say nothing is stored there.
    v.follow("Start here", "Data")
    v.upload(kobe_dev)
    v.text("Stored 'dataset_kobe_dev': 24,271 rows, 25 columns.")
    v.follow("Next: train models", "Train")
    v.text("looks like the outcome to predict")
    v.only("Columns the models learn from", KOBE_FEATURES)
    v.button("Start training")
    v.text("Best on the holdout rows:", timeout=JOB_TIMEOUT)
    v.text("Where to put the cut-off")
    v.text("Nothing is stored from this page")
    v.text("At the usual 0.5")
    page.locator(".js-plotly-plot").filter(has_text="the cut-off (holdout rows)").first.wait_for()
    register_the_best_as_champion(v, "kobe")

    # Models: the version predicts the likelier class; costs give the cheapest cut-off, stored with one click.
    v.follow("Next: compare versions", "Models")
    open_tab(v, "Cut-off, gain and lift")
    v.text("No cut-off is stored on version 1.")
    v.check("models-no-cutoff")
    for label, cost in (("Cost of a false alarm", "2"), ("Cost of a missed positive", "3")):
        box = page.get_by_label(label, exact=True)
        box.fill(cost)
        box.press("Enter")
        v.idle()
    v.text("missing a positive row (shot_made_flag = 1) costs 3 and a false alarm costs 2")
    store = page.get_by_role("button", name=re.compile(r"^Use cut-off [0-9.]+ for version 1$"))
    store.wait_for()
    offered = float(re.search(r"Use cut-off ([0-9.]+) for", store.inner_text()).group(1))
    how = page.locator('[data-testid="stRadio"]').filter(has_text="Cut-off to store").locator("input")
    assert how.evaluate_all("els => els.map(e => e.checked)") == [True, False]  # the cheapest, shown chosen
    v.check("models-costs")
    store.click()
    v.text("Version 1 now predicts shot_made_flag = 1 when its probability of 1 is at least")
    stored = registry.cutoff(settings, "kobe", 1)
    assert stored is not None and stored.positive == "1" and f"{stored.value:.6g}" == f"{offered:.6g}"
    assert 0 < stored.value < 0.5  # a missed shot costs more than a false alarm: the cut-off goes below the usual 0.5
    open_tab(v, "Cut-off, gain and lift")
    v.text(f"Version 1 predicts at the cut-off {stored.shown}")
    v.text(f"At the stored cut-off {stored.shown}")
    v.text("Threshold-free")
    v.check("models-cutoff-stored")
    open_tab(v, "Alias history and cut-offs")
    page.get_by_text(f"cut-off set: the likelier class → {stored.shown} (positive class 1)").first.wait_for(state="attached")
    v.check("models-history")

    # Score: the page says the rule before and after; the downloaded labels are probability >= cut-off.
    v.follow("Next: score a production file", "Score")
    v.text(f"Predictions use the cut-off {stored.shown} stored on version 1")
    v.upload(kobe_prod)
    v.text("The file has every column the model needs")
    v.check("score-ready")
    v.button("Score the file")
    v.text("How the model did on this file", timeout=JOB_TIMEOUT)
    v.text(f"These predictions used the cut-off {stored.shown} stored on version 1")
    v.check("score-result")
    scored = download_scored_csv(page, tmp_path)
    assert len(scored) == len(pd.read_parquet(kobe_prod))
    assert (scored["prediction"] == (scored["proba_1"] >= stored.value).astype(int)).all()
    assert ((scored["proba_1"] < 0.5) & (scored["prediction"] == 1)).any()  # at the cut-off, not the likelier class

    # Predict: one shot from the form, its class at the cut-off said in words, and why.
    page.get_by_role("link", name="Predict", exact=True).click()
    v.heading("Predict")
    v.text(f"Predictions use the cut-off {stored.shown} stored on version 1")
    v.button("Predict")
    v.text("Prediction:")
    said = page.get_by_text(re.compile(r"^Predicted shot_made_flag = ")).first
    said.wait_for()
    said = said.inner_text()
    found = re.search(r"Predicted shot_made_flag = (\d) because the probability of 1, ([0-9.]+)%, is (at least|below) the cut-off", said)
    assert found, said
    label, percent, side = int(found.group(1)), float(found.group(2)), found.group(3)
    assert label == (1 if side == "at least" else 0)
    assert (percent / 100 >= stored.value - 0.0005) == (side == "at least")
    shown = page.locator('[data-testid="stMetric"]').filter(has_text="Probability of 1").inner_text()
    assert f"{percent:.1f}%" in shown, shown
    v.text("Why this prediction")
    page.locator(".js-plotly-plot").first.wait_for()
    v.check("predict")
