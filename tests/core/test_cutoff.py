"""The cut-off stored on a registered version (core.registry): set, read, cleared and recorded like the
alias moves; refused where it means nothing; used by scoring (labels, metrics, the run's tag, the CLI
summary), by the Predict page's core and by ``python -m core models threshold``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from core import datasets, metrics, monitoring, predict, registry, scoring
from core.errors import BadInputError, NotFoundError
from core.settings import PROJECT_ROOT, load_settings
from core.tracking import client
from core.training import TrainingSpec, train
from tests.conftest import KOBE_FEATURES, houses


@pytest.fixture(scope="module")
def studio(tmp_path_factory, kobe_dev):
    """A workspace with a Kobe logistic regression (``kobe``, version 1, champion), a linear SVM on
    Kobe rows (``kobe-svm``), a regression (``prices``) and a three-class model (``thirds``)."""
    ws = tmp_path_factory.mktemp("cutoff")
    settings = load_settings({"STUDIO_WORKSPACE": str(ws / "ws"), "STUDIO_DATA_DIR": str(ws / "data")})
    frame = pd.read_parquet(kobe_dev)
    kobe = train(settings, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=2), frame,
                 table_name="kobe dev", table_digest="d" * 64)
    registry.register(settings, kobe.models[0].run_id, "kobe", alias="champion", who="ana")
    small = frame.dropna(subset=["shot_made_flag"]).sample(1500, random_state=0)
    svm = train(settings, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("svm",), folds=2), small,
                table_name="kobe small", table_digest="s" * 64)
    registry.register(settings, svm.models[0].run_id, "kobe-svm")
    prices = train(settings, TrainingSpec(target="price", algorithms=("lr",), folds=2), houses(300, 0),
                   table_name="houses", table_digest="h" * 64)
    registry.register(settings, prices.models[0].run_id, "prices")
    thirds_frame = houses(300, 1).assign(third=lambda f: pd.qcut(f["price"], 3, labels=["low", "mid", "high"]).astype(str))
    thirds = train(settings, TrainingSpec(target="third", features=("size", "rooms"), algorithms=("lr",), folds=2), thirds_frame,
                   table_name="thirds", table_digest="t" * 64)
    registry.register(settings, thirds.models[0].run_id, "thirds")
    return settings


def scored(settings, path, reference="kobe/1") -> tuple[scoring.ScoringReport, pd.DataFrame]:
    model, pipeline = scoring.load_model(settings, reference)
    report = scoring.score(settings, model, pipeline, scoring.open_input(settings, path), force=True)
    return report, datasets.read_parquet(report.output)


def test_a_cut_off_is_set_read_moved_and_cleared_and_each_change_is_recorded(studio):
    registry.set_cutoff(studio, "kobe", 1, None)
    assert registry.cutoff(studio, "kobe", 1) is None
    before = datetime.now(UTC) - timedelta(seconds=2)
    first = registry.set_cutoff(studio, "kobe", 1, 0.35, who="ana")
    assert (first.value, first.from_value, first.positive, first.action) == (0.35, None, "1", "set")
    stored = registry.cutoff(studio, "kobe", 1)
    assert (stored.value, stored.positive, stored.by) == (0.35, "1", "ana")
    assert before <= datetime.fromisoformat(stored.at) <= datetime.now(UTC) + timedelta(seconds=2)
    assert stored.sentence("shot_made_flag").startswith("A row is predicted shot_made_flag = 1 when its probability of 1 is "
                                                        "at least 0.35 (cut-off set by ana on ")
    moved = registry.set_cutoff(studio, "kobe", 1, "0.6", positive="0", who="ben")  # text, as typed, and the other class
    assert moved.to_dict() == {"name": "kobe", "version": 1, "action": "moved", "from": {"value": 0.35, "positive": "1"},
                               "to": {"value": 0.6, "positive": "0"}}
    view = registry.resolve(studio, "kobe@champion")
    assert view.cutoff.value == 0.6 and view.cutoff.positive == "0" and view.to_dict()["cutoff"]["by"] == "ben"
    cleared = registry.set_cutoff(studio, "kobe", 1, None, who="cy")
    assert (cleared.value, cleared.from_value, cleared.positive, cleared.action) == (None, 0.6, "0", "removed")
    assert registry.cutoff(studio, "kobe", 1) is None and registry.resolve(studio, "kobe/1").cutoff is None
    again = registry.set_cutoff(studio, "kobe", 1, None)  # nothing to remove: nothing recorded
    assert again.action == "unchanged"

    model = registry.get_model(studio, "kobe")
    changes = [(h["by"], h["from_cutoff"], h["cutoff"], h["positive"]) for h in model.cutoff_history if h["version"] == 1]
    assert changes[-3:] == [("ana", None, 0.35, "1"), ("ben", 0.35, 0.6, "0"), ("cy", 0.6, None, "0")]
    assert all(h["action"] == "cutoff" and before <= datetime.fromisoformat(h["at"]) for h in model.cutoff_history[-3:])
    # the alias history stays alias moves only: what the Models page and the Monitor timeline read
    assert model.history and all("alias" in h and h["action"] != "cutoff" for h in model.history)
    tags = client(studio).get_registered_model("kobe").tags
    assert [h.get("action") for h in json.loads(tags[registry.CUTOFF_HISTORY_TAG])].count("cutoff") == len(model.cutoff_history) >= 3
    assert "cutoff" not in [h.get("action") for h in json.loads(tags[registry.HISTORY_TAG])]
    timeline = monitoring.timeline(studio, "kobe", found=[], model=model)
    assert list(timeline["change"]) == ["champion → v1"]


@pytest.mark.parametrize("name, value, positive, error, words", [
    ("prices", 0.5, None, BadInputError, "predicts a number (regression)"),
    ("thirds", 0.5, None, BadInputError, "sorts rows into 3 classes"),
    ("kobe-svm", 0.5, None, BadInputError, "gives no probabilities"),
    ("kobe", 1.5, None, BadInputError, "must be a number from 0 to 1"),
    ("kobe", -0.1, None, BadInputError, "must be a number from 0 to 1"),
    ("kobe", "nan", None, BadInputError, "must be a number from 0 to 1"),
    ("kobe", "0,35", None, BadInputError, "must be a number from 0 to 1"),
    ("kobe", True, None, BadInputError, "must be a number from 0 to 1"),
    ("kobe", 0.5, "2", BadInputError, "'2' is not a class of version 1 of 'kobe'; its classes are 0 and 1"),
])
def test_a_cut_off_is_refused_where_it_means_nothing(studio, name, value, positive, error, words):
    version = registry.resolve(studio, name).version
    registry.set_cutoff(studio, "kobe", 1, None)
    with pytest.raises(error) as refused:
        registry.set_cutoff(studio, name, version, value, positive=positive)
    assert words in str(refused.value)
    assert registry.cutoff(studio, name, version) is None  # nothing half-written


def test_an_unknown_version_or_model_is_not_found(studio):
    with pytest.raises(NotFoundError, match="'kobe' has no version 9. Its versions: 1."):
        registry.set_cutoff(studio, "kobe", 9, 0.4)
    with pytest.raises(NotFoundError, match="'kobe' has no version 9"):
        registry.cutoff(studio, "kobe", 9)
    with pytest.raises(NotFoundError, match="There is no registered model 'ghost'"):
        registry.set_cutoff(studio, "ghost", 1, 0.4)


def test_decide_is_the_likelier_class_without_a_cut_off_and_the_rule_with_one():
    proba = np.array([[0.5, 0.5], [0.7, 0.3], [0.2, 0.8], [0.65, 0.35]])
    assert list(scoring.decide(proba, (0, 1), None)) == [0, 0, 1, 0]  # a tie goes to the first class
    at = registry.Cutoff(value=0.35, positive="1")
    assert list(scoring.decide(proba, (0, 1), at)) == [1, 0, 1, 1]  # at or above the cut-off
    assert list(scoring.decide(proba, ("no", "yes"), registry.Cutoff(value=0.6, positive="no"))) == ["yes", "no", "yes", "no"]
    assert list(scoring.decide(np.array([[0.2, 0.5, 0.3]]), ("a", "b", "c"), None)) == ["b"]
    with pytest.raises(BadInputError, match="does not fit this model"):
        scoring.decide(np.array([[0.2, 0.5, 0.3]]), ("a", "b", "c"), at)


def test_scoring_at_the_stored_cut_off_gives_the_rules_labels_metrics_and_tag(studio, kobe_dev):
    registry.set_cutoff(studio, "kobe", 1, None)
    plain, argmax = scored(studio, kobe_dev)
    assert plain.cutoff is None and plain.summary()["cutoff"] is None
    assert "studio.cutoff" not in client(studio).get_run(plain.run_id).data.tags
    proba = argmax[["proba_0", "proba_1"]].to_numpy()
    np.testing.assert_array_equal(argmax["prediction"].to_numpy(), np.array([0.0, 1.0])[proba.argmax(axis=1)])

    value = float(np.quantile(argmax["proba_1"], 0.3))  # 70% of the rows flagged: far more than the likelier class flags
    registry.set_cutoff(studio, "kobe", 1, value, who="ana")
    report, out = scored(studio, kobe_dev)
    expected = np.where(out["proba_1"].to_numpy() >= value, 1.0, 0.0)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), expected)
    assert (expected != argmax["prediction"].to_numpy()).mean() > 0.1  # the cut-off changed many labels
    tag = json.loads(client(studio).get_run(report.run_id).data.tags["studio.cutoff"])
    assert tag["value"] == value and tag["positive"] == "1" and tag["by"] == "ana"
    assert report.summary()["cutoff"]["value"] == value and report.summary()["cutoff"]["positive"] == "1"

    # the labelled file's metrics: those of the cut-off's labels; AUC and log loss do not move
    known = out["shot_made_flag"].notna().to_numpy()
    truth = out["shot_made_flag"].to_numpy()[known]
    assert report.metrics["accuracy"] == pytest.approx(skm.accuracy_score(truth, expected[known]), abs=1e-12)
    assert report.metrics["f1"] == pytest.approx(skm.f1_score(truth, expected[known]), abs=1e-12)
    assert report.metrics["recall"] == pytest.approx(skm.recall_score(truth, expected[known]), abs=1e-12)
    assert report.metrics["f1"] != pytest.approx(plain.metrics["f1"], abs=1e-3)
    for name in metrics.THRESHOLD_FREE:
        assert report.metrics[name] == pytest.approx(plain.metrics[name], abs=1e-12)
    # the holdout it is compared with is measured by the same rule
    holdout = registry.holdout_scores(studio, registry.resolve(studio, "kobe/1").run_id)
    rule = np.where(holdout["proba_1"].to_numpy() >= value, 1.0, 0.0)
    compared = {c.metric: c.at_training for c in report.comparison}
    assert compared["recall"] == pytest.approx(skm.recall_score(holdout["actual"], rule), abs=1e-12)
    assert compared["auc"] == pytest.approx(plain.holdout_metrics["auc"], abs=1e-12)
    assert report.holdout_metrics["recall"] != pytest.approx(plain.holdout_metrics["recall"], abs=1e-3)


def test_a_cached_model_scores_at_the_cut_off_stored_now(studio, kobe_prod):
    registry.set_cutoff(studio, "kobe", 1, None)
    model, pipeline = scoring.load_model(studio, "kobe/1")  # as the pages cache it
    assert model.cutoff is None
    registry.set_cutoff(studio, "kobe", 1, 0.3)
    assert scoring.with_current_cutoff(studio, model).cutoff.value == 0.3
    report = scoring.score(studio, model, pipeline, scoring.open_input(studio, kobe_prod), force=True)
    out = datasets.read_parquet(report.output)
    assert report.cutoff["value"] == 0.3
    np.testing.assert_array_equal(out["prediction"].to_numpy(), np.where(out["proba_1"].to_numpy() >= 0.3, 1.0, 0.0))
    registry.set_cutoff(studio, "kobe", 1, None)


def test_a_scoring_made_at_another_cut_off_is_not_offered_as_already_done(studio, kobe_prod):
    """Without --force, scoring a file again hands back the earlier result; one made before the cut-off
    moved predicted other labels, so it must not be handed back."""
    registry.set_cutoff(studio, "kobe", 1, None)
    model, pipeline = scoring.load_model(studio, "kobe/1")
    plain = scoring.score(studio, model, pipeline, scoring.open_input(studio, kobe_prod), force=True)
    assert scoring.plan(studio, "kobe/1", kobe_prod).earlier.run_id == plain.run_id
    registry.set_cutoff(studio, "kobe", 1, 0.37)  # a cut-off no other test scores this file at
    assert scoring.plan(studio, "kobe/1", kobe_prod).earlier is None
    at = scoring.score(studio, model, pipeline, scoring.open_input(studio, kobe_prod), force=True)
    assert scoring.plan(studio, "kobe/1", kobe_prod).earlier.run_id == at.run_id
    scoring.runs._REPORTS.clear()  # read back from the store, as a page opening an earlier result does
    assert scoring.load_report(studio, at.run_id).cutoff["value"] == 0.37 and scoring.load_report(studio, plain.run_id).cutoff is None
    registry.set_cutoff(studio, "kobe", 1, None)
    assert scoring.plan(studio, "kobe/1", kobe_prod).earlier.run_id == plain.run_id


def test_predict_one_decides_at_the_cut_off_and_says_which(studio):
    registry.set_cutoff(studio, "kobe", 1, None)
    model, pipeline = scoring.load_model(studio, "kobe/1")
    fields = predict.form_spec(model, monitoring.reference_profile(studio, model.run_id))
    values = {f.name: f.default for f in fields}
    plain = predict.predict_one(model, pipeline, values, fields)
    p1 = plain.probabilities["1"]
    assert plain.cutoff is None and plain.prediction == (1 if p1 > plain.probabilities["0"] else 0)
    registry.set_cutoff(studio, "kobe", 1, p1)  # exactly the row's probability: at the cut-off is positive
    at = predict.predict_one(scoring.with_current_cutoff(studio, model), pipeline, values, fields)
    assert at.prediction == 1 and at.cutoff.value == p1 and at.probabilities == plain.probabilities
    registry.set_cutoff(studio, "kobe", 1, min(1.0, p1 + 1e-9))
    above = predict.predict_one(scoring.with_current_cutoff(studio, model), pipeline, values, fields)
    assert above.prediction == 0
    registry.set_cutoff(studio, "kobe", 1, p1, positive="0")  # the other class named positive: its probability decides
    other = predict.predict_one(scoring.with_current_cutoff(studio, model), pipeline, values, fields)
    assert other.prediction == (0 if plain.probabilities["0"] >= p1 else 1)
    registry.set_cutoff(studio, "kobe", 1, None)


def test_metrics_that_depend_on_the_cut_off_are_told_apart():
    assert {k for k in metrics.METRICS if metrics.depends_on_cutoff(k)} == {"accuracy", "f1", "precision", "recall", "kappa", "mcc"}
    assert metrics.THRESHOLD_FREE == {"auc", "log_loss", "log_loss_ratio"}
    assert metrics.depends_on_cutoff("cv_f1_mean") and not metrics.depends_on_cutoff("cv_auc_std")
    assert not metrics.depends_on_cutoff("rmse") and not metrics.depends_on_cutoff("no such metric")


def cli(settings, *args):
    env = {**os.environ, "STUDIO_WORKSPACE": str(settings.workspace)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=180)


def test_the_cli_sets_and_clears_the_cut_off_and_score_uses_it(studio, kobe_prod, tmp_path):
    registry.set_cutoff(studio, "kobe", 1, None)
    out = cli(studio, "models", "threshold", "kobe", "1", "0.3", "--positive", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == {"name": "kobe", "version": 1, "action": "set", "from": None,
                                      "to": {"value": 0.3, "positive": "1"}}
    assert registry.cutoff(studio, "kobe", 1).value == 0.3

    scored_out = cli(studio, "score", "--model", "kobe@champion", "--input", str(kobe_prod), "--output",
                     str(tmp_path / "scored.parquet"), "--force")
    assert scored_out.returncode == 0, scored_out.stderr[-2000:]
    summary = json.loads(scored_out.stdout)
    assert summary["cutoff"]["value"] == 0.3 and summary["cutoff"]["positive"] == "1"
    assert "cut-off: A row is predicted shot_made_flag = 1 when its probability of 1 is at least 0.3" in scored_out.stderr
    table = datasets.read_parquet(tmp_path / "scored.parquet")
    np.testing.assert_array_equal(table["prediction"].to_numpy(), np.where(table["proba_1"].to_numpy() >= 0.3, 1.0, 0.0))

    for args, code, words in [
        (("kobe", "1", "nan"), 2, "must be a number from 0 to 1"),
        (("kobe", "1"), 2, "Give either a cut-off from 0 to 1"),
        (("kobe", "1", "0.4", "--clear"), 2, "Give either a cut-off from 0 to 1"),
        (("kobe", "1", "0.4", "--positive", "2"), 2, "'2' is not a class"),
        (("kobe", "7", "0.4"), 4, "'kobe' has no version 7"),
        (("prices", "1", "0.4"), 2, "predicts a number (regression)"),
    ]:
        bad = cli(studio, "models", "threshold", *args)
        assert bad.returncode == code and words in bad.stderr and "Traceback" not in bad.stderr, (args, bad.stderr[-1000:])
        assert bad.stdout == ""
    assert registry.cutoff(studio, "kobe", 1).value == 0.3  # nothing refused changed it

    cleared = cli(studio, "models", "threshold", "kobe", "1", "--clear")
    assert cleared.returncode == 0, cleared.stderr[-2000:]
    assert json.loads(cleared.stdout)["from"] == {"value": 0.3, "positive": "1"} and json.loads(cleared.stdout)["to"] is None
    assert registry.cutoff(studio, "kobe", 1) is None


def test_many_cut_off_changes_never_push_the_alias_moves_out_of_the_history(studio):
    """Cut-off changes are kept apart: who made which version champion stays on record however often
    the cut-off moves (both histories keep their newest entries within MLflow's tag size)."""
    before = registry.get_model(studio, "kobe").history
    for step in range(40):
        registry.set_cutoff(studio, "kobe", 1, round(0.3 + step / 100, 2), who="tuner")
    model = registry.get_model(studio, "kobe")
    assert model.history == before and any(h["alias"] == "champion" for h in model.history)
    assert model.cutoff_history[-1]["cutoff"] == 0.69 and len(json.dumps(model.cutoff_history)) <= registry.HISTORY_MAX_CHARS
    registry.set_cutoff(studio, "kobe", 1, None)


def test_the_models_page_figures_at_a_cut_off_for_class_0_equal_the_holdout_scoring_compares_with(studio, kobe_dev):
    """A cut-off for the first class (0): the Models page's "At the stored cut-off" figures
    (decisions.for_run) are those scoring compares a labelled file with ("at training"), precision,
    recall and F1 both for class 1, the class training's metrics are for, and the page is told so."""
    from core import decisions

    registry.set_cutoff(studio, "kobe", 1, 0.6, positive="0", who="ana")
    try:
        report, out = scored(studio, kobe_dev)
    finally:
        registry.set_cutoff(studio, "kobe", 1, None)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), np.where(out["proba_0"].to_numpy() >= 0.6, 0.0, 1.0))
    at_training = {c.metric: c.at_training for c in report.comparison}
    view = registry.resolve(studio, "kobe/1")
    page = decisions.for_run(studio, view.run_id, positive="0", stored=0.6)
    assert page.at_cutoff.cutoff == 0.6 and page.metric_class == "1" and page.at_cutoff.metric_note.startswith(
        "Precision, recall and F1 are for class 1")
    for key, value in page.at_cutoff.as_metrics().items():
        assert value == pytest.approx(at_training[key], abs=1e-12), key
    holdout = registry.holdout_scores(studio, view.run_id)
    rule = np.where(holdout["proba_0"].to_numpy() >= 0.6, 0.0, 1.0)
    assert at_training["precision"] == pytest.approx(skm.precision_score(holdout["actual"], rule, pos_label=1.0), abs=1e-12)
    assert at_training["precision"] != pytest.approx(skm.precision_score(holdout["actual"], rule, pos_label=0.0), abs=1e-3)
    # the realized figures on the file are for class 1 as well
    known = out["shot_made_flag"].notna().to_numpy()
    assert report.metrics["recall"] == pytest.approx(
        skm.recall_score(out["shot_made_flag"].to_numpy()[known], out["prediction"].to_numpy()[known], pos_label=1.0), abs=1e-12)


