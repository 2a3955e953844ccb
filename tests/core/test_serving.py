"""core.serving: the REST server (MLflow's scoring server, started by ``python -m core serve``) reads
no request body over its limit: a 35 MB body was read whole before."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from core import serving
from core.errors import BadInputError
from core.settings import PROJECT_ROOT, load_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A workspace with a small scikit-learn model registered as ``tiny@champion`` (no PyCaret: seconds)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    from core import tracking

    settings = load_settings({"STUDIO_WORKSPACE": str(tmp_path_factory.mktemp("serving") / "ws")})
    tracking.use(settings)
    X = pd.DataFrame({"a": np.arange(20, dtype=float), "b": np.arange(20, dtype=float) % 3})
    model = LinearRegression().fit(X, 2 * X["a"] + X["b"])
    experiment = tracking.ensure_experiment(settings, "serving-test")
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(X, model.predict(X)))
    client = tracking.client(settings)
    from core import integrity

    source = client.get_logged_model(info.model_id).artifact_location
    integrity.record(client, info.run_id, source)  # as the studio does when it logs a model
    client.create_registered_model("tiny")
    version = client.create_model_version("tiny", source, info.run_id)
    client.set_registered_model_alias("tiny", "champion", version.version)
    return settings


@contextlib.contextmanager
def serving_process(settings, model: str, extra_env: dict[str, str] | None = None):
    """``python -m core serve --model MODEL`` on a free port of ``settings``' workspace; yields the port."""
    port = free_port()
    env = {**os.environ, "STUDIO_WORKSPACE": str(settings.workspace), **(extra_env or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    log_path = settings.workspace / f"serve-{model}.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen([sys.executable, "-m", "core", "serve", "--model", model, "--port", str(port)],
                               cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = serving.url(port)
    try:
        deadline = time.monotonic() + 120
        while not serving.ping(base):
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the model server did not answer within 120 s"
            time.sleep(0.3)
        yield port
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def server(tiny):
    """``python -m core serve --model tiny`` on a free port, with a 1 MB body limit."""
    with serving_process(tiny, "tiny", {"STUDIO_SERVE_MAX_BODY_MB": "1"}) as port:
        yield port


def test_a_normal_request_is_answered(server):
    status, text = serving.invoke(serving.url(server), serving.payload(["a", "b"], [[1.0, 2.0], [3.0, 0.0]]))
    assert status == 200, text
    np.testing.assert_allclose(json.loads(text)["predictions"], [4.0, 6.0], atol=1e-6)


def test_a_35_mb_body_is_refused_before_it_is_read(server, tiny):
    """Content-Length 35 MB: the 413 comes back while the body is still being sent."""
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    connection.putrequest("POST", "/invocations")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(35 * 1024 * 1024))
    connection.endheaders()
    connection.send(b'{"dataframe_split": {"columns": ["a", "b"], "data": [' + b"[1.0, 2.0], " * 1000)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 413
    assert answer["error_code"] == "REQUEST_TOO_LARGE"
    assert "(36700160 bytes) is over this server's limit of 1,048,576 bytes (1 MB)" in answer["message"]
    assert "STUDIO_SERVE_MAX_BODY_MB" in answer["message"]
    assert serving.read_state(tiny)["max_body_bytes"] == 1024 * 1024
    assert serving.ping(serving.url(server))  # the server goes on


def test_a_chunked_body_over_the_limit_is_refused_too(server):
    """No Content-Length (chunked): refused as soon as the body passes the limit."""
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=30)

    def chunks():
        yield b'{"dataframe_split": {"columns": ["a", "b"], "data": ['
        for _ in range(40):  # 40 x 64 KB = 2.5 MB, over the 1 MB limit
            yield b"[1.0, 2.0], " * 5461
        yield b"[1.0, 2.0]]}}"

    try:
        connection.request("POST", "/invocations", body=chunks(), headers={"Content-Type": "application/json"},
                           encode_chunked=True)
        response = connection.getresponse()
        status, answer = response.status, json.loads(response.read())
    except (BrokenPipeError, ConnectionResetError):  # the server answered and closed while we were still sending
        response = connection.getresponse()
        status, answer = response.status, json.loads(response.read())
    finally:
        connection.close()
    assert status == 413 and answer["error_code"] == "REQUEST_TOO_LARGE"


