"""Predict page: no model yet; a Kobe prediction from the form, its place in the training data,
the online log that the Monitor page watches; the REST panel when no server runs."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from core import explain, monitoring, predict, registry, scoring
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
    assert len(app.get("plotly_chart")) == len(KOBE_FEATURES) + 1  # where each value lies, and why this prediction
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
    # it kept no training rows, so it cannot be explained: said as information, with what to do, not as an error
    assert not app.error and "Why this prediction" in [s.value for s in app.subheader]
    [why] = [i.value for i in app.info if "kept no training rows" in i.value]
    assert "so its predictions cannot be explained" in why and "retrain it on the Train page" in why


def read(markdown: str) -> str:
    """Markdown as a person reads it: the escapes ui.md added removed."""
    return re.sub(r"\\(.)", r"\1", markdown)


def why_chart(app, key: str) -> dict:
    [chart] = [c for c in app.get("plotly_chart") if c.proto.id.endswith(key) or key in c.proto.id]
    return json.loads(chart.proto.spec)["data"][0]


@pytest.mark.parametrize(("algorithm", "explainer"), [("lr", explain.LINEAR), ("lightgbm", explain.TREE)])
def test_why_this_prediction_shows_each_inputs_contribution(app, workspace, kobe_dev, algorithm, explainer):
    features = (*KOBE_FEATURES, "combined_shot_type")
    result = train(workspace, TrainingSpec(target="shot_made_flag", features=features, algorithms=(algorithm,), folds=2),
                   pd.read_parquet(kobe_dev), table_name="kobe dev", table_digest="d" * 64)
    registry.register(workspace, result.models[0].run_id, "kobe", alias="champion")
    app.switch_page("app_pages/predict.py").run()
    app.number_input(key="predict.field.kobe.1.shot_distance").set_value(25)
    app.selectbox(key="predict.field.kobe.1.combined_shot_type").set_value("Dunk")
    [b for b in app.button if b.label == "Predict"][0].click().run()
    assert not app.exception, app.exception
    assert "Why this prediction" in [s.value for s in app.subheader]

    # the same explanation, computed here from the model and the form's values
    model, pipeline = scoring.load_model(workspace, "kobe/1")
    fields = predict.form_spec(model, monitoring.reference_profile(workspace, model.run_id))
    values = {f.name: app.session_state["predict.last"]["values"][f.name] for f in fields}
    assert (values["shot_distance"], values["combined_shot_type"]) == (25, "Dunk")
    expected = predict.explain_one(model, pipeline, values, fields, explain.background(workspace, model, pipeline))
    assert expected.explainer == explainer and expected.output == explain.PROBABILITY
    assert explain.is_shares(expected) == (algorithm == "lr")
    probability = pipeline.predict_proba(pd.DataFrame([values])[list(model.features)])[0, -1]
    assert expected.outputs[0] == pytest.approx(probability, abs=1e-9)
    assert {m.label: m.value for m in app.metric}["Probability of 1"] == f"{probability:.1%}"

    text = read(page_text(app))
    assert explain.base_line(expected) in text
    assert explain.caption(expected) in text
    said = explain.sentences(expected)
    for line in said[:5]:
        assert f"- {line}" in text
    assert "shot_distance = 25 " in text and "combined_shot_type = Dunk " in text
    bars = why_chart(app, "predict.why.kobe.1")
    ordered = expected.row(0)
    assert bars["y"][1:-1] == [f"{c} = {explain._value_text(values[c])}" for c in ordered.index]
    np.testing.assert_allclose(bars["x"][1:-1], ordered.to_numpy(), atol=1e-12)
    assert bars["x"][0] == pytest.approx(expected.base_value, abs=1e-12)
    assert bars["x"][-1] == pytest.approx(probability, abs=1e-9)
    assert bars["x"][0] + sum(bars["x"][1:-1]) == pytest.approx(probability, abs=1e-6)


def test_the_prediction_follows_the_cut_off_stored_now_and_says_why(app, workspace, kobe_dev):
    result = train(workspace, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=2),
                   pd.read_parquet(kobe_dev), table_name="kobe dev", table_digest="d" * 64)
    registry.register(workspace, result.models[0].run_id, "kobe", alias="champion")
    app.switch_page("app_pages/predict.py").run()
    assert "Predictions are the likelier class: no cut-off is stored on version 1" in read(page_text(app))
    [b for b in app.button if b.label == "Predict"][0].click().run()
    assert not app.exception, app.exception
    first = app.session_state["predict.last"]
    p1 = first["probabilities"]["1"]
    assert first["prediction"] == int(p1 > 0.5)
    assert any("the likelier class: no cut-off is stored on version 1" in read(i.value) for i in app.info)

    # A cut-off just on the other side of this shot's probability, stored while the page keeps the model loaded.
    cutoff = round(p1 - 0.01, 4) if p1 < 0.5 else round(p1 + 0.01, 4)
    registry.set_cutoff(workspace, "kobe", 1, cutoff, who="ana")
    app.run()
    assert not app.exception, app.exception
    assert any("has changed since this prediction: press Predict again" in read(i.value) for i in app.info)
    [b for b in app.button if b.label == "Predict"][0].click().run()
    assert not app.exception, app.exception
    second = app.session_state["predict.last"]
    assert second["probabilities"]["1"] == pytest.approx(p1) and second["prediction"] == 1 - first["prediction"]
    assert f"Prediction: {second['prediction']}" in page_text(app)
    side = "at least" if p1 >= cutoff else "below"
    [said] = [read(i.value) for i in app.info if "Predicted shot_made_flag" in read(i.value)]
    assert said.startswith(f"Predicted shot_made_flag = {second['prediction']} because the probability of 1, {p1:.1%}, is {side} "
                           f"the cut-off {cutoff:.6g} stored on version 1.")
    assert "set by ana" in said and "has changed" not in said
    assert "Why this prediction" in [s.value for s in app.subheader]  # the explanation of this one shot
