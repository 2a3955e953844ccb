"""Score page: no model yet, a stored production table scored in the background, results, downloads,
the same file again, a file that lacks columns, and a path outside the data folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core import explain, jobs, registry, scoring
from core.tables import TableStore
from core.training import TrainingSpec, train
from tests.app_pages.conftest import links, page_text
from tests.app_pages.test_predict import read
from tests.conftest import KOBE_FEATURES


@pytest.fixture
def score_page(app):
    app.switch_page("app_pages/score.py").run()
    assert not app.exception, app.exception
    return app


def test_without_a_model_the_page_points_to_training(score_page):
    assert "No model is registered yet" in page_text(score_page)


@pytest.fixture
def kobe_ready(workspace, kobe_dev, kobe_prod):
    result = train(workspace, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=3),
                   pd.read_parquet(kobe_dev), table_name="kobe dev", table_digest="d" * 64)
    registry.register(workspace, result.models[0].run_id, "kobe", alias="champion")
    store = TableStore(workspace.tables_dir)
    prod = store.ingest(kobe_prod.read_bytes(), kobe_prod.name).record
    partial = store.ingest(b"lat,lon\n34.0,-118.2\n", "partial.csv").record
    return prod, partial


def test_score_a_stored_table_and_see_the_model_is_worse(app, workspace, kobe_ready):
    prod, _ = kobe_ready
    app.switch_page("app_pages/score.py").run()
    assert app.selectbox(key="score.version.kobe").value == "@champion"
    app.radio(key="score.source").set_value("table").run()
    app.selectbox(key="score.table").set_value(prod.table_id).run()
    assert not app.exception, app.exception
    assert "The file has every column the model needs (6,426 rows, 25 columns; 19 more are carried through untouched)" in page_text(app)
    app.button(key="score.start").click().run()
    assert not app.exception, app.exception
    job_id = app.session_state["score.job_id"]
    done = jobs.wait(workspace, job_id, timeout=240)
    assert done.state == "succeeded", done.error
    app.run()
    assert not app.exception, app.exception
    text = page_text(app)
    assert "6,426 rows" in text
    assert "Worse than at training on" in text
    preview = app.dataframe[0].value
    assert {"prediction", "proba_0", "proba_1", "model_name", "model_version"} <= set(preview.columns)
    assert len(app.get("download_button")) == 2

    # Scored: the next step opens Monitor on this model and this batch, in the link.
    report = jobs.status(workspace, job_id).result
    monitor_links = {query for label, page, query in links(app) if page == "monitor"}
    assert f"model=kobe&batch={report['run_id']}" in monitor_links

    # Why a row got its prediction: row 4,321 of the scored file, explained as core.explain explains it.
    why = f"score.why.{report['run_id']}"
    assert "Choose a row and see how much each of its values raised or lowered its prediction." in page_text(app)
    app.number_input(key=f"{why}.row").set_value(4321)
    app.button(key=f"{why}.go").click().run()
    assert not app.exception, app.exception
    model, pipeline = scoring.load_model(workspace, "kobe/1")
    output = scoring.output_path(workspace, report["run_id"])
    row, expected = explain.explain_scored_row(output, 4321, model, pipeline, explain.background(workspace, model, pipeline))
    scored_row = pd.read_parquet(output).iloc[4320].to_dict()
    assert scored_row["row_number"] == 4321 and expected.outputs[0] == pytest.approx(scored_row["proba_1"], abs=1e-9)
    text = read(page_text(app))
    assert f"**Row 4,321** was predicted **{int(scored_row['prediction'])}** (probability of 0 {scored_row['proba_0']:.1%}, " \
           f"probability of 1 {scored_row['proba_1']:.1%})." in text
    assert explain.base_line(expected) in text and explain.SHARES_NOTE in text  # logistic regression: shares in probability
    for line in explain.sentences(expected)[:5]:
        assert f"- {line}" in text
    [chart] = [c for c in app.get("plotly_chart") if f"{why}.chart" in c.proto.id]
    bars = json.loads(chart.proto.spec)["data"][0]
    np.testing.assert_allclose(bars["x"][1:-1], expected.row(0).to_numpy(), atol=1e-12)
    assert bars["x"][-1] == pytest.approx(scored_row["proba_1"], abs=1e-9)
    assert bars["y"][1].startswith(f"{expected.row(0).index[0]} = ")
    app.number_input(key=f"{why}.row").set_value(6426).run()  # the chosen row stays until the button is clicked again
    assert "**Row 4,321** was predicted" in read(page_text(app))

    # The same table again: the page says so and offers the earlier result.
    app.session_state["score.job_id"] = None
    app.query_params.pop("job", None)
    app.run()
    assert "This file was already scored with kobe version 1" in page_text(app)
    [b for b in app.button if b.label == "Open that result"][0].click().run()
    assert not app.exception, app.exception
    assert "6,426 rows" in page_text(app)


def test_only_tables_that_fit_the_model_are_offered_and_a_file_without_the_features_is_refused(app, workspace, kobe_ready):
    prod, partial = kobe_ready
    app.switch_page("app_pages/score.py").run()
    app.radio(key="score.source").set_value("table").run()
    assert not app.exception
    assert app.selectbox(key="score.table").options == [f"{prod.name} · 6,426 rows"]  # not the partial table
    assert not app.error  # nothing red before the user chose anything
    lacking = [e for e in app.expander if "cannot be scored by this model" in e.label]
    assert lacking and "lacks minutes\\_remaining, period, playoffs, shot\\_distance" in page_text(app)

    workspace.data_dir.mkdir(parents=True, exist_ok=True)
    (workspace.data_dir / "partial.csv").write_text("lat,lon\n34.0,-118.2\n")
    app.radio(key="score.source").set_value("folder").run()
    app.text_input(key="score.folder").input("partial.csv").run()
    assert not app.exception
    assert any("lacks 4 column(s) the model needs: minutes\\_remaining, period, playoffs, shot\\_distance" in e.value for e in app.error)
    assert not [b for b in app.button if b.label == "Score the file"]


def test_the_page_opens_on_the_model_in_the_link(workspace, kobe_ready, kobe_dev):
    from tests.app_pages.conftest import open_page

    other = train(workspace, TrainingSpec(target="period", task="regression", features=("lat", "lon"), algorithms=("lr",), folds=2),
                  pd.read_parquet(kobe_dev),
                  table_name="kobe dev", table_digest="e" * 64)
    registry.register(workspace, other.models[0].run_id, "aaa-period", alias="champion")  # listed first
    at = open_page("app_pages/score.py", model="kobe")
    assert at.selectbox(key="score.model").value == "kobe"
    assert ("Next: see on the Monitor page whether the files this model scored drift", "monitor",
            "model=kobe") in [(label, page, query) for label, page, query in links(at)]
    assert open_page("app_pages/score.py", model="no-such-model").selectbox(key="score.model").value == "aaa-period"


def test_paths_outside_the_data_folder_are_refused(app, kobe_ready):
    app.switch_page("app_pages/score.py").run()
    app.radio(key="score.source").set_value("folder").run()
    app.text_input(key="score.folder").input("../../etc/passwd").run()
    assert not app.exception
    assert any("is outside the data folder" in e.value for e in app.error)


def test_the_page_says_the_cut_off_before_and_after_scoring_and_the_predictions_follow_it(app, workspace, kobe_ready):
    prod, _ = kobe_ready
    app.switch_page("app_pages/score.py").run()
    assert "Predictions are the likelier class: no cut-off is stored on version 1" in read(page_text(app))
    registry.set_cutoff(workspace, "kobe", 1, 0.3, who="ana")
    app.run()  # the same session: the cut-off is read again, not kept from the first visit
    assert not app.exception, app.exception
    before = [read(i.value) for i in app.info if "Predictions use the cut-off" in read(i.value)]
    assert len(before) == 1 and before[0].startswith("Predictions use the cut-off 0.3 stored on version 1: a row is "
                                                     "predicted shot_made_flag = 1 when its probability of 1 is at least 0.3")
    assert "set by ana on" in before[0]
    app.radio(key="score.source").set_value("table").run()
    app.selectbox(key="score.table").set_value(prod.table_id).run()
    app.button(key="score.start").click().run()
    done = jobs.wait(workspace, app.session_state["score.job_id"], timeout=240)
    assert done.state == "succeeded", done.error
    app.run()
    assert not app.exception, app.exception
    after = read(page_text(app))
    assert "These predictions used the cut-off 0.3 stored on version 1: a row is predicted class 1 when its probability of 1 " \
           "is at least 0.3" in after
    preview = app.dataframe[0].value
    assert (preview["prediction"].astype(float) == (preview["proba_1"] >= 0.3).astype(float)).all()
    scored = pd.read_parquet(scoring.output_path(workspace, done.result["run_id"]))
    assert (scored["prediction"].astype(float) == (scored["proba_1"] >= 0.3).astype(float)).all()
    assert ((scored["proba_1"] < 0.5) & (scored["prediction"] == 1)).any()  # not the likelier class
    assert "The cut-off of version 1" not in after

    # The cut-off moves after the scoring: the result says its predictions were made before.
    registry.set_cutoff(workspace, "kobe", 1, 0.6)
    app.run()
    assert any("The cut-off of version 1 is now 0.6 (class 1): these predictions were made before" in read(w.value)
               for w in app.warning)
