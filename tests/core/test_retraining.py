"""core.retraining: a Kobe champion retrained to a challenger (same recipe) on a stored table and on the
training table plus its labelled batches, the challenger compared with the champion on the held-out
batch, and bad input refused with nothing registered."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import evaluation, jobs, registry, retraining, scoring, tables
from core.datasets import ReadResult
from core.errors import BadInputError, NotFoundError
from core.settings import load_settings
from core.training import TrainingSpec, train
from tests.conftest import KOBE_FEATURES, cli_on

TARGET = "shot_made_flag"


def store_frame(settings, frame: pd.DataFrame, name: str) -> str:
    return tables.store(settings).add(ReadResult(frame=frame, format="parquet"), f"{name}.parquet", name=name).record.table_id


def score(settings, frame: pd.DataFrame, path: Path, reference: str = "kobe@champion") -> str:
    frame.to_parquet(path, index=False)
    model, pipeline = scoring.load_model(settings, reference)
    return scoring.score(settings, model, pipeline, scoring.open_input(settings, path), force=True).run_id


def versions(settings, name: str) -> list[int]:
    try:
        return sorted(v.version for v in registry.get_model(settings, name).versions)
    except NotFoundError:
        return []


@pytest.fixture(scope="module")
def kobe(tmp_path_factory, kobe_dev):
    """A workspace whose table store holds Kobe dev, a logistic regression trained on it (2 folds) and
    registered as kobe@champion, and two scored batches of Kobe dev rows that held the target."""
    root = tmp_path_factory.mktemp("retraining")
    settings = load_settings({"STUDIO_WORKSPACE": str(root / "ws"), "STUDIO_DATA_DIR": str(root / "data")})
    store = tables.store(settings)
    record = store.ingest(kobe_dev, kobe_dev.name).record
    frame = store.load(record.table_id)
    spec = TrainingSpec(target=TARGET, features=KOBE_FEATURES, algorithms=("lr",), params={"lr": {"C": 0.5}}, folds=2,
                        test_size=0.25, seed=7)
    result = train(settings, spec, frame, table_name=record.name, table_digest=record.digest)
    run_id = result.models[0].run_id
    registry.register(settings, run_id, "kobe", alias="champion")
    labelled = frame[frame[TARGET].notna()]
    first = labelled.sample(1500, random_state=1)
    second = labelled.drop(first.index).sample(1200, random_state=2)
    batches = [score(settings, first, root / "batch_first.parquet"), score(settings, second, root / "batch_second.parquet")]
    return {"settings": settings, "run_id": run_id, "table": record, "frame": frame, "batches": batches,
            "first": first, "second": second, "root": root}


@pytest.fixture(scope="module")
def challenger(kobe):
    """kobe retrained on a stored table (8,000 labelled Kobe dev rows) by a background job."""
    settings = kobe["settings"]
    table = store_frame(settings, kobe["frame"][kobe["frame"][TARGET].notna()].sample(8000, random_state=3), "kobe sample")
    planned = retraining.plan(settings, "kobe@champion", table)
    job = retraining.submit(settings, planned)
    done = jobs.wait(settings, job.job_id, timeout=300)
    assert done.state == "succeeded", done.error
    return {"plan": planned, "job": done}


def test_a_retraining_on_a_stored_table_registers_a_challenger_with_the_champions_recipe(kobe, challenger):
    from core.tracking import client

    settings, planned, job = kobe["settings"], challenger["plan"], challenger["job"]
    assert planned.algorithm == "lr" and planned.features == KOBE_FEATURES and planned.target == TARGET
    assert planned.spec.test_size == 0.25 and planned.spec.folds == 2 and planned.spec.seed == 7  # the champion's split
    assert planned.params["C"] == 0.5 and planned.rows == 8000 and planned.held_out_batch is None
    assert "registered as challenger" in planned.description and "8,000 rows" in planned.description
    registered = job.result["registered"]
    assert registered == {"name": "kobe", "version": 2, "alias": "challenger"}
    model = registry.get_model(settings, "kobe")
    assert model.aliases["champion"] == 1 and model.aliases["challenger"] == 2  # champion did not move
    new = registry.resolve(settings, "kobe@challenger")
    assert new.table_digest == tables.store(settings).get(planned.table_id).digest
    c = client(settings)
    old_params, new_params = c.get_run(kobe["run_id"]).data.params, c.get_run(new.run_id).data.params
    assert new_params["algorithm"] == old_params["algorithm"] == "lr"
    hp = {k: v for k, v in old_params.items() if k.startswith("hp.")}
    assert hp and hp == {k: v for k, v in new_params.items() if k.startswith("hp.")}
    assert hp["hp.C"] == "0.5"
    info = json.loads(Path(c.download_artifacts(new.run_id, "model_info.json", str(kobe["root"] / "info"))).read_text())
    assert info["features"] == list(KOBE_FEATURES)


def test_training_plus_labelled_holds_the_training_rows_and_every_labelled_batch_but_the_latest(kobe):
    settings = kobe["settings"]
    planned = retraining.plan(settings, "kobe@champion", retraining.TRAINING_PLUS_LABELLED)
    first, second = kobe["batches"]
    assert planned.labelled_batches == (first,) and planned.held_out_batch == second
    assert planned.held_out_name == "batch_second.parquet" and planned.held_out_rows == 1200
    stored = tables.store(settings).load(planned.table_id)
    training = kobe["frame"][kobe["frame"][TARGET].notna()]
    assert planned.training_rows == len(training) and planned.labelled_rows == 1500
    assert len(stored) == planned.rows == len(training) + 1500
    assert list(stored.columns) == [*KOBE_FEATURES, TARGET]
    expected = pd.concat([training[[*KOBE_FEATURES, TARGET]], kobe["first"][[*KOBE_FEATURES, TARGET]]], ignore_index=True)
    pd.testing.assert_frame_equal(stored.reset_index(drop=True), expected, check_dtype=False)
    assert "batch_second.parquet" in planned.description and "1 batch" in planned.description
    assert planned.table_name.startswith("kobe retraining: training + 1 labelled batch")

    # a stored table with the labelled batches added: the same batch held out
    table = store_frame(settings, training.head(3000), "kobe first 3000")
    added = retraining.plan(settings, "kobe@champion", table, with_labelled=True)
    assert added.source == "table" and added.held_out_batch == second and added.labelled_batches == (first,)
    assert added.rows == len(tables.store(settings).load(added.table_id)) == 3000 + 1500
    assert added.table_name.startswith("kobe retraining: kobe first 3000 + 1 labelled batch")


def test_the_comparison_scores_both_versions_on_the_held_out_batch(kobe, challenger):
    settings = kobe["settings"]
    found = retraining.compare(settings, "kobe")
    assert found.champion_version == 1 and found.challenger_version == registry.get_model(settings, "kobe").aliases["challenger"]
    assert found.batch_run_id == kobe["batches"][1] and found.rows == 1200 and "batch_second.parquet" in found.source
    rows = kobe["second"]
    for role, figures in (("champion", found.champion_metrics), ("challenger", found.challenger_metrics)):
        model, pipeline = scoring.load_model(settings, f"kobe@{role}")
        proba = pipeline.predict_proba(rows[list(KOBE_FEATURES)])
        predicted = np.asarray(model.classes)[proba.argmax(axis=1)]
        direct = evaluation.classification_metrics(rows[TARGET].to_numpy(), predicted, proba, model.classes)
        for key in ("accuracy", "f1", "auc", "log_loss"):
            assert figures[key] == pytest.approx(direct[key], rel=1e-9), (role, key)
    primary = next(r for r in found.rows_by_metric if r.metric == "log_loss")
    assert primary.better == ("challenger" if primary.challenger < primary.champion else "champion")
    assert found.winner == primary.better and found.to_dict()["metrics"][0]["metric"] == "log_loss"


def test_bad_input_is_refused_and_nothing_is_registered(kobe, challenger):
    settings = kobe["settings"]
    before = versions(settings, "kobe")
    sample = kobe["frame"].head(500)
    no_target = store_frame(settings, sample.drop(columns=[TARGET]), "no target")
    with pytest.raises(BadInputError, match="lacks 'shot_made_flag'.*target and every feature"):
        retraining.plan(settings, "kobe@champion", no_target)
    no_feature = store_frame(settings, sample.drop(columns=["lat"]), "no lat")
    with pytest.raises(BadInputError, match="lacks 'lat'"):
        retraining.plan(settings, "kobe@champion", no_feature)
    with pytest.raises(NotFoundError, match="no registered model 'nobody'"):
        retraining.plan(settings, "nobody@champion", no_target)
    with pytest.raises(NotFoundError, match="no stored table"):
        retraining.plan(settings, "kobe@champion", "0123456789abcdef")
    with pytest.raises(BadInputError, match="challenger first"):
        retraining.plan(settings, "kobe@champion", no_target, alias="champion")

    registry.register(settings, kobe["run_id"], "kobe-unranked")  # a version, no champion
    with pytest.raises(NotFoundError, match="no alias 'champion'"):
        retraining.plan(settings, "kobe-unranked@champion", no_target)
    with pytest.raises(NotFoundError, match="no alias 'champion'.*Set the champion alias"):
        retraining.compare(settings, "kobe-unranked")

    # champion and challenger, but no batch with outcomes
    registry.register(settings, kobe["run_id"], "kobe-fresh", alias="champion")
    with pytest.raises(NotFoundError, match="no alias 'challenger'.*Retrain first"):
        retraining.compare(settings, "kobe-fresh")
    registry.register(settings, registry.resolve(settings, "kobe@challenger").run_id, "kobe-fresh", alias="challenger")
    with pytest.raises(NotFoundError, match="No scored batch of kobe-fresh has outcomes"):
        retraining.compare(settings, "kobe-fresh")
    with pytest.raises(BadInputError, match="No scored batch of kobe-fresh has outcomes"):
        retraining.plan(settings, "kobe-fresh@champion", retraining.TRAINING_PLUS_LABELLED)
    assert versions(settings, "kobe") == before and versions(settings, "kobe-fresh") == [1, 2]

    # the training table gone from the store: said, and a stored table asked for
    assert registry.resolve(settings, "kobe@champion").table_digest == kobe["table"].digest
    hidden = tables.store(settings).path(kobe["table"].table_id)
    aside = hidden.with_name("aside.parquet")
    os.replace(hidden, aside)  # the store lists a table only while its parquet file is there
    try:
        with pytest.raises(NotFoundError, match="no longer stored in this workspace.*Store a table"):
            retraining.plan(settings, "kobe@champion", retraining.TRAINING_PLUS_LABELLED)
    finally:
        os.replace(aside, hidden)
    assert versions(settings, "kobe") == before


@pytest.fixture
def cli(kobe, monkeypatch):
    with cli_on(monkeypatch, kobe["settings"].workspace, kobe["settings"].data_dir) as module:
        yield module


def test_core_retrain_trains_on_training_plus_labelled_and_registers_a_challenger(kobe, challenger, cli, capsys):
    settings = kobe["settings"]
    code = cli.main(["retrain", "--model", "kobe@champion", "--data", "training+labelled"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    top = max(versions(settings, "kobe"))
    assert summary["registered"] == {"name": "kobe", "version": top, "alias": "challenger"}
    assert summary["plan"]["held_out_batch"] == kobe["batches"][1] and summary["plan"]["labelled_rows"] == 1500
    assert "batch_second.parquet" in err and "retraining job" in err
    model = registry.get_model(settings, "kobe")
    assert model.aliases == {"champion": 1, "challenger": top}
    # compared headless on the held-out rows, then promoted only if the challenger is still the one compared
    assert cli.main(["models", "compare", "kobe"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert (compared["champion_version"], compared["challenger_version"], compared["rows"]) == (1, top, 1200)
    assert cli.main(["models", "promote", "kobe", "--expected", str(top + 1)]) == 2
    assert "Nothing was promoted" in capsys.readouterr().err and registry.get_model(settings, "kobe").aliases["champion"] == 1

    before = versions(settings, "kobe")
    bad = kobe["root"] / "no_target.csv"
    kobe["frame"].head(200).drop(columns=[TARGET]).to_csv(bad, index=False)
    assert cli.main(["retrain", "--model", "kobe@champion", "--data", str(bad)]) == 2
    assert "lacks 'shot_made_flag'" in capsys.readouterr().err
    assert cli.main(["retrain", "--model", "kobe@champion", "--data", "no-such-file.csv"]) == 2
    assert "neither a file nor a stored table id" in capsys.readouterr().err
    assert cli.main(["retrain", "--model", "ghost@champion", "--data", "training+labelled"]) == 4
    assert versions(settings, "kobe") == before


def test_a_cancelled_retraining_registers_nothing_and_moves_no_alias(kobe, challenger):
    import time

    settings = kobe["settings"]
    before, aliases = versions(settings, "kobe"), registry.get_model(settings, "kobe").aliases
    job = retraining.submit(settings, retraining.plan(settings, "kobe@champion", challenger["plan"].table_id))
    deadline = time.monotonic() + 120
    while jobs.status(settings, job.job_id).state == "queued" and time.monotonic() < deadline:
        time.sleep(0.1)
    jobs.cancel(settings, job.job_id)
    ended = jobs.wait(settings, job.job_id, timeout=120)
    assert ended.state in ("cancelled", "failed") and not (ended.result or {}).get("registered")
    assert versions(settings, "kobe") == before and registry.get_model(settings, "kobe").aliases == aliases


def test_a_file_scored_again_counts_once_and_never_beside_its_held_out_copy(kobe):
    """The held-out batch's file scored earlier too (forced again): that earlier batch is left out of the
    training rows, or the challenger would be compared on rows it was trained on. (Last in this module:
    it adds a batch.)"""
    settings = kobe["settings"]
    first, second = kobe["batches"]
    again = score(settings, kobe["second"], kobe["root"] / "batch_second.parquet")
    planned = retraining.plan(settings, "kobe@champion", retraining.TRAINING_PLUS_LABELLED)
    assert planned.held_out_batch == again and planned.labelled_batches == (first,) and planned.labelled_rows == 1500
    assert any("1 labelled batch scored a file already counted" in n for n in planned.notes)
    training = kobe["frame"][kobe["frame"][TARGET].notna()]
    assert len(tables.store(settings).load(planned.table_id)) == len(training) + 1500  # not the held-out file's 1,200 again


def test_a_table_whose_feature_cannot_be_used_the_same_way_is_refused(kobe):
    """A feature written as text ('12 ft') where the champion learned numbers, or one left empty: training
    would drop it or read it as categories, so the retraining is refused before any job."""
    settings = kobe["settings"]
    frame = kobe["frame"][kobe["frame"][TARGET].notna()].head(3000).copy()
    before = versions(settings, "kobe")
    texty = frame.assign(shot_distance=frame["shot_distance"].astype(int).astype(str) + " ft")
    with pytest.raises(BadInputError, match=r"'shot_distance' holds text here \(for example '\d+ ft'\) but numbers for the champion"):
        retraining.plan(settings, "kobe@champion", store_frame(settings, texty, "kobe text distance"))
    empty = frame.assign(lat=np.nan)
    with pytest.raises(BadInputError, match="'lat': every value is missing.*Nothing was trained"):
        retraining.plan(settings, "kobe@champion", store_frame(settings, empty, "kobe empty lat"))
    assert versions(settings, "kobe") == before


def test_the_comparison_measures_each_version_at_the_cut_off_it_scores_with(kobe, challenger):
    """A cut-off stored on the champion: its figures are those of the labels scoring gives at it (not
    the likelier class), the challenger's stay at the likelier class, and the output says which."""
    settings = kobe["settings"]
    rows = kobe["second"]
    plain = retraining.compare(settings, "kobe")
    assert plain.champion_cutoff is None and plain.challenger_cutoff is None
    assert "the champion (version 1) by the likelier class" in plain.rules
    registry.set_cutoff(settings, "kobe", 1, 0.3, who="ana")
    try:
        found = retraining.compare(settings, "kobe")
    finally:
        registry.set_cutoff(settings, "kobe", 1, None)
    model, pipeline = scoring.load_model(settings, "kobe@champion")
    proba = pipeline.predict_proba(rows[list(KOBE_FEATURES)])
    at = np.where(proba[:, 1] >= 0.3, 1.0, 0.0)
    direct = evaluation.classification_metrics(rows[TARGET].to_numpy(), at, proba, model.classes)
    for key in ("accuracy", "f1", "precision", "recall", "auc", "log_loss"):
        assert found.champion_metrics[key] == pytest.approx(direct[key], rel=1e-9), key
    assert found.champion_metrics["recall"] != pytest.approx(plain.champion_metrics["recall"], abs=1e-3)
    assert found.challenger_metrics == plain.challenger_metrics  # no cut-off on the challenger: the likelier class
    assert found.champion_cutoff["value"] == 0.3 and found.champion_cutoff["positive"] == "1" and found.challenger_cutoff is None
    assert found.rules == ("Each version decided the classes as it scores: the champion (version 1) at its cut-off 0.3 for "
                           f"class 1, the challenger (version {found.challenger_version}) by the likelier class.")
    out = found.to_dict()  # what python -m core models compare prints
    assert out["champion_cutoff"]["value"] == 0.3 and out["challenger_cutoff"] is None and out["rules"] == found.rules
