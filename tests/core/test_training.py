"""core.training: checks before any run, then PyCaret -> MLflow with everything logged."""

from __future__ import annotations

import json
import re
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
        answer = loaded.predict(prod)  # the label and the probability of each class (issue 17)
        assert list(answer.columns) == ["prediction", "proba_0", "proba_1"] and len(answer) == 200
        assert set(answer["prediction"]) <= {0.0, 1.0}
        proba = mlflow.sklearn.load_model(model.model_uri).predict_proba(prod)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        np.testing.assert_allclose(answer[["proba_0", "proba_1"]].to_numpy(), proba)
        np.testing.assert_array_equal(answer["prediction"], proba.argmax(axis=1).astype(float))


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


COMPARED = ("lr", "dt", "nb")


@pytest.fixture(scope="module")
def compare_job(tmp_path_factory):
    """A compare job on a small table (3 fast algorithms, 3 folds, ranked by F1), its progress calls
    and its summary as the job stores it (JSON)."""
    settings = load_settings({"STUDIO_WORKSPACE": str(tmp_path_factory.mktemp("compare"))})
    spec = TrainingSpec(target="label", algorithms=COMPARED, compare=True, folds=3, tune_metric="f1")
    steps = []
    result = train(settings, spec, classification_table(), table_name="small", table_digest="b" * 64,
                   progress=lambda step, model, done, total: steps.append((step, model, done, total)))
    return settings, spec, result, steps, json.loads(json.dumps(result.summary()))


def test_compare_ranks_algorithms_as_pycaret_compare_models_does(compare_job):
    settings, spec, result, _, _ = compare_job
    from core.training import _experiment

    assert [row["rank"] for row in result.leaderboard] == [1, 2, 3]
    assert all(m.status == "FINISHED" and m.model_uri for m in result.models)
    # PyCaret's own compare_models on the same split, setup and folds ranks them the same, with the same CV means.
    prepared = prepare(classification_table(), spec)
    exp = _experiment(prepared.task, settings)
    exp.setup(data=prepared.train, test_data=prepared.test, target="label", session_id=spec.seed, fold=3, verbose=False,
              html=False, memory=False, n_jobs=1, system_log=False, log_experiment=False, index=False, fold_strategy="stratifiedkfold")
    exp.compare_models(include=list(COMPARED), n_select=3, sort="F1", fold=3, verbose=False, errors="ignore")
    board = exp.pull()
    assert [row["algorithm"] for row in result.leaderboard] == list(board.index)
    for row in result.leaderboard:
        assert row["f1"] == pytest.approx(float(board.loc[row["algorithm"], "F1"]), abs=1e-9)
        assert row["auc"] == pytest.approx(float(board.loc[row["algorithm"], "AUC"]), abs=1e-9)
    # each model's run holds the CV mean and std of its comparison
    by_key = {m.algorithm: m for m in result.models}
    for row in result.leaderboard:
        assert by_key[row["algorithm"]].cv_metrics["cv_f1_mean"] == pytest.approx(row["f1"])
        assert "cv_f1_std" in by_key[row["algorithm"]].cv_metrics


def test_compare_progress_names_each_algorithm_and_fold_as_it_goes(compare_job):
    _, _, result, steps, _ = compare_job
    names = [catalog.get("classification", k).name for k in COMPARED]
    folds = [s for s in steps if s[0].startswith("Comparing:")]
    expected = []
    for i, name in enumerate(names, start=1):
        expected += [f"Comparing: {name}, fold {k} of 3 (algorithm {i} of 3)" for k in (1, 2, 3)]
        expected.append(f"Comparing: {name}, fitting on all training rows (algorithm {i} of 3)")
    assert [s[0] for s in folds] == expected
    # the bar moves with every fold: done rises by one per message, against one fixed total
    totals = {s[3] for s in steps}
    assert totals == {3 * (3 + 1) + 3}
    assert [s[2] for s in folds] == list(range(12))
    done = [s[2] for s in steps]
    assert done == sorted(done) and steps[-1] == ("Finishing", None, 15, 15)
    # every fold message comes before the first model is scored, and then each model says which it is
    first_record = next(k for k, s in enumerate(steps) if "(model 1 of 3)" in s[0])
    assert steps.index(folds[-1]) < first_record
    assert f"{names[0]} (model 1 of 3): Scoring the holdout rows" in [s[0] for s in steps]


def test_leaderboard_table_uses_the_studio_s_names_and_three_decimals(compare_job):
    from core.training import leaderboard_help, leaderboard_table

    _, _, result, _, summary = compare_job
    table = leaderboard_table(summary)
    assert list(table.columns) == ["rank", "model", "CV F1", "CV AUC", "CV accuracy", "CV precision", "CV recall", "time (s)"]
    assert list(table["model"]) == [catalog.get("classification", row["algorithm"]).name for row in result.leaderboard]
    text = table.astype(str).to_numpy().ravel().tolist() + list(table.columns)
    for raw in ("Prec.", "Kappa", "MCC", "TT (Sec)", "gbc", "nb", "None"):
        assert raw not in text
    for column in table.columns[2:-1]:
        assert all(v == round(v, 3) for v in table[column])
        assert table[column].dtype == float
    for k, row in enumerate(result.leaderboard):  # PyCaret's 4-decimal CV means, rounded to 3 by the one rule
        assert (table.loc[k, "CV F1"], table.loc[k, "CV AUC"]) == (round(row["f1"], 3), round(row["auc"], 3))
    assert all(v == round(v, 1) and v >= 0 for v in table["time (s)"])
    helps = leaderboard_help(summary)
    assert set(helps) == set(table.columns) and "3 cross-validation folds" in helps["CV AUC"]


