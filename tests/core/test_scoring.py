"""core.scoring: checked, streamed batch scoring of the real Kobe production file and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import registry, scoring
from core.errors import BadInputError, CorruptFileError, EmptyTableError, JobCancelled, NotFoundError
from core.settings import PROJECT_ROOT, load_settings
from core.training import TrainingSpec, train
from tests.conftest import KOBE_FEATURES


@pytest.fixture(scope="module")
def kobe(tmp_path_factory, kobe_dev):
    """A workspace with a Kobe model (trained on the development file) registered as champion,
    and a second model that also uses a categorical feature."""
    ws = tmp_path_factory.mktemp("scoring")
    settings = load_settings({"STUDIO_WORKSPACE": str(ws / "ws"), "STUDIO_DATA_DIR": str(ws / "data")})
    frame = pd.read_parquet(kobe_dev)
    result = train(settings, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",)), frame,
                   table_name="kobe dev", table_digest="d" * 64)
    registry.register(settings, result.models[0].run_id, "kobe", alias="champion")
    cat = train(settings, TrainingSpec(target="shot_made_flag", features=("shot_distance", "action_type"), algorithms=("lr",), folds=2),
                frame, table_name="kobe dev", table_digest="d" * 64)
    registry.register(settings, cat.models[0].run_id, "kobe-actions", alias="champion")
    return settings


def houses(n: int, seed: int) -> pd.DataFrame:
    """House prices from size, rooms and area: a regression table small enough to train in seconds."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"size": rng.uniform(20, 200, n), "rooms": rng.integers(1, 7, n),
                          "area": rng.choice(["north", "south", "centre"], n)})
    frame["price"] = (1500 * frame["size"] + 8000 * frame["rooms"] + frame["area"].map({"north": 0, "south": 20000, "centre": 60000})
                      + rng.normal(0, 10000, n))
    return frame


@pytest.fixture(scope="module")
def priced(tmp_path_factory):
    """A workspace with a regression model (house prices) registered as champion."""
    ws = tmp_path_factory.mktemp("scoring-regression")
    settings = load_settings({"STUDIO_WORKSPACE": str(ws / "ws"), "STUDIO_DATA_DIR": str(ws / "data")})
    result = train(settings, TrainingSpec(target="price", algorithms=("lr",), folds=2), houses(400, 0),
                   table_name="houses", table_digest="h" * 64)
    registry.register(settings, result.models[0].run_id, "prices", alias="champion")
    return settings


def plotted(values) -> np.ndarray:
    """A figure's data array as read back from JSON (Plotly writes numpy arrays as base64 typed arrays)."""
    if isinstance(values, dict) and "bdata" in values:
        import base64

        array = np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
        shape = values.get("shape")
        return array.reshape([int(n) for n in str(shape).split(",")]) if shape else array
    return np.asarray(values)


def runs(settings) -> list:
    from core.tracking import client

    c = client(settings)
    experiment = c.get_experiment_by_name(scoring.EXPERIMENT)
    return c.search_runs([experiment.experiment_id]) if experiment else []


def score_file(settings, path, reference="kobe@champion", **kwargs):
    model, pipeline = scoring.load_model(settings, reference)
    return scoring.score(settings, model, pipeline, scoring.open_input(settings, Path(path)), **kwargs)


