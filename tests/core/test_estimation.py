"""core.estimation: performance estimated without labels (CBPE, DLE), fitted at training, logged
on every scoring, checked against the realized metrics on real Kobe shots and a regression table."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import pytest

from core import estimation, evaluation, monitoring, registry, scoring
from core.integrity import UntrustedModelError
from core.settings import load_settings
from core.training import TrainingSpec, train
from tests.conftest import KOBE_FEATURES, houses

TARGET = "shot_made_flag"
SEEDS = range(5)
FRESH_SHARE = 0.25  # of the labelled development rows, kept out of training: the covariate-shift batches come from them


def _settings(tmp_path_factory, name: str):
    ws = tmp_path_factory.mktemp(name)
    return load_settings({"STUDIO_WORKSPACE": str(ws / "ws"), "STUDIO_DATA_DIR": str(ws / "data")})


def _forget_estimators() -> None:
    """What a new process starts with: no estimator read yet."""
    estimation._LOADED.clear()


@pytest.fixture(scope="module")
def kobe(tmp_path_factory, kobe_dev):
    """A Kobe model (logistic regression on the six numeric shot features) trained through the studio
    on 75% of the labelled 2-point shots, registered as champion; the other 25% were never seen by it
    (neither trained on nor used as its holdout rows)."""
    settings = _settings(tmp_path_factory, "estimation")
    labelled = pd.read_parquet(kobe_dev).dropna(subset=[TARGET]).reset_index(drop=True)
    fresh = labelled.sample(frac=FRESH_SHARE, random_state=7)
    known = labelled.drop(fresh.index)
    result = train(settings, TrainingSpec(target=TARGET, features=KOBE_FEATURES, algorithms=("lr",)), known,
                   table_name="kobe dev (75%)", table_digest="e" * 64)
    run_id = result.models[0].run_id
    registry.register(settings, run_id, "kobe", alias="champion")
    model, pipeline = scoring.load_model(settings, "kobe@champion")
    return {"settings": settings, "run_id": run_id, "fresh": fresh.reset_index(drop=True), "model": model, "pipeline": pipeline}


def _scored(kobe, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, probabilities) of rows, as scoring gives them (the most likely class)."""
    proba = np.asarray(kobe["pipeline"].predict_proba(frame[list(KOBE_FEATURES)]), dtype=float)
    return np.asarray(kobe["model"].classes, dtype=float)[proba.argmax(axis=1)], proba


def _estimate(estimator, frame, prediction, proba, parts: int = 1) -> estimation.Estimate:
    batch = estimator.start()
    for rows in np.array_split(np.arange(len(frame)), parts):
        batch.add(prediction[rows], None if proba is None else proba[rows], frame.iloc[rows])
    return batch.finish()


# --- the expected confusion matrix --------------------------------------------------------------


def _expected_by_numpy(calibrated: np.ndarray, predicted_codes: np.ndarray) -> np.ndarray:
    k = calibrated.shape[1]
    matrix = np.zeros((k, k))
    for row in range(len(calibrated)):  # row by row: the expected count of each actual class in the predicted column
        matrix[:, predicted_codes[row]] += calibrated[row]
    return matrix


