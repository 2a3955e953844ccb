"""python -m core: headless commands, exit 2 with a one-line reason on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.settings import PROJECT_ROOT


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=PROJECT_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )


def test_demo_writes_both_tables(tmp_path):
    out = run_cli("demo", "--data-dir", str(tmp_path), env={})
    assert out.returncode == 0, out.stderr
    written = json.loads(out.stdout)["written"]
    assert sorted(os.path.basename(p) for p in written) == ["demo_dev.parquet", "demo_prod.parquet"]
    assert all(os.path.getsize(p) > 10_000 for p in written)


def test_tables_add_and_list(tmp_path):
    env = {"STUDIO_WORKSPACE": str(tmp_path / "ws")}
    csv = tmp_path / "t.csv"
    csv.write_text("a;b\n1,5;x\n2,5;y\n")
    added = run_cli("tables", "add", str(csv), "--name", "My table", env=env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["name"] == "My table"
    listed = json.loads(run_cli("tables", "list", env=env).stdout)
    assert [t["name"] for t in listed] == ["My table"]


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path):
    png = tmp_path / "photo.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    out = run_cli("tables", "add", str(png), env={"STUDIO_WORKSPACE": str(tmp_path / "ws")})
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "is a PNG image, not a table" in out.stderr
    assert not (tmp_path / "ws" / "tables").exists() or not any((tmp_path / "ws" / "tables").iterdir())


KOBE_FEATURES = "lat,lon,minutes_remaining,period,playoffs,shot_distance"


def test_train_prints_the_summary_and_registers(tmp_path, kobe_dev):
    env = {"STUDIO_WORKSPACE": str(tmp_path / "ws")}
    out = run_cli("train", "--data", str(kobe_dev), "--target", "shot_made_flag", "--features", KOBE_FEATURES,
                  "--algorithms", "lr,dt", "--set", "dt.max_depth=5", "--folds", "3", "--register", "kobe", "--alias", "champion", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert set(summary) >= {"parent_run_id", "models", "registered"}
    assert [m["algorithm"] for m in summary["models"]] == ["lr", "dt"]
    for model in summary["models"]:
        assert model["run_id"] and model["model_uri"].startswith("models:/")
        assert set(model["metrics"]) == {"log_loss", "f1", "auc", "accuracy", "precision", "recall", "log_loss_ratio"}
        assert model["metrics"]["log_loss"] < 0.69 and model["metrics"]["f1"] >= 0.40
    assert summary["registered"] == {"name": "kobe", "version": 1, "alias": "champion"}
    assert "training job" in out.stderr and "] Done" in out.stderr  # progress on stderr, the JSON alone on stdout

    # Another target under the same name is refused before anything is trained, with a free name offered.
    other = run_cli("train", "--data", str(kobe_dev), "--target", "shot_distance", "--features", "lat,lon,period",
                    "--algorithms", "lr", "--folds", "2", "--register", "kobe", "--alias", "champion", env=env)
    assert other.returncode == 2, other.stderr[-3000:]
    assert "'kobe' already holds models that predict 'shot_made_flag'" in other.stderr
    assert "for example 'shot-distance'" in other.stderr and "Traceback" not in other.stderr
    assert "] Done" not in other.stderr  # refused before training, not after
    shown = json.loads(run_cli("models", "show", "kobe", env=env).stdout)
    assert [v["version"] for v in shown["versions"]] == [1] and shown["aliases"] == {"champion": 1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "dt.max_depth=abc"], "dt.max_depth must be an integer from 1 to 50; got 'abc'"),
        (["--set", "dt.max_depth=0"], "out of range"),
        (["--algorithms", "xgb"], "There is no classification algorithm 'xgb'"),
        (["--target", "shot_id"], "looks like an identifier"),
        (["--target", "nope"], "The target column 'nope' is not in"),
        (["--alias", "champion"], "--alias needs --register NAME"),
        (["--register", "kobe", "--alias", "latest"], "reserved by MLflow"),
        (["--folds", "1"], "CV folds must be from 2 to 20"),
    ],
)
def test_train_bad_input_exits_2_before_any_run(tmp_path, kobe_dev, args, message):
    env = {"STUDIO_WORKSPACE": str(tmp_path / "ws")}
    base = ["train", "--data", str(kobe_dev), "--target", "shot_made_flag"]
    if "--target" in args:
        base = base[:-2]
    out = run_cli(*base, *args, env=env)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0
    assert not (tmp_path / "ws" / "mlflow.db").exists()  # no run, not even a store


def test_a_password_in_the_tracking_uri_is_never_printed(tmp_path):
    """With MLFLOW_TRACKING_URI=http://user:password@host (here a closed port), every command printed the
    password in its error. Now the URI reads http://user:***@host wherever it is named."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret = "Sup3rSecretPw"
    env = {"STUDIO_WORKSPACE": str(tmp_path / "ws"), "MLFLOW_TRACKING_URI": f"http://alice:{secret}@127.0.0.1:{port}",
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    table = tmp_path / "shots.csv"
    table.write_text("x,z,y\n" + "".join(f"{i % 7},{i % 3},{i % 2}\n" for i in range(60)))
    commands = {
        "models list": ["models", "list"],
        "models show": ["models", "show", "kobe@champion"],
        "score": ["score", "--model", "kobe@champion", "--input", str(table), "--output", str(tmp_path / "out.csv")],
        "drift": ["drift", "--model", "kobe@champion", "--input", str(table)],
        "mlflow-ui": ["mlflow-ui"],
        "train": ["train", "--data", str(table), "--target", "y", "--algorithms", "lr", "--folds", "2"],
    }
    for what, args in commands.items():
        out = run_cli(*args, env=env)
        printed = out.stdout + out.stderr
        assert secret not in printed, f"{what} printed the password:\n{printed[-3000:]}"
        assert "Traceback" not in printed, f"{what}:\n{printed[-3000:]}"
        if what != "mlflow-ui":
            assert out.returncode != 0, what
            assert f"http://alice:***@127.0.0.1:{port}" in out.stderr, f"{what}: {out.stderr[-2000:]}"  # named, redacted
    assert f"The studio uses http://alice:***@127.0.0.1:{port}" in run_cli("mlflow-ui", env=env).stdout


def test_train_refuses_infinite_values_unless_told_to_treat_them_as_missing(tmp_path):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"income": rng.normal(50, 10, 300), "age": rng.integers(18, 80, 300)})
    frame["label"] = (frame["income"] + rng.normal(0, 5, 300) > 50).astype(int)
    frame.loc[:2, "income"] = np.inf
    data = tmp_path / "t.csv"
    frame.to_csv(data, index=False)
    env = {"STUDIO_WORKSPACE": str(tmp_path / "ws")}
    refused = run_cli("train", "--data", str(data), "--target", "label", "--algorithms", "lr", "--folds", "2", env=env)
    assert refused.returncode == 2 and "'income' holds 3 infinite values" in refused.stderr and "--inf-as-missing" in refused.stderr
    done = run_cli("train", "--data", str(data), "--target", "label", "--algorithms", "lr", "--folds", "2", "--inf-as-missing", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["models"][0]["metrics"]["auc"] > 0.8


def test_score_refuses_an_output_folder_or_the_input_itself_before_looking_for_the_model(tmp_path):
    """Checked first, with exit 2 naming the path (a folder gave "Unexpected error (IsADirectoryError)")."""
    table = tmp_path / "in.csv"
    table.write_text("a,b\n1,2\n")
    (tmp_path / "out.csv").mkdir()
    env = {"STUDIO_WORKSPACE": str(tmp_path / "ws")}
    for destination, message in ((tmp_path / "out.csv", "is a folder"), (table, "is the input file itself"),
                                 (table / "x.csv", f"'{table}' is a file, not a folder")):
        out = run_cli("score", "--model", "kobe@champion", "--input", str(table), "--output", str(destination), env=env)
        assert (out.returncode, message in out.stderr, str(destination) in out.stderr) == (2, True, True), out.stderr
        assert "Traceback" not in out.stderr and table.read_text() == "a,b\n1,2\n"