def test_an_online_prediction_records_the_cut_off_it_was_decided_at(studio):
    registry.set_cutoff(studio, "kobe", 1, None)
    model, pipeline = scoring.load_model(studio, "kobe/1")
    fields = predict.form_spec(model, monitoring.reference_profile(studio, model.run_id))
    values = {f.name: f.default for f in fields}
    predict.online_path(studio, "kobe").unlink(missing_ok=True)
    predict.record_online(studio, model, values, predict.predict_one(model, pipeline, values, fields))
    registry.set_cutoff(studio, "kobe", 1, 0.2, who="ana")
    try:
        at = scoring.with_current_cutoff(studio, model)
        predict.record_online(studio, at, values, predict.predict_one(at, pipeline, values, fields))
    finally:
        registry.set_cutoff(studio, "kobe", 1, None)
    lines = [json.loads(line) for line in predict.online_path(studio, "kobe").read_text().splitlines()]
    assert [line["cutoff"] for line in lines][0] is None
    assert (lines[1]["cutoff"]["value"], lines[1]["cutoff"]["positive"], lines[1]["cutoff"]["by"]) == (0.2, "1", "ana")
    assert lines[1]["prediction"] == (1 if lines[1]["proba_1"] >= 0.2 else 0)
    assert len(predict.online_frame(studio, "kobe")) == 2