def test_scoring_the_kobe_production_file(kobe, kobe_prod):
    done = []
    report = score_file(kobe, kobe_prod, batch_rows=1000, progress=lambda rows, total: done.append((rows, total)))
    prod = pd.read_parquet(kobe_prod)
    out = pd.read_parquet(report.output)
    assert report.rows == len(out) == len(prod) == 6426
    assert list(out.columns) == [*prod.columns, "prediction", "proba_0", "proba_1", "model_name", "model_version", "scored_at", "input_problems", "row_number"]
    pd.testing.assert_frame_equal(out[prod.columns], prod.reset_index(drop=True), check_dtype=False)  # carried through untouched
    proba = out[["proba_0", "proba_1"]].to_numpy()
    assert ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(out["prediction"].unique()) <= {0.0, 1.0}
    assert (out["model_name"] == "kobe").all() and (out["model_version"] == 1).all()
    assert done[0] == (0, 6426) and done[-1] == (6426, 6426) and len(done) == 8  # 7 batches of 1,000 rows

    # The model is worse on the 3-point shots than at training: it no longer tells makes from misses
    # (AUC near 0.5), and its log loss gains less over guessing the file's own make rate. (Raw log loss
    # is not comparable: the 3-point make rate, 0.33, has a lower entropy than the 2-point one, 0.48.)
    metrics, before = report.metrics, report.holdout_metrics
    assert metrics["auc"] < before["auc"] - 0.05 and metrics["auc"] < 0.55
    assert metrics["f1"] < before["f1"]
    assert metrics["log_loss_ratio"] > before["log_loss_ratio"]
    worse = {row.metric for row in report.comparison if row.worse}
    assert {"auc", "f1", "log_loss_ratio"} <= worse

    from core.tracking import client

    run = client(kobe).get_run(report.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["studio.model_name"] == "kobe" and run.data.tags["studio.model_version"] == "1"
    assert run.data.tags["studio.input_digest"] == scoring.file_digest(kobe_prod)
    assert run.data.params["model_uri"] == "models:/kobe/1" and run.data.params["input_name"] == kobe_prod.name
    assert run.data.metrics["rows"] == 6426 and run.data.metrics["auc"] == pytest.approx(metrics["auc"])
    logged = client(kobe).download_artifacts(report.run_id, f"output/{report.run_id}.parquet", str(kobe.workspace / "dl"))
    assert len(pd.read_parquet(logged)) == 6426
    from core.tracking import load_figures

    figures = load_figures(kobe, report.run_id)
    assert list(figures) == ["confusion_matrix"]
    assert plotted(figures["confusion_matrix"].data[0].z).sum() == prod["shot_made_flag"].notna().sum()


def test_a_labelled_regression_scoring_logs_its_charts(priced, tmp_path):
    """Regression scorings logged no chart, and the Score page's request for one failed on every
    labelled regression file; now the file gets predicted vs actual and the residuals."""
    from core.tracking import load_figures

    march = houses(300, 1)
    path = tmp_path / "march.parquet"
    march.to_parquet(path)
    report = score_file(priced, path, reference="prices@champion")
    assert set(report.metrics) == {"mae", "rmse", "r2", "mape"} and report.metrics["r2"] > 0.9
    figures = load_figures(priced, report.run_id)
    assert list(figures) == ["predicted_vs_actual", "residuals"]
    out = pd.read_parquet(report.output)
    versus, residuals = figures["predicted_vs_actual"], figures["residuals"]
    assert "rows of this file" in versus.layout.title.text and "rows of this file" in residuals.layout.title.text
    # the points are this file's rows: (actual, predicted) and (predicted, actual - predicted)
    np.testing.assert_allclose(np.sort(plotted(versus.data[0].x)), np.sort(march["price"].to_numpy()))
    np.testing.assert_allclose(np.sort(plotted(versus.data[0].y)), np.sort(out["prediction"].to_numpy()))
    np.testing.assert_allclose(np.sort(plotted(residuals.data[0].y)), np.sort((out["price"] - out["prediction"]).to_numpy()))


def test_a_scoring_without_the_outcome_has_no_charts_and_reading_them_is_no_error(priced, tmp_path):
    from core.tracking import load_figures

    path = tmp_path / "april.parquet"
    houses(300, 2).drop(columns="price").to_parquet(path)
    report = score_file(priced, path, reference="prices@champion")
    assert report.metrics is None
    assert load_figures(priced, report.run_id) == {}


def test_the_same_file_again_says_so_and_names_the_earlier_run(kobe, kobe_prod):
    first = score_file(kobe, kobe_prod, force=True)
    with pytest.raises(scoring.AlreadyScoredError, match="was already scored with kobe version 1") as caught:
        score_file(kobe, kobe_prod)
    assert caught.value.run_id == first.run_id  # the latest finished scoring of this file with this version
    assert f"(run {first.run_id})" in str(caught.value)
    again = score_file(kobe, kobe_prod, force=True)
    assert again.run_id != first.run_id


def test_missing_columns_are_listed_and_nothing_is_scored(kobe, tmp_path):
    path = tmp_path / "partial.csv"
    pd.DataFrame({"lat": [34.0], "period": [1], "other": ["x"]}).to_csv(path, index=False)
    before = len(runs(kobe))
    with pytest.raises(BadInputError, match=r"lacks 4 columns the model needs: lon, minutes_remaining, playoffs, shot_distance\. Nothing was scored"):
        score_file(kobe, path)
    assert len(runs(kobe)) == before


def test_types_are_coerced_and_unusable_values_counted(kobe, kobe_prod, tmp_path):
    frame = pd.read_parquet(kobe_prod).head(50)[list(KOBE_FEATURES)].reset_index(drop=True).astype(object)
    frame.loc[0, "shot_distance"] = "far"
    frame.loc[1, "lat"] = "33,9"  # a decimal comma in a text cell
    frame["shot_distance"] = frame["shot_distance"].astype(str)
    path = tmp_path / "typed.parquet"
    frame.astype(str).to_parquet(path)
    report = score_file(kobe, path)
    out = pd.read_parquet(report.output)
    assert len(out) == 50  # nothing dropped
    assert out.loc[0, "input_problems"] == "shot_distance not usable" and out.loc[1, "input_problems"] is None
    assert any("1 rows had values that could not be used ('shot_distance' 1)" in m for m in report.messages)
    assert any("numbers written as text were converted" in m for m in report.messages)
    assert out["proba_1"].notna().all()


def test_infinite_values_are_unusable_not_a_failed_file(kobe, kobe_prod, tmp_path):
    """An export that wrote ±inf (a division by zero upstream) scores like any unusable value: those
    cells are treated as missing and the rows marked, instead of the pipeline failing the file."""
    frame = pd.read_parquet(kobe_prod).head(30)[list(KOBE_FEATURES)].reset_index(drop=True)
    frame["lat"] = frame["lat"].astype(float)
    frame.loc[2, "lat"] = np.inf
    frame.loc[5, "lat"] = -np.inf
    path = tmp_path / "inf.parquet"
    frame.to_parquet(path)
    report = score_file(kobe, path)
    out = pd.read_parquet(report.output)
    assert out.loc[[2, 5], "input_problems"].tolist() == ["lat not usable"] * 2 and out["input_problems"].isna().sum() == 28
    assert any("2 rows had values that could not be used ('lat' 2)" in m for m in report.messages)
    assert out["proba_1"].notna().all() and np.isinf(out["lat"]).sum() == 2  # the input is carried through as it was


def test_unseen_categories_are_counted_per_column(kobe, kobe_prod, tmp_path):
    frame = pd.read_parquet(kobe_prod).head(100).reset_index(drop=True)
    frame.loc[:9, "action_type"] = "Skyhook From Mars"
    path = tmp_path / "unseen.parquet"
    frame.to_parquet(path)
    report = score_file(kobe, path, reference="kobe-actions@champion")
    assert any("'action_type': 10 values never seen in training ('Skyhook From Mars')" in m for m in report.messages)
    assert pd.read_parquet(report.output)["proba_1"].notna().all()


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"", EmptyTableError, "is empty"),
        (b"lat,lon,minutes_remaining,period,playoffs,shot_distance\n", EmptyTableError, "no rows"),
        (b"PAR1" + bytes(64), CorruptFileError, "cut short or damaged"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), BadInputError, "is a PNG image"),
    ],
)
def test_bad_files_are_refused_and_leave_nothing(kobe, tmp_path, content, error, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    before = len(list((kobe.workspace / "scorings").glob("*")))
    with pytest.raises(error, match=message):
        score_file(kobe, path)
    assert len(list((kobe.workspace / "scorings").glob("*"))) == before
    assert not [r for r in runs(kobe) if r.info.status == "RUNNING"]


def test_an_all_empty_feature_is_scored_with_a_warning(kobe, kobe_prod, tmp_path):
    frame = pd.read_parquet(kobe_prod).head(30)
    frame["period"] = np.nan
    path = tmp_path / "empty-period.parquet"
    frame.to_parquet(path)
    report = score_file(kobe, path)
    assert any("'period' has no value in any row" in m for m in report.messages)
    assert report.rows == 30


def test_unknown_model_or_alias(kobe, kobe_prod):
    with pytest.raises(NotFoundError, match="There is no registered model 'nope'"):
        scoring.load_model(kobe, "nope@champion")
    with pytest.raises(NotFoundError, match="has no alias 'ghost'"):
        scoring.load_model(kobe, "kobe@ghost")


@pytest.mark.parametrize(
    ("stop", "raised", "message"),
    [
        (JobCancelled(), JobCancelled, None),  # a cancel goes on up as itself: the job ends cancelled
        # a bug goes on up as itself (not re-worded as bad input): the job or the CLI records it as
        # unexpected, with its traceback in the log (core.errors)
        (RuntimeError("disk vanished"), RuntimeError, "disk vanished"),
    ],
)
def test_an_interrupted_scoring_fails_its_run_and_leaves_no_output(kobe, kobe_prod, stop, raised, message):
    model, pipeline = scoring.load_model(kobe, "kobe@champion")
    calls = {"n": 0}

    class Flaky:
        def predict_proba(self, X):
            calls["n"] += 1
            if calls["n"] == 3:
                raise stop
            return pipeline.predict_proba(X)

    before = set((kobe.workspace / "scorings").glob("*"))
    with pytest.raises(raised) as caught:
        scoring.score(kobe, model, Flaky(), scoring.open_input(kobe, kobe_prod), batch_rows=1000, force=True)
    assert caught.type is raised and (message is None or str(caught.value) == message), repr(caught.value)
    assert set((kobe.workspace / "scorings").glob("*")) == before  # no half-written output
    latest = sorted(runs(kobe), key=lambda r: r.info.start_time)[-1]
    assert latest.info.status == ("KILLED" if isinstance(stop, JobCancelled) else "FAILED")


def test_a_file_broken_further_down_fails_its_run_by_name_and_leaves_nothing_running(kobe, kobe_prod, tmp_path):
    """The next batch is read in a thread while this one is scored: a line broken in the third
    batch stops the scoring with the file's own message, fails the run, and leaves no output and
    no scoring thread behind."""
    import threading

    lines = pd.read_parquet(kobe_prod)[list(KOBE_FEATURES)].head(4000).to_csv(index=False).splitlines()
    lines[2500] += ",1,2,3"  # a row with more fields than the header
    path = tmp_path / "broken further down.csv"
    path.write_text("\n".join(lines) + "\n")
    model, pipeline = scoring.load_model(kobe, "kobe@champion")
    before = set((kobe.workspace / "scorings").glob("*"))
    with pytest.raises(BadInputError, match="'broken further down.csv' is not a regular table.*line 2501"):
        scoring.score(kobe, model, pipeline, scoring.open_input(kobe, path), batch_rows=1000, force=True)
    assert set((kobe.workspace / "scorings").glob("*")) == before
    latest = sorted(runs(kobe), key=lambda r: r.info.start_time)[-1]
    assert latest.info.status == "FAILED" and latest.data.tags["studio.error"].startswith("BadInputError")
    assert not [t.name for t in threading.enumerate() if t.name.startswith("scoring-")]


def test_csv_export_neutralises_formulas(kobe, tmp_path):
    frame = pd.DataFrame({"lat": [34.0, 33.9], "lon": [-118.2, -118.3], "minutes_remaining": [1, 2], "period": [1, 2],
                          "playoffs": [0, 1], "shot_distance": [20, 25], "note": ["=HYPERLINK(\"x\")", "-5 fine? no: text"]})
    path = tmp_path / "formula.parquet"
    frame.to_parquet(path)
    report = score_file(kobe, path)
    exported = scoring.export(Path(report.output), tmp_path / "out.csv")
    text = exported.read_text()
    assert "'=HYPERLINK" in text and "'-5 fine" in text
    back = pd.read_csv(exported)
    assert back["lon"].tolist() == [-118.2, -118.3]  # numbers are never touched
    assert not list(tmp_path.glob(".*.part"))


def test_data_folder_files_only(kobe, tmp_path):
    kobe.data_dir.mkdir(parents=True, exist_ok=True)
    (kobe.data_dir / "inside.csv").write_text("a\n1\n")
    assert scoring.data_file(kobe, "inside.csv") == (kobe.data_dir / "inside.csv").resolve()
    for name in ("../ws/mlflow.db", "/etc/passwd", str(tmp_path / "x.csv")):
        with pytest.raises(BadInputError, match="outside the data folder"):
            scoring.data_file(kobe, name)


def test_cli_score(kobe, kobe_prod, tmp_path):
    env = {**os.environ, "STUDIO_WORKSPACE": str(kobe.workspace)}
    env.pop("MLFLOW_TRACKING_URI", None)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "core", "score", *args], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=180)

    out = cli("--model", "kobe/1", "--input", str(kobe_prod), "--output", str(tmp_path / "scored.parquet"), "--force")
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    assert set(summary) >= {"run_id", "model", "rows", "output", "columns_added", "metrics"}
    assert summary["model"] == {"name": "kobe", "version": 1} and summary["rows"] == 6426
    assert summary["columns_added"][:3] == ["prediction", "proba_0", "proba_1"]
    assert len(pd.read_parquet(tmp_path / "scored.parquet")) == 6426
    bad = cli("--model", "kobe@ghost", "--input", str(kobe_prod), "--output", str(tmp_path / "x.csv"))
    assert bad.returncode == 4 and "has no alias 'ghost'" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.csv").exists()