def test_leaderboard_table_reads_an_old_summary_with_pycaret_columns():
    from core.training import leaderboard_table

    old = {"task": "classification", "leaderboard": [
        {"rank": 1, "algorithm": "gbc", "Model": "Gradient Boosting Classifier", "Accuracy": 0.6812, "AUC": 0.7013, "Recall": 0.5518,
         "Prec.": 0.6723, "F1": 0.6061, "Kappa": 0.3456, "MCC": 0.3511, "TT (Sec)": 1.234},
        {"rank": 2, "algorithm": "svm", "Model": "SVM - Linear Kernel", "Accuracy": 0.6, "AUC": None, "Recall": 0.5,
         "Prec.": 0.5, "F1": 0.5, "Kappa": 0.1, "MCC": 0.1, "TT (Sec)": 0.05},
    ]}
    table = leaderboard_table(old)
    assert list(table["model"]) == ["Gradient boosting", "Linear SVM"]
    assert table.loc[0, "CV AUC"] == 0.701 and table.loc[0, "CV precision"] == 0.672 and table.loc[0, "time (s)"] == 1.2
    assert np.isnan(table.loc[1, "CV AUC"])  # blank (placeholder=""), never the text "None"
    assert "None" not in table.astype(str).to_numpy().ravel().tolist()


def test_metrics_are_rounded_once_from_the_value_mlflow_holds(kobe_job):
    settings, result, _ = kobe_job
    from core.tracking import client
    from core.training import results_table, round_metric

    summary = json.loads(json.dumps(result.summary()))
    table = results_table(summary)
    for k, model in enumerate(summary["models"]):
        stored = client(settings).get_run(model["run_id"]).data.metrics
        for name, label in (("auc", "AUC"), ("log_loss", "log loss"), ("f1", "F1")):
            assert model["metrics"][name] == stored[name]  # the job's summary is not pre-rounded
            assert table.loc[k, label] == round(stored[name], 3) == round_metric(stored[name])
        assert table.loc[k, "CV AUC"] == round(stored["cv_auc_mean"], 3)


def test_round_metric_is_pythons_round_half_even_on_the_stored_value():
    from core.training import ModelResult, results_table, round_metric

    # 0.8105004 rounded to 6 decimals first (0.8105, stored just below the half) would show 0.810
    summary = {"task": "classification", "models": [ModelResult("lr", "Logistic regression", run_id="r", model_uri="m",
                                                                 status="FINISHED", metrics={"auc": 0.8105004, "log_loss": 0.5}).summary()]}
    assert results_table(summary).loc[0, "AUC"] == 0.811
    assert round_metric(0.0625) == 0.062 == float(f"{0.0625:.3f}")  # an exact half goes to the even digit
    assert round_metric(0.0635) == float(f"{0.0635:.3f}")
    assert round_metric(None) is None and round_metric(float("nan")) is None


def test_tuning_only_the_chosen_algorithms_and_saying_what_it_chose(workspace):
    spec = TrainingSpec(target="label", algorithms=("lr", "dt"), folds=2, tune_iterations=4, tune_metric="auc", tuned=("dt",))
    steps = []
    result = train(workspace, spec, classification_table(), table_name="small", table_digest="c" * 64,
                   progress=lambda step, model, done, total: steps.append((step, model)))
    assert all(m.status == "FINISHED" for m in result.models)
    assert ("Tuning (4 random-search iterations)", "dt") in steps
    assert not [s for s in steps if s[0].startswith("Tuning") and s[1] == "lr"]
    from core.tracking import client
    from core.training import result_notes

    params = client(workspace).get_run(result.parent_run_id).data.params
    assert (params["tune_iterations"], params["tuned"]) == ("4", "dt")

    by_key = {m.algorithm: m for m in result.models}
    assert by_key["lr"].tuning is None
    tuning = by_key["dt"].tuning
    # the search's choices: PyCaret's decision-tree search space, with the values the tuned tree has
    assert set(tuning["chosen_params"]) == {"criterion", "max_depth", "max_features", "min_impurity_decrease",
                                            "min_samples_leaf", "min_samples_split"}
    beat = tuning["tuned_cv"] > tuning["untuned_cv"]
    assert tuning["kept"] == ("tuned" if beat else "untuned")
    # the kept model's CV figures are the kept model's own (PyCaret's choose_better reports the tuned ones)
    assert by_key["dt"].cv_metrics["cv_auc_mean"] == pytest.approx(tuning["tuned_cv"] if beat else tuning["untuned_cv"])
    run = client(workspace).get_run(by_key["dt"].run_id)
    assert run.data.params["tune.kept"] == tuning["kept"] and run.data.params["tune.metric"] == "auc"
    assert float(run.data.params["tune.untuned_cv"]) == pytest.approx(tuning["untuned_cv"])
    assert float(run.data.params["tune.tuned_cv"]) == pytest.approx(tuning["tuned_cv"])
    for name, value in tuning["chosen_params"].items():
        assert run.data.params[f"tune.chosen.{name}"] == value
        if beat and name in ("max_depth", "criterion", "min_samples_leaf"):
            assert run.data.params[f"hp.{name}"] == value  # the recorded tree is the tuned one
    sentences = [n for n in result_notes(json.loads(json.dumps(result.summary()))) if n.startswith("Tuning Decision tree")]
    assert sentences == [run.data.tags["studio.tuning"]]
    sentence = sentences[0]
    assert f"max_depth={tuning['chosen_params']['max_depth']}" in sentence and "CV AUC" in sentence
    assert ("It beat the untuned model" in sentence) == beat and ("did not beat the untuned model" in sentence) == (not beat)
    assert f"{tuning['tuned_cv']:.3f} against {tuning['untuned_cv']:.3f}" in sentence or \
        f"{tuning['tuned_cv']:.4f} against {tuning['untuned_cv']:.4f}" in sentence


