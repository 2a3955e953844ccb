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

    # The status rules, the performance rule among them, are saved together (none falls back to its default).
    inputs = {n.label: n for n in app.number_input}
    inputs["Significant from PSI"].set_value(0.3)
    inputs["Performance may fall by"].set_value(0.1)
    next(b for b in app.button if b.label == "Save").click().run()
    assert not app.exception, app.exception
    saved = drift.Thresholds.load(workspace.monitoring_file)
    assert (saved.psi_significant, saved.performance_drop, saved.psi_moderate) == (0.3, 0.1, 0.1)
    inputs = {n.label: n for n in app.number_input}
    inputs["Moderate from PSI"].set_value(0.2)
    next(b for b in app.button if b.label == "Save").click().run()
    saved = drift.Thresholds.load(workspace.monitoring_file)
    assert (saved.psi_moderate, saved.psi_significant, saved.performance_drop) == (0.2, 0.3, 0.1)


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


# --- model health: outcomes added later, the estimate, the health check, the timeline --------------


@pytest.fixture
def unlabelled(workspace, kobe_dev, kobe_prod, tmp_path):
    """A Kobe champion (2-point shots) that scored the 3-point shots without their outcome; the
    outcomes file (shot_id, shot_made_flag) of the shots that have one, as they arrive later."""
    result = train(workspace, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=3),
                   pd.read_parquet(kobe_dev), table_name="kobe dev", table_digest="d" * 64)
    registry.register(workspace, result.models[0].run_id, "kobe", alias="champion")
    production = pd.read_parquet(kobe_prod).reset_index(drop=True)  # index k: the row at position k + 1
    shots = tmp_path / "shots.parquet"
    production.drop(columns="shot_made_flag").to_parquet(shots)
    model, pipeline = scoring.load_model(workspace, "kobe@champion")
    run_id = scoring.score(workspace, model, pipeline, scoring.open_input(workspace, shots)).run_id
    outcomes = production.loc[production["shot_made_flag"].notna(), ["shot_id", "shot_made_flag"]]
    return run_id, outcomes, len(production)


def open_batch(run_id: str) -> AppTest:
    from tests.app_pages.conftest import open_page

    return open_page("app_pages/monitor.py", model="kobe", batch=run_id)


def upload(at: AppTest, run_id: str, name: str, frame: pd.DataFrame) -> None:
    uploader = next(u for u in at.get("file_uploader") if u.proto.id and f"monitor.labels.upload.{run_id}" in (u.key or ""))
    uploader.set_value((name, frame.to_csv(index=False).encode(), "text/csv")).run()
    assert not at.exception, at.exception


def performance_table(at: AppTest) -> pd.DataFrame:
    """The performance tables as one (the measures of the predicted classes, then those of the probabilities)."""
    return pd.concat([d.value for d in at.dataframe if "estimated" in getattr(d.value, "columns", [])], ignore_index=True)