def test_the_limit_setting_is_checked():
    assert serving.max_body_bytes({}) == 10 * 1024 * 1024
    assert serving.max_body_bytes({"STUDIO_SERVE_MAX_BODY_MB": "0.5"}) == 512 * 1024
    for bad in ("lots", "0", "-3", "99999"):
        with pytest.raises(BadInputError, match=f"STUDIO_SERVE_MAX_BODY_MB must be a number of megabytes .*got '{bad}'"):
            serving.max_body_bytes({"STUDIO_SERVE_MAX_BODY_MB": bad})


def test_the_predict_pages_client_gets_the_413_answer_for_a_35_mb_body(server):
    """serving.invoke (the Predict page's "Send") reads the server's answer even when the server stops
    reading the body: the person sees the limit, not "connection reset"."""
    body = serving.payload(["a", "b"], [[1.0, 2.0]] * (35 * 1024 * 1024 // 12))
    assert len(body) > 35 * 1024 * 1024
    status, text = serving.invoke(serving.url(server), body)
    assert status == 413, text
    assert "over this server's limit of 1,048,576 bytes" in json.loads(text)["message"]


# --- probabilities over REST (issue 17) ----------------------------------------------------------


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory, kobe_dev):
    """A workspace with a Kobe model trained by the studio (``kobe@champion``) and one logged the old
    way, before probabilities reached REST (``old@champion``)."""
    from core import registry
    from core.training import TrainingSpec, train
    from tests.conftest import KOBE_FEATURES
    from tests.core.test_model_flavor import log_the_old_way

    settings = load_settings({"STUDIO_WORKSPACE": str(tmp_path_factory.mktemp("serving-classes") / "ws")})
    frame = pd.read_parquet(kobe_dev)
    result = train(settings, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=2), frame,
                   table_name="kobe dev", table_digest="d" * 64)
    registry.register(settings, result.models[0].run_id, "kobe", alias="champion")
    log_the_old_way(settings, "old", frame)
    return settings


def test_a_classifier_answers_with_its_label_and_class_probabilities(classifiers, kobe_prod):
    from core import scoring
    from tests.conftest import KOBE_FEATURES

    rows = pd.read_parquet(kobe_prod)[list(KOBE_FEATURES)].head(3)
    with serving_process(classifiers, "kobe") as port:
        status, text = serving.invoke(serving.url(port), serving.payload(list(KOBE_FEATURES), rows.to_numpy().tolist()))
        # no rows asked about: none answered (it was a 400 carrying a Python traceback)
        empty_status, empty_text = serving.invoke(serving.url(port), serving.payload(list(KOBE_FEATURES), []))
    assert (empty_status, json.loads(empty_text)) == (200, {"predictions": []}), empty_text
    assert status == 200, text
    answer = json.loads(text)
    assert list(answer) == ["predictions"] and len(answer["predictions"]) == 3  # MLflow's shape for a DataFrame output
    assert all(list(row) == ["prediction", "proba_0", "proba_1"] for row in answer["predictions"])
    model, pipeline = scoring.load_model(classifiers, "kobe@champion")
    proba = pipeline.predict_proba(rows)
    np.testing.assert_allclose([[r["proba_0"], r["proba_1"]] for r in answer["predictions"]], proba)
    assert [r["prediction"] for r in answer["predictions"]] == [model.classes[k] for k in proba.argmax(axis=1)]
    table = serving.answer_table(text)  # the Predict page's "Send" shows one column per key
    assert list(table.columns) == ["prediction", "proba_0", "proba_1"] and len(table) == 3