@pytest.mark.parametrize(
    ("tuning", "expected"),
    [
        ({"metric": "auc", "iterations": 10, "untuned_cv": 0.8121, "tuned_cv": 0.8154, "kept": "tuned", "higher_is_better": True,
          "chosen_params": {"max_depth": "7", "criterion": "entropy"}},
         "Tuning Decision tree (10 random-search iterations) chose max_depth=7, criterion=entropy. It beat the untuned model "
         "on CV AUC (higher is better): 0.815 against 0.812, so the tuned model is kept."),
        ({"metric": "rmse", "iterations": 5, "untuned_cv": 1021.4, "tuned_cv": 1100.0, "kept": "untuned", "higher_is_better": False,
          "chosen_params": {"max_depth": "3"}},
         "Tuning Decision tree (5 random-search iterations) found max_depth=3, but it did not beat the untuned model on CV RMSE "
         "(lower is better): 1100.000 against 1021.400, so the untuned model is kept."),
        ({"metric": "auc", "iterations": 4, "untuned_cv": 0.8121, "tuned_cv": 0.8124, "kept": "tuned", "higher_is_better": True,
          "chosen_params": {"max_depth": "5"}},
         "Tuning Decision tree (4 random-search iterations) chose max_depth=5. It beat the untuned model on CV AUC "
         "(higher is better): 0.8124 against 0.8121, so the tuned model is kept."),  # 3 decimals would show a tie
    ],
)
def test_tuning_sentence(tuning, expected):
    from core.training import tuning_sentence

    assert tuning_sentence("Decision tree", tuning) == expected


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
    # a bug in one model: said plainly with an id, its details in the workspace log, not the raw text
    error = by_key["dt"].error
    assert error.startswith("Decision tree failed and was left out. "
                            "Unexpected error (RuntimeError) while training Decision tree, recorded in the log as ")
    assert "planted failure" not in error
    incident = re.search(r"recorded in the log as ([0-9a-f]{8})", error).group(1)
    log = workspace.error_log.read_text()
    assert f"=== {incident} " in log and "planted failure" in log.split(f"=== {incident} ", 1)[1]
    from core.tracking import client

    run = client(workspace).get_run(by_key["dt"].run_id)
    assert run.info.status == "FAILED" and run.data.tags["studio.error"] == error
    assert client(workspace).get_run(result.parent_run_id).info.status == "FINISHED"


# --- bounded importance and plain-words warnings ---------------------------------------------


@pytest.mark.parametrize(
    ("args", "plan"),
    [
        ((10, 4000, 0.0, 0.0, 5.0), (2000, 3)),  # free: the row cap, 3 repeats
        ((10, 300, 0.01, 1e-5, 5.0), (300, 3)),  # a small holdout: all of it
        ((10, 4000, 0.0, 1e-4, 5.0), (1612, 3)),  # 31 evaluations of 1,612 rows fit 5 s
        ((10, 4000, 0.0, 1e-3, 5.0), (454, 1)),  # under 500 rows at 3 or 2 repeats: 1 repeat on what fits
        ((10, 4000, 0.5, 1e-3, 5.0), None),  # not even one pass over the minimum: none
        ((10, 4000, 0.0, 0.0, 0.0), None),
    ],
)
def test_importance_plan_fits_the_budget(args, plan):
    from core.training import importance_plan

    assert importance_plan(*args) == plan
    if plan:
        n_features, _, per_call, per_row, budget = args
        rows, repeats = plan
        assert (1 + n_features * repeats) * (per_call + per_row * rows) <= budget