def test_outcomes_added_later_appear_beside_the_estimate_and_concept_drift_is_said(unlabelled, workspace):
    from core import estimation, labels, monitoring
    from core.tracking import client

    run_id, outcomes, rows = unlabelled
    at = open_batch(run_id)
    batch = next(b for b in monitoring.batches(workspace, "kobe") if b.run_id == run_id)
    assert set(batch.estimated) >= {"f1", "auc", "accuracy"}  # every scoring estimates
    table = performance_table(at).set_index("measure")
    assert "realized" not in table.columns
    low, high = batch.estimated["auc"] - batch.bands["auc"], min(1.0, batch.estimated["auc"] + batch.bands["auc"])
    assert table.loc["AUC", "estimated"] == f"{batch.estimated['auc']:.3f} ({low:.3f} to {high:.3f})"
    assert estimation.ASSUMPTION in page_text(at)
    tile = next(m for m in at.metric if m.label == "Estimated F1")
    assert tile.value == f"{batch.estimated['f1']:.3f}" and tile.delta.startswith("range 0.")

    # The outcomes arrive: shot_id is suggested as the key, shot_made_flag as the outcome.
    upload(at, run_id, "outcomes.csv", outcomes)
    assert at.selectbox(key=next(s.key for s in at.selectbox if s.key.startswith("monitor.labels.key."))).value == "shot_id"
    assert next(s for s in at.selectbox if s.key.startswith("monitor.labels.target.")).value == "shot_made_flag"
    tiles = {m.label: m.value for m in at.metric}
    assert tiles["Rows matched"] == f"{len(outcomes):,} of {rows:,}"
    assert tiles["Rows without an outcome"] == f"{rows - len(outcomes):,}"
    assert "studio.labels" not in client(workspace).get_run(run_id).data.tags  # only planned so far
    [b for b in at.button if b.label == "Attach the outcomes"][0].click().run()
    assert not at.exception, at.exception
    assert f"Attached the outcomes of {len(outcomes):,} rows" in page_text(at)

    # Realized beside estimated, on the same rows; the disagreement is concept drift (2-point -> 3-point shots).
    run = client(workspace).get_run(run_id)
    assert run.data.tags["studio.labels"] == "attached"
    report = labels.stored_report(workspace, run_id)
    estimate = estimation.Estimate.from_dict(report["estimate"])
    realized = {k: v for k, v in run.data.metrics.items() if k in ("f1", "auc", "accuracy", "precision", "recall")}
    table = performance_table(at).set_index("measure")
    assert table.loc["F1", "realized"] == f"{realized['f1']:.3f}"
    apart = estimate.disagreements(realized)
    assert apart, "the 3-point shots' outcomes should disagree with the estimate made from the 2-point shots"
    for key in ("f1", "auc", "accuracy"):
        from core import metrics

        assert table.loc[metrics.label(key), "agree?"].startswith("no" if key in apart else "yes")
    warning = next(w.value for w in at.warning if "concept drift" in w.value)
    assert all(metrics.label(k) in warning for k in apart)
    assert f"attached to {len(outcomes):,} of the {rows:,} rows" in page_text(at)

    # The same file again: said, and offered to replace.
    upload(at, run_id, "outcomes.csv", outcomes)
    assert any("were already attached to this batch" in w.value for w in at.warning)
    assert not [b for b in at.button if b.label == "Attach the outcomes"]
    [b for b in at.button if b.label == "Replace the outcomes"][0].click().run()
    assert not at.exception, at.exception
    assert "(the earlier ones were replaced)" in page_text(at)


def test_bad_outcomes_files_are_refused_with_a_message_and_nothing_is_attached(unlabelled, workspace):
    from core.tracking import client

    run_id, outcomes, _ = unlabelled
    at = open_batch(run_id)
    twice = pd.concat([outcomes, outcomes.head(3)])
    unseen = outcomes.assign(shot_made_flag=2.0)
    strangers = outcomes.assign(shot_id=outcomes["shot_id"] + 10_000_000)
    for name, frame, says in (("twice.csv", twice, "more than once"), ("unseen.csv", unseen, "2"),
                              ("strangers.csv", strangers, "not in")):
        upload(at, run_id, name, frame)
        key = at.selectbox(key=next(s.key for s in at.selectbox if s.key.startswith("monitor.labels.key.")))
        if key.value is None:  # the key could not be suggested (the page says why): choose shot_id as a user would
            assert at.info[-1].value
            key.select("shot_id").run()
        errors = [e.value for e in at.error if "drift" not in e.value]
        assert errors, f"{name}: no error shown"
        assert says in errors[-1] and "Unexpected error" not in errors[-1], errors[-1]
        assert not [b for b in at.button if b.label in ("Attach the outcomes", "Replace the outcomes")]
        assert "Nothing was attached." in page_text(at)
    empty = pd.DataFrame(columns=["shot_id", "shot_made_flag"])
    upload(at, run_id, "empty.csv", empty)
    assert [e.value for e in at.error if "drift" not in e.value and "Unexpected" not in e.value]
    run = client(workspace).get_run(run_id)
    assert "studio.labels" not in run.data.tags
    assert "f1" not in run.data.metrics and "auc" not in run.data.metrics

    # A file without any id: keyed by row_number, the row's position in the scored file.
    by_position = outcomes.assign(row_number=outcomes.index + 1)[["row_number", "shot_made_flag"]]
    upload(at, run_id, "by-position.csv", by_position)
    key = at.selectbox(key=next(s.key for s in at.selectbox if s.key.startswith("monitor.labels.key.")))
    assert key.value == "row_number" and "position in the scored file" in key.format_func("row_number")
    assert {m.label: m.value for m in at.metric}["Rows matched"].startswith(f"{len(outcomes):,} of")
    assert [b for b in at.button if b.label == "Attach the outcomes"]


