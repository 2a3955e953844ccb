"""Where the studio keeps things, read once from the environment with local defaults.

- ``STUDIO_WORKSPACE``: the workspace folder (uploaded tables, job status, the embedded MLflow
  store). Default: ``workspace/`` in the project folder.
- ``STUDIO_DATA_DIR``: where the demo generator writes its tables. Default: ``data/``.
- ``STUDIO_MAX_JOBS``: how many background jobs run at once (default: one per core, at most one per GB
  of memory); the others wait in a queue with their place shown.
- ``MLFLOW_TRACKING_URI``: a team MLflow server (``http://host:5000``) instead of the embedded
  sqlite store inside the workspace. A password in it (``http://user:password@host``) is never shown:
  every message that names a URI goes through :func:`redact`.
- ``STUDIO_MLFLOW_UI_URL``: where people open the MLflow UI, for the links on pages (default: the team
  server itself, or ``http://127.0.0.1:5000`` for ``make mlflow-ui``).

:class:`Settings` owns the workspace layout: every file and folder of the workspace is one of its
properties, and no other module joins paths onto ``settings.workspace`` (tests/core/test_settings.py
checks). The settings are read once; the studio does not write its environment to pass them on.

Every studio process (the pages, ``python -m core``, the job processes, the REST server) calls
:func:`harden_process` first: what it writes is private to the user (umask 077: folders 0700, files
0600), and log records are redacted.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Must equal server.maxUploadSize in .streamlit/config.toml (tests/core/test_settings.py checks).
UPLOAD_LIMIT_MB = 1024


@dataclass(frozen=True)
class Settings:
    workspace: Path
    data_dir: Path
    remote_tracking_uri: str | None = None
    upload_limit_bytes: int = UPLOAD_LIMIT_MB * 1024 * 1024
    max_jobs: int = 2  # background jobs (training, scoring) running at once; the others wait in a queue
    mlflow_ui_url: str | None = None  # STUDIO_MLFLOW_UI_URL as given (core.tracking.mlflow_ui_url drops credentials)

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
    def cache_dir(self) -> Path:
        """Copies of what finished runs logged (it never changes), so each is downloaded once."""
        return self.workspace / "cache"

    @property
    def scorings_dir(self) -> Path:
        """The scored outputs, one parquet file per scoring run."""
        return self.workspace / "scorings"

    @property
    def uploads_dir(self) -> Path:
        """Production files uploaded on the Score page, named by their content hash."""
        return self.workspace / "uploads"

    @property
    def tmp_dir(self) -> Path:
        return self.workspace / "tmp"

    @property
    def jobs_dir(self) -> Path:
        """One folder per background job (spec, status, log) and the queue's slot locks."""
        return self.workspace / "jobs"

    @property
    def locks_dir(self) -> Path:
        """The lock files of changes two processes must not make at once (core.locks)."""
        return self.workspace / "locks"

    @property
    def logs_dir(self) -> Path:
        return self.workspace / "logs"

    @property
    def error_log(self) -> Path:
        """The tracebacks of bugs, each under a short id (core.errors.unexpected)."""
        return self.logs_dir / "errors.log"

    @property
    def pycaret_log(self) -> Path:
        """PyCaret's own log of a training job (given to the job's processes, see core.jobs)."""
        return self.workspace / "pycaret.log"

    @property
    def monitoring_file(self) -> Path:
        """The drift thresholds chosen on the Monitor page."""
        return self.workspace / "monitoring.json"

    @property
    def serving_file(self) -> Path:
        """What ``python -m core serve`` serves (model, version, address)."""
        return self.workspace / "serving.json"

    @property
    def online_dir(self) -> Path:
        """The online predictions (Predict page and REST), one JSON-lines file per model."""
        return self.workspace / "online"

    @property
    def store_lock(self) -> Path:
        """Serialises the first opening of the embedded MLflow store in each process."""
        return self.workspace / ".mlflow-store.lock"

    @property
    def is_remote(self) -> bool:
        return self.remote_tracking_uri is not None

    @property
    def tracking_uri(self) -> str:
        if self.remote_tracking_uri:
            return self.remote_tracking_uri
        return f"sqlite:///{self.mlflow_db}"

    @property
    def safe_tracking_uri(self) -> str:
        """:attr:`tracking_uri` fit to show: a password in it reads ``***``. Every message that names
        the store uses this, never :attr:`tracking_uri`."""
        return redact(self.tracking_uri)

    def describe_store(self) -> str:
        """One line for people: which MLflow store the studio records into (password redacted)."""
        uri = redact(self.remote_tracking_uri) if self.remote_tracking_uri else None
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
    given_jobs = (env.get("STUDIO_MAX_JOBS") or "").strip()
    return Settings(
        workspace=folder("STUDIO_WORKSPACE", "workspace"),
        data_dir=folder("STUDIO_DATA_DIR", "data"),
        remote_tracking_uri=remote,
        max_jobs=max(1, int(given_jobs)) if given_jobs.isdigit() else default_max_jobs(),
        mlflow_ui_url=(env.get("STUDIO_MLFLOW_UI_URL") or "").strip() or None,
    )


