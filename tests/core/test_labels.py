"""core.labels: actual outcomes attached to a scored Kobe batch after scoring, the realized metrics
they give (as sklearn gives them on the joined rows), and every bad input refused with nothing
logged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from core import labels, monitoring, registry, scoring
from core.errors import BadInputError, EmptyTableError, NotFoundError
from core.settings import load_settings
from core.training import TrainingSpec, train
from tests.conftest import KOBE_FEATURES, cli_on, houses

TARGET = "shot_made_flag"


@pytest.fixture(scope="module")
def kobe(tmp_path_factory, kobe_dev):
    """A workspace with a Kobe model (trained on the development file) registered as champion."""
    ws = tmp_path_factory.mktemp("labels")
    settings = load_settings({"STUDIO_WORKSPACE": str(ws / "ws"), "STUDIO_DATA_DIR": str(ws / "data")})
    result = train(settings, TrainingSpec(target=TARGET, features=KOBE_FEATURES, algorithms=("lr",), folds=2),
                   pd.read_parquet(kobe_dev), table_name="kobe dev", table_digest="d" * 64)
    registry.register(settings, result.models[0].run_id, "kobe", alias="champion")
    return settings


@pytest.fixture(scope="module")
def prod(kobe_prod) -> pd.DataFrame:
    return pd.read_parquet(kobe_prod)


@pytest.fixture(scope="module")
def shots(prod) -> pd.DataFrame:
    """The production shots whose outcome is known, in the file's order."""
    return prod[prod[TARGET].notna()].reset_index(drop=True)


def score(settings, frame: pd.DataFrame, path: Path) -> str:
    """The scoring run of ``frame`` (written to ``path``) with kobe@champion."""
    frame.to_parquet(path, index=False)
    model, pipeline = scoring.load_model(settings, "kobe@champion")
    return scoring.score(settings, model, pipeline, scoring.open_input(settings, path), force=True).run_id


@pytest.fixture(scope="module")
def untouched(kobe, shots, tmp_path_factory):
    """A batch of 300 shots scored without their outcome, to which every refused file is offered."""
    return score(kobe, shots.head(300).drop(columns=TARGET), tmp_path_factory.mktemp("untouched") / "batch.parquet")


def plotted(values) -> np.ndarray:
    """A figure's data array as read back from JSON (Plotly writes numpy arrays as base64 typed arrays)."""
    if isinstance(values, dict) and "bdata" in values:
        import base64

        array = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        return array.reshape([int(n) for n in str(values["shape"]).split(",")]) if values.get("shape") else array
    return np.asarray(values)


def state(settings, run_id: str):
    """What a run holds: its metrics, tags and artifacts (path and size)."""
    from core.tracking import client

    c = client(settings)

    def walk(path=None):
        out = []
        for item in c.list_artifacts(run_id, path):
            out += walk(item.path) if item.is_dir else [(item.path, item.file_size)]
        return out

    run = c.get_run(run_id)
    return dict(run.data.metrics), dict(run.data.tags), sorted(walk())


def joined(settings, run_id: str, outcomes: pd.DataFrame, key: str = "shot_id", column: str = TARGET) -> pd.DataFrame:
    """The scored rows that have an outcome, with it (as a float), in the batch's order."""
    out = pd.read_parquet(scoring.load_report(settings, run_id).output)
    given = outcomes[[key, column]].dropna().rename(columns={column: "actual"})
    given["actual"] = given["actual"].astype(float)
    return out.merge(given, on=key, how="inner", validate="one_to_one")


def expected_metrics(rows: pd.DataFrame) -> dict[str, float]:
    """sklearn's metrics on the joined rows: what the realized metrics must be."""
    y, predicted = rows["actual"].to_numpy(), rows["prediction"].to_numpy()
    proba = rows[["proba_0", "proba_1"]].to_numpy()
    return {"accuracy": skm.accuracy_score(y, predicted), "f1": skm.f1_score(y, predicted, pos_label=1.0),
            "precision": skm.precision_score(y, predicted, pos_label=1.0, zero_division=0),
            "recall": skm.recall_score(y, predicted, pos_label=1.0), "auc": skm.roc_auc_score(y, proba[:, 1]),
            "log_loss": skm.log_loss(y, proba, labels=[0.0, 1.0])}


