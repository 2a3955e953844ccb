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
    assert (first["version"], second["version"]) == (1, 2)

    model = registry.get_model(settings, name)
    assert model.aliases == {"champion": 1, "challenger": 2}
    by_version = {v.version: v for v in model.versions}
    assert by_version[1].aliases == ("champion",) and by_version[2].aliases == ("challenger",)
    assert by_version[1].table_name == "registry table" and by_version[1].table_digest == "9" * 64
    assert by_version[1].algorithm == "Logistic regression" and by_version[2].algorithm == "Decision tree"
    assert 0 < by_version[1].metrics["log_loss"] < 1 and "f1" in by_version[2].metrics
    assert by_version[2].params["max_depth"] == "3"

    promoted = registry.promote(settings, name, who="ben")
    assert promoted == {"name": name, "champion": 2, "previous_champion": 1}
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
    assert (moved["version"], moved["from_version"]) == (2, 1)
    registry.set_alias(settings, name, 1, "shadow_2025")  # any valid alias
    registry.remove_alias(settings, name, "shadow_2025")
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
    assert best["log_loss"] == (1 if log_loss["v1"] < log_loss["v2"] else 2)
    assert best["f1"] in (1, 2)
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
    assert bad.returncode == 2 and "has no alias 'ghost'" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("alias", name, "1", "latest")
    assert bad.returncode == 2 and "reserved" in bad.stderr
