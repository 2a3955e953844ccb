"""The MLflow store the studio records into: the embedded sqlite store inside the workspace by
default, or the server named by ``MLFLOW_TRACKING_URI``. MLflow is imported only when used, so
pages that merely show which store is in use stay fast."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from core.errors import StudioError
from core.settings import Settings, redact


class TrackingUnavailableError(StudioError):
    """The MLflow tracking store cannot be reached."""


def prepare_store(settings: Settings) -> None:
    """Create the workspace folders the embedded store writes into (nothing for a remote store)."""
    if not settings.is_remote:
        settings.workspace.mkdir(parents=True, exist_ok=True)
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)


_READY: set[str] = set()
# MLflow draws tqdm bars on stderr for every artifact download; in a server log they are noise.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


_IMPORTING = threading.Lock()
_IMPORTED = False


def import_mlflow() -> None:
    """MLflow imported once per process, one thread at a time. In the studio's server each browser
    session runs its pages in a thread of its own: two first pages importing MLflow at the same moment
    can be handed each other's half-initialised modules (Python breaks the import cycle with a partial
    module, and the page fails with an ImportError). :func:`client`, the way in to the store, calls it
    first; the others wait here until the import is complete."""
    global _IMPORTED
    if _IMPORTED:
        return
    with _IMPORTING:
        if not _IMPORTED:
            import mlflow  # noqa: F401
            import mlflow.entities  # noqa: F401
            import mlflow.tracking  # noqa: F401

            _IMPORTED = True


def client(settings: Settings):
    """An ``MlflowClient`` on the studio's store (the embedded store's tables created first)."""
    import_mlflow()
    from mlflow.tracking import MlflowClient

    prepare_store(settings)
    if settings.is_remote:
        # MLflow's HTTP client retries with back-off for minutes by default; a person waiting at a
        # page wants "the server is down" within seconds.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if settings.is_remote or settings.tracking_uri in _READY:
        return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
    # Two processes that open a new sqlite store at once both run MLflow's schema migrations and
    # one fails ("table ... already exists"): the first opening in each process is serialised.
    import fcntl

    with open(settings.store_lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            mlflow_client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)
            mlflow_client.search_experiments(max_results=1)
            mlflow_client.search_registered_models(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _READY.add(settings.tracking_uri)
    return mlflow_client


def use(settings: Settings) -> None:
    """Point MLflow's process-wide (fluent) API at the studio's store. Every session of a studio
    process shares the same settings, so this global is the same for all of them."""
    import mlflow

    client(settings)  # the store's tables exist before the fluent API touches it
    # mlflow.set_tracking_uri / set_registry_uri also write MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI
    # into os.environ "so that subprocesses inherit it". The studio reads MLFLOW_TRACKING_URI as "the
    # user chose a team server", other page sessions (threads) read the environment meanwhile, and
    # job processes are started with a copy of it: the environment stays as the user set it. So the
    # in-process URIs MLflow's getters read first are set here without the setters; a change of
    # MLflow's internals fails the check below (and tests/core/test_settings.py) instead of going unseen.
    from mlflow.tracking._model_registry import utils as registry_state
    from mlflow.tracking._tracking_service import utils as tracking_state

    uri = settings.tracking_uri
    if tracking_state._tracking_uri != uri:
        tracking_state._tracking_uri = uri
        from mlflow.tracing.provider import reset

        reset()  # what set_tracking_uri does on a change: the tracer provider keeps the URI it started with
    registry_state._registry_uri = uri
    if mlflow.get_tracking_uri() != uri or mlflow.get_registry_uri() != uri:
        raise RuntimeError("MLflow no longer takes its tracking URI from where core.tracking.use sets it.")


def unreachable(exc: Exception) -> bool:
    """Whether an MLflow error means the tracking server could not be reached at all."""
    text = str(exc)
    return any(s in text for s in ("Max retries exceeded", "Connection refused", "Failed to establish", "Name or service not known",
                                   "timed out", "RemoteDisconnected", "Connection aborted"))


def ensure_experiment(settings: Settings, name: str) -> str:
    """The id of experiment ``name``, created if missing. In the embedded store its artifacts go
    under the workspace (MLflow's default would be ``./mlruns`` of whatever directory we run in)."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(settings)
    try:
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = None if settings.is_remote else (settings.artifacts_dir / name).as_uri()
        return mlflow_client.create_experiment(name, artifact_location=location)
    except MlflowException as exc:
        raise TrackingUnavailableError(
            f"The MLflow store at {settings.safe_tracking_uri} could not be used ({redact(exc.message)}). "
            "Check that the server is running, or unset MLFLOW_TRACKING_URI to use the embedded store."
        ) from exc


def raise_unreachable(settings: Settings, exc: BaseException) -> None:
    """Raise :class:`TrackingUnavailableError` (naming the store, its password redacted) when ``exc``
    means the store could not be reached; else return."""
    from mlflow.exceptions import MlflowException

    if (isinstance(exc, MlflowException) and unreachable(exc)) or isinstance(exc, ConnectionError):
        raise TrackingUnavailableError(
            f"The MLflow store at {settings.safe_tracking_uri} cannot be reached ({redact(exc)}). Start it or check the address."
        ) from exc


def missing_artifact(exc: BaseException) -> bool:
    """Whether a failed artifact read means the artifact is not there (not a bug): MLflow's errors
    (a 404 from a server, an unknown run or model) and the file system's."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, (MlflowException, OSError))


# (store, experiment name) -> id, once found: an experiment keeps its id for good
_EXPERIMENTS: dict[tuple[str, str], str] = {}


def experiment_id(settings: Settings, name: str) -> str | None:
    """The id of experiment ``name``, or None while it does not exist (asked of the store until it does)."""
    key = (settings.tracking_uri, name)
    if key not in _EXPERIMENTS:
        experiment = client(settings).get_experiment_by_name(name)
        if experiment is None or experiment.lifecycle_stage != "active":
            return None
        _EXPERIMENTS[key] = experiment.experiment_id
    return _EXPERIMENTS[key]


def run_artifact(settings: Settings, run_id: str, path: str) -> Path:
    """A local copy of an artifact (a file or a folder) of a finished run, downloaded once into the
    workspace cache and read from there afterwards: what a finished run logged does not change.
    Only for artifacts written before the run finished (a training run's ``model_info.json`` and
    ``reference/``, a scoring run's ``scoring_report.json``); anything logged later, such as a
    drift report recorded again, is read from the store each time."""
    import os
    import shutil
    import tempfile
    import uuid

    if not run_id or not all(c.isalnum() for c in run_id) or ".." in path.split("/"):
        raise ValueError(f"not a run artifact: {run_id}/{path}")
    # One cache entry per path asked for, named flat: a file fetched alone from a folder
    # ("reference/holdout_scores.parquet") is not mistaken later for the whole folder ("reference").
    target = settings.cache_dir / "runs" / run_id / path.strip("/").replace("/", "%2F")
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.cache_dir) as tmp:
        fetched = Path(client(settings).download_artifacts(run_id, path, tmp))
        part = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        shutil.move(str(fetched), part)
        try:
            os.replace(part, target)  # whole or not at all: a reader never sees half a download
        except OSError:  # another process put the same copy there first
            shutil.rmtree(part, ignore_errors=True) if part.is_dir() else part.unlink(missing_ok=True)
            if not target.exists():
                raise
    return target


def mlflow_ui_command(settings: Settings, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """The command that opens the MLflow UI on the studio's embedded store."""
    prepare_store(settings)
    return [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", settings.tracking_uri,
        "--default-artifact-root", settings.artifacts_dir.as_uri(),
        "--host", host, "--port", str(port),
    ]


def mlflow_ui_url(settings: Settings) -> str:
    """Where people open the MLflow UI: the team server itself, or ``make mlflow-ui`` locally
    (``STUDIO_MLFLOW_UI_URL`` overrides). It goes into links on pages, so it never carries a user
    name or password: the browser asks for the server's sign-in instead."""

    if settings.mlflow_ui_url:
        return without_credentials(settings.mlflow_ui_url).rstrip("/")
    if settings.remote_tracking_uri and settings.remote_tracking_uri.startswith(("http://", "https://")):
        return without_credentials(settings.remote_tracking_uri).rstrip("/")
    return "http://127.0.0.1:5000"


def without_credentials(url: str) -> str:
    """``url`` without its ``user:password@`` part (for a link; messages use :func:`core.settings.redact`)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def run_url(settings: Settings, experiment_id: str, run_id: str) -> str:
    return f"{mlflow_ui_url(settings)}/#/experiments/{experiment_id}/runs/{run_id}"


def load_figures(settings: Settings, run_id: str) -> dict[str, object]:
    """The Plotly figures a run logged under ``plots/`` (a training run's holdout charts, a labelled
    scoring's charts of its file), by name, in :data:`FIGURE_ORDER`. A run without a ``plots``
    folder (a failed model, a scoring of a file without the outcome) has none: an empty dict.
    Raises :class:`TrackingUnavailableError` when the run or the store cannot be read."""
    import tempfile
    from pathlib import Path

    import plotly.io as pio

    mlflow_client = client(settings)
    try:
        listed = [a.path for a in mlflow_client.list_artifacts(run_id, "plots") if not a.is_dir and a.path.endswith(".json")]
    except Exception as exc:  # noqa: BLE001 - an unknown run, a store that cannot be reached
        raise TrackingUnavailableError(f"The charts of run {run_id} could not be read ({redact(exc)}).") from exc
    figures = {}
    if not listed:
        return figures
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow_client.download_artifacts(run_id, "plots", tmp))
        except Exception as exc:  # noqa: BLE001
            raise TrackingUnavailableError(f"The charts of run {run_id} could not be read ({redact(exc)}).") from exc
        for path in sorted(local.glob("*.json"), key=lambda p: (FIGURE_ORDER.index(p.stem) if p.stem in FIGURE_ORDER else 99, p.stem)):
            figures[path.stem] = pio.from_json(path.read_text())
    return figures


FIGURE_ORDER = ("roc", "precision_recall", "confusion_matrix", "predicted_vs_actual", "residuals", "importance")