def test_a_version_logged_before_still_serves_its_labels(classifiers, kobe_prod):
    from tests.conftest import KOBE_FEATURES

    rows = pd.read_parquet(kobe_prod)[list(KOBE_FEATURES)].head(3)
    with serving_process(classifiers, "old") as port:
        status, text = serving.invoke(serving.url(port), serving.payload(list(KOBE_FEATURES), rows.to_numpy().tolist()))
    assert status == 200, text
    predictions = json.loads(text)["predictions"]
    assert len(predictions) == 3 and all(p in (0.0, 1.0) for p in predictions)


def test_a_port_that_cannot_be_served_on_is_refused_before_anything_starts():
    """`core serve` said it was serving, then uvicorn stopped (a port in use: exit 3, which means
    drift; port 99999: a traceback). Both are refused first, as bad input naming the port."""
    import socket

    from core.errors import BadInputError

    with socket.socket() as taken:
        taken.bind((serving.HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BadInputError, match=rf"Port {port} on 127.0.0.1 is already in use.*--port"):
            serving.check_port(port)
    serving.check_port(port)  # free again once its program stopped
    for wrong in (0, 99999):
        with pytest.raises(BadInputError, match="from 1 to 65535"):
            serving.check_port(wrong)


# --- the stored cut-off (issue 18) ----------------------------------------------------------------


def test_serve_hands_the_stored_cutoff_to_the_server_and_it_rules_over_the_shell(classifiers, tmp_path, monkeypatch, capsys):
    """`core serve` reads the version's stored cut-off, passes it to the server process (--cutoff) and
    records it; a STUDIO_CUTOFF left in the shell is not used, and saying so is printed."""
    from core import integrity, registry

    registry.set_cutoff(classifiers, "kobe", 1, 0.4, who="test")
    try:
        command, facts = serving.serve_command(classifiers, "kobe", port=free_port())
    finally:
        registry.set_cutoff(classifiers, "kobe", 1, None, who="test")
    given = command[command.index("--cutoff") + 1]
    assert json.loads(given) == {"value": 0.4, "positive": "1"} == facts["cutoff"]
    assert facts["stored_cutoff"]["by"] == "test"
    cleared, facts = serving.serve_command(classifiers, "kobe", port=free_port())
    assert cleared[cleared.index("--cutoff") + 1] == "" and facts["cutoff"] is None and facts["stored_cutoff"] is None

    folder = str(integrity.verified_copy(classifiers, "kobe", 1, tmp_path / "model"))
    monkeypatch.setenv("STUDIO_CUTOFF", "0.9")
    serving._apply_cutoff(given, folder, "kobe", 1)
    err = capsys.readouterr().err
    assert os.environ["STUDIO_CUTOFF"] == given
    assert "STUDIO_CUTOFF set in this shell ('0.9') is not used" in err
    assert "kobe version 1: 'prediction' is 1 when the probability of 1 is at least 0.4" in err
    serving._apply_cutoff("", folder, "kobe", 1)  # none stored: the likelier class, whatever the shell had
    assert "STUDIO_CUTOFF" not in os.environ and "'prediction' is the likelier class" in capsys.readouterr().err
    monkeypatch.setenv("STUDIO_CUTOFF", "0.9")
    serving._apply_cutoff(None, folder, "kobe", 1)  # python -m core.serving started by hand: the shell's is used
    assert os.environ["STUDIO_CUTOFF"] == "0.9"
    serving._apply_cutoff("0.3", folder, "kobe", 1)  # --cutoff typed by hand as a bare number
    assert os.environ["STUDIO_CUTOFF"] == "0.3" and "'prediction' is the last class when" in capsys.readouterr().err
    with pytest.raises(BadInputError, match=r"--cutoff 'lots' is not a cut-off"):
        serving._apply_cutoff("lots", folder, "kobe", 1)
