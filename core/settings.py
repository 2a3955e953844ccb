"""Where the studio keeps things, read once from the environment with local defaults.

- ``STUDIO_WORKSPACE``: the workspace folder (uploaded tables, job status, the embedded MLflow
  store). Default: ``workspace/`` in the project folder.
- ``STUDIO_DATA_DIR``: where the demo generator writes its tables. Default: ``data/``.
- ``MLFLOW_TRACKING_URI``: a team MLflow server (``http://host:5000``) instead of the embedded
  sqlite store inside the workspace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Must equal server.maxUploadSize in .streamlit/config.toml (tests/core/test_settings.py checks).
UPLOAD_LIMIT_MB = 1024


@dataclass(frozen=True)
class Settings:
    workspace: Path
    data_dir: Path
    remote_tracking_uri: str | None = None
    upload_limit_bytes: int = UPLOAD_LIMIT_MB * 1024 * 1024

    @property
    def tables_dir(self) -> Path:
        return self.workspace / "tables"

    @property
    def mlflow_db(self) -> Path:
        return self.workspace / "mlflow.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.workspace / "mlartifacts"

    @property
    def is_remote(self) -> bool:
        return self.remote_tracking_uri is not None

    @property
    def tracking_uri(self) -> str:
        if self.remote_tracking_uri:
            return self.remote_tracking_uri
        return f"sqlite:///{self.mlflow_db}"

    def describe_store(self) -> str:
        """One line for people: which MLflow store the studio records into."""
        uri = self.remote_tracking_uri
        if uri and uri.startswith(("http://", "https://")):
            return f"Team MLflow server at {uri}"
        if uri:
            return f"MLflow store at {uri}"
        return f"Embedded MLflow store in {self.workspace}"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment (``os.environ`` by default). Relative paths are taken from
    the project folder for the defaults and from the current directory for values given."""
    env = os.environ if env is None else env

    def folder(name: str, default: str) -> Path:
        given = (env.get(name) or "").strip()
        if given:  # as the user wrote it: relative to where the command runs
            return Path(given).expanduser().resolve()
        return PROJECT_ROOT / default

    remote = (env.get("MLFLOW_TRACKING_URI") or "").strip() or None
    return Settings(
        workspace=folder("STUDIO_WORKSPACE", "workspace"),
        data_dir=folder("STUDIO_DATA_DIR", "data"),
        remote_tracking_uri=remote,
    )
