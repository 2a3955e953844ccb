"""core.evaluation: holdout metrics equal scikit-learn's, the log-loss ratio, figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from core.evaluation import (
    batch_figures,
    classification_metrics,
    confusion_figure,
    overlay_figure,
    predicted_vs_actual_figure,
    regression_metrics,
    residuals_figure,
    roc_figure,
)


def test_binary_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p1 = np.clip(y * 0.3 + rng.uniform(0, 0.7, 500), 0.01, 0.99)
    proba = np.c_[1 - p1, p1]
    pred = (p1 > 0.5).astype(int)
    m = classification_metrics(y, pred, proba, (0, 1))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))


def test_log_loss_ratio_is_one_for_the_base_rate_guess_and_below_for_skill():
    y = np.array([1] * 30 + [0] * 70)
    guess = np.tile([0.7, 0.3], (100, 1))
    assert classification_metrics(y, np.zeros(100), guess, (0, 1))["log_loss_ratio"] == pytest.approx(1.0)
    skilled = np.where(y[:, None] == 1, [0.2, 0.8], [0.8, 0.2])
    assert classification_metrics(y, y, skilled, (0, 1))["log_loss_ratio"] < 0.6


def test_multiclass_is_macro_averaged_and_no_probabilities_gives_nan():
    y = np.array(["a", "b", "c"] * 20)
    pred = np.array(["a", "b", "b"] * 20)
    m = classification_metrics(y, pred, None, ("a", "b", "c"))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert np.isnan(m["log_loss"]) and np.isnan(m["auc"]) and np.isnan(m["log_loss_ratio"])


def test_regression_metrics():
    y, p = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])
    m = regression_metrics(y, p)
    assert m["mae"] == pytest.approx(0.5) and m["rmse"] == pytest.approx(np.sqrt((0.25 + 1) / 3))
    assert m["mape"] == pytest.approx((0.5 + 0 + 0.25) / 3) and m["r2"] == pytest.approx(skm.r2_score(y, p))


def test_figures_escape_labels_and_overlay_versions():
    y = np.array(["<b>yes</b>", "no"] * 50)
    proba = np.tile([0.4, 0.6], (100, 1))
    assert "&lt;b&gt;" in roc_figure(y, proba, ("no", "<b>yes</b>")).to_json()
    assert confusion_figure(y, y, ("no", "<b>yes</b>")).data[0].z.sum() == 100
    scores = {"v1": pd.DataFrame({"actual": [0, 1] * 50, "predicted": [0, 1] * 50, "proba_0": [0.9, 0.1] * 50, "proba_1": [0.1, 0.9] * 50})}
    fig = overlay_figure("classification", scores)
    assert [t.name for t in fig.data] == ["coin toss", "v1 (AUC 1.000)"]


def test_a_scored_files_charts_are_named_for_its_task_and_its_rows():
    """What a labelled scoring logs under plots/: the confusion matrix of a classifier; predicted vs
    actual and residuals of a regression model, titled for the file's rows, not the holdout's."""
    y = np.array([10.0, 20.0, 30.0, 40.0])
    p = np.array([12.0, 18.0, 33.0, 40.0])
    regression = batch_figures("regression", y, p)
    assert list(regression) == ["predicted_vs_actual", "residuals"]
    assert regression["residuals"].layout.title.text == "Residuals (rows of this file)"
    np.testing.assert_allclose(np.asarray(regression["residuals"].data[0].y, float), y - p)
    np.testing.assert_allclose(np.asarray(regression["predicted_vs_actual"].data[0].x, float), y)
    labels = np.array(["no", "yes", "yes", "no"])
    classification = batch_figures("classification", labels, np.array(["no", "yes", "no", "no"]), ("no", "yes"))
    assert list(classification) == ["confusion_matrix"]
    assert classification["confusion_matrix"].layout.title.text == "Confusion matrix (rows of this file)"
    # training keeps its holdout titles
    assert residuals_figure(y, p).layout.title.text == "Residuals (holdout rows)"
    assert predicted_vs_actual_figure(y, p).layout.title.text == "Predicted vs actual (holdout rows)"
