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


# --- settings own the workspace layout; the environment is read, never written (issue 15, 6) ----


def workspace_joins(source: str) -> list[int]:
    """Lines of ``source`` that build a path on ``<something>.workspace`` themselves: ``x.workspace / ...``,
    ``x.workspace.joinpath(...)``, or ``Path(x.workspace, ...)`` / ``os.path.join(x.workspace, ...)``."""
    import ast

    def is_workspace(node) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "workspace"

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and is_workspace(node.left):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "joinpath" and is_workspace(func.value):
                lines.append(node.lineno)
            elif (getattr(func, "id", None) == "Path" or getattr(func, "attr", None) in ("Path", "join")) \
                    and len(node.args) > 1 and is_workspace(node.args[0]):
                lines.append(node.lineno)
    return lines


def test_the_checker_finds_paths_built_on_the_workspace():
    source = ('a = settings.workspace / "jobs"\n'
              'b = self.settings.workspace.joinpath("locks")\n'
              'c = os.path.join(s.workspace, "x")\n'
              'd = Path(s.workspace, "y")\n'
              'e = settings.tables_dir / "t.json"\n'
              'f = settings.workspace.mkdir(parents=True)\n')
    assert workspace_joins(source) == [1, 2, 3, 4]


def test_only_settings_builds_paths_inside_the_workspace():
    """Every file and folder of the workspace is a property of Settings: no other module of core, ui
    or the pages joins a path onto ``settings.workspace`` itself."""
    sources = [*(PROJECT_ROOT / "core").rglob("*.py"), *(PROJECT_ROOT / "ui").rglob("*.py"),
               *(PROJECT_ROOT / "app_pages").rglob("*.py"), PROJECT_ROOT / "app.py"]
    assert len(sources) > 20
    found = {str(p.relative_to(PROJECT_ROOT)): lines for p in sources
             if p != PROJECT_ROOT / "core" / "settings.py" and (lines := workspace_joins(p.read_text()))}
    assert found == {}


def test_the_workspace_layout_is_in_the_settings(tmp_path):
    s = load_settings({"STUDIO_WORKSPACE": str(tmp_path / "ws")})
    ws = tmp_path / "ws"
    assert (s.jobs_dir, s.locks_dir, s.scorings_dir, s.online_dir) == (ws / "jobs", ws / "locks", ws / "scorings", ws / "online")
    assert (s.error_log, s.pycaret_log, s.store_lock) == (ws / "logs" / "errors.log", ws / "pycaret.log", ws / ".mlflow-store.lock")
    assert (s.monitoring_file, s.serving_file) == (ws / "monitoring.json", ws / "serving.json")


def test_the_mlflow_ui_url_is_read_with_the_other_settings(monkeypatch):
    from core.tracking import mlflow_ui_url

    monkeypatch.setenv("STUDIO_MLFLOW_UI_URL", "http://from-the-process-environment.example")  # not what is read
    given = load_settings({"STUDIO_MLFLOW_UI_URL": " http://bob:pw@ui.example:8080/ "})
    assert given.mlflow_ui_url == "http://bob:pw@ui.example:8080/"
    assert mlflow_ui_url(given) == "http://ui.example:8080"  # no credentials in a link
    assert load_settings({}).mlflow_ui_url is None and mlflow_ui_url(load_settings({})) == "http://127.0.0.1:5000"
    assert load_settings({"STUDIO_MLFLOW_UI_URL": "  "}).mlflow_ui_url is None
    assert load_settings().mlflow_ui_url == "http://from-the-process-environment.example"  # os.environ by default


def test_pointing_mlflow_at_the_store_leaves_the_environment_alone(workspace, monkeypatch):
    """``tracking.use`` points MLflow's fluent API at the studio's store without writing os.environ
    (MLflow's own setters would write MLFLOW_TRACKING_URI, which the studio reads as a team server)."""
    import os

    import mlflow

    from core import tracking

    writes = []

    class Watched(type(os.environ)):
        def __setitem__(self, key, value):
            writes.append(key)
            super().__setitem__(key, value)

        def __delitem__(self, key):
            writes.append(key)
            super().__delitem__(key)

    real = os.environ
    before = dict(real)
    monkeypatch.setattr(os, "environ", Watched(real._data, real.encodekey, real.decodekey, real.encodevalue, real.decodevalue))
    tracking.use(workspace)  # a fresh embedded store: its tables are created too
    assert writes == [] and dict(os.environ) == before
    assert mlflow.get_tracking_uri() == workspace.tracking_uri == mlflow.get_registry_uri()
    assert "MLFLOW_TRACKING_URI" not in os.environ and not load_settings().is_remote
    assert workspace.mlflow_db.is_file()
