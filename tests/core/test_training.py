"""core.training: checks before any run, then PyCaret -> MLflow with everything logged."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

from core import catalog
from core.errors import BadInputError
from core.settings import load_settings
from core.training import EXPERIMENT, TrainingSpec, default_features, infer_task, prepare, train
from tests.conftest import KOBE_FEATURES


def regression_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"size": rng.uniform(20, 200, n), "rooms": rng.integers(1, 7, n),
                          "area": rng.choice(["north", "south", "centre"], n), "listing_id": np.arange(n)})
    frame["price"] = 1500 * frame["size"] + 8000 * frame["rooms"] + frame["area"].map({"north": 0, "south": 20000, "centre": 60000}) + rng.normal(0, 10000, n)
    return frame


def classification_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "colour": rng.choice(["red", "blue"], n)})
    frame["label"] = np.where(frame["x1"] + 0.5 * (frame["colour"] == "red") + rng.normal(0, 0.5, n) > 0, "yes", "no")
    return frame


# --- prepare: bad input stops before any run -------------------------------------------------


def test_kobe_prepare_drops_missing_targets_and_splits(kobe_dev):
    frame = pd.read_parquet(kobe_dev)
    prepared = prepare(frame, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES))
    assert prepared.task == "classification" and prepared.classes == (0.0, 1.0)
    assert prepared.rows_dropped == 3986
    assert len(prepared.train) + len(prepared.test) == 20285
    assert len(prepared.test) == 4057
    assert prepared.train["shot_made_flag"].mean() == pytest.approx(prepared.test["shot_made_flag"].mean(), abs=0.002)  # stratified
    assert "3,986 rows without a value" in prepared.notes[0]


def test_default_features_leave_out_ids_constants_dates_with_reasons(kobe_dev):
    features, excluded = default_features(pd.read_parquet(kobe_dev), "shot_made_flag")
    assert "shot_distance" in features and "combined_shot_type" in features
    assert "identifier" in excluded["shot_id"]
    assert "same value in every row" in excluded["team_name"]
    assert "same value in every row" in excluded["shot_type"]
    assert "dates" in excluded["game_date"]


@pytest.mark.parametrize(
    ("values", "task"),
    [([0.0, 1.0, np.nan] * 10, "classification"), (["a", "b", "c"] * 10, "classification"),
     (list(range(5)) * 6, "classification"), (list(np.linspace(0, 1, 30)), "regression")],
)
def test_infer_task(values, task):
    assert infer_task(pd.Series(values)) == task


@pytest.mark.parametrize(
    ("frame", "spec", "message"),
    [
        (pd.DataFrame({"x": range(10), "y": [1] * 10}), TrainingSpec(target="y"), r"only one class \(1\)"),
        (pd.DataFrame({"x": range(12), "y": ["a"] * 11 + ["b"]}), TrainingSpec(target="y"), r"class b has a single row"),
        (pd.DataFrame({"x": range(50), "y": list(range(1000, 1050))}), TrainingSpec(target="y"), r"looks like an identifier"),
        (pd.DataFrame({"x": range(10), "y": [np.nan] * 10}), TrainingSpec(target="y"), r"missing in every row"),
        (pd.DataFrame({"x": range(8), "y": [0, 1] * 4}), TrainingSpec(target="y", folds=5), r"too few for 5-fold cross-validation"),
        (pd.DataFrame({"x": range(10), "y": [0, 1] * 5}), TrainingSpec(target="z"), r"'z' is not in the table"),
        (pd.DataFrame({"x": [i % 7 for i in range(40)], "y": [0, 1] * 20}), TrainingSpec(target="y", params={"dt": {"max_depth": 99}}), r"dt\.max_depth = 99 is out of range"),
        (pd.DataFrame({"x": [i % 7 for i in range(40)], "y": [0, 1] * 20}), TrainingSpec(target="y", params={"dt": {"max_depth": "deep"}}), r"must be an integer"),
        (pd.DataFrame({"x": [i % 7 for i in range(40)], "y": [0, 1] * 20}), TrainingSpec(target="y", algorithms=("lr",), params={"rf": {}}), r"not among the chosen"),
        (pd.DataFrame({"x": [i % 7 for i in range(40)], "y": [0, 1] * 20}), TrainingSpec(target="y", features=("y",)), r"cannot also be a feature"),
        (pd.DataFrame({"c": ["k"] * 40, "y": [0, 1] * 20}), TrainingSpec(target="y"), r"No usable feature"),
        (pd.DataFrame({"x": [i % 7 for i in range(40)], "y": ["a", "b"] * 20}), TrainingSpec(target="y", task="regression"), r"Regression needs a numeric target"),
        (pd.DataFrame({"x": [i % 7 for i in range(40)], "y": [0, 1] * 20}), TrainingSpec(target="y", test_size=0.9), r"between 5% and 50%"),
    ],
)
def test_bad_input_is_refused_with_what_to_change(frame, spec, message):
    with pytest.raises(BadInputError, match=message):
        prepare(frame, spec)


def test_free_text_and_datetime_columns_are_left_out_and_said_so():
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({
        "x": rng.normal(size=n),
        "comment": [f"free comment number {i} on this shot" for i in range(n)],
        "when": pd.date_range("2020-01-01", periods=n, freq="h").astype(str),
        "y": rng.integers(0, 2, n),
    })
    prepared = prepare(frame, TrainingSpec(target="y", features=("x", "comment", "when")))
    assert prepared.features == ("x",)
    assert "free text" in prepared.excluded["comment"] and "dates" in prepared.excluded["when"]
    assert any("'comment' was left out" in n for n in prepared.notes)


def test_no_run_starts_on_bad_input(workspace):
    frame = pd.DataFrame({"x": range(10), "y": [1] * 10})
    with pytest.raises(BadInputError):
        train(workspace, TrainingSpec(target="y"), frame, table_name="t", table_digest="d" * 64)
    assert not workspace.mlflow_db.exists()  # not even the store was opened


# --- a real training job on the Kobe data ------------------------------------------------------


@pytest.fixture(scope="module")
def kobe_job(tmp_path_factory, kobe_dev):
    ws = tmp_path_factory.mktemp("kobe-train")
    settings = load_settings({"STUDIO_WORKSPACE": str(ws)})
    frame = pd.read_parquet(kobe_dev)
    spec = TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr", "dt"))
    steps = []
    result = train(settings, spec, frame, table_name="kobe dev", table_digest="f" * 64,
                   progress=lambda step, model, done, total: steps.append((step, model, done, total)))
    return settings, result, steps


def test_kobe_models_beat_the_base_rate(kobe_job):
    _, result, _ = kobe_job
    by_key = {m.algorithm: m for m in result.models}
    for key in ("lr", "dt"):
        assert by_key[key].status == "FINISHED"
        assert by_key[key].metrics["log_loss"] < 0.69, key
        assert by_key[key].metrics["f1"] >= 0.40, key


def test_progress_names_each_model_and_step(kobe_job):
    _, _, steps = kobe_job
    assert steps[0][0] == "Starting" and steps[-1][0] == "Finishing"
    assert ("Cross-validating", "lr", 0, 2) in steps and ("Cross-validating", "dt", 1, 2) in steps


def test_parent_run_holds_the_data_preparation_facts(kobe_job):
    settings, result, _ = kobe_job
    from core.tracking import client

    parent = client(settings).get_run(result.parent_run_id)
    p = parent.data.params
    assert parent.info.status == "FINISHED"
    assert p["table_name"] == "kobe dev" and p["table_digest"] == "f" * 64
    assert p["target"] == "shot_made_flag" and json.loads(p["features"]) == list(KOBE_FEATURES)
    assert (p["test_size"], p["train_rows"], p["test_rows"], p["seed"], p["rows_dropped"]) == ("0.2", "16228", "4057", "42", "3986")
    assert parent.info.experiment_id == client(settings).get_experiment_by_name(EXPERIMENT).experiment_id


def test_child_runs_log_params_metrics_artifacts_and_lineage(kobe_job):
    settings, result, _ = kobe_job
    from core.tracking import client

    c = client(settings)
    for model in result.models:
        run = c.get_run(model.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        params = run.data.params
        assert params["algorithm"] == model.algorithm
        if model.algorithm == "dt":
            assert params["hp.max_depth"] == "6" and params["hp.min_samples_leaf"] == "20"
        if model.algorithm == "lr":
            assert params["hp.C"] == "1.0" and params["hp.max_iter"] == "1000"
        for name in ("log_loss", "f1", "auc", "accuracy", "precision", "recall"):
            assert 0 < run.data.metrics[name] < 1, name
            assert run.data.metrics[name] == pytest.approx(model.metrics[name])
        for name in ("accuracy", "auc", "f1", "precision", "recall"):
            assert f"cv_{name}_mean" in run.data.metrics and f"cv_{name}_std" in run.data.metrics
        artifacts = {a.path for a in c.list_artifacts(model.run_id)} | {a.path for a in c.list_artifacts(model.run_id, "plots")} \
            | {a.path for a in c.list_artifacts(model.run_id, "reference")}
        for path in ("plots/roc.json", "plots/precision_recall.json", "plots/confusion_matrix.json", "plots/importance.json",
                     "reference/train.parquet", "reference/holdout_scores.parquet", "model_info.json"):
            assert path in artifacts, path
        local = Path(urlparse(run.info.artifact_uri).path)
        assert local.is_relative_to(settings.artifacts_dir)
        reference = pd.read_parquet(local / "reference" / "train.parquet")
        assert list(reference.columns) == [*KOBE_FEATURES, "shot_made_flag"] and len(reference) == 16228
        inputs = run.inputs.dataset_inputs
        assert inputs and inputs[0].dataset.name == "training table" and inputs[0].dataset.digest == "f" * 36


def test_logged_model_loads_with_pyfunc_and_predicts(kobe_job, kobe_prod):
    settings, result, _ = kobe_job
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    prod = pd.read_parquet(kobe_prod)[list(KOBE_FEATURES)].head(200)
    for model in result.models:
        loaded = mlflow.pyfunc.load_model(model.model_uri)
        schema = loaded.metadata.get_input_schema()
        assert schema.input_names() == list(KOBE_FEATURES)
        predictions = np.asarray(loaded.predict(prod))
        assert predictions.shape == (200,) and set(np.unique(predictions)) <= {0.0, 1.0}
        proba = mlflow.sklearn.load_model(model.model_uri).predict_proba(prod)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)


# --- every algorithm of the catalogue, both tasks, and compare -------------------------------


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_every_catalogue_algorithm_trains_and_logs(workspace, task):
    frame = classification_table() if task == "classification" else regression_table()
    target = "label" if task == "classification" else "price"
    keys = tuple(a.key for a in catalog.algorithms(task))
    spec = TrainingSpec(target=target, algorithms=keys, folds=2, params={"rf": {"n_estimators": 20}, "et": {"n_estimators": 20}})
    result = train(workspace, spec, frame, table_name="small", table_digest="a" * 64)
    assert [m.algorithm for m in result.models] == list(keys)
    failures = {m.algorithm: m.error for m in result.models if m.status != "FINISHED"}
    assert failures == {}
    if task == "regression":
        lr = next(m for m in result.models if m.algorithm == "lr")
        assert lr.metrics["r2"] > 0.8 and set(lr.metrics) == {"mae", "rmse", "r2", "mape"}
        from core.tracking import client

        paths = {a.path for a in client(workspace).list_artifacts(lr.run_id, "plots")}
        assert {"plots/residuals.json", "plots/predicted_vs_actual.json", "plots/importance.json"} <= paths
        assert "listing_id" not in json.loads(client(workspace).get_run(result.parent_run_id).data.params["features"])
    else:
        svm = next(m for m in result.models if m.algorithm == "svm")
        assert np.isnan(svm.metrics["log_loss"]) and 0 <= svm.metrics["f1"] <= 1  # no probabilities, said as missing
        lr = next(m for m in result.models if m.algorithm == "lr")
        assert lr.metrics["auc"] > 0.75


def test_compare_ranks_algorithms_by_cv(workspace):
    spec = TrainingSpec(target="label", algorithms=("lr", "dt", "nb"), compare=True, folds=2, tune_metric="f1")
    result = train(workspace, spec, classification_table(), table_name="small", table_digest="b" * 64)
    assert [row["rank"] for row in result.leaderboard] == [1, 2, 3]
    assert {row["algorithm"] for row in result.leaderboard} == {"lr", "dt", "nb"}
    f1 = [row["F1"] for row in result.leaderboard]
    assert f1 == sorted(f1, reverse=True)
    assert all(m.status == "FINISHED" and m.model_uri for m in result.models)


def test_tuning_only_the_chosen_algorithms(workspace):
    spec = TrainingSpec(target="label", algorithms=("lr", "dt"), folds=2, tune_iterations=4, tune_metric="auc", tuned=("dt",))
    steps = []
    result = train(workspace, spec, classification_table(), table_name="small", table_digest="c" * 64,
                   progress=lambda step, model, done, total: steps.append((step, model)))
    assert all(m.status == "FINISHED" for m in result.models)
    assert ("Tuning (4 random-search iterations)", "dt") in steps
    assert not [s for s in steps if s[0].startswith("Tuning") and s[1] == "lr"]
    from core.tracking import client

    params = client(workspace).get_run(result.parent_run_id).data.params
    assert (params["tune_iterations"], params["tuned"]) == ("4", "dt")


def test_tuning_an_algorithm_that_is_not_chosen_is_refused():
    with pytest.raises(BadInputError, match="Only chosen algorithms can be tuned"):
        prepare(classification_table(), TrainingSpec(target="label", algorithms=("lr",), tune_iterations=3, tuned=("rf",)))


def test_a_failing_model_fails_alone(workspace, monkeypatch):
    from core import training

    real = training._log_model_run

    def flaky(mlflow, prepared, pipeline, model, algorithm, *args):
        if algorithm.key == "dt":
            raise RuntimeError("planted failure")
        return real(mlflow, prepared, pipeline, model, algorithm, *args)

    monkeypatch.setattr(training, "_log_model_run", flaky)
    result = train(workspace, TrainingSpec(target="label", folds=2), classification_table(), table_name="t", table_digest="e" * 64)
    by_key = {m.algorithm: m for m in result.models}
    assert by_key["lr"].status == "FINISHED" and by_key["dt"].status == "FAILED"
    assert "planted failure" in by_key["dt"].error
    from core.tracking import client

    run = client(workspace).get_run(by_key["dt"].run_id)
    assert run.info.status == "FAILED" and "planted failure" in run.data.tags["studio.error"]
    assert client(workspace).get_run(result.parent_run_id).info.status == "FINISHED"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (pd.DataFrame({"id": [1, 2, 3], "x": [0.1, 0.2, 0.3], "shot_made_flag": [0, 1, 0]}), "shot_made_flag"),
        (pd.DataFrame({"age": [30, 40, 50], "Churn": ["yes", "no", "yes"]}), "Churn"),
        (pd.DataFrame({"x": [1, 2], "label": [7, 7]}), None),  # one value: nothing to predict
        (pd.DataFrame({"x": [1, 2, 3], "amount": [1.5, 2.5, 3.5]}), None),  # no column named like an outcome
    ],
)
def test_suggest_target_only_names_outcome_like_columns(frame, expected):
    from core.training import suggest_target

    assert suggest_target(frame) == expected
