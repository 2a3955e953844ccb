"""Model health in headless Chromium, clicked as a person who does not program would: a Kobe champion
(trained on the 2-point shots) scored two months of 3-point shots; the first month's outcomes came in
through the command line's code path, the second month's are added on the Monitor page. The page
shows the estimate beside the realized performance and says the relationship changed; the user
starts the retraining it proposes, waits for the challenger, opens Models, compares champion and
challenger on the same rows and promotes the challenger.

To keep it fast, the champion is trained, registered and scored through ``core`` in the fixture (the
Train and Score pages have their own browser flow in test_flow.py); everything after that is clicked.
Every page visited is saved as a screenshot under test-output/e2e/flow-health/."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import KOBE_FEATURES
from tests.e2e.conftest import start_studio, stop
from tests.e2e.test_flow import JOB_TIMEOUT, Visit

pytestmark = pytest.mark.e2e


@pytest.fixture
def scored_kobe(tmp_path_factory, kobe_dev, kobe_prod):
    """A workspace where the Kobe champion scored two files of 3-point shots without their outcome
    (January, February) and January's outcomes were attached; February's outcomes file, to upload."""
    from core import labels, registry, scoring, tables
    from core.settings import load_settings
    from core.training import TrainingSpec, train

    root = tmp_path_factory.mktemp("health")
    settings = load_settings({"STUDIO_WORKSPACE": str(root / "ws"), "STUDIO_DATA_DIR": str(root / "data")})
    record = tables.store(settings).ingest(kobe_dev, kobe_dev.name).record
    result = train(settings, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=3),
                   tables.store(settings).load(record.table_id), table_name=record.name, table_digest=record.digest)
    registry.register(settings, result.models[0].run_id, "kobe", alias="champion")
    production = pd.read_parquet(kobe_prod)
    half = len(production) // 2
    model, pipeline = scoring.load_model(settings, "kobe@champion")
    outcomes = {}
    for month, part in (("january", production.iloc[:half]), ("february", production.iloc[half:])):
        shots = root / f"shots-{month}.parquet"
        part.drop(columns="shot_made_flag").to_parquet(shots)
        run_id = scoring.score(settings, model, pipeline, scoring.open_input(settings, shots)).run_id
        known = part.loc[part["shot_made_flag"].notna(), ["shot_id", "shot_made_flag"]]
        outcomes[month] = (run_id, root / f"outcomes-{month}.csv", len(known))
        known.to_csv(outcomes[month][1], index=False)
    january, path, _ = outcomes["january"]
    labels.attach(settings, labels.plan(settings, january, path, key="shot_id"))
    return root, settings, outcomes["february"]


@pytest.fixture
def visit(browser, scored_kobe, screenshots):
    root, settings, february = scored_kobe
    process, url = start_studio(root)
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    page = context.new_page()
    try:
        yield Visit(page, url, screenshots / "flow-health"), settings, february
    finally:
        context.close()
        stop(process)


def test_outcomes_estimate_retraining_challenger_and_promotion(visit):
    from core import registry

    v, settings, (february, outcomes, matched) = visit
    page = v.page
    page.goto(v.url)
    v.heading("ML Studio")
    v.idle()  # the home page's run over first: a run stopped mid-import can leave mlflow half imported
    page.get_by_role("link", name="Monitor", exact=True).click()
    v.heading("Monitor")

    # The latest file (February) opens: drifted, its performance estimated without outcomes.
    v.text("Significant drift in")
    v.text("Performance on this file")
    estimate = page.locator('[data-testid="stMetric"]').filter(has_text="Estimated F1").inner_text()
    assert "Estimated F1" in estimate and " to " in estimate, estimate
    v.text("The estimate sees changes in the inputs")
    v.text("A rule breaks: significant drift")
    v.page.locator(".js-plotly-plot").first.wait_for()
    v.check("monitor-before-outcomes")

    # February's outcomes arrive: upload them, the key is suggested, see the plan, attach.
    v.upload(outcomes)
    v.text("Rows matched")
    rows = page.locator('[data-testid="stMetric"]').filter(has_text="Rows matched").inner_text()
    assert f"{matched:,} of" in rows, rows
    key = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text("Key: the column", exact=False))
    chosen = key.inner_text() + " ".join(key.locator("input").evaluate_all("els => els.map(e => e.value)"))
    assert "shot_id" in chosen, chosen
    v.check("monitor-outcomes-planned")
    v.button("Attach the outcomes")
    v.text(f"Attached the outcomes of {matched:,} rows")
    v.text("concept drift")  # the 3-point shots' outcomes disagree with what the 2-point shots taught
    v.check("monitor-outcomes-attached")

    # The retraining the page proposes: the champion's recipe on the training table + January's labelled rows.
    v.text("Proposal: retrain the champion to a challenger")
    v.button("Start the retraining")
    page.get_by_text("Retraining:").or_(page.get_by_text("The retrained model is version")).first.wait_for(timeout=60_000)
    v.check("monitor-retraining")
    page.reload()  # a reload finds the job again
    v.heading("Monitor")
    page.get_by_text("Retraining:").or_(page.get_by_text("The retrained model is version")).first.wait_for(timeout=60_000)
    v.text("The retrained model is version 2", timeout=JOB_TIMEOUT)
    v.check("monitor-challenger-registered")
    assert page.get_by_role("button", name="Start the retraining").count() == 0  # not again before the comparison
    assert registry.get_model(settings, "kobe").aliases == {"champion": 1, "challenger": 2}

    # Models: champion and challenger on the same labelled rows (February's, held out of the retraining).
    v.follow("Next: compare champion and challenger", "Models")
    same = v.text("Both versions scored the same", timeout=120_000).inner_text()
    assert f"same {matched:,} labelled rows" in same and "shots-february.parquet" in same, same
    table = page.locator('[data-testid="stDataFrame"]').filter(has_text="challenger (version 2)")
    table.wait_for()
    v.check("models-champion-vs-challenger")
    v.button("Promote the challenger")
    v.text("Version 2 is now the champion (it was version 1)")
    tab = page.get_by_role("tab", name="Alias history")
    for _ in range(60):  # the page before the promotion may linger a moment (stale elements): wait for one tab bar
        v.idle()
        if tab.count() == 1:
            break
        page.wait_for_timeout(500)
    tab.click()
    # the table is drawn on a canvas; its cells are in the page for screen readers
    page.get_by_text("promoted: version 1 → version 2").first.wait_for(state="attached")
    v.idle()
    v.check("models-promoted")
    assert registry.get_model(settings, "kobe").aliases == {"champion": 2}
    history = registry.get_model(settings, "kobe").history
    assert [h["action"] for h in history[-2:]] == ["promoted", "removed"]

    # Monitor's timeline now marks the promotion.
    page.get_by_role("link", name="Monitor", exact=True).click()
    v.heading("Monitor")
    v.text("Timeline of kobe")
    page.locator(".js-plotly-plot").filter(has_text="champion → v2").first.wait_for(timeout=60_000)
    v.text("has not scored a file yet")  # the new champion is judged once it scores, not by version 1's files
    assert page.get_by_role("button", name="Start the retraining").count() == 0
    page.get_by_text("How to keep a model healthy").click()  # the two strategies, with their commands
    v.text("retrain --model kobe@champion --data training+labelled")
    v.check("monitor-timeline")
