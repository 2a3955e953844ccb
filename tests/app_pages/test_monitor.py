"""Monitor page: nothing to monitor yet; a scored Kobe production batch shows shot_distance
significant with tiles, the PSI chart, the table and per-feature charts; history after two batches."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core import registry, scoring
from core.training import TrainingSpec, train
from tests.app_pages.conftest import page_text
from tests.conftest import KOBE_FEATURES


def test_nothing_to_monitor_says_what_to_do(app):
    app.switch_page("app_pages/monitor.py").run()
    assert not app.exception
    assert "Nothing to monitor yet" in page_text(app)


@pytest.fixture
def scored(workspace, kobe_dev, kobe_prod):
    result = train(workspace, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=3),
                   pd.read_parquet(kobe_dev), table_name="kobe dev", table_digest="d" * 64)
    registry.register(workspace, result.models[0].run_id, "kobe", alias="champion")
    model, pipeline = scoring.load_model(workspace, "kobe@champion")
    first = scoring.score(workspace, model, pipeline, scoring.open_input(workspace, Path(kobe_prod)))
    return first


def test_a_scored_batch_shows_its_drift(app, workspace, scored, kobe_prod):
    app.switch_page("app_pages/monitor.py").run()
    assert not app.exception, app.exception
    text = page_text(app)
    assert "Drift: :red[significant]" in text
    table = app.dataframe[0].value
    status = dict(zip(table["feature"], table["status"]))
    assert status["shot_distance"] == "significant" and status["playoffs"] == "stable"
    assert table.iloc[0]["feature"] in ("shot_distance", "lat")  # sorted by PSI
    assert len(app.get("plotly_chart")) >= 3  # PSI bars, and the chosen feature's two charts
    metrics = {m.label: m for m in app.metric}
    assert {"Drifted features", "Worst feature", "Prediction drift (PSI)", "F1 on this file"} <= set(metrics)
    assert metrics["F1 on this file"].delta.startswith("-")  # worse than on the training holdout rows
    # In words: which features drifted, and what got worse than at training.
    assert "Significant drift in" in text and "shot\\_distance" in text
    assert "Worse than at training on" in text and "F1" in text
    assert all(p in ("", "< 0.001") or len(p) == 5 for p in table["KS p-value"])  # rounded for people
    from core.tracking import client

    run = client(workspace).get_run(scored.run_id)
    assert run.data.tags["studio.drift_status"] == "significant"
    assert run.data.metrics["drift.psi.shot_distance"] > 0.25

    # a second batch: the history appears
    model, pipeline = scoring.load_model(workspace, "kobe@champion")
    scoring.score(workspace, model, pipeline, scoring.open_input(workspace, Path(kobe_prod)), force=True)
    app.run()
    assert not app.exception, app.exception
    assert any(getattr(c.proto, "spec", "") and "PSI per feature, batch after batch" in c.proto.spec for c in app.get("plotly_chart"))
