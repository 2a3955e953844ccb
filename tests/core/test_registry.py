"""core.registry against both stores: the embedded sqlite store and a real `mlflow server` over HTTP."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd
import pytest

from core import registry
from core.errors import BadInputError, NotFoundError
from core.settings import load_settings
from core.tracking import TrackingUnavailableError
from core.training import TrainingSpec, train


def table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n)})
    frame["label"] = (frame["x1"] + rng.normal(0, 0.7, n) > 0).astype(int)
    return frame


@pytest.fixture(scope="module", params=["embedded", "remote"])
def store(request, tmp_path_factory):
    """Settings on one store, with a finished training job of two models (lr, dt) in it."""
    env = {"STUDIO_WORKSPACE": str(tmp_path_factory.mktemp(f"registry-{request.param}"))}
    if request.param == "remote":
        env["MLFLOW_TRACKING_URI"] = request.getfixturevalue("mlflow_server")
    settings = load_settings(env)
    result = train(settings, TrainingSpec(target="label", folds=2, params={"dt": {"max_depth": 3}}), table(),
                   table_name="registry table", table_digest="9" * 64)
    runs = {m.algorithm: m.run_id for m in result.models}
    return settings, runs, result


def new_name() -> str:
    return f"model-{uuid.uuid4().hex[:8]}"


def test_register_two_versions_alias_promote_and_history(store):
    settings, runs, _ = store
    name = new_name()
    first = registry.register(settings, runs["lr"], name, alias="champion", who="ana")
    second = registry.register(settings, runs["dt"], name, alias="challenger", who="ana")
    assert first == registry.Registration(name=name, version=1, alias="champion")
    assert (first.version, second.version) == (1, 2)
    assert second.to_dict() == {"name": name, "version": 2, "alias": "challenger"}  # what the CLI prints
    assert registry.Registration.from_dict(second.to_dict()) == second

    model = registry.get_model(settings, name)
    assert model.aliases == {"champion": 1, "challenger": 2}
    by_version = {v.version: v for v in model.versions}
    assert by_version[1].aliases == ("champion",) and by_version[2].aliases == ("challenger",)
    assert by_version[1].table_name == "registry table" and by_version[1].table_digest == "9" * 64
    assert by_version[1].algorithm == "Logistic regression" and by_version[2].algorithm == "Decision tree"
    assert 0 < by_version[1].metrics["log_loss"] < 1 and "f1" in by_version[2].metrics
    assert by_version[2].params["max_depth"] == "3"

    # the challenger shown was version 1: it has moved since (to 2), so nothing is promoted
    with pytest.raises(BadInputError, match="is version 2 now, not version 1 as shown.*Nothing was promoted"):
        registry.promote(settings, name, who="ben", expected=1)
    assert registry.get_model(settings, name).aliases == {"champion": 1, "challenger": 2}
    promoted = registry.promote(settings, name, who="ben", expected=2)
    assert promoted == registry.Promotion(name=name, champion=2, previous_champion=1)
    assert promoted.to_dict() == {"name": name, "champion": 2, "previous_champion": 1}
    assert registry.Promotion.from_dict(promoted.to_dict()) == promoted
    model = registry.get_model(settings, name)
    assert model.aliases == {"champion": 2}
    actions = [(h["alias"], h["action"], h["version"], h["from_version"], h["by"]) for h in model.history]
    assert actions == [
        ("champion", "set", 1, None, "ana"), ("challenger", "set", 2, None, "ana"),
        ("champion", "promoted", 2, 1, "ben"), ("challenger", "removed", None, 2, "ben"),
    ]
    assert all(h["at"] for h in model.history)


def test_resolve_references(store):
    settings, runs, _ = store
    name = new_name()
    registry.register(settings, runs["lr"], name)
    registry.register(settings, runs["dt"], name, alias="champion")
    assert registry.resolve(settings, f"{name}@champion").version == 2
    assert registry.resolve(settings, f"{name}/1").version == 1
    assert registry.resolve(settings, name).version == 2  # the champion
    assert registry.resolve(settings, f"models:/{name}@champion").run_id == runs["dt"]
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert len(loaded.predict(table(10, seed=3)[["x1", "x2"]])) == 10


def test_move_and_remove_an_alias(store):
    settings, runs, _ = store
    name = new_name()
    registry.register(settings, runs["lr"], name, alias="champion")
    registry.register(settings, runs["dt"], name)
    moved = registry.set_alias(settings, name, 2, "champion")
    assert (moved.version, moved.from_version, moved.action) == (2, 1, "moved")
    assert moved.to_dict() == {"name": name, "alias": "champion", "version": 2, "from_version": 1}
    set_ = registry.set_alias(settings, name, 1, "shadow_2025")  # any valid alias
    assert (set_.version, set_.from_version, set_.action) == (1, None, "set")
    removed = registry.remove_alias(settings, name, "shadow_2025")
    assert (removed.version, removed.from_version, removed.action) == (None, 1, "removed")
    assert removed.to_dict() == {"name": name, "alias": "shadow_2025", "from_version": 1}
    for change in (moved, set_, removed):
        assert registry.AliasChange.from_dict(change.to_dict()) == change
    model = registry.get_model(settings, name)
    assert model.aliases == {"champion": 2}
    assert [h["action"] for h in model.history] == ["set", "moved", "set", "removed"]


def test_compare_versions(store):
    settings, runs, _ = store
    name = new_name()
    registry.register(settings, runs["lr"], name)
    registry.register(settings, runs["dt"], name)
    versions = registry.get_model(settings, name).versions
    metrics, best = registry.compare_table(versions)
    assert set(metrics.columns) == {"metric", "v1", "v2"}
    log_loss = metrics.set_index("metric").loc["log_loss"]
    # On this table (seed 0) the logistic regression (v1: log loss 0.322, F1 0.862) beats the depth-3 tree
    # (v2: 0.333, 0.807) on every holdout metric.
    assert best == {"log_loss": 1, "f1": 1, "auc": 1, "accuracy": 1, "precision": 1, "recall": 1, "log_loss_ratio": 1}
    # Where versions win on different metrics, a loss is best lowest and a score highest.
    views = [registry.VersionView(name="m", version=k, run_id=None, created="", aliases=(), description="", tags={},
                                  task="classification", target="y", table_name=None, table_digest=None, algorithm=None,
                                  metrics=m, params={}, model_uri="")
             for k, m in ((1, {"log_loss": 0.30, "f1": 0.50}), (2, {"log_loss": 0.40, "f1": 0.80}))]
    assert registry.compare_table(views)[1] == {"log_loss": 1, "f1": 2}
    by_version = {v.version: v for v in versions}
    assert log_loss["v2"] == by_version[2].metrics["log_loss"]  # unrounded: pages round once, to 3 decimals
    diff = registry.diff_params(versions)
    assert "algorithm" in set(diff["setting"])
    assert "training table" not in set(diff["setting"])  # the same table: no difference to show
    figure = registry.compare_figure(settings, versions)
    assert len([t for t in figure.data if "AUC" in (t.name or "")]) == 2


def test_edit_description_and_tags(store):
    settings, runs, _ = store
    name = new_name()
    registry.register(settings, runs["lr"], name)
    view = registry.update_version(settings, name, 1, description="Baseline, 2-point shots", set_tags={"owner": "coach"})
    assert view.description == "Baseline, 2-point shots" and view.tags["owner"] == "coach"
    view = registry.update_version(settings, name, 1, delete_tags=["owner"])
    assert "owner" not in view.tags
    with pytest.raises(BadInputError, match="cannot be a tag name"):
        registry.update_version(settings, name, 1, set_tags={"studio.job_id": "x"})


def test_delete_needs_the_name_and_no_alias(store):
    settings, runs, _ = store
    name = new_name()
    registry.register(settings, runs["lr"], name, alias="champion")
    registry.register(settings, runs["dt"], name)
    with pytest.raises(BadInputError, match=f"type {name}/2 exactly"):
        registry.delete_version(settings, name, 2, confirm="yes")
    with pytest.raises(BadInputError, match="is the champion; move the alias"):
        registry.delete_version(settings, name, 1, confirm=f"{name}/1")
    registry.delete_version(settings, name, 2, confirm=f"{name}/2")
    assert [v.version for v in registry.get_model(settings, name).versions] == [1]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s, r: registry.get_model(s, "no-such-model"), NotFoundError, "There is no registered model 'no-such-model'"),
        (lambda s, r: registry.resolve(s, f"{r['name']}/9"), NotFoundError, r"has no version 9\. Its versions: 1"),
        (lambda s, r: registry.resolve(s, f"{r['name']}@ghost"), NotFoundError, r"has no alias 'ghost'\. Its aliases: champion \(version 1\)"),
        (lambda s, r: registry.set_alias(s, r["name"], 1, "my champion"), BadInputError, "no spaces"),
        (lambda s, r: registry.set_alias(s, r["name"], 1, "latest"), BadInputError, "reserved by MLflow"),
        (lambda s, r: registry.set_alias(s, r["name"], 1, "v3"), BadInputError, "reserved by MLflow"),
        (lambda s, r: registry.set_alias(s, r["name"], 7, "champion"), NotFoundError, "has no version 7"),
        (lambda s, r: registry.register(s, r["lr"], r["name"]), BadInputError, "already version 1 of"),
        (lambda s, r: registry.register(s, r["parent"], r["name"]), BadInputError, "has no model to register"),
        (lambda s, r: registry.register(s, "0" * 32, r["name"]), NotFoundError, "There is no run"),
        (lambda s, r: registry.promote(s, r["name"]), BadInputError, "has no challenger to promote"),
        (lambda s, r: registry.register(s, r["lr"], "bad name!"), BadInputError, "cannot be a model name"),
    ],
)
def test_bad_input_and_faults(store, call, error, message):
    settings, runs, result = store
    name = new_name()
    registry.register(settings, runs["lr"], name, alias="champion")
    refs = {"name": name, "lr": runs["lr"], "parent": result.parent_run_id}
    with pytest.raises(error, match=message):
        call(settings, refs)
    assert [v.version for v in registry.get_model(settings, name).versions] == [1]  # nothing half-written


def test_a_server_that_is_down_is_named(tmp_path):
    settings = load_settings({"STUDIO_WORKSPACE": str(tmp_path), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    with pytest.raises(TrackingUnavailableError, match=r"http://127\.0\.0\.1:9 cannot be reached"):
        registry.list_models(settings)


def test_cli_models_commands(store, tmp_path):
    import os
    import subprocess
    import sys

    from core.settings import PROJECT_ROOT

    settings, runs, _ = store
    env = {**os.environ, "STUDIO_WORKSPACE": str(settings.workspace)}
    env.pop("MLFLOW_TRACKING_URI", None)
    if settings.is_remote:
        env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    name = new_name()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "core", "models", *args], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    out = cli("register", runs["lr"], name)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"name": name, "version": 1, "alias": None}
    assert cli("register", runs["dt"], name).returncode == 0
    out = cli("alias", name, "2", "champion")
    assert json.loads(out.stdout)["version"] == 2
    shown = json.loads(cli("show", f"{name}@champion").stdout)
    assert shown["version"] == 2 and shown["aliases"] == ["champion"] and shown["run_id"] == runs["dt"]
    assert json.loads(cli("show", f"{name}/1").stdout)["version"] == 1
    listed = json.loads(cli("list").stdout)
    assert name in [m["name"] for m in listed]
    bad = cli("show", f"{name}@ghost")
    assert bad.returncode == 4 and "has no alias 'ghost'" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("alias", name, "1", "latest")
    assert bad.returncode == 2 and "reserved" in bad.stderr


@pytest.fixture(scope="module")
def other_models(store):
    """In the same store: a model of another target (regression on x1) and one of the same target
    with other classes (three classes instead of two)."""
    settings, _, _ = store
    frame = table(seed=1)
    regression = train(settings, TrainingSpec(target="x1", task="regression", algorithms=("lr",), folds=2),
                       frame[["x2", "label", "x1"]], table_name="amounts", table_digest="8" * 64)
    frame["label"] = np.digitize(frame["x1"], [-0.5, 0.5])  # 0, 1, 2
    three = train(settings, TrainingSpec(target="label", algorithms=("lr",), folds=2), frame,
                  table_name="three classes", table_digest="7" * 64)
    return regression.models[0].run_id, three.models[0].run_id


def test_a_model_of_another_target_task_or_classes_is_refused_and_a_free_name_offered(store, other_models):
    settings, runs, _ = store
    regression_run, three_class_run = other_models
    name = new_name()
    registry.register(settings, runs["lr"], name, alias="champion")
    with pytest.raises(registry.IncompatibleModelError) as refused:
        registry.register(settings, regression_run, name, alias="champion")
    message = str(refused.value)
    assert "'label' (classification into 0, 1)" in message and "'x1' (regression)" in message
    assert "different target and task" in message and "for example 'x1'" in message
    with pytest.raises(registry.IncompatibleModelError, match="different classes"):
        registry.register(settings, three_class_run, name)
    model = registry.get_model(settings, name)
    assert [v.version for v in model.versions] == [1] and model.aliases == {"champion": 1}  # nothing was added or moved
    # the same target and classes are welcome: the natural second version
    assert registry.register(settings, runs["dt"], name).version == 2
    assert registry.get_model(settings, name).versions[0].tags["studio.target"] == "label"


def test_the_suggested_name_is_the_model_predicting_the_same_thing_never_another_models(store, other_models):
    settings, runs, _ = store
    regression_run, three_class_run = other_models
    first = registry.suggest_name_for_run(settings, runs["lr"])
    assert first.startswith("label")
    registry.register(settings, runs["lr"], first)
    assert registry.suggest_name_for_run(settings, runs["dt"]) == first  # same target and classes: same model
    other = registry.suggest_name_for_run(settings, three_class_run)
    assert other.startswith("label") and other != first  # same column, other classes: its own name
    registry.register(settings, three_class_run, other)
    assert registry.suggest_name_for_run(settings, runs["dt"]) == first
    assert registry.suggest_name_for_run(settings, regression_run).startswith("x1")


def test_versions_predicting_different_things_are_not_ranked():
    views = [registry.VersionView(name="m", version=k, run_id=None, created="", aliases=(), description="", tags={},
                                  task=task, target=target, table_name=None, table_digest=None, algorithm=None,
                                  metrics={}, params={}, model_uri="") for k, (task, target) in
             enumerate([("classification", "Churn"), ("classification", "shot_made_flag")], start=1)]
    assert "version 1 predicts 'Churn'" in registry.incomparable(views)
    assert registry.incomparable([views[0], views[0]]) is None


def test_registering_one_run_from_five_processes_at_once_makes_one_version(store, tmp_path):
    """Real processes at once; on the team server half of them use another workspace (another machine's
    locks), so the check after creation is what keeps one version there."""
    import os
    import subprocess
    import sys

    from core.settings import PROJECT_ROOT

    settings, runs, _ = store
    name = new_name()
    processes = []
    for k in range(5):
        env = {**os.environ, "STUDIO_WORKSPACE": str(settings.workspace if k % 2 == 0 or not settings.is_remote else tmp_path / "other")}
        env.pop("MLFLOW_TRACKING_URI", None)
        if settings.is_remote:
            env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
        processes.append(subprocess.Popen([sys.executable, "-m", "core", "models", "register", runs["lr"], name],
                                          cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outcomes = [(p.wait(timeout=180), p.stderr.read()) for p in processes]
    assert sorted(code for code, _ in outcomes) == [0, 2, 2, 2, 2], outcomes
    assert all("already version 1" in err for code, err in outcomes if code == 2)
    assert [v.version for v in registry.get_model(settings, name).versions] == [1]


def test_class_labels_read_the_same_from_a_table_and_from_a_run():
    """Kobe's target is a float column (NaN for unknown shots): 0.0 and 1.0 in the table, 0 and 1 in
    the run's model_info.json. They must not look like other classes."""
    from_table = registry.Contract.of("classification", "shot_made_flag", [np.float64(0.0), np.float64(1.0)])
    from_run = registry.Contract.from_model_info({"task": "classification", "target": "shot_made_flag", "classes": [0, 1]})
    assert from_table == from_run and not from_table.differences(from_run)
    assert registry.Contract.of("classification", "y", ["No", "Yes"]).differences(from_run) == ["target", "classes"]
