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


# --- no secret is shown (issue "Hardening", 2) ---------------------------------------------------


def test_redact_hides_the_password_of_a_uri_also_inside_a_message():
    from core.settings import redact

    assert redact("http://alice:s3cr3t@mlflow.example:5000") == "http://alice:***@mlflow.example:5000"
    message = ("API request to https://bob:p%40ss:w@rd@host/api/2.0/mlflow/runs/get failed; "
               "the studio uses sqlite:////srv/ws/mlflow.db and http://host:5000, mail admin@example.org")
    assert redact(message) == ("API request to https://bob:***@host/api/2.0/mlflow/runs/get failed; "
                               "the studio uses sqlite:////srv/ws/mlflow.db and http://host:5000, mail admin@example.org")
    assert redact(ValueError("at http://u:pw1234@h:1")) == "at http://u:***@h:1"  # anything printable
    assert redact("http://token-only@host/x") == "http://token-only@host/x"  # a user name alone is no secret


def test_redact_hides_mlflow_secret_variables_and_the_uri_password_anywhere(monkeypatch):
    from core.settings import redact

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:Wonder%2Fland@host:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2-long")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "dapi0123456789abcdef")
    text = "login 'alice' with Wonder/land or Wonder%2Fland failed; token dapi0123456789abcdef; password hunter2-long"
    shown = redact(text)
    for secret in ("Wonder/land", "Wonder%2Fland", "dapi0123456789abcdef", "hunter2-long"):
        assert secret not in shown
    assert shown == "login 'alice' with *** or *** failed; token ***; password ***"


def test_a_remote_store_is_described_without_its_password():
    s = load_settings({"MLFLOW_TRACKING_URI": "https://alice:s3cr3t@mlflow.example"})
    assert s.tracking_uri == "https://alice:s3cr3t@mlflow.example"  # what MLflow needs to sign in
    assert s.safe_tracking_uri == "https://alice:***@mlflow.example"
    assert s.describe_store() == "Team MLflow server at https://alice:***@mlflow.example"
    other = load_settings({"MLFLOW_TRACKING_URI": "postgresql://studio:pg-pass@db/mlflow"})
    assert other.describe_store() == "MLflow store at postgresql://studio:***@db/mlflow"


def test_log_records_and_their_tracebacks_are_redacted():
    import logging

    from core.settings import _redact_log_records

    _redact_log_records()
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(self.format(record))

    logger = logging.getLogger("studio.test-redaction")
    logger.addHandler(handler := Keep())
    logger.propagate = False
    try:
        try:
            raise RuntimeError("API request to http://alice:s3cr3t@host/api failed")
        except RuntimeError:
            logger.exception("while reading %s", "http://bob:other-secret@host")
    finally:
        logger.removeHandler(handler)
    assert len(seen) == 1
    assert "s3cr3t" not in seen[0] and "other-secret" not in seen[0]
    assert "while reading http://bob:***@host" in seen[0] and "http://alice:***@host/api" in seen[0]
    assert "Traceback (most recent call last)" in seen[0]


# --- loopback by default (issue "Hardening", 3) --------------------------------------------------


def test_streamlit_listens_on_loopback_unless_told_otherwise():
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"]["enableXsrfProtection"] is True
    assert config["client"]["showErrorDetails"] == "none"  # no traceback in the browser
