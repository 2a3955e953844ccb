"""The model registry: register a training run's model as a version, name versions by alias
(``champion``, ``challenger``), load ``models:/name@alias``. MLflow is the system of record."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from core.errors import BadInputError
from core.settings import Settings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}$")
RESERVED_ALIASES = ("latest",)


def check_model_name(name: str) -> str:
    if not name or not _NAME.match(name):
        raise BadInputError(
            f"'{name}' cannot be a model name: use 1 to 100 letters, digits, '_', '-' or '.', starting with a letter or "
            "digit (for example kobe-shots)."
        )
    return name


def check_alias(alias: str) -> str:
    if alias.lower() in RESERVED_ALIASES or re.fullmatch(r"v\d+", alias, re.IGNORECASE):
        raise BadInputError(f"'{alias}' is reserved by MLflow and cannot be an alias. Use a name such as champion or challenger.")
    if not _ALIAS.match(alias):
        raise BadInputError(
            f"'{alias}' cannot be an alias: use letters, digits, '_' or '-', no spaces, starting with a letter "
            "(for example champion or challenger)."
        )
    return alias


def register(settings: Settings, run_id: str, name: str, *, alias: str | None = None, model_uri: str | None = None,
             job_id: str | None = None) -> dict[str, Any]:
    """Register the model of ``run_id`` as a new version of ``name`` (created if missing) and
    optionally point ``alias`` at it. Returns ``{"name", "version", "alias"}``."""
    check_model_name(name)
    if alias:
        check_alias(alias)
    from mlflow.exceptions import MlflowException

    from core import tracking

    client = tracking.client(settings)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise BadInputError(f"There is no training run '{run_id}'. Copy the run id from the training results.") from exc
    if model_uri is None:
        outputs = getattr(run, "outputs", None)
        model_ids = [o.model_id for o in (outputs.model_outputs if outputs else [])]
        if not model_ids:
            raise BadInputError(f"Run '{run_id}' has no logged model to register; pick a model run of a training job.")
        model_uri = f"models:/{model_ids[0]}"
    for version in client.search_model_versions(f"name='{name}'"):
        if version.run_id == run_id:
            raise BadInputError(f"This run is already version {version.version} of '{name}'.")
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    tags = {"studio.registered_at": datetime.now(UTC).isoformat(timespec="seconds")}
    if job_id:
        tags["studio.job_id"] = job_id
    # MLflow's sqlite registry resolves a models:/ source through the *global* tracking URI (a TODO
    # in its code), which a page process never sets: resolve the logged model here instead.
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    source = client.get_logged_model(model_id).artifact_location if model_id else model_uri
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags, model_id=model_id)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return {"name": name, "version": int(version.version), "alias": alias}