def assert_metrics(found: dict[str, float], rows: pd.DataFrame) -> None:
    for name, value in expected_metrics(rows).items():
        assert found[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_outcomes_attached_later_give_the_realized_metrics_on_the_batch(kobe, prod, tmp_path):
    from core import estimation
    from core.tracking import client, load_figures

    run_id = score(kobe, prod.drop(columns=TARGET), tmp_path / "prod.parquet")
    assert scoring.load_report(kobe, run_id).metrics is None  # read once (and kept per process) before the outcomes
    assert not labels.has_outcomes(kobe, run_id) and labels.labelled_rows(kobe, run_id) is None
    path = tmp_path / "outcomes.csv"
    prod[["shot_id", TARGET]].to_csv(path, index=False)  # 1,014 shots without an outcome among them

    planned = labels.plan(kobe, run_id, path, key="shot_id")
    known = int(prod[TARGET].notna().sum())
    assert (planned.batch_rows, planned.label_rows, planned.matched, planned.unmatched_batch_rows) == (6426, known, known, 6426 - known)
    assert planned.target_column == TARGET and not planned.replaces and planned.refusal() is None
    assert any(m.startswith(f"{6426 - known:,} rows of 'outcomes.csv' have no outcome") for m in planned.messages)

    report = labels.attach(kobe, planned)
    rows = joined(kobe, run_id, prod)
    assert len(rows) == known == report.matched and report.unmatched_batch_rows == 6426 - known and not report.replaced
    assert_metrics(report.metrics, rows)
    view = registry.resolve(kobe, "kobe/1")
    assert report.comparison == scoring.compare_with_training(report.metrics, view.metrics) and report.comparison

    run = client(kobe).get_run(run_id)
    for name, value in report.metrics.items():
        assert run.data.metrics[name] == pytest.approx(value) if math.isfinite(value) else name not in run.data.metrics
    tags = run.data.tags
    assert tags["studio.labels"] == "attached" and tags["studio.labels_digest"] == scoring.file_digest(path)
    assert tags["studio.labels_rows"] == str(known) and tags["studio.labels_source"] == "outcomes.csv" and tags["studio.labels_at"]
    assert tags[labels.FOLDER_TAG] == labels.labels_folder(tags["studio.labels_digest"])
    stored = pd.read_parquet(client(kobe).download_artifacts(run_id, labels.artifact(tags, labels.LABELS_FILE), str(tmp_path / "dl")))
    assert list(stored.columns) == ["key", "actual"] and len(stored) == known
    assert dict(zip(stored["key"], stored["actual"], strict=True)) == dict(zip(rows["shot_id"], rows["actual"], strict=True))
    document = json.loads(Path(client(kobe).download_artifacts(run_id, labels.artifact(tags, labels.REPORT_FILE), str(tmp_path / "dl"))).read_text())
    assert document["matched"] == known and document["label_rows"] == known and document["batch_rows"] == 6426
    assert document["source_name"] == "outcomes.csv" and document["digest"] == scoring.file_digest(path) and document["key"] == "shot_id"
    assert document["who"] and document["when"] == tags["studio.labels_at"]
    assert document["metrics"]["auc"] == pytest.approx(report.metrics["auc"], abs=1e-6)
    assert document["estimation_available"] is True
    has_estimator = estimation.load(kobe, view.run_id) is not None
    assert (report.estimated is not None) == has_estimator == (document["estimate"] is not None)
    if has_estimator:
        expected = estimation.estimate_frame(kobe, view.run_id, rows.drop(columns="actual"))
        assert report.estimated["rows"] == known and report.estimated["values"]["accuracy"] == pytest.approx(expected.values["accuracy"])
    figures = load_figures(kobe, run_id)
    assert "confusion_matrix" in figures and plotted(figures["confusion_matrix"].data[0].z).sum() == known

    # what the Monitor page and an earlier result read back
    batch = next(b for b in monitoring.batches(kobe, "kobe") if b.run_id == run_id)
    for name in ("accuracy", "f1", "auc", "log_loss"):
        assert batch.metrics[name] == pytest.approx(report.metrics[name])
    assert scoring.load_report(kobe, run_id).metrics["auc"] == pytest.approx(report.metrics["auc"])
    assert labels.has_outcomes(kobe, run_id)

    # the same file again: said, with when, and nothing changes
    before = state(kobe, run_id)
    again = labels.plan(kobe, run_id, path, key="shot_id")
    assert again.replaces and again.same_file
    with pytest.raises(labels.LabelsAttachedError, match=r"were already attached to this batch on \d{4}-\d\d-\d\d .*--replace") as caught:
        labels.attach(kobe, again)
    assert caught.value.exit_code == 5 and caught.value.same_file
    assert state(kobe, run_id) == before


def test_labels_for_half_the_rows_and_outcomes_written_as_text(kobe, shots, tmp_path):
    """Outcomes for every other row, written "0" / "1" (text; training had 0.0 / 1.0): the counts say
    how many matched, the metrics are those of the labelled half, and the labelled rows are the
    model's features with the outcome under the training target's name."""
    batch = shots.head(400)
    run_id = score(kobe, batch.drop(columns=TARGET), tmp_path / "april.parquet")
    half = batch.iloc[::2][["shot_id", TARGET]].copy()
    half[TARGET] = half[TARGET].map(lambda v: str(int(v)))
    path = tmp_path / "half.parquet"
    half.to_parquet(path, index=False)
    report = labels.attach(kobe, labels.plan(kobe, run_id, path, key="shot_id"))
    assert (report.matched, report.unmatched_batch_rows, report.label_rows) == (200, 200, 200)
    rows = joined(kobe, run_id, half)
    assert_metrics(report.metrics, rows)

    frame = labels.labelled_rows(kobe, run_id)
    assert list(frame.columns) == [*KOBE_FEATURES, TARGET] and len(frame) == 200
    pd.testing.assert_frame_equal(frame, rows[[*KOBE_FEATURES, "actual"]].rename(columns={"actual": TARGET}), check_dtype=False)
    assert frame[TARGET].dtype.kind in "iuf" and set(frame[TARGET]) == {0, 1}  # numbers, as the model's classes (not text)


def test_a_file_without_ids_is_matched_on_the_row_number(kobe, shots, tmp_path):
    batch = shots.iloc[300:600].drop(columns=[TARGET, "shot_id"]).reset_index(drop=True)
    run_id = score(kobe, batch, tmp_path / "no-ids.parquet")
    truth = shots.iloc[300:600][TARGET].to_numpy()
    picked = np.random.default_rng(3).choice(300, 120, replace=False)
    outcomes = pd.DataFrame({"row_number": picked + 1, "made": truth[picked]})  # in no particular order, another name
    path = tmp_path / "made.csv"
    outcomes.to_csv(path, index=False)
    planned = labels.plan(kobe, run_id, path, key=labels.ROW_NUMBER)
    assert planned.target_column == "made" and planned.matched == 120 and planned.unmatched_batch_rows == 180
    travelled = labels.LabelsPlan.from_dict(json.loads(json.dumps(planned.to_dict())))  # as a job would carry it
    assert travelled == planned
    report = labels.attach(kobe, travelled)  # the file read and checked again
    assert_metrics(report.metrics, joined(kobe, run_id, outcomes, key="row_number", column="made"))
    out = pd.read_parquet(scoring.load_report(kobe, run_id).output)
    assert (out["row_number"] == np.arange(1, 301)).all()
    rows = out.iloc[np.sort(picked)]  # the row number is the position in the scored file
    assert skm.accuracy_score(truth[np.sort(picked)], rows["prediction"]) == pytest.approx(report.metrics["accuracy"])
    assert "row_number" in labels.KEY_HELP and "position" in labels.KEY_HELP


def test_a_regression_batch_gets_its_errors_and_charts(tmp_path_factory, tmp_path):
    from core.tracking import load_figures

    ws = tmp_path_factory.mktemp("labels-regression")
    settings = load_settings({"STUDIO_WORKSPACE": str(ws / "ws"), "STUDIO_DATA_DIR": str(ws / "data")})
    result = train(settings, TrainingSpec(target="price", algorithms=("lr",), folds=2), houses(400, 0),
                   table_name="houses", table_digest="h" * 64)
    registry.register(settings, result.models[0].run_id, "prices", alias="champion")
    march = houses(200, 1)
    march.drop(columns="price").to_parquet(tmp_path / "march.parquet", index=False)
    model, pipeline = scoring.load_model(settings, "prices@champion")
    run_id = scoring.score(settings, model, pipeline, scoring.open_input(settings, tmp_path / "march.parquet")).run_id
    prices = pd.DataFrame({"row_number": np.arange(1, 201), "price": march["price"].round(2).astype(str).str.replace(".", ",")})
    path = tmp_path / "prices.csv"
    prices.to_csv(path, index=False, sep=";")  # decimal commas, as a European spreadsheet writes them
    report = labels.attach(settings, labels.plan(settings, run_id, path, key="row_number"))
    out = pd.read_parquet(scoring.load_report(settings, run_id).output)
    y, predicted = march["price"].round(2).to_numpy(), out["prediction"].to_numpy()
    assert report.matched == 200
    assert report.metrics["mae"] == pytest.approx(skm.mean_absolute_error(y, predicted), rel=1e-9)
    assert report.metrics["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, predicted)), rel=1e-9)
    assert report.metrics["r2"] == pytest.approx(skm.r2_score(y, predicted), rel=1e-9)
    assert report.metrics["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, predicted), rel=1e-9)
    assert list(load_figures(settings, run_id)) == ["predicted_vs_actual", "residuals"]
    frame = labels.labelled_rows(settings, run_id)
    assert list(frame.columns) == ["size", "rooms", "area", "price"] and np.allclose(frame["price"], y)


def _outcomes(shots, n=300):
    return shots.head(n)[["shot_id", TARGET]].copy()


BAD = {
    "key missing in the file": (
        lambda s: _outcomes(s).rename(columns={"shot_id": "id"}), {"key": "shot_id"}, BadInputError,
        r"'bad\.csv' has no column 'shot_id' to match the batch's rows on\. Its columns: id, shot_made_flag\. .*row_number"),
    "key missing in the batch": (
        lambda s: _outcomes(s).assign(ticket=range(300)), {"key": "ticket"}, BadInputError,
        r"The scored batch 'batch\.parquet' has no column 'ticket'.*Its columns: .*Columns that match the two files row for row: "
        r"'shot_id', row_number"),
    "the same key twice in the file": (
        lambda s: pd.concat([_outcomes(s), _outcomes(s).head(3)]), {"key": "shot_id"}, BadInputError,
        r"has 3 shot_id values that appear more than once \(6 rows\), such as \d+, \d+, \d+"),
    "a key of several batch rows": (
        lambda s: s.head(300).drop_duplicates("game_id")[["game_id", TARGET]], {"key": "game_id"}, BadInputError,
        r"'game_id' does not name the batch's rows one for one: \d+ of the keys in 'bad\.csv' each match several scored rows"),
    "the outcome column missing": (
        lambda s: _outcomes(s), {"key": "shot_id", "target": "made"}, BadInputError,
        r"'bad\.csv' has no column 'made' for the outcome\. Its columns: shot_id, shot_made_flag"),
    "which column is the outcome": (
        lambda s: _outcomes(s).rename(columns={TARGET: "a"}).assign(b=1), {"key": "shot_id"}, BadInputError,
        r"Which column of 'bad\.csv' holds the outcome\? None is named 'shot_made_flag' as in training.*: a, b"),
    "classes the model never learned": (
        lambda s: _outcomes(s).assign(**{TARGET: ["yes", "2", *["1", "0"] * 149]}), {"key": "shot_id"}, BadInputError,
        r"holds values the model never learned: 'yes', '2' \(2 rows\)\. It knows 0, 1 \('shot_made_flag' in training\)"),
    "rows that are not in the batch": (
        lambda s: pd.concat([_outcomes(s, 10), pd.DataFrame({"shot_id": [99999999, 99999998], TARGET: [1.0, 0.0]})]),
        {"key": "shot_id"}, BadInputError,
        r"2 of the 12 outcomes in 'bad\.csv' are for rows that are not in this batch .*99999999, 99999998.*may belong to another batch"),
    "a file with no rows": (
        lambda s: _outcomes(s).head(0), {"key": "shot_id"}, EmptyTableError, r"has column names .* but no rows.*Nothing was attached"),
    "a file with no outcome": (
        lambda s: _outcomes(s).assign(**{TARGET: np.nan}), {"key": "shot_id"}, EmptyTableError,
        r"'bad\.csv' has no outcome: its column 'shot_made_flag' is empty in all 300 rows"),
    "outcomes without a key": (
        lambda s: _outcomes(s).astype({"shot_id": float}).assign(shot_id=lambda f: f["shot_id"].where(f.index % 100 != 5)),
        {"key": "shot_id"}, BadInputError, r"3 rows of 'bad\.csv' have an outcome but no 'shot_id'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_outcomes_are_refused_and_nothing_is_logged(kobe, shots, untouched, tmp_path, case):
    build, kwargs, error, message = BAD[case]
    path = tmp_path / "bad.csv"
    build(shots).to_csv(path, index=False)
    before = state(kobe, untouched)
    with pytest.raises(error, match=message) as caught:
        labels.attach(kobe, labels.plan(kobe, untouched, path, **kwargs))
    assert "Traceback" not in str(caught.value)
    assert state(kobe, untouched) == before
    assert not labels.has_outcomes(kobe, untouched) and labels.labelled_rows(kobe, untouched) is None


def test_a_file_changed_after_its_check_is_refused(kobe, shots, untouched, tmp_path):
    path = tmp_path / "outcomes.csv"
    _outcomes(shots).to_csv(path, index=False)
    planned = labels.LabelsPlan.from_dict(labels.plan(kobe, untouched, path, key="shot_id").to_dict())
    _outcomes(shots, 200).to_csv(path, index=False)
    before = state(kobe, untouched)
    with pytest.raises(BadInputError, match=r"'outcomes\.csv' changed since it was checked\. Nothing was attached"):
        labels.attach(kobe, planned)
    assert state(kobe, untouched) == before


def test_logging_that_fails_half_way_says_so_and_the_batch_is_not_marked(kobe, shots, tmp_path):
    """The store refuses the report half-way (a folder stands where the file must go): the error says
    what was logged and what to do, the tags do not mark the outcomes attached, and attaching again
    once the store takes it finishes the job."""
    from urllib.parse import unquote, urlsplit

    from core.tracking import TrackingUnavailableError, client

    batch = shots.iloc[1100:1250]
    run_id = score(kobe, batch.drop(columns=TARGET), tmp_path / "july.parquet")
    path = tmp_path / "july-outcomes.csv"
    batch[["shot_id", TARGET]].to_csv(path, index=False)
    planned = labels.plan(kobe, run_id, path, key="shot_id")
    folder = labels.labels_folder(planned.digest)
    blocker = Path(unquote(urlsplit(client(kobe).get_run(run_id).info.artifact_uri).path)) / folder / labels.REPORT_FILE
    blocker.mkdir(parents=True)
    before = client(kobe).get_run(run_id).data
    tags, measured = dict(before.tags), dict(before.metrics)
    with pytest.raises(TrackingUnavailableError, match=r"only partly recorded on batch \w+: their charts, the "
                       r"outcomes \(labels/\w+/labels\.parquet\) were logged, then logging the report .* failed .*attach the file again"):
        labels.attach(kobe, planned)
    after = client(kobe).get_run(run_id).data
    assert dict(after.tags) == tags and not labels.has_outcomes(kobe, run_id)
    assert dict(after.metrics) == measured and "accuracy" not in after.metrics  # no realized metric for outcomes not in force
    blocker.rmdir()
    report = labels.attach(kobe, planned)
    assert report.matched == 150 and labels.has_outcomes(kobe, run_id) and not report.replaced


def test_an_unknown_batch_is_not_found(kobe, shots, tmp_path):
    path = tmp_path / "outcomes.csv"
    _outcomes(shots).to_csv(path, index=False)
    with pytest.raises(NotFoundError, match="There is no scored batch with run id 'nope'"):
        labels.plan(kobe, "nope", path, key="shot_id")


def test_replacing_outcomes_overwrites_the_metrics_and_the_record(kobe, shots, tmp_path):
    from core.tracking import client

    batch = shots.iloc[600:900]
    run_id = score(kobe, batch.drop(columns=TARGET), tmp_path / "may.parquet")
    first = tmp_path / "first.csv"
    batch[["shot_id", TARGET]].to_csv(first, index=False)
    done = labels.attach(kobe, labels.plan(kobe, run_id, first, key="shot_id"))
    second = tmp_path / "second.csv"
    corrected = batch[["shot_id", TARGET]].copy()
    corrected[TARGET] = 1.0 - corrected[TARGET]  # every outcome the other way round
    corrected.head(250).to_csv(second, index=False)

    before = state(kobe, run_id)
    planned = labels.plan(kobe, run_id, second, key="shot_id")
    assert planned.replaces and not planned.same_file
    with pytest.raises(labels.LabelsAttachedError, match=r"already has outcomes: 300 outcomes from 'first\.csv', attached on .*replace"):
        labels.attach(kobe, planned)
    assert state(kobe, run_id) == before

    report = labels.attach(kobe, planned, replace=True)
    assert report.replaced and report.matched == 250 and report.metrics["accuracy"] != pytest.approx(done.metrics["accuracy"])
    rows = joined(kobe, run_id, corrected.head(250))
    assert_metrics(report.metrics, rows)
    run = client(kobe).get_run(run_id)
    assert run.data.metrics["accuracy"] == pytest.approx(report.metrics["accuracy"])  # the latest value is the new one
    assert run.data.tags["studio.labels_digest"] == scoring.file_digest(second) and run.data.tags["studio.labels_rows"] == "250"
    document = labels.stored_report(kobe, run_id)
    assert document["replaced"] and document["replaced_digest"] == scoring.file_digest(first) and document["matched"] == 250
    frame = labels.labelled_rows(kobe, run_id)
    assert len(frame) == 250 and (frame[TARGET].to_numpy() == rows["actual"].to_numpy()).all()
    batch_view = next(b for b in monitoring.batches(kobe, "kobe") if b.run_id == run_id)
    assert batch_view.metrics["accuracy"] == pytest.approx(report.metrics["accuracy"])

    # outcomes of one class only: no AUC, and the earlier AUC does not stand for it
    misses = tmp_path / "misses.csv"
    batch[batch[TARGET] == 0][["shot_id", TARGET]].to_csv(misses, index=False)
    third = labels.attach(kobe, labels.plan(kobe, run_id, misses, key="shot_id"), replace=True)
    assert math.isnan(third.metrics["auc"]) and math.isfinite(third.metrics["accuracy"])
    latest = client(kobe).get_run(run_id).data.metrics
    assert math.isnan(latest["auc"]) and latest["accuracy"] == pytest.approx(third.metrics["accuracy"])


def test_a_scored_file_that_held_the_outcome_has_labelled_rows_and_refuses_other_outcomes(kobe, prod, tmp_path):
    batch = prod.iloc[1000:1300]  # with some shots of unknown outcome
    run_id = score(kobe, batch, tmp_path / "held.parquet")
    assert labels.has_outcomes(kobe, run_id)
    frame = labels.labelled_rows(kobe, run_id)
    held = batch[batch[TARGET].notna()]
    assert list(frame.columns) == [*KOBE_FEATURES, TARGET] and len(frame) == len(held) < 300
    pd.testing.assert_frame_equal(frame, held[[*KOBE_FEATURES, TARGET]].reset_index(drop=True), check_dtype=False)

    path = tmp_path / "late.csv"
    batch[["shot_id", TARGET]].to_csv(path, index=False)
    planned = labels.plan(kobe, run_id, path, key="shot_id")
    assert planned.existing == "the outcome 'shot_made_flag' that the scored file held"
    before = state(kobe, run_id)
    with pytest.raises(labels.LabelsAttachedError, match="already has outcomes: the outcome 'shot_made_flag' that the scored file held"):
        labels.attach(kobe, planned)
    assert state(kobe, run_id) == before
    report = labels.attach(kobe, planned, replace=True)
    assert report.replaced and report.matched == len(held)


def test_the_labels_command(kobe, shots, tmp_path, monkeypatch, capsys):
    with cli_on(monkeypatch, kobe.workspace, kobe.data_dir) as cli:
        main = cli.main
        batch = shots.iloc[900:1100]
        run_id = score(kobe, batch.drop(columns=TARGET), tmp_path / "june.parquet")
        path = tmp_path / "june-outcomes.csv"
        batch[["shot_id", TARGET]].to_csv(path, index=False)
        args = ["labels", "--batch", run_id, "--input", str(path), "--key", "shot_id"]
        assert main(args) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["matched"] == 200 and summary["unmatched"] == 0 and summary["replaced"] is False
        assert summary["metrics"]["accuracy"] == pytest.approx(expected_metrics(joined(kobe, run_id, batch))["accuracy"], abs=1e-6)
        assert {c["metric"] for c in summary["comparison"]} >= {"accuracy", "auc"}

        assert main(args) == 5  # the same outcomes again
        err = capsys.readouterr().err
        assert "were already attached to this batch" in err and err.count("\n") == 1 and "Traceback" not in err
        assert main([*args, "--replace"]) == 0 and json.loads(capsys.readouterr().out)["replaced"] is True
        assert main(["labels", "--batch", run_id, "--input", str(path), "--key", "ticket"]) == 2
        assert "has no column 'ticket'" in capsys.readouterr().err
        assert main(["labels", "--batch", "0" * 32, "--input", str(path), "--key", "shot_id"]) == 4


# --- gain and lift of a labelled batch -----------------------------------------------------------


def numpy_gain_lift(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """By hand: the rows sorted by score (highest first, ties in the file's order), positives counted
    as they come (cumulative gain after each row), and ten groups as equal as possible."""
    order = np.argsort(-score, kind="stable")
    ranked = truth[order].astype(int)
    found = np.concatenate([[0], np.cumsum(ranked)]) / ranked.sum()
    n = len(ranked)
    sizes = [n // 10 + (1 if k < n % 10 else 0) for k in range(10)]
    edges = np.concatenate([[0], np.cumsum(sizes)])
    rate = ranked.sum() / n
    lift = np.array([ranked[edges[k]:edges[k + 1]].mean() / rate for k in range(10)])
    return found, lift


def assert_gain_and_lift(found, truth: np.ndarray, score: np.ndarray) -> None:
    gain, lift = numpy_gain_lift(truth, score)
    assert found.unavailable is None and found.gain_error is None
    assert (found.rows, found.positives) == (len(truth), int(truth.sum()))
    np.testing.assert_allclose(found.lift["lift"].to_numpy(), lift, rtol=1e-12)
    np.testing.assert_allclose(plotted(found.figures["lift"].data[0].y), lift, rtol=1e-12)
    curve = found.figures["gain"].data[-1]  # the model's curve (thinned to at most 400 points)
    x, y = plotted(curve.x), plotted(curve.y)
    assert x[0] == 0 and x[-1] == 1 and len(x) > 100
    np.testing.assert_allclose(y, gain[np.rint(x * len(truth)).astype(int)], rtol=1e-12, atol=1e-15)
    assert found.lift.iloc[-1]["positives found so far"] == pytest.approx(1.0)


def test_gain_and_lift_of_a_labelled_batch_equal_a_numpy_computation(kobe, shots, tmp_path):
    """Outcomes attached to 700 of 900 scored shots (matched on shot_id, offered in another order):
    gain and lift are those of the matched rows' probabilities and outcomes, ranked by hand."""
    batch = shots.iloc[1000:1900].reset_index(drop=True)
    run_id = score(kobe, batch.drop(columns=TARGET), tmp_path / "gain.parquet")
    assert labels.batch_decisions(kobe, run_id).unavailable == labels.NO_OUTCOMES  # before the outcomes: why not drawn
    given = batch.sample(700, random_state=5)[["shot_id", TARGET]]
    path = tmp_path / "gain-outcomes.csv"
    given.to_csv(path, index=False)
    labels.attach(kobe, labels.plan(kobe, run_id, path, key="shot_id"))

    found = labels.batch_decisions(kobe, run_id)
    rows = joined(kobe, run_id, given)  # the scored rows that received an outcome, in the batch's order
    assert len(rows) == 700 and found.positive == "1" and "700 labelled rows of gain.parquet" in found.note
    assert_gain_and_lift(found, rows["actual"].to_numpy() == 1.0, rows["proba_1"].to_numpy())
    # the other class as the positive one: the probabilities of 0, the misses counted
    other = labels.batch_decisions(kobe, run_id, positive="0")
    assert_gain_and_lift(other, rows["actual"].to_numpy() == 0.0, rows["proba_0"].to_numpy())


def test_gain_and_lift_of_a_file_that_held_its_outcomes_and_the_batches_that_have_none(kobe, prod, tmp_path):
    batch = prod.iloc[2000:2600]  # some shots without an outcome: left out
    run_id = score(kobe, batch, tmp_path / "held-gain.parquet")
    out = pd.read_parquet(scoring.load_report(kobe, run_id).output)
    known = out[TARGET].notna().to_numpy()
    assert 0 < known.sum() < 600
    found = labels.batch_decisions(kobe, run_id)
    assert_gain_and_lift(found, out.loc[known, TARGET].to_numpy() == 1.0, out.loc[known, "proba_1"].to_numpy())

    few = score(kobe, prod[prod[TARGET].notna()].head(6), tmp_path / "six.parquet")  # six outcomes: too few deciles
    said = labels.batch_decisions(kobe, few)
    assert "threshold" in said.figures and "gain" not in said.figures and "at least 10 rows" in said.gain_error


def test_a_model_without_probabilities_says_why_no_gain_is_drawn(kobe, shots, tmp_path):
    result = train(kobe, TrainingSpec(target=TARGET, features=KOBE_FEATURES, algorithms=("svm",), folds=2),
                   shots.head(1500), table_name="kobe svm", table_digest="e" * 64)
    registry.register(kobe, result.models[0].run_id, "kobe_svm")
    path = tmp_path / "svm.parquet"
    shots.iloc[2000:2300].to_parquet(path, index=False)  # with the outcome: labelled, but no probabilities
    model, pipeline = scoring.load_model(kobe, "kobe_svm/1")
    run_id = scoring.score(kobe, model, pipeline, scoring.open_input(kobe, path), force=True).run_id
    assert labels.has_outcomes(kobe, run_id)
    found = labels.batch_decisions(kobe, run_id)
    assert found.unavailable and "gives no probabilities" in found.unavailable and not found.figures


def test_the_cut_off_a_batch_was_scored_with_is_read_from_its_tag():
    assert labels.scored_cutoff({}) is None and labels.scored_cutoff({"studio.cutoff": "not json"}) is None
    found = labels.scored_cutoff({"studio.cutoff": json.dumps({"value": 0.35, "positive": 1, "by": "x", "at": "t"})})
    assert (found.value, found.positive) == (0.35, "1")
    assert labels.cutoff_words(found, TARGET) == ("at the cut-off this batch was scored with: 0.35 "
                                                 "(a row is predicted shot_made_flag = 1 when its probability of 1 is at least 0.35)")
    assert labels.cutoff_words(None).startswith("at the likelier class")
    assert labels.scored_cutoff({"studio.cutoff": json.dumps({"value": 1.5, "positive": "1"})}) is None


def test_a_batch_scored_at_a_cut_off_is_compared_and_charted_at_that_cut_off(kobe, shots, tmp_path):
    """Scored at the stored cut-off 0.3: the realized metrics (the cut-off's labels) are compared with
    the holdout measured at 0.3 too, not with training's likelier-class figures; the batch's threshold
    chart draws 0.3 and its metrics at the cut-off are the realized ones (the same rows, rule and class)."""
    from core import decisions

    batch = shots.iloc[3000:3900].reset_index(drop=True)
    registry.set_cutoff(kobe, "kobe", 1, 0.3, who="ana")
    try:
        run_id = score(kobe, batch.drop(columns=TARGET), tmp_path / "at-cutoff.parquet")
    finally:
        registry.set_cutoff(kobe, "kobe", 1, None)  # the batch keeps its rule (its run's tag); the version goes back
    path = tmp_path / "at-cutoff-outcomes.csv"
    batch[["shot_id", TARGET]].to_csv(path, index=False)
    report = labels.attach(kobe, labels.plan(kobe, run_id, path, key="shot_id"))
    rows = joined(kobe, run_id, batch)
    np.testing.assert_array_equal(rows["prediction"].to_numpy(), np.where(rows["proba_1"] >= 0.3, 1.0, 0.0))
    assert_metrics(report.metrics, rows)

    view = registry.resolve(kobe, "kobe/1")
    holdout = registry.holdout_scores(kobe, view.run_id)
    rule = np.where(holdout["proba_1"].to_numpy() >= 0.3, 1.0, 0.0)
    compared = {c.metric: c.at_training for c in report.comparison}
    for key, measure in (("recall", skm.recall_score), ("precision", skm.precision_score), ("f1", skm.f1_score),
                         ("accuracy", skm.accuracy_score)):
        assert compared[key] == pytest.approx(measure(holdout["actual"], rule), abs=1e-12), key
    assert compared["recall"] != pytest.approx(view.metrics["recall"], abs=1e-3)  # not training's likelier class
    assert compared["auc"] == pytest.approx(view.metrics["auc"], abs=1e-12)  # no cut-off changes it
    assert labels.stored_report(kobe, run_id)["comparison"] == [c.to_dict() for c in report.comparison]

    found = labels.batch_decisions(kobe, run_id)
    assert found.positive == "1" and found.stored == 0.3 and found.at_cutoff.cutoff == 0.3
    assert any(s.x0 == 0.3 for s in found.figures["threshold"].layout.shapes)  # the line is drawn
    truth, score_1 = rows["actual"].to_numpy() == 1.0, rows["proba_1"].to_numpy()
    assert found.at_cutoff == decisions.at_cutoff(truth, score_1, 0.3, positive="1", classes=("0", "1"))
    for key, value in found.at_cutoff.as_metrics().items():
        assert value == pytest.approx(report.metrics[key], abs=1e-12), key
    other = labels.batch_decisions(kobe, run_id, positive="0")  # another class charted: the batch's rule is not its line
    assert other.stored is None and not any(s.x0 == 0.3 for s in other.figures["threshold"].layout.shapes)
    assert other.at_cutoff.metric_class == "1"
