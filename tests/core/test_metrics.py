"""core.metrics: the one table of metric facts agrees with what is measured and is what every
reader uses (labels, directions, formatting, the Models page's comparison, the typed training summary)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from core import catalog, evaluation, metrics, registry, training


def test_every_metric_evaluation_measures_has_an_entry():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    proba = np.c_[1 - np.full(200, 0.6), np.full(200, 0.6)]
    measured = evaluation.classification_metrics(y, (rng.uniform(size=200) > 0.5).astype(int), proba, (0, 1))
    assert set(measured) == set(metrics.for_task("classification")) == set(evaluation.CLASSIFICATION_METRICS)
    values = rng.normal(10, 2, 200)
    measured = evaluation.regression_metrics(values, values + rng.normal(0, 1, 200))
    assert set(measured) == set(metrics.for_task("regression")) == set(evaluation.REGRESSION_METRICS)
    assert evaluation.REGRESSION_METRICS == ("mae", "rmse", "r2", "mape")  # the Train page's column order
    for key in (*metrics.for_task("classification"), *metrics.for_task("regression")):
        entry = metrics.METRICS[key]
        assert entry.key == key and entry.label and entry.help.endswith(".") and entry.holdout


def test_the_tasks_are_the_catalogue_s():
    assert metrics.TASKS == catalog.TASKS
    assert {m.task for m in metrics.METRICS.values()} == set(catalog.TASKS)


def test_lower_is_better_agrees_with_evaluation_on_a_good_and_a_bad_model():
    """On the same rows a near-perfect model must be better than a poor one by every metric: the table's
    direction is what the numbers do."""
    rng = np.random.default_rng(1)
    y = np.array([0, 1] * 100)
    p_good = np.where(y == 1, 0.9, 0.1)
    p_bad = np.clip(np.where(y == 1, 0.55, 0.45) + rng.normal(0, 0.2, len(y)), 0.02, 0.98)
    good = evaluation.classification_metrics(y, (p_good > 0.5).astype(int), np.c_[1 - p_good, p_good], (0, 1))
    bad = evaluation.classification_metrics(y, (p_bad > 0.5).astype(int), np.c_[1 - p_bad, p_bad], (0, 1))
    truth = rng.uniform(5, 50, 300)
    close = evaluation.regression_metrics(truth, truth + rng.normal(0, 0.5, 300))
    far = evaluation.regression_metrics(truth, truth + rng.normal(0, 8, 300))
    for better_one, worse_one in ((good, bad), (close, far)):
        for key in better_one:
            assert metrics.better(key, better_one[key], worse_one[key]), key
            assert metrics.is_worse(key, worse_one[key], better_one[key]), key
            assert not metrics.is_worse(key, better_one[key], better_one[key])  # a tie is not worse
    assert metrics.lower_is_better() >= {"log_loss", "log_loss_ratio", "rmse", "mae", "mape"}
    assert not metrics.lower_is_better() & {"auc", "f1", "accuracy", "precision", "recall", "r2"}


def test_labels_help_and_fmt():
    assert [metrics.label(k) for k in metrics.ranked()] == [
        "log loss", "F1", "AUC", "accuracy", "precision", "recall", "log loss / guess", "RMSE", "MAE", "R²", "MAPE"]
    assert metrics.label("no_such_metric") == "no_such_metric" and metrics.help_text("no_such_metric") == ""
    assert metrics.direction("rmse") == "lower is better" and metrics.direction("r2") == "higher is better"
    assert metrics.METRICS["auc"].direction == "higher is better"
    assert metrics.fmt("auc", 0.8105004) == "0.811" == f"{training.round_metric(0.8105004):.3f}"
    assert metrics.fmt("auc", 0.0625) == "0.062"  # half to even, as round_metric rounds
    assert metrics.fmt("rmse", 1021.4) == "1021.400"
    assert metrics.fmt("auc", None) == "" and metrics.fmt("auc", math.nan, missing="n/a") == "n/a"
    assert metrics.fmt("no_such_metric", 2) == "2.000"


def test_orders_primary_and_tuning_metrics():
    assert metrics.primary("classification") == "log_loss" and metrics.primary("regression") == "rmse"
    assert metrics.ranked("regression") == ("rmse", "mae", "r2", "mape")
    assert metrics.ranked("classification")[0] == "log_loss"
    assert metrics.tunable("classification") == ("auc", "f1", "accuracy", "precision", "recall")
    assert metrics.tunable("regression") == ("rmse", "mae", "r2", "mape")
    for task in metrics.TASKS:
        assert list(catalog.TUNE_METRICS[task]) == list(metrics.tunable(task))
        assert catalog.DEFAULT_TUNE_METRIC[task] == metrics.tunable(task)[0] == metrics.default_tune(task)
        for key, (pycaret, higher) in catalog.TUNE_METRICS[task].items():
            assert metrics.from_pycaret(pycaret) == key and higher == metrics.higher_is_better(key)
    assert metrics.from_pycaret("Prec.") == "precision" and metrics.from_pycaret("TT (Sec)") is None
    assert {metrics.from_pycaret(c) for c in ("Kappa", "MCC", "MSE", "RMSLE")} == {"kappa", "mcc", "mse", "rmsle"}
    assert not set(metrics.for_task("classification")) & {"kappa", "mcc"}  # PyCaret's CV only
    with pytest.raises(ValueError, match="classification"):
        metrics.for_task("clustering")


def test_best_leaves_missing_figures_out_and_follows_the_direction():
    assert metrics.best("rmse", {"v1": 3.0, "v2": 2.0, "v3": None}) == "v2"
    assert metrics.best("r2", {"v1": 0.3, "v2": 0.5, "v3": math.nan}) == "v2"
    assert metrics.best("auc", {"v1": 0.7, "v2": 0.7}) == "v1"  # the first of equals
    assert metrics.best("auc", {"v1": None}) is None


def test_the_registry_reads_the_table():
    assert registry.LOWER_IS_BETTER == metrics.lower_is_better()
    assert registry.KEY_METRICS == {t: metrics.ranked(t) for t in metrics.TASKS}


def version(number: int, **values) -> registry.VersionView:
    return registry.VersionView(
        name="houses", version=number, run_id=f"run{number}", created="2025-01-01T00:00:00+00:00", aliases=(), description="",
        tags={}, task="regression", target="price", table_name="houses", table_digest="a" * 64, algorithm="Decision tree",
        metrics=values, params={}, model_uri=f"models:/houses/{number}")


def test_the_comparison_picks_the_best_version_by_the_table_s_direction():
    one, two = version(1, rmse=10.0, mae=8.0, r2=0.7, mape=0.2), version(2, rmse=12.0, mae=7.0, r2=0.8, mape=0.3)
    table, best = registry.compare_table([one, two])
    assert list(table["metric"]) == ["rmse", "mae", "r2", "mape"]
    assert best == {"rmse": 1, "mae": 2, "r2": 2, "mape": 1}
    for key, winner in best.items():
        assert winner == int(metrics.best(key, {1: one.metrics[key], 2: two.metrics[key]}))


def test_the_models_page_highlights_the_table_s_winners_under_its_labels(workspace, monkeypatch):
    import plotly.graph_objects as go
    from streamlit.testing.v1 import AppTest

    from tests.app_pages.conftest import APP

    versions = [version(2, rmse=12.0, mae=7.0, r2=0.8, mape=0.3), version(1, rmse=10.0, mae=8.0, r2=0.7, mape=0.2)]
    model = registry.ModelView(name="houses", description="", aliases={}, versions=versions)
    monkeypatch.setattr(registry, "list_models", lambda settings: [model])
    monkeypatch.setattr(registry, "compare_figure", lambda settings, picked: go.Figure())
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("app_pages/models.py").run()
    assert not at.exception, at.exception
    listing = at.dataframe[0].value
    assert [c for c in listing.columns if c in metrics.labels().values()] == ["RMSE", "MAE", "R²", "MAPE"]
    compared = next(d for d in at.dataframe if "metric" in getattr(d.value, "columns", []))
    assert list(compared.value["metric"]) == ["RMSE", "MAE", "R²", "MAPE"]
    styles = compared.proto.arrow_data.styler.styles
    highlighted = {(int(r), int(c)) for r, c in re.findall(r"row(\d+)_col(\d+)", styles)}
    columns = list(compared.value.columns)
    # rows: RMSE, MAE, R², MAPE; v1 is best on RMSE and MAPE (lower), v2 on MAE (lower) and R² (higher)
    assert highlighted == {(0, columns.index("v1")), (1, columns.index("v2")), (2, columns.index("v2")), (3, columns.index("v1"))}


# --- the typed training summary ------------------------------------------------------------------


def _result() -> training.TrainingResult:
    lr = training.ModelResult("lr", "Logistic regression", run_id="r1", model_uri="m1", status="FINISHED",
                              metrics={"log_loss": 0.6, "auc": 0.8105004, "f1": math.nan}, cv_metrics={"cv_auc_mean": 0.79},
                              tuning=None, importance={"method": "built-in"})
    dt = training.ModelResult("dt", "Decision tree", run_id="r2", model_uri="m2", status="FINISHED", metrics={"log_loss": 0.5, "auc": 0.7})
    svm = training.ModelResult("svm", "Linear SVM", run_id="r3", status="FAILED", error="Linear SVM failed: ValueError: x")
    return training.TrainingResult(parent_run_id="p", experiment_id="e", task="classification", target="label",
                                   models=[lr, dt, svm], registered=registry.Registration("kobe", 1, "champion"),
                                   notes=("a note",))


def test_the_summary_round_trips_through_the_job_s_json():
    result = _result()
    stored = json.loads(json.dumps(result.summary()))  # what the job's status holds
    assert list(stored) == ["parent_run_id", "experiment_id", "task", "target", "models", "registered", "leaderboard", "notes",
                            "compare"]
    assert list(stored["models"][0]) == ["algorithm", "name", "run_id", "model_uri", "status", "metrics", "cv_metrics", "error",
                                         "importance", "tuning"]
    assert stored["models"][0]["metrics"] == {"log_loss": 0.6, "auc": 0.8105004, "f1": None}
    assert stored["registered"] == {"name": "kobe", "version": 1, "alias": "champion"}
    summary = training.TrainingSummary.from_dict(stored)
    assert summary == result.to_summary() and summary.to_dict() == stored
    assert summary.parent_run_id == "p" and summary.registered.version == 1 and summary.notes == ("a note",)
    assert [m.name for m in summary.finished] == ["Logistic regression", "Decision tree"]
    assert summary.best().run_id == "r2" == training.best_in(stored)  # lowest log loss
    assert summary.models[2].error.startswith("Linear SVM failed")
    with pytest.raises(AttributeError):
        summary.task = "regression"  # frozen
    # the readers take either shape and say the same
    assert training.results_table(summary).equals(training.results_table(stored))
    assert training.result_notes(summary) == training.result_notes(stored) == ["a note"]


def test_an_old_or_partial_summary_reads():
    summary = training.TrainingSummary.from_dict({"models": [{"name": "M", "status": "FINISHED", "metrics": {"auc": 0.4}}]})
    assert summary.task == "classification" and summary.leaderboard is None and summary.notes == ()
    assert summary.models[0].algorithm == "" and summary.models[0].cv_metrics == {}
    assert training.TrainingSummary.from_dict({}).models == ()
    assert "its AUC is 0.400" in training.result_warnings(summary)[0]