# A training job of the studio peaks at about 0.6 GB (8 at once took 4.6 GB) and keeps one core busy.
JOB_MEMORY_BYTES = 1024**3


def default_max_jobs() -> int:
    """One job per core, and no more than one per GB of memory (at least one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = JOB_MEMORY_BYTES * cores
    return max(1, min(cores, memory // JOB_MEMORY_BYTES))


# --- secrets are never shown --------------------------------------------------------------------

# scheme://user:password@ (the password may hold '@' or ':'; it ends at the last '@' before the path)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]*):(?P<password>[^/\s]*)@")
# Variables whose values are secrets wherever they show up (MLflow's own, and the artifact stores').
SECRET_VARIABLES = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "DATABRICKS_TOKEN", "AWS_SECRET_ACCESS_KEY",
                    "AZURE_STORAGE_ACCESS_KEY", "AZURE_STORAGE_CONNECTION_STRING")
_MIN_SECRET = 4  # shorter values are not replaced inside other text (a 1-letter password would eat every 'a')


def _known_secrets() -> list[str]:
    """The secret values of this process's environment: the password of ``MLFLOW_TRACKING_URI`` (as
    written and percent-decoded) and the values of :data:`SECRET_VARIABLES`; longest first."""
    found = set()
    for match in _USERINFO.finditer(os.environ.get("MLFLOW_TRACKING_URI", "")):
        found.update({match["password"], unquote(match["password"])})
    found.update(os.environ.get(name, "") for name in SECRET_VARIABLES)
    return sorted((s for s in found if len(s) >= _MIN_SECRET), key=len, reverse=True)


def redact(text: object) -> str:
    """``text`` (a URI, or a longer message that holds some) fit to show: ``scheme://user:password@``
    becomes ``scheme://user:***@``, and the values of MLflow's password and token variables (and the
    tracking URI's password wherever it appears) become ``***``. Use it on every message that names a
    URI or quotes an error from MLflow, a server or a library."""
    shown = _USERINFO.sub(lambda m: f"{m['head']}:***@", str(text))
    for secret in _known_secrets():
        shown = shown.replace(secret, "***")
    return shown


# --- every studio process -----------------------------------------------------------------------

PRIVATE_UMASK = 0o077  # folders 0700, files 0600
_WORKSPACE_MARKERS = ("tables", "jobs", "mlflow.db", "mlartifacts", "scorings", "uploads")


def harden_process(settings: Settings | None = None) -> None:
    """What every studio process does first (the pages' app.py, ``python -m core``, the job processes,
    the REST server): files and folders it creates are private to the user (umask 077), an existing
    workspace root is closed to others (0700), and log records and the traceback of an uncaught
    exception are redacted (:func:`redact`). Idempotent and cheap: app.py calls it on every rerun."""
    os.umask(PRIVATE_UMASK)
    settings = settings or load_settings()
    close_workspace(settings.workspace)
    _redact_log_records()
    _redact_uncaught()


def close_workspace(folder: Path) -> None:
    """Make an existing workspace root 0700 (what a umask of 022 or 000 left readable stays unreadable
    to others: they cannot enter the folder). Only a folder of ours that is empty or looks like a
    studio workspace is touched: never a shared folder such as /tmp someone pointed STUDIO_WORKSPACE at."""
    try:
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & stat.S_ISVTX:
            return
        if stat.S_IMODE(info.st_mode) & 0o077 == 0:
            return
        if not any((folder / marker).exists() for marker in _WORKSPACE_MARKERS) and any(folder.iterdir()):
            return
        os.chmod(folder, 0o700)
    except OSError:
        return  # not there yet (it will be created 0700), or not ours to change


_RECORD_FACTORY_INSTALLED = False


def _redact_log_records() -> None:
    """Log records of this process (MLflow's, the studio's, an exception's traceback) pass through
    :func:`redact` before any handler writes them."""
    global _RECORD_FACTORY_INSTALLED
    if _RECORD_FACTORY_INSTALLED:
        return
    import logging
    import traceback

    plain = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = plain(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's business, not ours
            return record
        shown = redact(message)
        if shown != message:
            record.msg, record.args = shown, None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info))).rstrip("\n")
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    logging.setLogRecordFactory(factory)
    _RECORD_FACTORY_INSTALLED = True


def _redact_uncaught() -> None:
    """The traceback of an exception nobody caught (printed to stderr, so into a job's log.txt) is redacted."""
    import sys

    if getattr(sys.excepthook, "studio_redacts", False):
        return
    import traceback

    def hook(kind, value, tb) -> None:
        sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))
        sys.stderr.flush()

    hook.studio_redacts = True  # type: ignore[attr-defined]
    sys.excepthook = hook