def numbers(values) -> list[float]:
    """A plotly array as sent to the browser: a list, or base64 bytes with their dtype."""
    import base64

    import numpy as np

    if isinstance(values, dict):
        return list(np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]))
    return list(values)


def test_a_broken_rule_proposes_the_champions_retraining_and_the_timeline_shows_the_batches(unlabelled, workspace):
    import json

    from core import monitoring

    run_id, _, _ = unlabelled
    at = open_batch(run_id)
    text = page_text(at)
    assert "A rule breaks: significant drift" in text and "shot\\_distance" in text
    assert "Proposal: retrain the champion to a challenger" in text
    assert "Logistic regression" in text and "max\\_iter = 1000" in text and "6 features" in text
    assert [b for b in at.button if b.label == "Start the retraining"]
    code = "\n".join(c.value for c in at.code)
    assert ".venv/bin/python -m core monitor --model kobe@champion" in code
    assert "retrain --model kobe@champion --data training+labelled" in code
    assert "0 6 * * 1" in code and "case $? in 3|4)" in code

    frame = monitoring.timeline(workspace, "kobe")
    chart = next(c for c in at.get("plotly_chart") if "Drift: PSI of the most drifted feature" in c.proto.spec)
    figure = json.loads(chart.proto.spec)
    psi = next(t for t in figure["data"] if t["name"] == "worst PSI")
    batches = frame[frame["kind"] == "batch"]
    assert numbers(psi["y"]) == pytest.approx(list(batches["worst_psi"]))
    assert all("<br>scored by version 1<br>" in h for h in psi["hovertext"])
    estimated = next(t for t in figure["data"] if t["name"].startswith("estimated"))
    assert numbers(estimated["y"]) == pytest.approx(list(batches["estimated"]))
    assert "champion → v1" in [a["text"] for a in figure["layout"]["annotations"]]


def test_a_version_without_an_estimator_says_estimates_need_a_retrained_version(app, workspace, tmp_path):
    import shutil
    from urllib.parse import unquote, urlsplit

    from core import estimation
    from core.tracking import client

    result = train(workspace, TrainingSpec(target="price", algorithms=("lr",), folds=2), houses(600, 0),
                   table_name="houses", table_digest="h" * 64)
    run_id = result.models[0].run_id
    # as a version trained before estimators existed: no estimator folder, no hashes
    client(workspace).delete_tag(run_id, estimation.MANIFEST_TAG)
    shutil.rmtree(Path(unquote(urlsplit(client(workspace).get_run(run_id).info.artifact_uri).path)) / estimation.FOLDER)
    registry.register(workspace, run_id, "prices", alias="champion")
    path = tmp_path / "houses.parquet"
    houses(drift.MIN_ROWS, 3).drop(columns="price").to_parquet(path)
    model, pipeline = scoring.load_model(workspace, "prices@champion")
    scoring.score(workspace, model, pipeline, scoring.open_input(workspace, path))
    app.switch_page("app_pages/monitor.py").run()
    assert not app.exception, app.exception
    assert estimation.UNAVAILABLE in [i.value for i in app.info]
    assert not [d for d in app.dataframe if "estimated" in getattr(d.value, "columns", [])]


