"""The stored cut-off changes the predictions of ``core score``, REST and the Predict page's core the
same way (issue 18): a Kobe logistic regression, a cut-off stored on its version, then
``python -m core score`` (a real process on a file), ``python -m core serve`` (a real REST server
answering /invocations) and :func:`core.predict.predict_one` all give the same labels, which are not
the likelier class on a good share of rows; clearing the cut-off takes every route back to it. A
version whose REST loader predates cut-offs says so where it is served, and answers the likelier class."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import datasets, model_flavor, monitoring, predict, registry, scoring, serving
from core.scoring.model import _label, with_current_cutoff
from core.settings import PROJECT_ROOT, load_settings
from core.training import TrainingSpec, train
from tests.conftest import KOBE_FEATURES
from tests.core.test_model_flavor import train_with_the_first_loader
from tests.core.test_serving import serving_process

ROWS = 300


@pytest.fixture(scope="module")
def kobe(tmp_path_factory, kobe_dev, kobe_prod):
    """A workspace with a Kobe logistic regression trained by the studio (``kobe@champion``), one
    trained with the REST loader of before cut-offs (``kobe-v1@champion``), and a file of 300
    production shots to predict (``rows.parquet``, the features only)."""
    ws = tmp_path_factory.mktemp("routes")
    settings = load_settings({"STUDIO_WORKSPACE": str(ws / "ws"), "STUDIO_DATA_DIR": str(ws / "data")})
    frame = datasets.read_parquet(kobe_dev)
    result = train(settings, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=2), frame,
                   table_name="kobe dev", table_digest="c" * 64)
    assert result.models[0].status == "FINISHED", result.models[0].error
    registry.register(settings, result.models[0].run_id, "kobe", alias="champion")
    train_with_the_first_loader(settings, "kobe-v1", frame, ws)
    rows = datasets.read_parquet(kobe_prod)[list(KOBE_FEATURES)].head(ROWS).reset_index(drop=True)
    rows.to_parquet(ws / "rows.parquet")
    return settings, rows, ws / "rows.parquet"


def core_score(settings, model: str, path: Path, out: Path) -> tuple[list[str], dict]:
    """``python -m core score`` as a separate process: the labels of its scored file and its summary."""
    env = {**os.environ, "STUDIO_WORKSPACE": str(settings.workspace), "STUDIO_DATA_DIR": str(settings.data_dir)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "core", "score", "--model", model, "--input", str(path), "--output", str(out),
                           "--force"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [_label(v) for v in datasets.read_parquet(out)["prediction"]], json.loads(done.stdout)


def rest(port: int, rows: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """What the REST server answers for ``rows``: the labels and the probability of class 1."""
    status, text = serving.invoke(serving.url(port), serving.payload(list(rows.columns), rows.to_numpy().tolist()))
    assert status == 200, text
    answered = json.loads(text)["predictions"]
    assert len(answered) == len(rows)
    return [_label(r["prediction"]) for r in answered], np.asarray([r["proba_1"] for r in answered])


def predict_page(settings, cached, rows: pd.DataFrame) -> list[str]:
    """The Predict page's answer for each row: the model it loaded once (as its cache keeps it) with the
    cut-off stored now, one predict_one per row of the form."""
    model, pipeline = cached
    model = with_current_cutoff(settings, model)
    fields = predict.form_spec(model, monitoring.reference_profile(settings, model.run_id))
    return [_label(predict.predict_one(model, pipeline, row, fields).prediction) for row in rows.to_dict(orient="records")]


def test_the_stored_cutoff_changes_score_rest_and_predict_the_same_way(kobe, tmp_path):
    settings, rows, path = kobe
    cached = scoring.load_model(settings, "kobe@champion")  # loaded before the cut-off is stored, as a page's cache
    proba_1 = cached[1].predict_proba(rows)[:, 1]
    likelier = [_label(c) for c in np.where(proba_1 > 0.5, 1.0, 0.0)]
    # a cut-off between two rows' probabilities, a third of the way up: far from every row's own score
    ordered = np.sort(proba_1)
    k = ROWS // 3
    value = float((ordered[k - 1] + ordered[k]) / 2)
    registry.set_cutoff(settings, "kobe", 1, value, positive="1", who="test")
    expected = ["1" if p >= value else "0" for p in proba_1]
    changed = sum(a != b for a, b in zip(expected, likelier, strict=True))
    assert changed >= ROWS // 10, f"the cut-off {value:.4f} changes only {changed} rows"

    scored, summary = core_score(settings, "kobe@champion", path, tmp_path / "at.parquet")
    on_page = predict_page(settings, cached, rows)
    assert summary["cutoff"]["value"] == pytest.approx(value) and summary["cutoff"]["positive"] == "1"
    with serving_process(settings, "kobe") as port:
        answered, rest_proba = rest(port, rows)
        state = serving.read_state(settings)
        log = (settings.workspace / "serve-kobe.log").read_text()
        registry.set_cutoff(settings, "kobe", 1, None, who="test")  # cleared while this server runs
        model, _ = scoring.load_model(settings, "kobe@champion")
        stale = model_flavor.rest_answer(settings, model)
    np.testing.assert_allclose(rest_proba, proba_1, atol=1e-9)  # the probabilities are the model's, unchanged
    assert scored == expected
    assert answered == expected
    assert on_page == expected
    assert state["cutoff"] == {"value": value, "positive": "1"} and state["stored_cutoff"]["value"] == value
    assert f"'prediction' is 1 when the probability of 1 is at least {value:.6g}" in log
    # the running server keeps the cut-off it started with: the Predict page says so and what to do
    assert stale.server_differs and stale.attention and "Restart it" in stale.sentence and stale.cutoff is None

    # cleared: every route is back to the likelier class
    scored, summary = core_score(settings, "kobe@champion", path, tmp_path / "cleared.parquet")
    with serving_process(settings, "kobe") as port:
        answered, _ = rest(port, rows)
        state = serving.read_state(settings)
    assert summary["cutoff"] is None and state["cutoff"] is None
    assert scored == answered == predict_page(settings, cached, rows) == likelier
    assert not model_flavor.rest_answer(settings, model).server_differs  # the state now matches


def test_a_version_whose_rest_loader_predates_cutoffs_says_so_where_it_is_served(kobe, tmp_path):
    """Its REST answer cannot apply the stored cut-off: `core serve` says so plainly (what REST answers,
    what to do), records that it serves the likelier class, and answers it; `core score` uses the cut-off."""
    settings, rows, path = kobe
    _, pipeline = scoring.load_model(settings, "kobe-v1@champion")
    proba_1 = pipeline.predict_proba(rows)[:, 1]
    value = float(np.quantile(proba_1, 0.3))
    registry.set_cutoff(settings, "kobe-v1", 1, value, who="test")
    try:
        scored, _ = core_score(settings, "kobe-v1@champion", path, tmp_path / "v1.parquet")
        with serving_process(settings, "kobe-v1") as port:
            answered, _ = rest(port, rows)
            state = serving.read_state(settings)
            log = (settings.workspace / "serve-kobe-v1.log").read_text()
    finally:
        registry.set_cutoff(settings, "kobe-v1", 1, None, who="test")
    assert scored == ["1" if p >= value else "0" for p in proba_1]
    assert answered == [_label(c) for c in np.where(proba_1 > 0.5, 1.0, 0.0)] != scored
    assert state["cutoff"] is None and state["stored_cutoff"]["value"] == value
    assert "warning: Version 1 has a stored cut-off" in log and "over REST it predicts the likelier class" in log
    assert "retrain the model on the Train page" in log and "--clear" in log
