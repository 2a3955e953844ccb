"""Nothing unverified is unpickled: a model's files carry SHA-256 hashes recorded when it was logged,
and a model is loaded only from a local copy whose files match them, taken from inside the store.

- At logging time (:func:`record`) the training run gets the tag ``studio.model_manifest``: a JSON
  object of every file of the logged model (relative path -> SHA-256). Registering copies it onto the
  version. Tags live in the tracking database, not beside the artifacts, so someone who can replace
  ``model.pkl`` in the artifact store cannot also replace the hashes that check it.
- Before loading (:func:`verified_copy`) the version's source must lie inside the store's artifact
  root (the embedded ``mlartifacts/`` folder, or ``mlflow-artifacts:`` served by the team server);
  its files are downloaded once into a private temporary folder, hashed, compared with the manifest,
  and the model is loaded from that very copy (nothing can change between the check and the load).

A pickle-free format does not fit these models: PyCaret's pipeline steps are not among skops'
trusted types, and ONNX converters do not cover them. Hence the hashes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from core.errors import StudioError
from core.settings import Settings, redact

MANIFEST_TAG = "studio.model_manifest"


class UntrustedModelError(StudioError):
    """A model whose files cannot be shown to be the ones the studio logged; it is not loaded."""


def manifest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative POSIX path -> SHA-256 hex digest)."""
    digests = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digests[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return digests


def drop_load_leftovers(local: Path) -> Path:
    """Remove from a downloaded copy of a model what MLflow and Python write into a model folder when
    someone loads it in place from a local store (``mlflow.pyfunc.load_model`` on its path or a
    ``models:/`` URI): compiled ``__pycache__`` of its loader and ``registered_model_meta``. They were
    never logged, so they are neither hashed (by :func:`record`, :func:`trust`) nor checked nor loaded
    (:func:`verified_copy`): one rule for all three. ``local`` back."""
    for leftover in sorted(local.rglob("__pycache__"), reverse=True):
        shutil.rmtree(leftover, ignore_errors=True)
    (local / "registered_model_meta").unlink(missing_ok=True)
    return local


def record(client, run_id: str, artifact_uri: str) -> dict[str, str]:
    """Hash the files of a model just logged and tag ``run_id`` with them. Returns the manifest."""
    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        local = drop_load_leftovers(Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=tmp)))
        digests = manifest(local)
    client.set_tag(run_id, MANIFEST_TAG, json.dumps(digests, sort_keys=True, separators=(",", ":")))
    return digests


def expected(client, mv) -> dict[str, str] | None:
    """The manifest of a registered version: its own tag, else its training run's."""
    text = (mv.tags or {}).get(MANIFEST_TAG)
    if not text and mv.run_id:
        try:
            text = client.get_run(mv.run_id).data.tags.get(MANIFEST_TAG)
        except Exception:  # noqa: BLE001 - a deleted run: nothing vouches for the files
            text = None
    return json.loads(text) if text else None


def check_source(settings: Settings, source: str, label: str, client=None) -> None:
    """Refuse a version whose files live outside the store's artifact root: the studio's
    ``mlartifacts/`` folder, or the artifacts a team server serves (``mlflow-artifacts:``). A
    ``models:/m-...`` source is checked where that logged model keeps its files."""
    parsed = urlparse(source)
    if parsed.scheme == "models" and client is not None:
        model_id = source.removeprefix("models:/").split("/")[0]
        check_source(settings, client.get_logged_model(model_id).artifact_location, label)
        return
    if parsed.scheme == "mlflow-artifacts" and settings.remote_tracking_uri and \
            settings.remote_tracking_uri.startswith(("http://", "https://")):
        return
    root = settings.artifacts_dir.resolve()
    path = Path(unquote(parsed.path)) if parsed.scheme in ("file", "") else None
    if path is None or not path.resolve().is_relative_to(root):
        raise UntrustedModelError(
            f"{label} points at files outside the studio's artifact folder ({root}), so the studio will not load "
            "it: a version must come from a model the studio logged. Register a model trained by the studio instead."
        )


def verified_copy(settings: Settings, name: str, version: int, into: Path) -> Path:
    """Download the files of ``name`` version ``version`` into ``into``, check them against the hashes
    recorded at logging time, and return the folder to load the model from."""
    import mlflow.artifacts

    from core import tracking

    client = tracking.client(settings)
    mv = client.get_model_version(name, str(version))
    label = f"{name} version {version}"
    check_source(settings, mv.source, label, client)
    wanted = expected(client, mv)
    if wanted is None:
        raise UntrustedModelError(
            f"{label} has no file hashes recorded (it was logged before the studio recorded them, or outside the studio), so "
            f"its pickled model is not loaded. Retrain it in the studio, or, if you know where its files came from, vouch for "
            f"them with: python -m core models trust {name}/{version}"
        )
    tracking.use(settings)
    from mlflow.exceptions import MlflowException

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(into)))
    except MlflowException as exc:
        if "outside" not in str(exc).lower():
            raise
        # a file of the model is a link pointing out of the store: MLflow refuses to follow it
        raise UntrustedModelError(
            f"A file of {label} points outside the artifact store ({redact(exc)}), so the studio will not load it: someone "
            "or something altered the store. Restore the files from a backup, or retrain and register a new version."
        ) from exc
    found = manifest(drop_load_leftovers(local))
    changed = sorted(p for p in set(wanted) | set(found) if wanted.get(p) != found.get(p))
    if changed:
        listed = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise UntrustedModelError(
            f"The files of {label} are not the ones logged at training ({listed} changed, appeared or went missing), so the "
            "studio will not load it: someone or something altered the artifact store. Restore the files from a backup, "
            "or retrain and register a new version."
        )
    return local


def trust(settings: Settings, name: str, version: int) -> dict[str, str]:
    """Record the current files of a version as trusted (for versions logged before hashes were kept):
    a person vouches for them; the manifest goes on the version."""
    from core import tracking

    client = tracking.client(settings)
    mv = client.get_model_version(name, str(version))
    check_source(settings, mv.source, f"{name} version {version}", client)
    import mlflow.artifacts

    tracking.use(settings)
    with tempfile.TemporaryDirectory() as tmp:
        digests = manifest(drop_load_leftovers(Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=tmp))))
    client.set_model_version_tag(name, str(version), MANIFEST_TAG, json.dumps(digests, sort_keys=True, separators=(",", ":")))
    return digests
