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
    assert list(out.columns) == [*prod.columns, "prediction", "proba_0", "proba_1", "model_name", "model_version", "scored_at", "input_problems"]
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
    worse = {row["metric"] for row in report.comparison if row["worse"]}
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
    assert caught.value.run_id in {r.info.run_id for r in runs(kobe)}
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


@pytest.mark.parametrize("stop", [JobCancelled(), RuntimeError("disk vanished")])
def test_an_interrupted_scoring_fails_its_run_and_leaves_no_output(kobe, kobe_prod, stop):
    model, pipeline = scoring.load_model(kobe, "kobe@champion")
    calls = {"n": 0}

    class Flaky:
        def predict_proba(self, X):
            calls["n"] += 1
            if calls["n"] == 3:
                raise stop
            return pipeline.predict_proba(X)

    before = set((kobe.workspace / "scorings").glob("*"))
    with pytest.raises((JobCancelled, BadInputError)):
        scoring.score(kobe, model, Flaky(), scoring.open_input(kobe, kobe_prod), batch_rows=1000, force=True)
    assert set((kobe.workspace / "scorings").glob("*")) == before  # no half-written output
    latest = sorted(runs(kobe), key=lambda r: r.info.start_time)[-1]
    assert latest.info.status == ("KILLED" if isinstance(stop, JobCancelled) else "FAILED")


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
    assert bad.returncode == 2 and "has no alias 'ghost'" in bad.stderr and "Traceback" not in bad.stderr
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


def test_the_outcome_column_is_named_as_such_not_as_an_unused_column():
    from core.scoring import InputReport

    said = InputReport(extra_columns=["disease_progression"], target="disease_progression").messages()
    assert said == ["The file holds the outcome 'disease_progression', so the predictions are compared with it below; "
                    "it is kept in the output."]
    assert InputReport(extra_columns=["shot_id"]).messages() == [
        "1 column the model does not use was carried through untouched: shot_id."]
    assert InputReport(extra_columns=["a", "b"]).messages()[0].startswith("2 columns the model does not use were")
