"""Monitor page: nothing to monitor yet; a scored Kobe production batch shows shot_distance
significant with tiles, the PSI chart, the table and per-feature charts; history after two batches;
the address (?model=...&batch=...) opens that model and batch; one online prediction is too few
rows to judge, and its values are shown beside the training data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import drift, registry, scoring
from core.training import TrainingSpec, train
from tests.app_pages.conftest import APP, page_text
from tests.conftest import KOBE_FEATURES, houses


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
    # "flagged" says why, never a bare "yes"; on a stable feature, that the shift is real but small
    flags = dict(zip(table["feature"], table["flagged"]))
    assert set(flags.values()) != {""} and "yes" not in flags.values()
    for feature, reason in flags.items():
        if reason:
            assert reason.startswith(("KS p < 0.05 (", "chi-square p < 0.05 ("))
            assert ("a real but small shift" in reason) == (status[feature] == "stable")
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


@pytest.fixture
def two_models(workspace, tmp_path):
    """One house-price model registered as "alpha" and as "beta"; beta scored two files, alpha one."""
    result = train(workspace, TrainingSpec(target="price", algorithms=("lr",), folds=2), houses(600, 0),
                   table_name="houses", table_digest="h" * 64)
    runs: dict[str, list[str]] = {}
    for name, files in (("alpha", 1), ("beta", 2)):
        registry.register(workspace, result.models[0].run_id, name, alias="champion")
        model, pipeline = scoring.load_model(workspace, f"{name}@champion")
        for k in range(files):
            path = tmp_path / f"{name}-{k}.parquet"
            houses(drift.MIN_ROWS, 10 + k).to_parquet(path)
            runs.setdefault(name, []).append(scoring.score(workspace, model, pipeline, scoring.open_input(workspace, path)).run_id)
    return runs


def test_the_address_opens_that_model_and_batch_and_follows_the_users_choice(app, two_models):
    """The Score page links here with ?model=<name>&batch=<scoring run>: that model and that batch
    open, not the first model and its latest file; a change of selection is written back to the
    address, so a reload keeps it."""
    older, newer = two_models["beta"]
    app.query_params["model"] = "beta"
    app.query_params["batch"] = older
    app.switch_page("app_pages/monitor.py").run()
    assert not app.exception, app.exception
    assert app.selectbox(key="monitor.model").value == "beta"
    assert app.selectbox(key="monitor.batch.beta").value == older
    assert "beta-0.parquet" in app.selectbox(key="monitor.batch.beta").format_func(older)

    app.selectbox(key="monitor.batch.beta").set_value(newer).run()
    assert not app.exception, app.exception
    assert app.query_params == {"model": "beta", "batch": newer}

    reloaded = AppTest.from_file(APP, default_timeout=60)  # a reload: a new session on the same address
    reloaded.query_params = dict(app.query_params)
    reloaded.run()
    reloaded.switch_page("app_pages/monitor.py").run()
    assert not reloaded.exception, reloaded.exception
    assert reloaded.selectbox(key="monitor.model").value == "beta"
    assert reloaded.selectbox(key="monitor.batch.beta").value == newer

    app.selectbox(key="monitor.model").set_value("alpha").run()
    assert not app.exception, app.exception
    assert app.query_params == {"model": "alpha"}  # the batch was beta's: dropped
    assert app.selectbox(key="monitor.batch.alpha").value == two_models["alpha"][0]


def test_unknown_models_and_batches_in_the_address_are_ignored(app, two_models):
    older, newer = two_models["beta"]
    app.query_params.update({"model": "beta", "batch": two_models["alpha"][0]})  # a batch, but alpha's
    app.switch_page("app_pages/monitor.py").run()
    assert not app.exception, app.exception
    assert not app.error
    assert app.selectbox(key="monitor.model").value == "beta"
    assert app.selectbox(key="monitor.batch.beta").value == newer  # beta's latest, as without a batch

    unknown = AppTest.from_file(APP, default_timeout=60)
    unknown.query_params = {"model": "nope", "batch": "0" * 32}
    unknown.run()
    unknown.switch_page("app_pages/monitor.py").run()
    assert not unknown.exception, unknown.exception
    assert not unknown.error
    assert unknown.selectbox(key="monitor.model").value == "alpha"  # the first model, as without an address
    assert unknown.selectbox(key="monitor.batch.alpha").value == two_models["alpha"][0]


def test_one_online_prediction_is_too_few_rows_and_its_values_are_shown(app, workspace):
    from core import predict

    result = train(workspace, TrainingSpec(target="price", algorithms=("lr",), folds=2), houses(600, 0),
                   table_name="houses", table_digest="h" * 64)
    registry.register(workspace, result.models[0].run_id, "prices", alias="champion")
    model, pipeline = scoring.load_model(workspace, "prices@champion")
    from core.monitoring import reference_profile

    fields = predict.form_spec(model, reference_profile(workspace, model.run_id))
    values = {"size": 950.0, "rooms": 3, "area": "south"}
    predict.record_online(workspace, model, values, predict.predict_one(model, pipeline, values, fields))

    app.switch_page("app_pages/monitor.py").run()
    app.radio(key="monitor.source").set_value("online").run()
    assert not app.exception, app.exception
    text = page_text(app)
    assert f"There are too few rows (1) to judge drift; at least {drift.MIN_ROWS} are needed" in text
    assert "Drift: :gray[too few rows]" in text
    assert "Significant drift" not in text and "Moderate drift" not in text
    table = app.dataframe[0].value.set_index("feature")
    assert list(table.columns) == ["in training", "row 1"]
    assert table.loc["size", "row 1"] == "950 · above the training range"
    assert table.loc["area", "row 1"].startswith("south · ")
    assert table.loc["size", "in training"].startswith("median ")