def test_a_labelled_batch_shows_gain_and_lift_and_its_measures_apart(unlabelled, workspace, tmp_path):
    """Outcomes attached: below the realized measures, cumulative gain and lift per decile of the
    labelled rows with their help; the measures of the predicted classes are labelled with the cut-off
    the batch was scored with (none here: the likelier class), apart from AUC and log loss."""
    import json

    from core import decisions, labels

    run_id, outcomes, _ = unlabelled
    at = open_batch(run_id)
    assert "How much better than picking rows at random, on this file?" not in page_text(at)  # no outcomes yet
    path = tmp_path / "outcomes.csv"
    outcomes.to_csv(path, index=False)
    labels.attach(workspace, labels.plan(workspace, run_id, path, key="shot_id"))

    at = open_batch(run_id)
    text = page_text(at)
    assert "How much better than picking rows at random, on this file?" in text
    assert decisions.GAIN_HELP in text and decisions.LIFT_HELP in text
    assert f"{len(outcomes):,} labelled rows of" in text
    charts = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    gain = next(f for f in charts.values() if str(f["layout"]["title"]["text"]).startswith("Cumulative gain (labelled rows"))
    lift = next(f for f in charts.values() if str(f["layout"]["title"]["text"]).startswith("Lift per decile (labelled rows"))
    expected = labels.batch_decisions(workspace, run_id).lift["lift"].to_numpy()
    assert numbers(lift["data"][0]["y"]) == pytest.approx(list(expected))
    assert numbers(gain["data"][-1]["y"])[-1] == pytest.approx(1.0)
    # apart: the predicted classes' measures at the likelier class, the probabilities' on their own
    assert "Measures of the predicted classes, at the likelier class" in text
    assert "Measures of the probabilities themselves, the same at any cut-off" in text
    tables = [d.value for d in at.dataframe if "realized" in getattr(d.value, "columns", [])]
    assert len(tables) == 2
    assert {"F1", "accuracy", "precision", "recall"} <= set(tables[0]["measure"]) and "AUC" not in set(tables[0]["measure"])
    assert {"AUC", "log loss"} <= set(tables[1]["measure"]) and "F1" not in set(tables[1]["measure"])

    # scored at a stored cut-off (the tag scoring writes on the batch's run): said beside those measures
    from core.tracking import client

    client(workspace).set_tag(run_id, "studio.cutoff", json.dumps({"value": 0.35, "positive": "1", "by": "ana", "at": ""}))
    text = page_text(open_batch(run_id)).replace("\\", "")  # as people read it, without markdown's escapes
    assert ("Measures of the predicted classes, at the cut-off this batch was scored with: 0.35 (a row is predicted "
            "shot_made_flag = 1 when its probability of 1 is at least 0.35)") in text


def test_a_cut_off_that_cannot_be_read_is_said_and_a_readable_one_is_drawn_on_the_threshold_chart(unlabelled, workspace,
                                                                                                   tmp_path):
    """The batch's rule is never guessed: a ``studio.cutoff`` tag that cannot be read is an error beside
    the measures of the predicted classes, not "scored without a stored cut-off"; a readable one is the
    line on the batch's threshold chart."""
    import json

    from core import labels
    from core.tracking import client

    run_id, outcomes, _ = unlabelled
    path = tmp_path / "outcomes.csv"
    outcomes.to_csv(path, index=False)
    labels.attach(workspace, labels.plan(workspace, run_id, path, key="shot_id"))
    client(workspace).set_tag(run_id, "studio.cutoff", "{not json")
    at = open_batch(run_id)
    assert not at.exception, at.exception
    text = page_text(at).replace("\\", "")
    assert "Measures of the predicted classes, by the rule this batch was scored with, which could not be read" in text
    assert "scored without a stored cut-off" not in text
    assert any("The cut-off this batch was scored with cannot be read" in e.value for e in at.error)

    client(workspace).set_tag(run_id, "studio.cutoff", json.dumps({"value": 0.35, "positive": "1", "by": "ana", "at": ""}))
    at = open_batch(run_id)
    assert not at.exception, at.exception
    assert "at the cut-off this batch was scored with: 0.35" in page_text(at).replace("\\", "")
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    threshold = next(f for f in charts if "shapes" in f["layout"] and any(s.get("x0") == 0.35 for s in f["layout"]["shapes"]))
    assert any("stored 0.35" in str(a.get("text")) for a in threshold["layout"].get("annotations", []))
