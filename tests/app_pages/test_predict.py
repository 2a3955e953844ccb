"""Predict page: no model yet; a Kobe prediction from the form, its place in the training data,
the online log that the Monitor page watches; the REST panel when no server runs."""

from __future__ import annotations

import pandas as pd

from core import registry
from core.predict import online_frame
from core.training import TrainingSpec, train
from tests.app_pages.conftest import page_text
from tests.conftest import KOBE_FEATURES
from tests.core.test_model_flavor import log_the_old_way


def test_without_a_model_the_page_says_what_to_do(app):
    app.switch_page("app_pages/predict.py").run()
    assert not app.exception
    assert "No model is registered yet" in page_text(app)


def test_predict_one_shot_and_see_it_on_the_monitor(app, workspace, kobe_dev):
    result = train(workspace, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=3),
                   pd.read_parquet(kobe_dev), table_name="kobe dev", table_digest="d" * 64)
    registry.register(workspace, result.models[0].run_id, "kobe", alias="champion")
    app.switch_page("app_pages/predict.py").run()
    assert not app.exception, app.exception
    assert app.toggle(key="predict.field.kobe.1.playoffs").value is False
    app.number_input(key="predict.field.kobe.1.shot_distance").set_value(90)
    [b for b in app.button if b.label == "Predict"][0].click().run()
    assert not app.exception, app.exception
    text = page_text(app)
    assert "Prediction:" in text
    assert {m.label for m in app.metric} == {"Probability of 0", "Probability of 1"}
    assert any("outside the training range" in w.value for w in app.warning)
    assert len(app.get("plotly_chart")) == len(KOBE_FEATURES)
    assert any("No model server answers" in w.value for w in app.warning)
    assert any("curl -s -X POST" in c.value for c in app.code)
    assert "Version 1 answers each row with the predicted class" in text and "probability of each class" in text
    assert not any("labels only" in i.value for i in app.info)
    logged = online_frame(workspace, "kobe")
    assert len(logged) == 1 and logged["shot_distance"].iloc[0] == 90

    app.switch_page("app_pages/monitor.py").run()
    app.radio(key="monitor.source").set_value("online").run()
    assert not app.exception, app.exception
    assert "1 online predictions" in page_text(app)


def test_a_version_logged_before_probabilities_says_it_answers_with_labels_only(app, workspace, kobe_dev):
    log_the_old_way(workspace, "old", pd.read_parquet(kobe_dev))
    app.switch_page("app_pages/predict.py").run()
    assert not app.exception, app.exception
    said = [i.value for i in app.info if "labels only" in i.value]
    assert len(said) == 1
    assert "logged before the studio added probabilities" in said[0]
    assert "retrain the model on the Train page and register the new version" in said[0]
    [b for b in app.button if b.label == "Predict"][0].click().run()  # the page still predicts with it
    assert not app.exception, app.exception
    assert "Prediction:" in page_text(app)