def test_a_new_value_alone_keeps_its_class_and_the_same_rule_again_records_nothing(studio):
    registry.set_cutoff(studio, "kobe", 1, None)
    registry.set_cutoff(studio, "kobe", 1, 0.4, positive="0.0")  # 0.0 as people write the class 0
    nudged = registry.set_cutoff(studio, "kobe", 1, 0.45)  # no class named: still class 0, not the last class
    assert (nudged.from_positive, nudged.positive, nudged.action) == ("0", "0", "moved")
    entries = len(registry.get_model(studio, "kobe").cutoff_history)
    again = registry.set_cutoff(studio, "kobe", 1, "0.45", positive="0")
    assert again.action == "unchanged" and len(registry.get_model(studio, "kobe").cutoff_history) == entries
    registry.set_cutoff(studio, "kobe", 1, None)


def test_the_cli_says_when_a_running_rest_server_answers_at_another_cut_off(studio, capsys):
    """core serve reads the cut-off when it starts: changing it while the server runs is said on stderr."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from core import serving
    from core.__main__ import _say_stale_server

    class Ping(BaseHTTPRequestHandler):  # answers /ping as the scoring server does
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        serving.record_state(studio, {"name": "kobe", "version": 1, "url": url, "cutoff": {"value": 0.4, "positive": "1"}})
        _say_stale_server(studio, "kobe", 1, {"value": 0.45, "positive": "1"})
        assert f"the REST server at {url} still answers version 1 at the cut-off 0.4 for class 1" in capsys.readouterr().err
        _say_stale_server(studio, "kobe", 1, {"value": 0.4, "positive": "1"})  # the same rule: nothing to say
        _say_stale_server(studio, "kobe", 2, None)  # another version
        assert capsys.readouterr().err == ""
    finally:
        server.shutdown()
    _say_stale_server(studio, "kobe", 1, None)  # the server is gone: nothing to restart
    assert capsys.readouterr().err == ""
    serving.state_path(studio).unlink()