def noise_table(n: int, features: int, seed: int = 0, regression: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"f{k}": rng.normal(size=n) for k in range(features)})
    frame["y"] = rng.normal(size=n) if regression else np.where(frame["f0"] + frame["f1"] + rng.normal(0, 1, n) > 0, "a", "b")
    return frame


def test_permutation_importance_is_bounded_and_said(workspace, monkeypatch):
    import sklearn.inspection

    from core import training
    from core.tracking import client

    calls = []
    real = sklearn.inspection.permutation_importance

    def spy(estimator, X, y, *, n_repeats, random_state, **kwargs):  # noqa: N803
        calls.append((len(X), n_repeats))
        return real(estimator, X, y, n_repeats=n_repeats, random_state=random_state, **kwargs)

    monkeypatch.setattr(sklearn.inspection, "permutation_importance", spy)
    frame = noise_table(8000, 12)  # 2,400 holdout rows, more than the 2,000-row cap
    spec = TrainingSpec(target="y", algorithms=("knn",), folds=2, test_size=0.3)  # no built-in importances
    result = train(workspace, spec, frame, table_name="big", table_digest="9" * 64)
    knn = result.models[0]
    facts = knn.importance
    assert knn.status == "FINISHED" and facts["method"] == "permutation"
    assert calls == [(facts["rows"], facts["repeats"])]  # what ran is what was recorded
    assert facts["rows"] <= 2000 < 2400 == facts["of_rows"] and 1 <= facts["repeats"] <= 3
    assert facts["estimated_seconds"] <= facts["budget_seconds"] == training.IMPORTANCE_BUDGET_SECONDS
    run = client(workspace).get_run(knn.run_id)
    assert (run.data.params["importance.method"], run.data.params["importance.rows"]) == ("permutation", str(facts["rows"]))
    summary = json.loads(json.dumps(result.summary()))
    repeats = f"{facts['repeats']} repeat{'s' if facts['repeats'] > 1 else ''}"
    assert (f"Feature importance of K nearest neighbours: permutation importance from {facts['rows']:,} of the 2,400 "
            f"holdout rows, {repeats} (sized to a 5 s budget).") in training.result_notes(summary)

    # No time for it: no permutation at all, no importance chart, and the results say so.
    monkeypatch.setattr(training, "IMPORTANCE_BUDGET_SECONDS", 0.0)
    result = train(workspace, spec, frame, table_name="big", table_digest="9" * 64)
    assert len(calls) == 1 and result.models[0].importance["method"] == "skipped"
    assert "plots/importance.json" not in {a.path for a in client(workspace).list_artifacts(result.models[0].run_id, "plots")}
    assert any(n.startswith("Feature importance of K nearest neighbours was not measured") and "over the 0 s budget" in n
               for n in training.result_notes(result.summary()))


def test_a_model_on_pure_noise_is_called_worse_than_a_constant_guess(workspace):
    from core.training import result_warnings

    frame = noise_table(600, 4, regression=True)
    spec = TrainingSpec(target="y", algorithms=("dt",), folds=2, params={"dt": {"max_depth": 8, "min_samples_leaf": 2}})
    result = train(workspace, spec, frame, table_name="noise", table_digest="8" * 64)
    r2 = result.models[0].metrics["r2"]
    assert r2 < 0  # a deep tree on noise does worse than predicting the mean
    assert result_warnings(json.loads(json.dumps(result.summary()))) == [
        f"Decision tree does no better than a constant guess on the holdout rows: its R² is {r2:.3f}, below 0, so "
        "predicting the average for every row would be closer. Do not use it as it is; its features may say little about 'y'."]


def _summary(task: str, **metrics) -> dict:
    return {"task": task, "target": "t", "models": [{"name": "M", "status": "FINISHED", "metrics": metrics}]}


@pytest.mark.parametrize(
    ("summary", "warned", "words"),
    [
        (_summary("classification", auc=0.5, log_loss_ratio=0.99), True, "its AUC is 0.500, and 0.5 is what a coin toss gets"),
        (_summary("classification", auc=0.501, log_loss_ratio=0.99), False, ""),
        (_summary("classification", auc=0.7, log_loss_ratio=1.0), True, "its log loss is 1.000 times that of always predicting the class shares"),
        (_summary("classification", auc=None, log_loss_ratio=None, f1=0.2), False, ""),  # no probabilities: nothing to say
        (_summary("regression", r2=-0.0004), True, "its R² is just below 0, so predicting the average"),
        (_summary("regression", r2=-0.25), True, "its R² is -0.250, below 0, so predicting the average"),
        (_summary("regression", r2=0.0), False, ""),
        ({"task": "regression", "models": [{"name": "M", "status": "FAILED", "metrics": {"r2": -3.0}}]}, False, ""),
    ],
)
def test_worse_than_a_constant_guess_thresholds(summary, warned, words):
    from core.training import result_warnings

    warnings = result_warnings(summary)
    assert bool(warnings) == warned
    if warned:
        assert words in warnings[0] and warnings[0].startswith("M does no better than a constant guess")


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


# --- what makes training meaningless: infinite values, a constant target, a feature that copies it -


