"""The MLflow store the studio records into: the embedded sqlite store inside the workspace by
default, or the server named by ``MLFLOW_TRACKING_URI``. MLflow is imported only when used, so
pages that merely show which store is in use stay fast."""

from __future__ import annotations

import os
import sys

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


def client(settings: Settings):
    """An ``MlflowClient`` on the studio's store (the embedded store's tables created first)."""
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

    with open(settings.workspace / ".mlflow-store.lock", "w") as lock:
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
    # mlflow.set_tracking_uri also writes MLFLOW_TRACKING_URI into os.environ, which the studio
    # reads as "the user chose a team server": keep the environment as the user set it.
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


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

    if os.environ.get("STUDIO_MLFLOW_UI_URL"):
        return without_credentials(os.environ["STUDIO_MLFLOW_UI_URL"]).rstrip("/")
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
