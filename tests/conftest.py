"""Shared fixtures: a fresh workspace per test, and the real Kobe shot files from ../shared."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.settings import PROJECT_ROOT, Settings, load_settings

KOBE_DIR = PROJECT_ROOT.parent / "shared" / "datasets" / "kobe"
KOBE_DEV = KOBE_DIR / "dataset_kobe_dev.parquet"
KOBE_PROD = KOBE_DIR / "dataset_kobe_prod.parquet"
# The six numeric shot features the issues train on (20,285 rows with a target in the dev file).
KOBE_FEATURES = ("lat", "lon", "minutes_remaining", "period", "playoffs", "shot_distance")


@contextmanager
def cli_on(monkeypatch: pytest.MonkeyPatch, workspace: Path, data_dir: Path | None = None) -> Iterator:
    """``core.__main__`` run in this process on ``workspace``; the process-wide changes main() makes
    (umask 077, the redacting excepthook) are undone afterwards."""
    import core.__main__ as module

    monkeypatch.setenv("STUDIO_WORKSPACE", str(workspace))
    if data_dir is not None:
        monkeypatch.setenv("STUDIO_DATA_DIR", str(data_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        yield module
    finally:
        os.umask(umask)


def houses(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """A small regression table (house prices from size, rooms and area); ``shift`` moves the sizes."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"size": rng.uniform(20, 200, n) + shift, "rooms": rng.integers(1, 7, n),
                          "area": rng.choice(["north", "south", "centre"], n)})
    frame["price"] = 1500 * frame["size"] + 8000 * frame["rooms"] + rng.normal(0, 10000, n)
    return frame


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Point the studio at an empty workspace and data folder (and the embedded store)."""
    monkeypatch.setenv("STUDIO_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return load_settings()


@pytest.fixture(scope="session")
def kobe_dev() -> Path:
    if not KOBE_DEV.is_file():
        pytest.fail(f"The Kobe development file is missing at {KOBE_DEV} (../shared/datasets/kobe).")
    return KOBE_DEV


@pytest.fixture(scope="session")
def kobe_prod() -> Path:
    if not KOBE_PROD.is_file():
        pytest.fail(f"The Kobe production file is missing at {KOBE_PROD} (../shared/datasets/kobe).")
    return KOBE_PROD


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` on 127.0.0.1 (temporary sqlite store, served artifacts)."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    root = tmp_path_factory.mktemp("mlflow-server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(root / "server.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited: {(root / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("mlflow server did not start within 120 s")
            time.sleep(0.2)
    yield url
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
