"""core.monitoring: drift of scored batches recorded on their scoring runs; a batch too small to
judge is recorded as such, draws no point in the history, and the drift CLI does not alert on it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from core import drift, monitoring, registry, scoring
from core.settings import load_settings
from core.training import TrainingSpec, train
from tests.conftest import houses


@pytest.fixture(scope="module")
def priced(tmp_path_factory):
    ws = tmp_path_factory.mktemp("monitoring")
    settings = load_settings({"STUDIO_WORKSPACE": str(ws / "ws"), "STUDIO_DATA_DIR": str(ws / "data")})
    result = train(settings, TrainingSpec(target="price", algorithms=("lr",), folds=2), houses(1_000, 0),
                   table_name="houses", table_digest="h" * 64)
    registry.register(settings, result.models[0].run_id, "prices", alias="champion")
    return settings


def scored(settings, frame: pd.DataFrame, path: Path) -> str:
    frame.to_parquet(path)
    model, pipeline = scoring.load_model(settings, "prices@champion")
    return scoring.score(settings, model, pipeline, scoring.open_input(settings, path), force=True).run_id


def test_a_small_batch_is_recorded_as_too_few_rows_and_stays_out_of_the_history(priced, tmp_path):
    from core.tracking import client

    small = scored(priced, houses(5, 1, shift=500), tmp_path / "five.parquet")
    report = monitoring.batch_drift(priced, small)
    assert report.summary["status"] == drift.TOO_FEW
    assert len(monitoring.batch_head(Path(scoring.load_report(priced, small).output), ["size", "rooms"], drift.MIN_ROWS)) == 5
    run = client(priced).get_run(small)
    assert run.data.tags["studio.drift_status"] == drift.TOO_FEW
    assert not [k for k in run.data.metrics if k.startswith("drift.psi.")]  # no misleading PSI in the history

    large = scored(priced, houses(drift.MIN_ROWS, 2, shift=500), tmp_path / "large.parquet")
    report = monitoring.batch_drift(priced, large)
    assert report.summary["status"] == "significant"
    assert client(priced).get_run(large).data.metrics["drift.psi.size"] > 0.25
    psi, _ = monitoring.history(monitoring.batches(priced, "prices"))
    assert list(psi["batch"]) == [b.label for b in monitoring.batches(priced, "prices") if b.run_id == large]


def test_the_drift_cli_does_not_alert_on_too_few_rows(priced, tmp_path, monkeypatch, capsys):
    from core.__main__ import main

    monkeypatch.setenv("STUDIO_WORKSPACE", str(priced.workspace))
    monkeypatch.setenv("STUDIO_DATA_DIR", str(priced.data_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    one = tmp_path / "one.csv"
    houses(1, 3, shift=500).to_csv(one, index=False)
    assert main(["drift", "--model", "prices@champion", "--input", str(one), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["status"] == drift.TOO_FEW and summary["message"].startswith("There are too few rows (1)")
    many = tmp_path / "many.csv"
    houses(drift.MIN_ROWS, 4, shift=500).to_csv(many, index=False)
    assert main(["drift", "--model", "prices@champion", "--input", str(many), "--json"]) == 3  # real drift still alerts


def test_the_monitor_reads_the_recorded_drift_and_measures_an_older_run_batch_by_batch(priced, tmp_path, monkeypatch):
    """Scoring records drift on its run; batch_drift reads that record back (judged with the current
    thresholds). A run without one (scored before drift was measured while scoring) is measured by
    streaming its output, with the report drift.compare gives on the whole output."""
    from core.tracking import client

    frame = houses(3_000, 5, shift=20)
    path = tmp_path / "older.parquet"
    frame.to_parquet(path)
    model, pipeline = scoring.load_model(priced, "prices@champion")
    older = scoring.score(priced, model, pipeline, scoring.open_input(priced, path), force=True, batch_rows=400, measure_drift=False)
    assert older.drift is None and "studio.drift_status" not in client(priced).get_run(older.run_id).data.tags
    output = pd.read_parquet(older.output)
    profile = monitoring.training_profile(priced, "prices", model.version)
    whole = drift.compare(profile, output, monitoring.thresholds(priced), scores=monitoring.batch_scores(output))
    measured = monitoring.batch_drift(priced, older.run_id)
    assert measured.to_dict() == whole.to_dict() and repr(measured.features) == repr(whole.features)
    assert client(priced).get_run(older.run_id).data.tags["studio.drift_status"] == whole.summary["status"]

    def never(*args, **kwargs):
        raise AssertionError("measured again instead of read back")

    monkeypatch.setattr(monitoring, "measure_output", never)
    again = monitoring.batch_drift(priced, older.run_id)
    assert again.to_dict() == whole.to_dict()
    stricter = drift.Thresholds(psi_moderate=0.001, psi_significant=0.002, p_value=0.9)
    monitoring.save_thresholds(priced, stricter)
    try:
        judged = monitoring.batch_drift(priced, older.run_id)
        expected = drift.compare(profile, output, stricter, scores=monitoring.batch_scores(output))
        assert judged.to_dict() == expected.to_dict()
    finally:
        monitoring.save_thresholds(priced, drift.Thresholds())
