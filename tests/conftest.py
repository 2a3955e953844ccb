"""Shared fixtures: a fresh workspace per test, and the real Kobe shot files from ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import PROJECT_ROOT, Settings, load_settings

KOBE_DIR = PROJECT_ROOT.parent / "shared" / "datasets" / "kobe"
KOBE_DEV = KOBE_DIR / "dataset_kobe_dev.parquet"
KOBE_PROD = KOBE_DIR / "dataset_kobe_prod.parquet"


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
