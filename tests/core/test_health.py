"""core.health and `core monitor`: a Kobe champion's health from its latest scored batch: healthy on rows
like its training rows, drift (or performance) on Kobe prod, performance on a batch whose outcomes are
flipped; no batch yet is said (nothing to judge, exit 0), not called healthy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import drift, health, monitoring, registry, scoring, tables
from core.errors import BadInputError, NotFoundError
from core.settings import load_settings
from core.training import TrainingSpec, train
from tests.conftest import KOBE_FEATURES, cli_on, houses

TARGET = "shot_made_flag"


@pytest.fixture(scope="module")
def kobe(tmp_path_factory, kobe_dev):
    root = tmp_path_factory.mktemp("health")
    settings = load_settings({"STUDIO_WORKSPACE": str(root / "ws"), "STUDIO_DATA_DIR": str(root / "data")})
    record = tables.store(settings).ingest(kobe_dev, kobe_dev.name).record  # so training+labelled can be proposed
    frame = tables.store(settings).load(record.table_id)
    result = train(settings, TrainingSpec(target=TARGET, features=KOBE_FEATURES, algorithms=("lr",), folds=2), frame,
                   table_name=record.name, table_digest=record.digest)
    registry.register(settings, result.models[0].run_id, "kobe", alias="champion")
    registry.register(settings, result.models[0].run_id, "kobe-idle", alias="champion")
    return {"settings": settings, "frame": frame[frame[TARGET].notna()], "root": root}


def score(settings, frame: pd.DataFrame, path: Path) -> str:
    frame.to_parquet(path, index=False)
    model, pipeline = scoring.load_model(settings, "kobe@champion")
    return scoring.score(settings, model, pipeline, scoring.open_input(settings, path), force=True).run_id


@pytest.fixture
def cli(kobe, monkeypatch):
    with cli_on(monkeypatch, kobe["settings"].workspace, kobe["settings"].data_dir) as module:
        yield module


def monitor(cli, capsys, *args: str) -> tuple[int, dict]:
    code = cli.main(["monitor", "--model", "kobe@champion", "--json", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out)


def test_no_batch_yet_is_said_and_asks_for_no_retraining(kobe, cli, capsys):
    found = health.check(kobe["settings"], "kobe-idle@champion")
    assert found.status == health.UNSCORED and found.status != health.HEALTHY and found.latest is None
    assert found.exit_code == 0 and found.proposal is None  # nothing for a scheduler to retrain
    assert "No batch has been scored with kobe-idle yet" in found.reasons[0] and "python -m core score" in found.reasons[0]
    assert cli.main(["monitor", "--model", "kobe-idle@champion"]) == 0
    out, err = capsys.readouterr()
    assert "kobe-idle (kobe-idle@champion, version 1): unscored (exit 0)" in out and "No batch has been scored" in out
    assert cli.main(["monitor", "--model", "nobody@champion"]) == NotFoundError("x").exit_code
    out, err = capsys.readouterr()
    assert out == "" and "no registered model 'nobody'" in err  # an error prints no verdict on stdout


def test_health_follows_the_latest_batch(kobe, kobe_prod, cli, capsys):
    settings, frame, root = kobe["settings"], kobe["frame"], kobe["root"]
    holdout = registry.resolve(settings, "kobe@champion").metrics

    # rows like the training rows: healthy
    close = score(settings, frame.sample(3000, random_state=5), root / "close.parquet")
    found = health.check(settings, "kobe@champion")
    assert found.status == health.HEALTHY and found.exit_code == 0 and found.proposal is None
    assert found.latest.run_id == close and found.latest.drift_status in ("stable", "moderate")
    assert abs(found.latest.realized["auc"] - holdout["auc"]) <= drift.Thresholds().performance_drop
    assert "breaks no rule" in found.reasons[0]
    code, data = monitor(cli, capsys)
    assert code == 0 and data["status"] == "healthy" and data["batches"][-1]["run_id"] == close

    # Kobe prod: the 3-point shots drift from the 2-point ones the model learned from
    prod = score(settings, pd.read_parquet(kobe_prod), root / "prod.parquet")
    found = health.check(settings, "kobe@champion")
    assert found.latest.run_id == prod and found.latest.drift_status == "significant"
    assert found.exit_code in (3, 4) and found.status in (health.DRIFT, health.PERFORMANCE)
    assert any(r.startswith("Drift: ") and "PSI" in r for r in found.reasons)
    assert "prod.parquet" in found.reasons[0] and "breaks" in found.reasons[0]
    assert "python -m core retrain --model kobe@champion --data training+labelled" in found.proposal
    assert found.latest.worst_psi >= drift.Thresholds().psi_significant and found.latest.worst_feature in KOBE_FEATURES
    # its outcomes disagree with the estimate made from the inputs: the relation changed (concept drift)
    assert "auc" in found.latest.disagreements
    assert any("concept drift" in r for r in found.reasons)
    code, data = monitor(cli, capsys)
    assert code == found.exit_code and data["reasons"] == list(found.reasons)
    assert "auc" in data["batches"][-1]["disagreements"]

    # outcomes flipped: the realized AUC breaks the performance rule
    flipped = frame.sample(3000, random_state=6)
    flipped[TARGET] = 1 - flipped[TARGET]
    bad = score(settings, flipped, root / "flipped.parquet")
    found = health.check(settings, "kobe@champion", last=2)
    assert found.latest.run_id == bad and found.status == health.PERFORMANCE and found.exit_code == 4
    assert [b.run_id for b in found.batches] == [prod, bad]
    reason = next(r for r in found.reasons if r.startswith("Performance (realized)"))
    assert "AUC fell to" in reason and "more than the 0.05 the rule allows" in reason
    assert found.latest.realized["auc"] < holdout["auc"] - 0.05
    code = cli.main(["monitor", "--model", "kobe@champion", "--last", "3"])
    out, _ = capsys.readouterr()
    assert code == 4 and "performance (exit 4)" in out and "Proposal: Retrain to a challenger" in out
    assert len([line for line in out.splitlines() if " rows  worst PSI " in line]) == 3

    # a looser rule: the same batch passes
    monitoring.save_thresholds(settings, drift.Thresholds(performance_drop=100.0))
    try:
        assert health.check(settings, "kobe@champion").status == health.HEALTHY
    finally:
        monitoring.save_thresholds(settings, drift.Thresholds())


def test_the_performance_rule_is_checked_and_kept_with_the_thresholds(tmp_path):
    with pytest.raises(BadInputError, match="allowed performance drop"):
        drift.Thresholds(performance_drop=-0.1).save(tmp_path / "t.json")
    drift.Thresholds(performance_drop=0.02).save(tmp_path / "t.json")
    assert drift.Thresholds.load(tmp_path / "t.json").performance_drop == 0.02
    (tmp_path / "old.json").write_text(json.dumps({"psi_moderate": 0.1, "psi_significant": 0.3, "p_value": 0.05}))
    old = drift.Thresholds.load(tmp_path / "old.json")  # a file saved before the rule existed
    assert old.psi_significant == 0.3 and old.performance_drop == drift.Thresholds().performance_drop


def test_a_regressor_breaks_the_rule_when_its_rmse_grows_by_more_than_the_share_allowed(tmp_path):
    settings = load_settings({"STUDIO_WORKSPACE": str(tmp_path / "ws"), "STUDIO_DATA_DIR": str(tmp_path / "data")})
    result = train(settings, TrainingSpec(target="price", algorithms=("lr",), folds=2), houses(1_000, 0),
                   table_name="houses", table_digest="h" * 64)
    registry.register(settings, result.models[0].run_id, "prices", alias="champion")
    model, pipeline = scoring.load_model(settings, "prices@champion")
    holdout = registry.resolve(settings, "prices@champion").metrics["rmse"]

    def scored(frame: pd.DataFrame, name: str) -> None:
        frame.to_parquet(tmp_path / name, index=False)
        scoring.score(settings, model, pipeline, scoring.open_input(settings, tmp_path / name), force=True)

    scored(houses(800, 1), "same.parquet")
    found = health.check(settings, "prices@champion")
    assert found.status == health.HEALTHY and abs(found.latest.realized["rmse"] / holdout - 1) < 0.05
    assert "RMSE stays within 5% of the holdout" in found.reasons[0]
    noisy = houses(800, 2)
    noisy["price"] += np.random.default_rng(3).normal(0, 30_000, len(noisy))  # the same inputs, far noisier outcomes
    scored(noisy, "noisy.parquet")
    found = health.check(settings, "prices@champion")
    assert found.status == health.PERFORMANCE and found.exit_code == 4 and found.rule["metric"] == "rmse"
    assert found.latest.realized["rmse"] > 1.05 * holdout
    assert any(r.startswith("Performance (realized): RMSE rose to") and "more than the 5% the rule allows" in r
               for r in found.reasons)


def test_the_version_asked_about_is_judged_on_its_own_latest_file(kobe):
    """After a promotion or a trial scoring by another version, `core monitor --model NAME@ALIAS` judges the
    latest file that alias's version scored (not whichever version scored last), and says when that version
    has scored nothing yet (exit 0: nothing of its own to judge)."""
    settings, frame, root = kobe["settings"], kobe["frame"], kobe["root"]
    other = train(settings, TrainingSpec(target=TARGET, features=KOBE_FEATURES, algorithms=("lr",), params={"lr": {"C": 0.3}},
                                         folds=2, seed=3), frame, table_name="kobe dev", table_digest="e" * 64)
    version = registry.register(settings, other.models[0].run_id, "kobe", alias="challenger").version
    mine = score(settings, frame.sample(2500, random_state=11), root / "champion-file.parquet")
    fresh = health.check(settings, "kobe@challenger")
    assert fresh.status == health.UNSCORED and fresh.exit_code == 0 and fresh.proposal is None
    assert f"version {version}) has not scored a file yet" in fresh.reasons[0]

    model, pipeline = scoring.load_model(settings, "kobe@challenger")
    path = root / "challenger-file.parquet"
    pd.read_parquet(kobe["root"] / "champion-file.parquet").head(2000).to_parquet(path, index=False)
    trial = scoring.score(settings, model, pipeline, scoring.open_input(settings, path), force=True).run_id
    champion = health.check(settings, "kobe@champion")
    assert champion.latest.run_id == mine and champion.latest.version == 1 and champion.batches[-1].run_id == trial
    assert any("later files were scored by other versions" in n for n in champion.notes)
    challenger = health.check(settings, "kobe@challenger")
    assert challenger.latest.run_id == trial and challenger.latest.version == version and challenger.status != health.UNSCORED


def test_outcomes_that_arrive_late_still_decide_and_a_tiny_file_does_not(kobe):
    """The realized performance is judged on the latest file that has outcomes, even when newer files
    (without them yet) were scored since; a file too small to judge does not decide the verdict."""
    settings, frame, root = kobe["settings"], kobe["frame"], kobe["root"]
    flipped = frame.sample(3000, random_state=21)
    flipped[TARGET] = 1 - flipped[TARGET]
    score(settings, flipped, root / "late-flipped.parquet")
    newer = score(settings, frame.sample(3000, random_state=22).drop(columns=TARGET), root / "late-newer.parquet")
    found = health.check(settings, "kobe@champion")
    assert found.latest.run_id == newer and found.status == health.PERFORMANCE and found.exit_code == 4
    assert any("'late-flipped.parquet'" in r and "breaks the performance rule" in r for r in found.reasons)
    tiny = score(settings, frame.sample(20, random_state=23).drop(columns=TARGET), root / "late-tiny.parquet")
    after = health.check(settings, "kobe@champion")
    assert after.latest.run_id == newer and after.batches[-1].run_id == tiny and after.exit_code == 4
    assert any("has too few rows (20) to judge" in n for n in after.notes)