def _weighted_rows(calibrated: np.ndarray, predicted: np.ndarray, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every row once per class, weighted by its calibrated probability of being that class: sklearn's
    weighted metrics on these rows are the expected metrics."""
    k = calibrated.shape[1]
    truth = np.repeat(np.asarray(classes)[None, :], len(calibrated), axis=0).ravel()
    return truth, np.repeat(predicted, k), calibrated.ravel()


def test_the_expected_confusion_matrix_of_two_classes_is_the_sum_of_calibrated_probabilities(kobe):
    from sklearn import metrics as skm

    estimator = estimation.load(kobe["settings"], kobe["run_id"])
    assert estimator is not None and estimator.method == "cbpe" and len(estimator.calibration) == 1
    frame = kobe["fresh"]
    prediction, proba = _scored(kobe, frame)
    calibrated = estimator.calibrate(proba)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    order = np.argsort(proba[:, 1])
    assert (np.diff(calibrated[order, 1]) >= -1e-12).all()  # isotonic: never lower for a higher raw score
    assert not np.allclose(calibrated, proba)  # it did calibrate something

    batch = estimator.start()
    for rows in np.array_split(np.arange(len(frame)), 3):  # batch by batch
        batch.add(prediction[rows], proba[rows], frame.iloc[rows])
    codes = (prediction == 1.0).astype(int)
    np.testing.assert_allclose(batch.confusion(), _expected_by_numpy(calibrated, codes), rtol=1e-10)

    estimate = batch.finish()
    truth, predicted, weight = _weighted_rows(calibrated, prediction, [0.0, 1.0])
    assert estimate.method == "cbpe" and estimate.rows == len(frame)
    assert estimate.values["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted, sample_weight=weight), abs=1e-10)
    for name, measure in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        assert estimate.values[name] == pytest.approx(measure(truth, predicted, pos_label=1.0, sample_weight=weight), abs=1e-10)
    # the expected AUC ranks by the raw score, each row a fractional positive and negative (ties within a fine bin count half)
    fractional = skm.roc_auc_score(truth, np.repeat(proba[:, 1], 2), sample_weight=weight)
    assert estimate.values["auc"] == pytest.approx(fractional, abs=2e-3)
    assert set(estimate.bands) == set(estimate.values) and all(0 < b <= 1 for b in estimate.bands.values())


def test_the_expected_confusion_matrix_of_several_classes_is_the_sum_of_calibrated_probabilities(kobe_dev):
    """More than two classes: one-vs-rest isotonic calibrations, rows renormalised, macro averages
    (the shot type from where and when the shot was taken, real Kobe rows, a real sklearn model)."""
    from sklearn import metrics as skm
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    frame = pd.read_parquet(kobe_dev)
    common = frame["combined_shot_type"].value_counts()
    frame = frame[frame["combined_shot_type"].isin(common.index[common > 300])]
    features = ["shot_distance", "loc_x", "loc_y", "period", "minutes_remaining"]
    train_rows, rest = train_test_split(frame, test_size=0.4, random_state=0, stratify=frame["combined_shot_type"])
    holdout, batch_rows = train_test_split(rest, test_size=0.5, random_state=0, stratify=rest["combined_shot_type"])
    model = LogisticRegression(max_iter=2000).fit(train_rows[features], train_rows["combined_shot_type"])
    classes = tuple(model.classes_)
    assert len(classes) >= 3
    raw = model.predict_proba(holdout[features])
    estimator = estimation.fit("classification", classes, features, holdout[features], holdout["combined_shot_type"].to_numpy(),
                               model.predict(holdout[features]), raw)
    assert estimator is not None and len(estimator.calibration) == len(classes)

    proba = model.predict_proba(batch_rows[features])
    prediction = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    calibrated = estimator.calibrate(proba)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    by_hand = np.column_stack([np.interp(proba[:, k], *estimator.calibration[k]) for k in range(len(classes))])
    np.testing.assert_allclose(calibrated, by_hand / by_hand.sum(axis=1, keepdims=True))
    estimate = _estimate(estimator, batch_rows[features], prediction, proba, parts=4)
    codes = proba.argmax(axis=1)
    batch = estimator.start()
    batch.add(prediction, proba, batch_rows[features])
    np.testing.assert_allclose(batch.confusion(), _expected_by_numpy(calibrated, codes), rtol=1e-10)
    truth, predicted, weight = _weighted_rows(calibrated, prediction, classes)
    assert estimate.values["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted, sample_weight=weight), abs=1e-10)
    for name, measure in (("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)):
        expected = measure(truth, predicted, average="macro", sample_weight=weight, zero_division=0)
        assert estimate.values[name] == pytest.approx(expected, abs=1e-10)
    one_vs_rest = [skm.roc_auc_score(np.tile([1.0, 0.0], len(proba)), np.repeat(proba[:, k], 2),
                                     sample_weight=np.column_stack([calibrated[:, k], 1 - calibrated[:, k]]).ravel())
                   for k in range(len(classes))]
    assert estimate.values["auc"] == pytest.approx(float(np.mean(one_vs_rest)), abs=2e-3)


# --- covariate shift and concept shift on Kobe ----------------------------------------------------


def _shifted(fresh: pd.DataFrame, seed: int) -> dict[str, pd.DataFrame]:
    """Batches of rows the model never saw, their mix of inputs changed but not how the inputs relate
    to the outcome: the close shots, the far (2-point) shots, and a sample weighted towards far shots."""
    rng = np.random.default_rng(seed)
    weights = np.exp(fresh["shot_distance"].to_numpy() / 6.0)
    weighted = fresh.iloc[rng.choice(len(fresh), 1500, replace=False, p=weights / weights.sum())]
    return {"close": fresh[fresh["shot_distance"] < 10].sample(frac=0.8, random_state=seed),
            "far": fresh[fresh["shot_distance"] >= 12].sample(frac=0.8, random_state=seed),
            "towards far": weighted}


def test_under_covariate_shift_the_estimate_holds_within_its_band(kobe):
    estimator = estimation.load(kobe["settings"], kobe["run_id"])
    checked = 0
    for seed in SEEDS:
        for name, frame in _shifted(kobe["fresh"], seed).items():
            prediction, proba = _scored(kobe, frame)
            estimate = _estimate(estimator, frame, prediction, proba, parts=2)
            realized = evaluation.classification_metrics(frame[TARGET].to_numpy(), prediction, proba, kobe["model"].classes)
            for metric in ("accuracy", "f1", "auc"):
                value, band = estimate.values[metric], estimate.bands[metric]
                assert abs(realized[metric] - value) <= band, (name, seed, metric, realized[metric], value, band)
                checked += 1
            assert not set(estimate.disagreements(realized)) & {"accuracy", "f1", "auc"}
    assert checked == 3 * 3 * len(SEEDS)
    # the shift is real: the far shots are estimated (and are) harder to rank than the close ones
    far, close = (_estimate(estimator, f, *_scored(kobe, f)) for f in (_shifted(kobe["fresh"], 0)[k] for k in ("far", "close")))
    assert far.values["auc"] < close.values["auc"]


def test_scoring_the_production_file_logs_the_estimate_and_the_concept_shift_breaks_its_band(kobe, kobe_prod):
    """Kobe dev -> prod: the 3-point shots. Scoring logs est.* and est_band.* and the tag; the file
    holds the outcome, so the realized metrics sit beside them: the model still expects to rank makes
    above misses, but on 3-point shots it cannot (realized AUC near 0.5), beyond the band."""
    from core.tracking import client

    settings = kobe["settings"]
    report = scoring.score(settings, kobe["model"], kobe["pipeline"], scoring.open_input(settings, kobe_prod), batch_rows=1000)
    run = client(settings).get_run(report.run_id)
    assert run.data.tags[estimation.TAG] == "cbpe"
    logged = {k for k in run.data.metrics if k.startswith(("est.", "est_band."))}
    assert logged == {f"{p}{m}" for p in ("est.", "est_band.") for m in estimation.CLASSIFICATION_METRICS}
    estimate = estimation.Estimate.from_metrics(run.data.metrics)
    assert estimate.method == "cbpe" and estimate.rows == 6426
    assert "auc" in estimate.disagreements(report.metrics)
    assert estimate.values["auc"] - report.metrics["auc"] > estimate.bands["auc"]

    batch = next(b for b in monitoring.batches(settings, "kobe") if b.run_id == report.run_id)
    assert not [k for k in batch.metrics if k.startswith("est")]  # the realized metrics only
    assert batch.metrics["auc"] == pytest.approx(report.metrics["auc"])
    assert batch.estimated == pytest.approx(estimate.values) and batch.bands == pytest.approx(estimate.bands)

    # batch by batch (1,000 rows at a time while scoring) equals the whole output at once, and the
    # labelled rows alone can be estimated from the output (what attaching labels records)
    output = pd.read_parquet(report.output)
    whole = estimation.estimate_frame(settings, kobe["run_id"], output)
    assert whole.values == pytest.approx(estimate.values, abs=1e-9) and whole.bands == pytest.approx(estimate.bands, abs=1e-9)
    labelled = output[output[TARGET].notna()]
    part = estimation.estimate_frame(settings, kobe["run_id"], labelled)
    assert part.rows == len(labelled) < whole.rows
    assert estimation.complete(settings, report.run_id) == estimate  # already there: read back, not measured again


def test_a_batch_scored_before_estimates_gets_its_estimate_once_from_its_output(kobe, kobe_prod):
    """A batch scored while its version's estimator could not be read (as by a studio before this
    change) has no est.* metrics; complete() streams its output once and records them."""
    from core.tracking import client

    settings = kobe["settings"]
    c = client(settings)
    manifest = c.get_run(kobe["run_id"]).data.tags[estimation.MANIFEST_TAG]
    c.delete_tag(kobe["run_id"], estimation.MANIFEST_TAG)
    _forget_estimators()
    try:
        report = scoring.score(settings, kobe["model"], kobe["pipeline"], scoring.open_input(settings, kobe_prod),
                               batch_rows=700, force=True)
    finally:
        c.set_tag(kobe["run_id"], estimation.MANIFEST_TAG, manifest)
        _forget_estimators()
    run = c.get_run(report.run_id)
    assert not [k for k in run.data.metrics if k.startswith("est")]
    c.delete_tag(report.run_id, estimation.TAG)  # scored before the tag existed
    from core import monitoring

    name = kobe["model"].name
    before = next(b for b in monitoring.batches(settings, name) if b.run_id == report.run_id)
    assert before.estimate_status is None and not before.estimated
    # the history (Monitor page, core monitor) estimates such a batch once and records it
    batch = next(b for b in monitoring.complete_history(settings, name) if b.run_id == report.run_id)
    assert batch.estimate_status == "cbpe" and set(batch.estimated) >= {"accuracy", "auc"}
    found = estimation.complete(settings, report.run_id)  # recorded: read back
    assert found.values == pytest.approx(batch.estimated)
    assert found is not None and found.rows == 6426
    after = c.get_run(report.run_id)
    assert after.data.tags[estimation.TAG] == "cbpe"
    assert estimation.Estimate.from_metrics(after.data.metrics).values == pytest.approx(found.values)
    whole = estimation.estimate_frame(settings, kobe["run_id"], pd.read_parquet(report.output))
    assert found.values == pytest.approx(whole.values, abs=1e-9)


# --- a version without an estimator, and one whose estimator was altered ---------------------------


def _artifact_folder(settings, run_id: str) -> Path:
    from core.tracking import client

    return Path(unquote(urlsplit(client(settings).get_run(run_id).info.artifact_uri).path))


@pytest.fixture(scope="module")
def priced(tmp_path_factory):
    """A regression model (house prices) through the studio, and a second version of it turned into one
    trained before estimators existed (no estimator folder, no hashes)."""
    settings = _settings(tmp_path_factory, "estimation-dle")
    result = train(settings, TrainingSpec(target="price", algorithms=("lr",), folds=2), houses(2_000, 0),
                   table_name="houses", table_digest="h" * 64)
    run_id = result.models[0].run_id
    registry.register(settings, run_id, "prices", alias="champion")
    old = train(settings, TrainingSpec(target="price", algorithms=("lr",), folds=2), houses(600, 1),
                table_name="houses", table_digest="g" * 64)
    from core.tracking import client

    client(settings).delete_tag(old.models[0].run_id, estimation.MANIFEST_TAG)
    shutil.rmtree(_artifact_folder(settings, old.models[0].run_id) / estimation.FOLDER)
    registry.register(settings, old.models[0].run_id, "prices-old", alias="champion")
    model, pipeline = scoring.load_model(settings, "prices@champion")
    return {"settings": settings, "run_id": run_id, "model": model, "pipeline": pipeline}


def _dle(priced, frame: pd.DataFrame) -> tuple[estimation.Estimate, dict[str, float]]:
    features = frame[list(priced["model"].features)]
    prediction = np.asarray(priced["pipeline"].predict(features), dtype=float)
    estimator = estimation.load(priced["settings"], priced["run_id"])
    return _estimate(estimator, features, prediction, None, parts=3), evaluation.regression_metrics(frame["price"], prediction)


def test_dle_holds_within_its_band_under_covariate_shift(priced):
    estimator = estimation.load(priced["settings"], priced["run_id"])
    assert estimator.method == "dle" and estimator.error_models is not None and estimator.encoding["area"] is not None
    for seed in SEEDS:
        for shift in (-15.0, 40.0):  # the sizes move; the price still follows them as in training
            estimate, realized = _dle(priced, houses(800, 100 + seed, shift=shift))
            assert estimate.method == "dle" and set(estimate.values) == {"mae", "rmse"}
            for metric in ("mae", "rmse"):
                assert abs(realized[metric] - estimate.values[metric]) <= estimate.bands[metric], (seed, shift, metric)
            assert estimate.disagreements(realized) == []


def test_dle_shows_a_changed_relationship_beyond_its_band(priced):
    for seed in SEEDS[:2]:
        frame = houses(800, 200 + seed)
        scaled = frame.assign(price=frame["price"] * 1.3)  # the same inputs, dearer houses
        estimate, realized = _dle(priced, scaled)
        assert set(estimate.disagreements(realized)) == {"mae", "rmse"}
        assert realized["mae"] > estimate.values["mae"] + estimate.bands["mae"]
        noisy = frame.assign(price=frame["price"] + np.random.default_rng(seed).normal(0, 30_000, len(frame)))
        estimate, realized = _dle(priced, noisy)
        assert set(estimate.disagreements(realized)) == {"mae", "rmse"}


def test_scoring_a_regression_logs_the_dle_estimate(priced, tmp_path):
    from core.tracking import client

    settings = priced["settings"]
    frame = houses(3_000, 9, shift=10)
    path = tmp_path / "houses.parquet"
    frame.drop(columns="price").to_parquet(path)
    report = scoring.score(settings, priced["model"], priced["pipeline"], scoring.open_input(settings, path), batch_rows=500)
    run = client(settings).get_run(report.run_id)
    assert run.data.tags[estimation.TAG] == "dle"
    estimate = estimation.Estimate.from_metrics(run.data.metrics)
    assert estimate.method == "dle" and set(estimate.values) == set(estimate.bands) == {"mae", "rmse"}
    whole = estimation.estimate_frame(settings, priced["run_id"], pd.read_parquet(report.output))
    assert whole.values == pytest.approx(estimate.values, rel=1e-9)
    batch = next(b for b in monitoring.batches(settings, "prices") if b.run_id == report.run_id)
    assert batch.metrics == {} and batch.estimated == pytest.approx(estimate.values)


def test_a_version_without_an_estimator_scores_and_is_tagged_unavailable(priced, tmp_path):
    from core.tracking import client

    settings = priced["settings"]
    view = registry.resolve(settings, "prices-old@champion")
    assert estimation.load(settings, view.run_id) is None
    path = tmp_path / "houses.csv"
    houses(500, 11).to_csv(path, index=False)
    model, pipeline = scoring.load_model(settings, "prices-old@champion")
    report = scoring.score(settings, model, pipeline, scoring.open_input(settings, path))
    assert report.rows == 500 and report.metrics["mae"] > 0  # scored and measured as before
    run = client(settings).get_run(report.run_id)
    assert run.data.tags[estimation.TAG] == "unavailable"
    assert not [k for k in run.data.metrics if k.startswith("est")]
    assert estimation.complete(settings, report.run_id) is None
    batch = next(b for b in monitoring.batches(settings, "prices-old") if b.run_id == report.run_id)
    assert batch.estimated == {} and batch.bands == {} and "mae" in batch.metrics
    assert "retrain" in estimation.UNAVAILABLE


def test_an_altered_estimator_is_not_unpickled(priced):
    """The error models are pickled: their SHA-256 is on the model run, checked against the bytes."""
    from core import tracking

    settings = priced["settings"]
    tags = tracking.client(settings).get_run(priced["run_id"]).data.tags
    manifest = json.loads(tags[estimation.MANIFEST_TAG])
    assert set(manifest) == {estimation.CONFIG, estimation.ERRORS}
    local = tracking.run_artifact(settings, priced["run_id"], estimation.FOLDER)
    stored = _artifact_folder(settings, priced["run_id"]) / estimation.FOLDER / estimation.ERRORS
    original = stored.read_bytes()
    try:
        for path in (local / estimation.ERRORS, stored):
            path.write_bytes(original + b"\x00")
        _forget_estimators()
        with pytest.raises(UntrustedModelError, match="not the one logged at training"):
            estimation.load(settings, priced["run_id"])
    finally:
        for path in (local / estimation.ERRORS, stored):
            path.write_bytes(original)
        _forget_estimators()
    assert estimation.load(settings, priced["run_id"]) is not None


# --- the estimate itself ----------------------------------------------------------------------------


def test_an_estimate_round_trips_through_its_metrics_and_names_its_disagreements():
    estimate = estimation.Estimate("cbpe", 1000, {"accuracy": 0.7, "auc": 0.65, "f1": math.nan}, {"accuracy": 0.03, "auc": 0.04})
    logged = estimate.to_metrics()
    assert logged == {"est.accuracy": 0.7, "est_band.accuracy": 0.03, "est.auc": 0.65, "est_band.auc": 0.04}
    back = estimation.Estimate.from_metrics({**logged, "rows": 1000, "accuracy": 0.5})
    assert back == estimation.Estimate("cbpe", 1000, {"accuracy": 0.7, "auc": 0.65}, {"accuracy": 0.03, "auc": 0.04})
    assert back.disagreements({"accuracy": 0.68, "auc": 0.5}) == ["auc"]
    assert back.disagreements({"accuracy": 0.72}) == []
    assert estimation.Estimate.from_metrics({"rows": 3, "mae": 1.0}) is None
    assert estimation.Estimate.from_dict(back.to_dict()) == back
    assert estimation.Estimate.from_metrics({"est.mae": 2.0, "est_band.mae": 0.5}).method == "dle"
