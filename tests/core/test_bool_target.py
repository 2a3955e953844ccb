"""A True/False target: its predictions stay True and False (not the text "True" / "False"), so a
scored file holding the outcome is measured, outcomes added later attach, and REST answers booleans."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from core import datasets, labels, model_flavor, registry, scoring
from core.settings import load_settings
from core.training import TrainingSpec, train


def flags(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"size": rng.normal(0, 1, n), "color": rng.choice(["red", "blue", "green"], n)})
    frame["flag"] = (frame["size"] + np.where(frame["color"] == "red", 0.8, 0.0) + rng.normal(0, 0.7, n)) > 0.3
    return frame


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    ws = tmp_path_factory.mktemp("bools")
    settings = load_settings({"STUDIO_WORKSPACE": str(ws / "ws"), "STUDIO_DATA_DIR": str(ws / "data")})
    result = train(settings, TrainingSpec(target="flag", algorithms=("lr",), folds=2), flags(1500, 0),
                   table_name="flags", table_digest="f" * 64)
    registry.register(settings, result.models[0].run_id, "flags", alias="champion")
    return settings


def test_a_true_false_model_is_measured_on_a_file_holding_the_outcome_and_keeps_booleans(studio, tmp_path):
    frame = flags(600, 1)
    path = tmp_path / "flags.csv"  # a CSV writes True / False as text
    frame.to_csv(path, index=False)
    registry.set_cutoff(studio, "flags", 1, 0.4)
    model, pipeline = scoring.load_model(studio, "flags@champion")
    assert model.classes == (False, True)
    report = scoring.score(studio, model, pipeline, scoring.open_input(studio, path), force=True)
    out = datasets.read_parquet(report.output)
    assert out["prediction"].dtype == bool
    np.testing.assert_array_equal(out["prediction"].to_numpy(), out["proba_True"].to_numpy() >= 0.4)
    assert report.metrics is not None, report.messages  # it was "values the model never learned ('False', 'True')"
    assert report.metrics["recall"] == pytest.approx(skm.recall_score(frame["flag"], out["prediction"]), abs=1e-12)
    registry.set_cutoff(studio, "flags", 1, None)


def test_outcomes_of_a_true_false_model_attach_later(studio, tmp_path):
    frame = flags(400, 2)
    path = tmp_path / "batch.parquet"
    frame.drop(columns=["flag"]).to_parquet(path)
    model, pipeline = scoring.load_model(studio, "flags@champion")
    report = scoring.score(studio, model, pipeline, scoring.open_input(studio, path), force=True)
    outcomes = tmp_path / "outcomes.csv"
    pd.DataFrame({"row_number": np.arange(1, 401), "flag": frame["flag"]}).to_csv(outcomes, index=False)
    attached = labels.attach(studio, labels.plan(studio, report.run_id, outcomes, key=labels.ROW_NUMBER))
    predicted = datasets.read_parquet(report.output)["prediction"]
    assert attached.metrics["accuracy"] == pytest.approx(skm.accuracy_score(frame["flag"], predicted), abs=1e-12)


def test_rest_answers_a_true_false_model_with_booleans():
    assert model_flavor.output_spec([False, True]) == {"format": 2, "labels": [False, True], "columns": ["proba_False", "proba_True"]}


def test_the_positive_class_of_a_true_false_model_is_named_as_people_write_it(studio):
    assert registry.set_cutoff(studio, "flags", 1, 0.6, positive="false").positive == "False"
    assert registry.set_cutoff(studio, "flags", 1, 0.6, positive="TRUE").positive == "True"
    registry.set_cutoff(studio, "flags", 1, None)
