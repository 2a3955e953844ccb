"""core.predict and core.serving: the form from signature and profile, one prediction, the online
log, and the real `mlflow models serve` answering like the in-process model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from core import monitoring, predict, registry, scoring, serving
from core.settings import PROJECT_ROOT, load_settings
from core.training import TrainingSpec, train
from tests.conftest import KOBE_FEATURES


@pytest.fixture(scope="module")
def kobe(tmp_path_factory, kobe_dev):
    settings = load_settings({"STUDIO_WORKSPACE": str(tmp_path_factory.mktemp("predict") / "ws")})
    frame = pd.read_parquet(kobe_dev)
    result = train(settings, TrainingSpec(target="shot_made_flag", features=(*KOBE_FEATURES, "combined_shot_type"), algorithms=("lr",), folds=3),
                   frame, table_name="kobe dev", table_digest="d" * 64)
    registry.register(settings, result.models[0].run_id, "kobe", alias="champion")
    model, pipeline = scoring.load_model(settings, "kobe@champion")
    return settings, model, pipeline, monitoring.reference_profile(settings, model.run_id)


def test_form_from_signature_and_profile(kobe):
    _, model, _, profile = kobe
    fields = {f.name: f for f in predict.form_spec(model, profile)}
    assert fields["playoffs"].kind == "toggle"
    assert fields["shot_distance"].kind == "integer" and fields["shot_distance"].low == 0 and fields["shot_distance"].high > 40
    assert fields["lat"].kind == "number" and fields["lat"].low < fields["lat"].default < fields["lat"].high
    assert fields["combined_shot_type"].kind == "category" and "Dunk" in fields["combined_shot_type"].choices
    assert "In training" in fields["lat"].hint


def test_one_prediction_with_probabilities_and_range_warnings(kobe):
    settings, model, pipeline, profile = kobe
    fields = predict.form_spec(model, profile)
    values = {f.name: f.default for f in fields} | {"shot_distance": 2, "combined_shot_type": "Dunk"}
    result = predict.predict_one(model, pipeline, values, fields)
    assert set(result.probabilities) == {"0", "1"} and sum(result.probabilities.values()) == pytest.approx(1)
    assert result.probabilities["1"] > 0.5 and result.prediction == 1 and result.outside == []
    far = predict.predict_one(model, pipeline, values | {"shot_distance": 300}, fields)
    assert far.outside and "outside the training range" in far.outside[0]
    X = pd.DataFrame([values])[list(model.features)]
    np.testing.assert_allclose(pipeline.predict_proba(X)[0, 1], result.probabilities["1"])


def test_online_predictions_are_kept_and_monitored(kobe):
    settings, model, pipeline, profile = kobe
    fields = predict.form_spec(model, profile)
    for distance in (1, 2, 25, 26, 27):
        values = {f.name: f.default for f in fields} | {"shot_distance": distance}
        predict.record_online(settings, model, values, predict.predict_one(model, pipeline, values, fields))
    frame = predict.online_frame(settings, "kobe")
    assert len(frame) == 5 and set(frame["model_version"]) == {1}
    assert {"prediction", "proba_0", "proba_1", "predicted_at"} <= set(frame.columns)
    report = monitoring.file_drift(settings, "kobe/1", frame)
    assert {f.feature for f in report.features} == {*KOBE_FEATURES, "combined_shot_type"}
    assert report.prediction is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_rest_server_answers_like_the_model_in_process(kobe, kobe_prod):
    settings, model, pipeline, _ = kobe
    port = free_port()
    env = {**os.environ, "STUDIO_WORKSPACE": str(settings.workspace)}
    env.pop("MLFLOW_TRACKING_URI", None)
    process = subprocess.Popen([sys.executable, "-m", "core", "serve", "--model", "kobe", "--port", str(port)],
                               cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = serving.url(port)
        deadline = time.monotonic() + 120
        while not serving.ping(base):
            assert process.poll() is None, "the model server exited"
            assert time.monotonic() < deadline, "the model server did not answer within 120 s"
            time.sleep(0.5)
        assert serving.read_state(settings)["version"] == 1
        rows = pd.read_parquet(kobe_prod)[list(model.features)].head(25)
        status, text = serving.invoke(base, rows.to_json(orient="split", index=False).join(['{"dataframe_split": ', "}"]))
        assert status == 200, text
        import json

        answer = json.loads(text)["predictions"]  # the label and each class's probability (issue 17)
        assert [list(r) for r in answer] == [["prediction", "proba_0", "proba_1"]] * 25
        served = np.asarray([r["prediction"] for r in answer], dtype=float)
        np.testing.assert_array_equal(served, np.asarray(pipeline.predict(rows), dtype=float))
        np.testing.assert_allclose([[r["proba_0"], r["proba_1"]] for r in answer], pipeline.predict_proba(rows))
        table = serving.answer_table(text)  # what the Predict page shows instead of the raw JSON
        assert len(table) == 25 and table["prediction"].astype(float).tolist() == served.tolist()
        status, text = serving.invoke(base, "{bad json")
        assert status == 400 and "BAD_REQUEST" in text
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def test_a_server_that_is_down(kobe):
    base = serving.url(free_port())
    assert serving.ping(base) is False
    status, reason = serving.invoke(base, "{}")
    assert status == 0 and reason
    assert "curl -s -X POST" in serving.curl_example(base, ["a"], [1]) and "dataframe_split" in serving.curl_example(base, ["a"], [1])


def test_a_model_without_signature_is_a_clear_message(kobe):
    _, model, _, _ = kobe
    from dataclasses import replace

    from core.errors import BadInputError

    with pytest.raises(BadInputError, match="has no signature"):
        predict.form_spec(replace(model, features=()), None)