def test_csv_export_quotes_line_breaks_and_neutralises_every_line(tmp_path):
    """A cell holding a bare carriage return and then =1+1 was written unquoted: the CR split the row
    and the formula started a new line, unneutralised. Now every cell holding CR or LF is quoted and a
    formula after any line break gets its apostrophe too."""
    import csv
    import re

    notes = ["a\r=1+1", "b\n+SUM(A1:A9)", "c\r\n@cmd", "\r-2+3", "=HYPERLINK(\"x\")", "plain", None, "d\u2028=2"]
    frame = pd.DataFrame({"note": notes, "amount": [-1.5, 2.0, -3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
                          "tag": pd.Categorical(["=bad", "ok", "ok", "ok", "ok", "ok", "ok", "ok"])})
    source = tmp_path / "scored.parquet"
    frame.to_parquet(source)
    exported = scoring.export(source, tmp_path / "out.csv")

    with open(exported, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["note", "amount", "tag"]
    assert len(rows) == 1 + len(frame)  # no row was split
    assert [r[0] for r in rows[1:]] == ["a\r'=1+1", "b\n'+SUM(A1:A9)", "c\r\n'@cmd", "'\r'-2+3", "'=HYPERLINK(\"x\")",
                                        "plain", "", "d\u2028'=2"]
    assert [float(r[1]) for r in rows[1:]] == frame["amount"].tolist()  # numbers are never touched
    assert rows[1][2] == "'=bad"  # categorical text too

    text = exported.read_bytes().decode("utf-8")
    for line in re.split(r"\r\n|\r|\n", text) + text.splitlines():
        assert not line.startswith(("=", "+", "@")), repr(line)
        assert not re.match(r"-[^0-9]", line), repr(line)
    back = pd.read_csv(exported)
    assert len(back) == len(frame) and back["note"].iloc[0] == "a\r'=1+1"
    assert not list(tmp_path.glob(".*.part"))


def test_an_excel_file_over_64_kb_is_scored(kobe, kobe_prod, tmp_path):
    """Only the first 64 KB were sniffed: a bigger workbook read as 'damaged (File is not a zip file)'."""
    rows = pd.read_parquet(kobe_prod).head(3000)[[*KOBE_FEATURES, "action_type", "shot_made_flag"]]
    path = tmp_path / "march shots.xlsx"
    rows.to_excel(path, index=False)
    assert path.stat().st_size > 96 * 1024  # well over the 64 KB that were sniffed
    source = scoring.open_input(kobe, path)
    assert source.format == "parquet" and source.rows == 3000 and source.name == "march shots.xlsx"
    assert not list(source.path.parent.glob(".*.part"))  # the converted copy was written whole, then renamed
    report = score_file(kobe, path, force=True)
    assert report.rows == 3000 and report.metrics is not None
    out = pd.read_parquet(report.output)
    assert out["proba_1"].notna().all() and len(out) == 3000


def test_a_damaged_or_foreign_zip_is_refused_by_name(workspace, tmp_path):
    import zipfile

    archive = tmp_path / "photos.xlsx"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.txt", "x" * 100_000)
    with pytest.raises(BadInputError, match=r"'photos.xlsx' is a ZIP archive, not a table"):
        scoring.open_input(workspace, archive)
    cut = tmp_path / "cut.xlsx"
    cut.write_bytes(archive.read_bytes()[:70_000])
    with pytest.raises(CorruptFileError, match=r"'cut.xlsx' looks like an Excel workbook but is damaged"):
        scoring.open_input(workspace, cut)


def test_a_nul_byte_in_a_data_folder_name_is_a_clear_refusal(workspace):
    """It raised an uncaught ValueError (embedded null byte)."""
    workspace.data_dir.mkdir(parents=True, exist_ok=True)
    (workspace.data_dir / "march.csv").write_text("a\n1\n")
    with pytest.raises(BadInputError) as caught:
        scoring.data_file(workspace, "march\x00.csv")
    message = str(caught.value)
    assert "'march\\x00.csv' holds a NUL byte" in message and "\x00" not in message
    assert "Type the file's name again" in message
    with pytest.raises(BadInputError, match="cannot be a file name here"):
        scoring.data_file(workspace, "x" * 5000)  # too long for the file system: refused, not an OSError


@pytest.mark.parametrize("labels", [[0, 1, 2], ["yes", "no", "yes"]])
def test_outcomes_the_model_never_learned_leave_the_scores_and_say_why(kobe, kobe_prod, tmp_path, labels):
    """A 0/1 model scoring a file whose outcome column holds another class, or the outcome coded as
    text (found by the hardening probe: sklearn refused the metrics after every batch was scored,
    and the whole scoring was lost): the scores are kept and the page says why nothing is measured."""
    frame = pd.read_parquet(kobe_prod).head(300).reset_index(drop=True)
    frame["shot_made_flag"] = [labels[i % len(labels)] for i in range(len(frame))]
    path = tmp_path / "odd-labels.parquet"
    frame.to_parquet(path)
    report = score_file(kobe, path)
    assert report.metrics is None and report.rows == 300 and len(pd.read_parquet(report.output)) == 300
    note = next(m for m in report.messages if "holds values the model never learned" in m)
    assert all(repr(v) in note for v in labels if v not in (0, 1)) and "not measured" in note


def test_a_file_removed_after_its_plan_is_said_to_be_gone_not_a_bug(kobe, kobe_prod, tmp_path):
    from core.errors import NotFoundError

    path = tmp_path / "soon-gone.parquet"
    path.write_bytes(kobe_prod.read_bytes())
    planned = scoring.plan(kobe, "kobe@champion", path)
    path.unlink()
    with pytest.raises(NotFoundError, match=r"The file to score, 'soon-gone.parquet', is gone from .*choose the file again"):
        scoring.run(kobe, planned, force=True)


def test_the_outcome_column_is_named_as_such_not_as_an_unused_column():
    from core.scoring import InputReport

    said = InputReport(extra_columns=["disease_progression"], target="disease_progression").messages()
    assert said == ["The file holds the outcome 'disease_progression', so the predictions are compared with it below; "
                    "it is kept in the output."]
    assert InputReport(extra_columns=["shot_id"]).messages() == [
        "1 column the model does not use was carried through untouched: shot_id."]
    assert InputReport(extra_columns=["a", "b"]).messages()[0].startswith("2 columns the model does not use were")


# --- drift and metrics batch by batch ------------------------------------------------------------


def whole_file_drift(settings, report):
    """Today's reference: drift.compare on the whole scored output read back into pandas."""
    from core import drift, monitoring

    frame = pd.read_parquet(report.output)
    model, _ = scoring.load_model(settings, f"{report.model_name}/{report.model_version}")
    profile = monitoring.reference_profile(settings, model.run_id)
    return drift.compare(profile, frame, monitoring.thresholds(settings), scores=monitoring.batch_scores(frame))


def assert_same_report(streamed, whole) -> None:
    assert repr(streamed.features) == repr(whole.features)
    assert repr(streamed.prediction) == repr(whole.prediction)
    assert streamed.summary == whole.summary and streamed.to_dict() == whole.to_dict()


def test_drift_measured_while_scoring_is_the_whole_file_comparison(kobe, kobe_prod):
    from core import drift, monitoring
    from core.tracking import client

    report = score_file(kobe, kobe_prod, batch_rows=1000, force=True)  # 7 batches
    stored = monitoring.stored_drift(kobe, report.run_id)
    assert_same_report(stored, whole_file_drift(kobe, report))
    assert stored.prediction is not None and stored.summary["status"] == "significant"
    assert report.drift == stored.summary
    run = client(kobe).get_run(report.run_id)
    assert run.data.tags["studio.drift_status"] == "significant"
    assert run.data.metrics["drift.psi.shot_distance"] == stored.features[[f.feature for f in stored.features].index("shot_distance")].psi
    # the Monitor page reads the stored report, and the values of one feature for its charts
    [batch] = [b for b in monitoring.batches(kobe, "kobe") if b.run_id == report.run_id]
    opened = monitoring.open_batch(kobe, batch)
    assert_same_report(opened.report, stored)
    assert_same_report(monitoring.batch_drift(kobe, report.run_id), stored)
    values, rows = monitoring.feature_values(opened.output, "shot_distance")
    assert rows == 6426 and values.tolist() == pd.read_parquet(kobe_prod)["shot_distance"].tolist()
    sampled, _ = monitoring.feature_values(opened.output, "shot_distance", limit=1000, batch_rows=700)
    assert sampled.tolist() == pd.read_parquet(kobe_prod)["shot_distance"].iloc[::7].tolist()  # every 7th row, across batches
    assert drift.DriftReport.from_dict(stored.to_dict()).to_dict() == stored.to_dict()


def test_a_generated_file_in_many_batches_has_the_whole_file_drift(kobe, kobe_prod, tmp_path):
    """Ties, missing values and categories never seen in training, over 13 batches of a file
    written in several row groups, through the model that also uses a text feature."""
    rng = np.random.default_rng(3)
    prod = pd.read_parquet(kobe_prod)
    frame = prod.iloc[rng.integers(0, len(prod), 6_000)].reset_index(drop=True)
    frame["shot_distance"] = frame["shot_distance"].astype(float)
    frame.loc[rng.random(len(frame)) < 0.08, "shot_distance"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.05, "action_type"] = None
    frame.loc[frame.index[::9], "action_type"] = "Skyhook From Mars"
    frame.loc[frame.index[::50], "action_type"] = "Behind The Back Floater"
    path = tmp_path / "ragged.parquet"
    frame.to_parquet(path, row_group_size=1_700)
    report = score_file(kobe, path, reference="kobe-actions@champion", batch_rows=470, force=True)
    from core import monitoring

    stored = monitoring.stored_drift(kobe, report.run_id)
    assert_same_report(stored, whole_file_drift(kobe, report))
    action = {f.feature: f for f in stored.features}["action_type"]
    assert action.unseen_share > 0.1 and action.missing_current > 0


def test_scoring_reads_the_file_batch_by_batch_only(kobe, kobe_prod, monkeypatch):
    """Neither the input nor the output is read whole (drift and metrics included)."""
    import pyarrow.parquet as pq

    model, pipeline = scoring.load_model(kobe, "kobe@champion")
    source = scoring.open_input(kobe, kobe_prod)

    def whole(*args, **kwargs):
        raise AssertionError("a whole-file read")

    monkeypatch.setattr(pd, "read_parquet", whole)
    monkeypatch.setattr(pq, "read_table", whole)
    monkeypatch.setattr(pq.ParquetFile, "read", whole)
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", whole)
    report = scoring.score(kobe, model, pipeline, source, batch_rows=2000, force=True)
    assert report.drift is not None and report.drift["status"] == "significant"
    assert report.metrics is not None and not any("could not be measured" in m for m in report.messages)
    monkeypatch.undo()
    export = scoring.export  # the CSV export too
    monkeypatch.setattr(pd, "read_parquet", whole)
    monkeypatch.setattr(pq, "read_table", whole)
    monkeypatch.setattr(pq.ParquetFile, "read", whole)
    assert export(Path(report.output), kobe.workspace / "whole.csv", batch_rows=1000).is_file()


def test_drift_that_cannot_be_measured_leaves_the_scores_and_a_note(kobe, kobe_prod, monkeypatch):
    from core import monitoring

    def gone(*args, **kwargs):
        raise NotFoundError("The training run kept no reference data")

    monkeypatch.setattr(monitoring, "reference_profile", gone)
    report = score_file(kobe, kobe_prod, force=True)
    assert report.drift is None and report.rows == 6426
    assert any(m.startswith("Drift could not be measured yet (The training run kept no reference data)") for m in report.messages)


def test_labelled_metrics_batch_by_batch_equal_the_whole_file_metrics(kobe, kobe_prod):
    from core import evaluation

    report = score_file(kobe, kobe_prod, batch_rows=700, force=True)
    out = pd.read_parquet(report.output)
    known = out["shot_made_flag"].notna()
    expected = evaluation.classification_metrics(out.loc[known, "shot_made_flag"].to_numpy(float), out.loc[known, "prediction"].to_numpy(float),
                                                 out.loc[known, ["proba_0", "proba_1"]].to_numpy(float), (0.0, 1.0))
    assert list(report.metrics) == list(expected)
    assert not list((kobe.workspace / "scorings").glob(".*.scores"))  # the scores kept for AUC are gone
    for name, value in expected.items():
        assert report.metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def outcomes_of(task, classes, truth, predicted, proba, size, folder):
    outcomes = scoring._Outcomes(task, classes, folder)
    for start in range(0, len(truth), size):
        outcomes.add(truth[start:start + size], predicted[start:start + size], None if proba is None else proba[start:start + size])
    return outcomes.finish()


@pytest.mark.parametrize("score_range", [None, 40])  # the scores counted back in one range, or in many
def test_two_class_metrics_with_tied_scores_are_exact(tmp_path, monkeypatch, score_range):
    from sklearn.metrics import roc_auc_score

    from core import evaluation

    rng = np.random.default_rng(21)
    n = 10_000
    truth = rng.choice(["make", "miss"], n, p=[0.35, 0.65]).astype(object)
    p1 = np.round(rng.beta(2, 3, n), 2)  # a hundred distinct scores: many ties across classes
    p1[truth == "miss"] = np.clip(p1[truth == "miss"] + 0.05, 0, 1)
    proba = np.column_stack([1 - p1, p1])
    classes = ("make", "miss")
    predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    if score_range:
        monkeypatch.setattr(scoring._RankedScores, "RANGE", score_range)
    metrics, figures = outcomes_of("classification", classes, truth, predicted, proba, 777, tmp_path)
    expected = evaluation.classification_metrics(truth, predicted, proba, classes)
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
    positive, negative = p1[truth == "miss"], p1[truth == "make"]
    pairs = (positive[:, None] > negative[None, :]).sum() + 0.5 * (positive[:, None] == negative[None, :]).sum()
    assert metrics["auc"] == pairs / (len(positive) * len(negative))  # exact: the Mann-Whitney count
    assert metrics["auc"] == pytest.approx(roc_auc_score(truth == "miss", p1), abs=1e-12)
    matrix = plotted(figures["confusion_matrix"].data[0].z)
    expected_figure = evaluation.batch_figures("classification", truth, predicted, classes)["confusion_matrix"]
    np.testing.assert_array_equal(matrix, plotted(expected_figure.data[0].z))
    assert figures["confusion_matrix"].layout.title.text == expected_figure.layout.title.text


def test_the_confusion_chart_made_early_is_the_one_made_at_the_end(tmp_path):
    """Scoring makes the chart's frame while its first batch is scored (_Outcomes.prepare): the
    chart logged is the one made from the counts at the end, to the byte."""
    rng = np.random.default_rng(23)
    truth = rng.choice([0.0, 1.0], 3_000)
    p1 = rng.random(3_000)
    proba = np.column_stack([1 - p1, p1])
    predicted = (p1 > 0.5).astype(float)
    charts = []
    for early in (False, True):
        folder = tmp_path / str(early)
        folder.mkdir()
        outcomes = scoring._Outcomes("classification", (0.0, 1.0), folder)
        if early:
            outcomes.prepare()
        for start in range(0, 3_000, 1_000):
            outcomes.add(truth[start:start + 1_000], predicted[start:start + 1_000], proba[start:start + 1_000])
        metrics, figures = outcomes.finish()
        charts.append(figures["confusion_matrix"].to_json())
    assert charts[0] == charts[1]
    assert plotted(json.loads(charts[1])["data"][0]["z"]).sum() == 3_000


def test_a_scoring_writes_to_the_store_a_fixed_few_times(kobe, kobe_prod, monkeypatch):
    """The run's record costs a handful of store writes whatever the file's length: the run, its
    parameters, its metrics with the estimate's tag in one batch, the drift (monitoring.record: its
    metrics and tag) and the end. Each is a round trip to a team server, on the scoring's path."""
    from mlflow.tracking import MlflowClient

    writes: list[str] = []
    for name in ("create_run", "log_batch", "log_metric", "log_param", "set_tag", "set_terminated", "update_run"):
        original = getattr(MlflowClient, name)
        monkeypatch.setattr(MlflowClient, name, lambda self, *a, _f=original, _n=name, **k: (writes.append(_n), _f(self, *a, **k))[1])
    counts = []
    for batch_rows in (3_000, 700):  # 3 batches, then 10
        writes.clear()
        report = score_file(kobe, kobe_prod, batch_rows=batch_rows, force=True)
        assert report.metrics is not None and report.drift is not None and report.estimate is not None
        counts.append(sorted(writes))
    assert counts[0] == counts[1]
    assert counts[0] == sorted(["create_run", "log_batch", "log_batch", "log_batch", "set_tag", "set_terminated"])


def test_three_class_and_regression_metrics_batch_by_batch_equal_the_whole_file(tmp_path, monkeypatch):
    from core import evaluation

    rng = np.random.default_rng(22)
    n = 9_000
    truth = rng.choice([1.0, 2.0, 3.0], n)
    raw = rng.dirichlet([2, 2, 2], n)
    raw[np.arange(n), (truth - 1).astype(int)] += 0.3
    proba = raw / raw.sum(axis=1, keepdims=True)
    predicted = np.asarray([1.0, 2.0, 3.0])[proba.argmax(axis=1)]
    monkeypatch.setattr(scoring._RankedScores, "RANGE", 2_000)  # several score ranges per class
    metrics, _ = outcomes_of("classification", (1.0, 2.0, 3.0), truth, predicted, proba, 1_000, tmp_path)
    for name, value in evaluation.classification_metrics(truth, predicted, proba, (1.0, 2.0, 3.0)).items():
        assert metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name

    actual = rng.normal(200_000, 50_000, n)
    actual[:40] = 0.0  # left out of MAPE
    guess = actual + rng.normal(0, 20_000, n)
    metrics, figures = outcomes_of("regression", (), actual, guess, None, 1_300, tmp_path)
    for name, value in evaluation.regression_metrics(actual, guess).items():
        assert metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
    sampled = plotted(figures["predicted_vs_actual"].data[0].x)
    assert len(sampled) == 5_000 and set(sampled) <= set(actual)  # a sample of the file's rows, as before


def test_csv_export_batch_by_batch_is_one_csv(tmp_path):
    """Batches of any size make the same file; numbers read back exactly."""
    rng = np.random.default_rng(23)
    frame = pd.DataFrame({"x": rng.normal(size=2_500) * 10.0 ** rng.integers(-8, 12, 2_500), "n": rng.integers(-5, 5, 2_500),
                          "text": rng.choice(["a", "=b", "c,d", 'say "hi"', None], 2_500), "flag": rng.random(2_500) < 0.5,
                          "whole": rng.integers(0, 3, 2_500).astype(float)})
    frame.loc[::13, "x"] = np.nan
    source = tmp_path / "scored.parquet"
    frame.to_parquet(source, row_group_size=600)
    one = scoring.export(source, tmp_path / "one.csv", batch_rows=10_000).read_bytes()
    many = scoring.export(source, tmp_path / "many.csv", batch_rows=77).read_bytes()
    assert one == many and one.count(b"\r\n") == 1 + len(frame)
    back = pd.read_csv(tmp_path / "many.csv", keep_default_na=False, na_values=[""], float_precision="round_trip")
    np.testing.assert_array_equal(back["x"].to_numpy(), frame["x"].to_numpy())  # the same doubles, NaN as empty
    assert back["n"].tolist() == frame["n"].tolist() and back["flag"].tolist() == frame["flag"].tolist()
    assert back["whole"].dtype == float and b",1.0\r\n" in one  # whole decimals keep their .0
    assert set(back["text"].dropna()) == {"a", "'=b", "c,d", 'say "hi"'}


def test_files_are_read_without_pyarrows_pre_buffering(kobe, kobe_prod, monkeypatch):
    """pyarrow's pre_buffer keeps every row group read until the reader ends (by the last batch, the
    whole file): scoring, the drift of a stored output and the CSV export read without it."""
    import pyarrow.parquet as pq

    from core import monitoring

    seen = []

    class Reader(pq.ParquetFile):
        def __init__(self, source, **kwargs):
            super().__init__(source, **kwargs)
            self.buffered = kwargs.get("pre_buffer", True)

        def iter_batches(self, *args, **kwargs):
            seen.append(self.buffered)
            return super().iter_batches(*args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", Reader)
    report = score_file(kobe, kobe_prod, batch_rows=2000, force=True)
    scoring.export(Path(report.output), kobe.workspace / "unbuffered.csv")
    model, _ = scoring.load_model(kobe, "kobe@champion")
    monitoring.measure_output(monitoring.reference_profile(kobe, model.run_id), Path(report.output))
    assert len(seen) == 3 and not any(seen)


def test_a_csv_of_decimals_is_read_back_exactly(workspace, tmp_path):
    """The scoring reads a CSV's decimals as written (pandas' fast float parser misreads the last digit of
    many, e.g. every value of sklearn's diabetes 'sex' column, moving them across drift bin edges)."""
    from sklearn.datasets import load_diabetes

    from core.scoring.inputs import iter_batches

    frame = load_diabetes(as_frame=True).frame
    path = tmp_path / "diabetes.csv"
    frame.to_csv(path, index=False)
    read = pd.concat([t.to_pandas() for t in iter_batches(scoring.open_input(workspace, path), 100)], ignore_index=True)
    assert (read["sex"].to_numpy() == frame["sex"].to_numpy()).all()
    pd.testing.assert_frame_equal(read, frame, check_exact=True)