def income_table(n: int = 300, infinite: int = 3, seed: int = 0) -> pd.DataFrame:
    """A churn-like table whose 'income' holds ``infinite`` infinite values (inf and -inf) among rows with a target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"income": rng.normal(50_000, 15_000, n), "age": rng.integers(18, 80, n).astype(float)})
    frame["label"] = np.where(frame["income"] + 300 * frame["age"] + rng.normal(0, 10_000, n) > 62_000, "yes", "no")
    frame.loc[list(range(infinite)), "income"] = [np.inf, -np.inf, np.inf][:infinite] + [np.inf] * max(0, infinite - 3)
    return frame


def test_infinite_values_in_a_feature_are_refused_naming_the_column_and_count():
    frame = income_table()
    with pytest.raises(BadInputError) as refused:
        prepare(frame, TrainingSpec(target="label"))
    message = str(refused.value)
    assert message.startswith("'income' holds 3 infinite values (inf or -inf) in the rows with a target")
    assert "Treat them as missing" in message and "--inf-as-missing" in message and "leave 'income' out" in message
    with pytest.raises(BadInputError, match=r"'income' holds 3 infinite values"):
        prepare(frame, TrainingSpec(target="label", features=("income", "age")))
    assert prepare(frame, TrainingSpec(target="label", features=("age",))).features == ("age",)  # not chosen: no matter

    frame.loc[10, "age"] = -np.inf
    with pytest.raises(BadInputError, match=r"^'income' holds 3 infinite values \(inf or -inf\) and 'age' holds 1 infinite "
                                            r"value in the rows .* leave those columns out"):
        prepare(frame, TrainingSpec(target="label"))
    frame.loc[20, "label"] = np.nan  # a row without a target does not count, nor train
    frame.loc[20, "income"] = np.inf
    with pytest.raises(BadInputError, match=r"'income' holds 3 infinite values"):
        prepare(frame, TrainingSpec(target="label"))


def test_an_infinite_target_is_refused_or_its_rows_left_out():
    frame = regression_table()
    frame.loc[[0, 1], "price"] = [np.inf, -np.inf]
    with pytest.raises(BadInputError, match=r"The target 'price' holds 2 infinite values \(inf or -inf\), which cannot be predicted"):
        prepare(frame, TrainingSpec(target="price"))
    prepared = prepare(frame, TrainingSpec(target="price", inf_as_missing=True))
    assert prepared.rows_dropped == 2 and len(prepared.train) + len(prepared.test) == 398
    assert "2 rows without a value in 'price' (2 of them infinite) were left out" in prepared.notes[0]


def test_inf_as_missing_is_an_option_of_the_spec_that_round_trips():
    spec = TrainingSpec(target="label", inf_as_missing=True)
    assert spec.to_dict()["inf_as_missing"] is True
    assert TrainingSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    old_job = {k: v for k, v in TrainingSpec(target="label").to_dict().items() if k != "inf_as_missing"}
    assert TrainingSpec.from_dict(old_job).inf_as_missing is False  # specs stored before the option


def test_submit_training_refuses_infinite_values_before_any_job_or_run(workspace):
    import io

    from core import jobs
    from core.tables import TableStore

    buffer = io.BytesIO()
    income_table().to_parquet(buffer, index=False)
    record = TableStore(workspace.tables_dir).ingest(buffer.getvalue(), "income.parquet").record
    with pytest.raises(BadInputError, match=r"'income' holds 3 infinite values \(inf or -inf\)"):
        jobs.submit_training(workspace, TrainingSpec(target="label", algorithms=("lr",), folds=2), record.table_id)
    assert jobs.JobStore(workspace).list() == [] and not workspace.mlflow_db.exists()


def test_with_inf_as_missing_the_model_trains_imputes_them_and_the_run_records_it(workspace):
    import mlflow

    from core.tracking import client

    frame = income_table(infinite=5)
    spec = TrainingSpec(target="label", algorithms=("lr",), folds=2, inf_as_missing=True)
    prepared = prepare(frame, spec)
    assert prepared.features == ("income", "age")
    together = pd.concat([prepared.train, prepared.test])
    assert together["income"].isna().sum() == 5 and not np.isinf(together["income"]).any()
    assert "5 infinite values (inf or -inf) in 'income' were treated as missing and filled in like the other missing values." \
        in prepared.notes

    result = train(workspace, spec, frame, table_name="income", table_digest="c" * 64)
    model = result.models[0]
    assert model.status == "FINISHED", model.error
    assert model.metrics["auc"] > 0.7
    parent = client(workspace).get_run(result.parent_run_id)
    assert parent.data.params["inf_as_missing"] == "True"
    assert any("treated as missing" in n for n in result.summary()["notes"])
    mlflow.set_tracking_uri(workspace.tracking_uri)
    loaded = mlflow.pyfunc.load_model(model.model_uri)
    predicted = loaded.predict(pd.DataFrame({"income": [np.nan, 60_000.0], "age": [40.0, 40.0]}))
    assert len(predicted) == 2 and set(predicted["prediction"]) <= {"no", "yes"}  # a missing income is imputed by the
    assert not predicted[["proba_no", "proba_yes"]].isna().any().any()  # pipeline, not refused


@pytest.mark.parametrize(
    ("price", "task"),
    [([250_000.0] * 60, None), ([250_000] * 60, "regression"), ([250_000.0] * 40 + [np.nan] * 20, "regression")],
)
def test_a_constant_regression_target_is_refused(price, task):
    frame = pd.DataFrame({"size": np.linspace(20, 200, 60), "price": price})
    with pytest.raises(BadInputError) as refused:
        prepare(frame, TrainingSpec(target="price", task=task))
    message = str(refused.value)
    if task is None:  # inferred as classification: the one-class refusal stays
        assert "only one class (250000)" in message
    else:
        assert message.startswith("'price' has the same value (250000) in every row with a value: there is nothing to "
                                  "predict")
        assert "Choose another target" in message


def test_a_regression_target_with_a_single_value_once_inf_is_missing_is_refused():
    frame = pd.DataFrame({"size": np.linspace(20, 200, 60), "price": [1.5] * 58 + [np.inf, -np.inf]})
    with pytest.raises(BadInputError, match=r"'price' has the same value \(1\.5\) in every row with a value"):
        prepare(frame, TrainingSpec(target="price", task="regression", inf_as_missing=True))


def test_features_that_copy_the_target_are_left_out_of_the_defaults_with_the_reason():
    from core.training import leakage

    frame = regression_table()
    frame["target_copy"] = frame["price"]
    frame["target_x2"] = 2 * frame["price"]
    features, excluded = default_features(frame, "price")
    assert features == ["size", "rooms", "area"]
    assert excluded["target_copy"] == ("it copies the target (it equals 'price' in every row where it has a value): it "
                                       "would leak the answer")
    assert excluded["target_x2"] == ("it copies the target up to scale (its correlation with 'price' is 1.000): it would "
                                     "leak the answer")
    assert prepare(frame, TrainingSpec(target="price")).features == ("size", "rooms", "area")

    labels = classification_table()
    labels["target_copy"] = labels["label"]
    labels["target_x2"] = labels["label"] * 2  # "yesyes" / "nono": a 1:1 relabelling
    labels["code"] = labels["label"].map({"yes": 1, "no": 0})
    features, excluded = default_features(labels, "label")
    assert features == ["x1", "x2", "colour"]
    assert "copies the target (it equals 'label'" in excluded["target_copy"]
    for column in ("target_x2", "code"):
        assert excluded[column] == ("it copies the target under other names (each of its values goes with one value of "
                                    "'label', and back): it would leak the answer")
    assert leakage(labels, "label", ["x1", "x2", "colour"]) == {}


def test_a_chosen_feature_that_copies_the_target_is_kept_with_a_note():
    frame = classification_table()
    frame["target_copy"] = frame["label"]
    prepared = prepare(frame, TrainingSpec(target="label", features=("x1", "target_copy")))
    assert prepared.features == ("x1", "target_copy")
    assert ("'target_copy' copies the target (it equals 'label' in every row where it has a value): it would leak the "
            "answer. It was kept because you chose it: keep it only if its value is known before the outcome is") in " ".join(prepared.notes)
    assert not any("leak" in n for n in prepare(frame, TrainingSpec(target="label", features=("x1", "colour"))).notes)


def test_a_feature_that_alone_predicts_the_class_is_flagged_and_a_strong_honest_one_is_not():
    from core.training import leakage

    rng = np.random.default_rng(1)
    n = 4000
    score = rng.normal(size=n)
    frame = pd.DataFrame({
        "refund_amount": np.where(score > 0.3, rng.uniform(10, 100, n), 0.0),  # known only once the outcome is
        "strong": score + rng.normal(0, 0.25, n),  # an honest, strong feature: right ~90% of the time
        "y": np.where(score > 0.3, "returned", "kept"),
    })
    flip = rng.choice(n, 12, replace=False)  # 0.3% noise: the copy is not exact
    frame.loc[flip, "refund_amount"] = rng.uniform(10, 100, 12)
    found = leakage(frame, "y", ["refund_amount", "strong"])
    assert list(found) == ["refund_amount"]
    assert found["refund_amount"].startswith("it nearly copies the target (alone it predicts 'y' right 99.")
    majority = (frame["y"] == "kept").mean()
    assert f"against {np.floor(majority * 1000) / 10:.1f}% by always guessing the most common value): it would leak the answer" \
        in found["refund_amount"]

    rare = pd.DataFrame({"x": rng.normal(size=n), "y": np.where(np.arange(n) < 8, "fraud", "ok")})  # 99.8% "ok"
    assert leakage(rare, "y", ["x"]) == {}  # 99% right is no better than always guessing "ok"


def test_the_leakage_check_reads_a_sample_of_the_rows(monkeypatch):
    from core import training

    seen = []
    real = training._leak_reason
    monkeypatch.setattr(training, "_leak_reason", lambda x, y, name: seen.append(len(x)) or real(x, y, name))
    rng = np.random.default_rng(0)
    n = 120_000
    frame = pd.DataFrame({"x": rng.normal(size=n), "y": rng.integers(0, 2, n)})
    frame["copy"] = frame["y"]
    assert list(training.leakage(frame, "y", ["x", "copy"])) == ["copy"]
    assert seen == [training.LEAKAGE_SAMPLE_ROWS] * 2


def test_no_usual_kobe_feature_is_flagged_as_a_copy_of_the_target(kobe_dev):
    from core.training import leakage

    frame = pd.read_parquet(kobe_dev)
    features, excluded = default_features(frame, "shot_made_flag")
    assert features == ["action_type", "combined_shot_type", "lat", "loc_x", "loc_y", "lon", "minutes_remaining", "period",
                        "playoffs", "season", "seconds_remaining", "shot_distance", "shot_zone_area", "shot_zone_basic",
                        "shot_zone_range", "matchup", "opponent"]
    assert not any("leak" in reason for reason in excluded.values())
    assert leakage(frame, "shot_made_flag", [*KOBE_FEATURES, "game_event_id", "shot_id", "game_id"]) == {}
    assert not any("leak" in n for n in prepare(frame, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES)).notes)

    frame["target_copy"] = frame["shot_made_flag"]
    frame["target_x2"] = 2 * frame["shot_made_flag"]
    features, excluded = default_features(frame, "shot_made_flag")
    assert "target_copy" not in features and "target_x2" not in features
    assert "copies the target" in excluded["target_copy"] and "copies the target" in excluded["target_x2"]


# --- blanks in a text column -------------------------------------------------------------------


def test_blank_cells_in_a_text_column_are_filled_in_and_every_model_trains(workspace, tmp_path):
    """The studio's tables give a text column's blanks back as None, which PyCaret's text imputer does
    not count as missing: they reached the one-hot step, came out as NaN and failed logistic regression."""
    import mlflow

    from core import tables

    frame = classification_table()
    frame["colour"] = frame["colour"].astype(object)
    frame.loc[frame.index % 5 == 1, "colour"] = "green"  # three colours: one-hot encoded (two would be ordinal)
    frame.loc[frame.index % 7 == 0, "colour"] = None  # 43 blank cells, in training and holdout rows
    path = tmp_path / "blanks.csv"
    frame.to_csv(path, index=False)
    store = tables.store(workspace)
    loaded = store.load(store.ingest(path, path.name).record.table_id)
    assert loaded["colour"].isna().sum() == 43  # read back from the table as the Train page and CLI read it

    result = train(workspace, TrainingSpec(target="label", algorithms=("lr", "dt"), folds=2), loaded,
                   table_name="blanks", table_digest="b" * 64)
    by_key = {m.algorithm: m for m in result.models}
    assert by_key["lr"].status == "FINISHED", by_key["lr"].error
    assert by_key["dt"].status == "FINISHED", by_key["dt"].error
    assert by_key["lr"].metrics["auc"] > 0.7
    mlflow.set_tracking_uri(workspace.tracking_uri)
    model = mlflow.pyfunc.load_model(by_key["lr"].model_uri)
    rows = pd.DataFrame({"x1": [0.3, 0.3, 0.3], "x2": [0.0, 0.0, 0.0], "colour": [None, np.nan, "red"]})
    predicted = model.predict(rows)
    assert list(predicted["prediction"].isin(["no", "yes"])) == [True, True, True]  # a missing colour is imputed
    assert not predicted[["proba_no", "proba_yes"]].isna().any().any()
    sk = mlflow.sklearn.load_model(by_key["lr"].model_uri)
    assert sk.predict_proba(rows.iloc[[0]]).tolist() == sk.predict_proba(rows.iloc[[1]]).tolist()  # None as NaN


# --- global importance on the original columns (issue 18) ----------------------------------------


@pytest.fixture(scope="module")
def kobe_categorical(tmp_path_factory, kobe_dev):
    """Logistic regression and a decision tree on Kobe with combined_shot_type, one-hot encoded into six columns."""
    ws = tmp_path_factory.mktemp("kobe-importance")
    settings = load_settings({"STUDIO_WORKSPACE": str(ws)})
    frame = pd.read_parquet(kobe_dev)
    spec = TrainingSpec(target="shot_made_flag", features=(*KOBE_FEATURES, "combined_shot_type"), algorithms=("lr", "dt"), folds=2)
    return settings, spec, frame, train(settings, spec, frame, table_name="kobe dev", table_digest="c" * 64)


def _stored_importance(settings, model):
    """The model run's importance.json and its importance chart, as the Models page and the REST image read them."""
    from core import tracking

    document = json.loads(tracking.run_artifact(settings, model.run_id, "importance.json").read_text())
    figure = tracking.load_figures(settings, model.run_id)["importance"]
    return document, figure


