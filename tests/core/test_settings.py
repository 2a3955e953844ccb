"""core.settings: workspace and tracking store from the environment."""

from __future__ import annotations

import tomllib

from core.settings import PROJECT_ROOT, UPLOAD_LIMIT_MB, load_settings


def test_defaults_are_the_embedded_store_in_the_project_workspace():
    s = load_settings({})
    assert s.workspace == PROJECT_ROOT / "workspace"
    assert s.data_dir == PROJECT_ROOT / "data"
    assert s.tracking_uri == f"sqlite:///{PROJECT_ROOT / 'workspace' / 'mlflow.db'}"
    assert not s.is_remote
    assert s.describe_store() == f"Embedded MLflow store in {PROJECT_ROOT / 'workspace'}"


def test_environment_overrides(tmp_path):
    s = load_settings({"STUDIO_WORKSPACE": str(tmp_path / "ws"), "MLFLOW_TRACKING_URI": "http://127.0.0.1:5555"})
    assert s.workspace == tmp_path / "ws"
    assert s.tables_dir == tmp_path / "ws" / "tables"
    assert s.tracking_uri == "http://127.0.0.1:5555"
    assert s.is_remote
    assert s.describe_store() == "Team MLflow server at http://127.0.0.1:5555"


def test_blank_variables_mean_defaults():
    s = load_settings({"STUDIO_WORKSPACE": "  ", "MLFLOW_TRACKING_URI": ""})
    assert s.workspace == PROJECT_ROOT / "workspace" and not s.is_remote


def test_upload_limit_matches_streamlit_config():
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == UPLOAD_LIMIT_MB == 1024
    assert load_settings({}).upload_limit_bytes == 1024**3