def _holdout_and_background(spec, frame, facts, kind):
    """The holdout rows the importance was measured on and the background rows, as training drew them."""
    from core import explain

    prepared = prepare(frame, spec)
    rows = prepared.test[list(spec.features)]
    rows = rows.sample(explain.IMPORTANCE_ROWS, random_state=explain.SEED) if len(rows) > explain.IMPORTANCE_ROWS else rows
    rows = rows.head(facts["rows"])
    background = prepared.train[list(spec.features)].sample(explain.BACKGROUND_ROWS[kind], random_state=explain.SEED)
    return rows, background


def _summed_back(phi: np.ndarray, names: list[str], features) -> dict[str, np.ndarray]:
    """Per original column, its transformed columns' contributions summed row by row (the one-hot parts of combined_shot_type)."""
    out = {}
    for feature in features:
        parts = [k for k, n in enumerate(names) if n == feature or n.startswith(f"{feature}_")]
        assert parts, feature
        out[feature] = phi[:, parts].sum(axis=1)
    return out


def test_importance_is_on_the_original_columns_and_sums_the_one_hot_parts(kobe_categorical):
    """Computed here from the transformed features, independently of core.explain: the tree's SHAP
    values (shap's tree explainer), the linear model's coef x (value - background mean) restated in
    probability; the one-hot parts of combined_shot_type are summed row by row, then mean |.|. The
    stored importance.json holds those values on the original columns, and the chart shows the same."""
    import warnings

    import mlflow
    import shap

    settings, spec, frame, result = kobe_categorical
    mlflow.set_tracking_uri(settings.tracking_uri)
    features = list(spec.features)
    for model in result.models:
        facts = model.importance
        assert facts["method"] == "shap" and facts["explainer"] == {"lr": "linear", "dt": "tree"}[model.algorithm]
        assert facts["measure"] == "mean |effect| on the probability of 1" and facts["rows"] >= 200
        document, figure = _stored_importance(settings, model)
        stored = pd.Series(document["importance"])
        assert sorted(stored.index) == sorted(features)  # the original columns, no one-hot name
        pipeline = mlflow.sklearn.load_model(model.model_uri)
        rows, background = _holdout_and_background(spec, frame, facts, facts["explainer"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            X = pipeline[:-1].transform(rows)
            B = pipeline[:-1].transform(background)[X.columns]
        names = [str(c) for c in X.columns]
        assert sum(n.startswith("combined_shot_type_") for n in names) >= 3
        estimator = pipeline.steps[-1][1]
        Xv, Bv = X.to_numpy(dtype=float), B.to_numpy(dtype=float)
        if model.algorithm == "dt":
            phi = np.asarray(shap.TreeExplainer(estimator, data=Bv, model_output="probability",
                                                feature_perturbation="interventional").shap_values(Xv, check_additivity=False))
            phi = phi[..., 1] if phi.ndim == 3 else phi
        else:  # log-odds contributions, each row rescaled by one factor to its change in probability
            coef = np.ravel(estimator.coef_)
            logit = (Xv - Bv.mean(axis=0)) * coef
            base = float(Bv.mean(axis=0) @ coef + estimator.intercept_[0])
            p, p_base = 1 / (1 + np.exp(-(Xv @ coef + estimator.intercept_[0]))), 1 / (1 + np.exp(-base))
            phi = logit * ((p - p_base) / logit.sum(axis=1))[:, None]
        by_column = _summed_back(phi, names, features)
        expected = pd.Series({c: float(np.abs(v).mean()) for c, v in by_column.items()})
        np.testing.assert_allclose(stored[features].to_numpy(), expected[features].to_numpy(), rtol=1e-6, atol=1e-12)
        parts = [k for k, n in enumerate(names) if n.startswith("combined_shot_type_")]
        # the parts' own importances, added up, count a row's opposite effects of one column twice
        assert stored["combined_shot_type"] <= np.abs(phi[:, parts]).mean(axis=0).sum() + 1e-12
        assert stored["combined_shot_type"] > 0

        # the chart: one bar per original column, largest on top, the values of the artifact; the axis says what they are
        bar = figure.data[0]
        assert list(bar.y)[::-1] == list(stored.index)  # stored largest first; the chart draws the largest on top
        np.testing.assert_allclose(np.asarray(bar.x, dtype=float)[::-1], stored.to_numpy())
        assert figure.layout.xaxis.title.text == document["measure"] == facts["measure"]
        assert list(bar.text)[::-1] == [f"{v:.3g}" for v in stored]


def test_a_model_shap_cannot_explain_gets_permutation_importance_on_the_original_columns(kobe_categorical, workspace):
    settings, spec, frame, _ = kobe_categorical
    result = train(workspace, TrainingSpec(target=spec.target, features=spec.features, algorithms=("nb",), folds=2),
                   frame.sample(4000, random_state=0), table_name="kobe dev", table_digest="c" * 64)
    model = result.models[0]
    assert model.importance["method"] == "permutation"
    document, figure = _stored_importance(workspace, model)
    assert sorted(document["importance"]) == sorted(spec.features)
    assert document["measure"] == "mean drop in accuracy when the input's values are shuffled" == figure.layout.xaxis.title.text
    np.testing.assert_allclose(np.asarray(figure.data[0].x, dtype=float)[::-1], list(document["importance"].values()))
