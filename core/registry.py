"""The model registry: register a training run's model as a version, name versions by alias
(``champion``, ``challenger``, ...), compare versions, load ``models:/name@alias``.

MLflow is the system of record. Who moved which alias and when is kept in MLflow too, as a
registered-model tag (``studio.alias_history``, a JSON list, newest last). Works the same against the
embedded sqlite store and a remote ``mlflow server``; a store that cannot be reached raises
:class:`~core.tracking.TrackingUnavailableError` naming its URI.
"""

from __future__ import annotations

import getpass
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core import datasets, metrics
from core.errors import BadInputError, IncompatibleModelError, NotFoundError
from core.settings import Settings, redact

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}$")
RESERVED_ALIASES = ("latest",)
HISTORY_TAG = "studio.alias_history"
# The cut-off stored on a version (a model-version tag, JSON {"value", "positive", "by", "at"}); its
# changes are recorded in a registered-model tag of their own (entries with "action": "cutoff"), so
# that many cut-off changes never push the record of who moved the champion out of HISTORY_TAG.
CUTOFF_TAG = "studio.cutoff"
CUTOFF_HISTORY_TAG = "studio.cutoff_history"
CUTOFF_ACTION = "cutoff"
HISTORY_MAX_CHARS = 4_500  # MLflow keeps tag values up to 5,000 characters: the oldest entries go first
# Read from core.metrics, the one table of metric facts: a version's metrics per task (the primary first).
KEY_METRICS = {task: metrics.ranked(task) for task in metrics.TASKS}
LOWER_IS_BETTER = metrics.lower_is_better()


# --- checks ----------------------------------------------------------------------------------


def check_model_name(name: str) -> str:
    if not name or not _NAME.match(name):
        raise BadInputError(
            f"'{name}' cannot be a model name: use 1 to 100 letters, digits, '_', '-' or '.', starting with a letter or "
            "digit (for example kobe-shots)."
        )
    return name


def check_alias(alias: str) -> str:
    if not alias or alias.lower() in RESERVED_ALIASES or re.fullmatch(r"v\d+", alias, re.IGNORECASE):
        raise BadInputError(f"'{alias}' is reserved by MLflow and cannot be an alias. Use a name such as champion or challenger.")
    if not _ALIAS.match(alias):
        raise BadInputError(
            f"'{alias}' cannot be an alias: use letters, digits, '_' or '-', no spaces, starting with a letter "
            "(for example champion or challenger)."
        )
    return alias


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- views -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionView:
    name: str
    version: int
    run_id: str | None
    created: str
    aliases: tuple[str, ...]
    description: str
    tags: dict[str, str]
    task: str | None
    target: str | None
    table_name: str | None
    table_digest: str | None
    algorithm: str | None
    metrics: dict[str, float]
    params: dict[str, str]
    model_uri: str
    cutoff: Cutoff | None = None  # the stored cut-off (CUTOFF_TAG), None: the likelier class

    @property
    def label(self) -> str:
        aliases = f" ({', '.join(self.aliases)})" if self.aliases else ""
        return f"version {self.version}{aliases}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "run_id": self.run_id, "created": self.created,
            "aliases": list(self.aliases), "description": self.description, "tags": self.tags, "task": self.task,
            "target": self.target, "table_name": self.table_name, "table_digest": self.table_digest,
            "algorithm": self.algorithm, "metrics": {k: _json_number(v) for k, v in self.metrics.items()},
            "model_uri": self.model_uri, "cutoff": self.cutoff.to_dict() if self.cutoff else None,
        }


@dataclass(frozen=True)
class ModelView:
    """A registered model. ``history`` holds the alias moves (every entry has ``alias``,
    ``version``, ``from_version``, ``action``, ``by``, ``at``), as recorded in :data:`HISTORY_TAG`;
    ``cutoff_history`` the cut-off changes (``action == "cutoff"``, ``version``, ``cutoff``,
    ``from_cutoff``, ``positive``, ``by``, ``at``), as recorded in :data:`CUTOFF_HISTORY_TAG`; both
    oldest first."""

    name: str
    description: str
    aliases: dict[str, int]  # alias -> version
    versions: list[VersionView] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    cutoff_history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "aliases": self.aliases,
                "versions": [v.to_dict() for v in self.versions], "alias_history": self.history,
                "cutoff_history": self.cutoff_history}


@dataclass(frozen=True)
class Cutoff:
    """The cut-off stored on a registered version: a row is predicted ``positive`` when its
    probability of that class is at or above ``value``, else the other class. ``positive`` is the
    class as the scored files name it (``proba_<positive>``)."""

    value: float
    positive: str
    by: str = ""
    at: str = ""  # ISO time, as the alias history writes it

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "positive": self.positive, "by": self.by, "at": self.at}

    @classmethod
    def from_tag(cls, text: str | None) -> Cutoff | None:
        """The cut-off a version's CUTOFF_TAG holds; None when there is none (or it cannot be read)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            value = metrics.finite(data.get("value"))
            positive = data.get("positive")
        except (ValueError, TypeError, AttributeError):
            return None
        if value is None or not 0.0 <= value <= 1.0 or positive is None:
            return None
        return cls(value=value, positive=str(positive), by=str(data.get("by") or ""), at=str(data.get("at") or ""))

    @staticmethod
    def same_rule(one: Cutoff | None, other: Cutoff | None) -> bool:
        """Whether two stored cut-offs (None: the likelier class) decide every row alike: the same value
        for the same class, whoever set them and when."""
        return (None if one is None else (one.value, one.positive)) == (None if other is None else (other.value, other.positive))

    @staticmethod
    def named(cutoff: Cutoff | None) -> str:
        """What a version predicts with, in a few words: "the cut-off 0.35 for class 1", or "the likelier
        class (no cut-off stored)"."""
        return "the likelier class (no cut-off stored)" if cutoff is None else \
            f"the cut-off {cutoff.shown} for class {cutoff.positive}"

    @property
    def shown(self) -> str:
        """The value as people read it (0.35), never rounded to a value that would decide other rows."""
        from core.decisions import cutoff_text

        return cutoff_text(self.value)

    def rule(self, target: str | None) -> str:
        """The rule alone: "A row is predicted shot_made_flag = 1 when its probability of 1 is at least 0.35"."""
        what = f"{target} = {self.positive}" if target else f"class {self.positive}"
        return f"A row is predicted {what} when its probability of {self.positive} is at least {self.shown}"

    def sentence(self, target: str | None) -> str:
        """The rule and who set it: "A row is predicted shot_made_flag = 1 when its probability of 1
        is at least 0.35 (cut-off set by ana on 2026-12-02 11:40 UTC)."."""
        when = ""
        try:
            moment = datetime.fromisoformat(self.at)
            when = f" on {moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        except (TypeError, ValueError):
            pass
        who = f" by {self.by}" if self.by else ""
        set_by = f" (cut-off set{who}{when})" if who or when else ""
        return f"{self.rule(target)}{set_by}."


def _json_number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 6)


# --- store access ----------------------------------------------------------------------------


def _client(settings: Settings):
    from core import tracking

    return tracking.client(settings)


def _guard(settings: Settings, action: Callable[[], Any]) -> Any:
    """Run a registry call; an unreachable store becomes one clear error naming its URI."""
    from mlflow.exceptions import MlflowException, RestException

    from core.tracking import TrackingUnavailableError, unreachable

    try:
        return action()
    except RestException:
        raise
    except MlflowException as exc:
        if unreachable(exc):
            raise TrackingUnavailableError(
                f"The MLflow tracking server at {settings.safe_tracking_uri} cannot be reached. Start it, check the address, "
                "or unset MLFLOW_TRACKING_URI to use the embedded store."
            ) from exc
        raise
    except OSError as exc:
        raise TrackingUnavailableError(
            f"The MLflow tracking server at {settings.safe_tracking_uri} cannot be reached ({redact(exc)}). Start it or check the address."
        ) from exc


def _registered_model(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower():
            known = sorted(m.name for m in client.search_registered_models(max_results=200))
            listing = f" Registered models: {', '.join(known)}." if known else " No model is registered yet."
            raise NotFoundError(f"There is no registered model '{name}'.{listing}") from exc
        raise


# What a finished training run says about its model (metrics, hyperparameters, the table and target
# of its parent run) never changes: read once per process, by (store, run id). The versions, their
# aliases and tags do change, and are read each time.
_RUN_FACTS: dict[tuple[str, str], tuple[dict, dict, dict]] = {}
_RUN_FACTS_MAX = 1024


def _run_facts(settings: Settings, client, run_id: str | None) -> tuple[dict, dict, dict]:
    """(metrics, params, parent info) of a version's training run; empty for a run that is gone."""
    if not run_id:
        return {}, {}, {}
    key = (settings.tracking_uri, run_id)
    if key in _RUN_FACTS:
        return _RUN_FACTS[key]
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001 - a version whose run was deleted still lists
        return {}, {}, {}
    info: dict[str, Any] = {}
    parent_id = run.data.tags.get("mlflow.parentRunId")
    if parent_id:
        try:
            parent = client.get_run(parent_id).data.params
        except Exception:  # noqa: BLE001
            parent = None
        if parent is None:
            return dict(run.data.metrics), dict(run.data.params), {}
        info = {"table_name": parent.get("table_name"), "table_digest": parent.get("table_digest"),
                "target": parent.get("target"), "task": parent.get("task")}
    facts = (dict(run.data.metrics), dict(run.data.params), info)
    if run.info.status == "FINISHED":
        if len(_RUN_FACTS) >= _RUN_FACTS_MAX:
            _RUN_FACTS.pop(next(iter(_RUN_FACTS)))
        _RUN_FACTS[key] = facts
    return facts


def _version_view(settings: Settings, client, mv, aliases: list[str] | tuple[str, ...]) -> VersionView:
    run_data, params, info = _run_facts(settings, client, mv.run_id)
    tags = dict(mv.tags or {})
    task = info.get("task") or tags.get("studio.task")
    names = KEY_METRICS.get(task or "", KEY_METRICS["classification"] + KEY_METRICS["regression"])
    return VersionView(
        name=mv.name, version=int(mv.version), run_id=mv.run_id,
        created=datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
        aliases=tuple(sorted(aliases)), description=mv.description or "",
        tags=tags, task=task, target=info.get("target") or tags.get("studio.target"),
        table_name=info.get("table_name"), table_digest=info.get("table_digest"),
        algorithm=params.get("algorithm_name") or params.get("algorithm"),
        metrics={k: run_data[k] for k in names if k in run_data},
        params={k[3:]: v for k, v in params.items() if k.startswith("hp.")},
        model_uri=f"models:/{mv.name}/{mv.version}", cutoff=Cutoff.from_tag(tags.get(CUTOFF_TAG)),
    )


def _model_view(settings: Settings, client, model, versions) -> ModelView:
    aliases = {alias: int(version) for alias, version in (model.aliases or {}).items()}
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    views = sorted((_version_view(settings, client, mv, by_version.get(str(mv.version), [])) for mv in versions),
                   key=lambda v: v.version, reverse=True)
    return ModelView(name=model.name, description=model.description or "", aliases=aliases, versions=views,
                     history=_history(model), cutoff_history=_history(model, CUTOFF_HISTORY_TAG))


def _history(model, tag: str = HISTORY_TAG) -> list[dict[str, Any]]:
    """Every entry of a registered model's history ``tag`` (HISTORY_TAG: alias moves; CUTOFF_HISTORY_TAG:
    cut-off changes), oldest first."""
    try:
        history = json.loads((model.tags or {}).get(tag, "[]"))
    except ValueError:
        return []
    return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []


def _all_versions(client, filter_string: str | None = None) -> list:
    """Every model version the filter matches, page after page (one call for most registries)."""
    found, token = [], None
    while True:
        page = client.search_model_versions(filter_string, page_token=token)
        found.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return found


# --- queries ---------------------------------------------------------------------------------


def list_models(settings: Settings) -> list[ModelView]:
    """Every registered model with its versions, newest version first: two calls to the store (the
    models, then every version at once), whatever the number of models; a version's training-run
    facts are read once per process."""
    def action():
        client = _client(settings)
        models = client.search_registered_models(max_results=500)
        by_name: dict[str, list] = {}
        for mv in _all_versions(client):
            by_name.setdefault(mv.name, []).append(mv)
        return [_model_view(settings, client, m, by_name.get(m.name, [])) for m in sorted(models, key=lambda m: m.name.lower())]

    return _guard(settings, action)


def _listed(settings: Settings, client, name: str) -> ModelView:
    model = _registered_model(client, name)
    return _model_view(settings, client, model, _all_versions(client, f"name='{model.name}'"))


def get_model(settings: Settings, name: str) -> ModelView:
    return _guard(settings, lambda: _listed(settings, _client(settings), name))


def parse_reference(reference: str) -> tuple[str, str | None, int | None]:
    """``name``, ``name@alias`` or ``name/version`` -> (name, alias, version)."""
    reference = (reference or "").strip().removeprefix("models:/")
    if "@" in reference:
        name, alias = reference.split("@", 1)
        return check_model_name(name), alias, None
    if "/" in reference:
        name, version = reference.rsplit("/", 1)
        if not version.isdigit():
            raise BadInputError(f"'{version}' is not a version number; write NAME/3 or NAME@champion.")
        return check_model_name(name), None, int(version)
    return check_model_name(reference), None, None


def resolve(settings: Settings, reference: str) -> VersionView:
    """The version that ``name@alias``, ``name/version`` or ``name`` (its champion, else its newest
    version) points to: one call to the store for that version (``get_model_version_by_alias`` or
    ``get_model_version``), not a listing of the model. A reference that names nothing is answered
    from the model's listing, which says what there is."""
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_reference(reference)

    def action():
        client = _client(settings)
        try:
            if alias is not None:
                mv = client.get_model_version_by_alias(name, alias)
            elif version is not None:
                mv = client.get_model_version(name, str(version))
            else:
                try:
                    mv = client.get_model_version_by_alias(name, "champion")
                except MlflowException:
                    newest = client.search_model_versions(f"name='{name}'", max_results=1, order_by=["version_number DESC"])
                    if not newest:
                        raise
                    mv = client.get_model_version(name, str(newest[0].version))
        except MlflowException as exc:
            from core.tracking import unreachable

            if unreachable(exc):
                raise
            return resolve_in([_listed(settings, client, name)], reference)
        return _version_view(settings, client, mv, list(mv.aliases or []))

    return _guard(settings, action)


def resolve_in(models: list[ModelView], reference: str) -> VersionView:
    """What :func:`resolve` gives, from models already listed (:func:`list_models`): a page that
    shows the models resolves the one picked without asking the store again."""
    name, alias, version = parse_reference(reference)
    model = next((m for m in models if m.name == name), None)
    if model is None:
        known = sorted(m.name for m in models)
        listing = f" Registered models: {', '.join(known)}." if known else " No model is registered yet."
        raise NotFoundError(f"There is no registered model '{name}'.{listing}")
    if not model.versions:
        raise NotFoundError(f"'{name}' has no versions yet. Register a training run first.")
    if alias is not None:
        if alias not in model.aliases:
            known = ", ".join(f"{a} (version {v})" for a, v in sorted(model.aliases.items())) or "none"
            raise NotFoundError(f"'{name}' has no alias '{alias}'. Its aliases: {known}.")
        version = model.aliases[alias]
    if version is None:
        version = model.aliases.get("champion", model.versions[0].version)
    for view in model.versions:
        if view.version == version:
            return view
    known = ", ".join(str(v.version) for v in model.versions)
    raise NotFoundError(f"'{name}' has no version {version}. Its versions: {known}.")


# --- what a model predicts -------------------------------------------------------------------

CONTRACT_TAGS = ("studio.task", "studio.target", "studio.classes")


@dataclass(frozen=True)
class Contract:
    """What a model predicts: its task, its target column and (for classification) its classes.
    Every version of one registered model must share it, or comparing and replacing versions means
    nothing (a churn model must never become version 2 of a basketball model)."""

    task: str | None
    target: str | None
    classes: tuple[str, ...] = ()

    @classmethod
    def of(cls, task: str | None, target: str | None, classes=()) -> Contract:
        """From labels as training sees them: numpy values and whole floats (1.0) read as 1, as in
        the ``model_info.json`` of a run."""
        def label(value: Any) -> str:
            value = value.item() if hasattr(value, "item") else value
            return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)

        return cls(task=task, target=target, classes=tuple(label(c) for c in classes or ()))

    @classmethod
    def from_model_info(cls, info: dict[str, Any]) -> Contract:
        return cls.of(info.get("task"), info.get("target"), info.get("classes"))

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Contract | None:
        if not all(k in tags for k in CONTRACT_TAGS):
            return None
        return cls(task=tags["studio.task"] or None, target=tags["studio.target"] or None,
                   classes=tuple(json.loads(tags["studio.classes"] or "[]")))

    def tags(self) -> dict[str, str]:
        return {"studio.task": self.task or "", "studio.target": self.target or "", "studio.classes": json.dumps(list(self.classes))}

    def describe(self) -> str:
        if self.task == "classification" and self.classes:
            return f"'{self.target}' (classification into {_short_list(self.classes)})"
        return f"'{self.target}' ({self.task or 'unknown task'})"

    def differences(self, other: Contract) -> list[str]:
        found = []
        if self.target != other.target:
            found.append("target")
        if self.task != other.task:
            found.append("task")
        elif self.task == "classification" and set(self.classes) != set(other.classes):
            found.append("classes")
        return found


def _short_list(values: tuple[str, ...], limit: int = 6) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def run_contract(client, run_id: str) -> Contract | None:
    """What the model of a training run predicts (from its ``model_info.json``), or None for runs
    that did not record it."""
    import tempfile
    from pathlib import Path

    from mlflow.exceptions import MlflowException

    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(run_id, "model_info.json", tmp)
            return Contract.from_model_info(json.loads(Path(local).read_text()))
    except (MlflowException, OSError, ValueError):
        return None


def _model_contract(client, name: str) -> Contract | None:
    """What the versions of a registered model predict (from the newest version that says), or None
    when the model has no version yet."""
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda mv: int(mv.version), reverse=True)
    for mv in versions:
        contract = Contract.from_tags(mv.tags or {})
        if contract is not None:
            return contract
    for mv in versions[:3]:  # versions registered before the studio tagged them: read their runs
        if mv.run_id and (contract := run_contract(client, mv.run_id)) is not None:
            return contract
    return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text or "")).strip("-").lower()[:90] or "model"


def check_compatible(settings: Settings, name: str, contract: Contract) -> None:
    """Refuse to add a model that predicts something else to ``name`` (another target, task or set of
    classes), naming both and offering a free name."""
    def action():
        client = _client(settings)
        existing = _model_contract(client, name) if _exists(client, name) else None
        if existing is None or not existing.differences(contract):
            return
        what = " and ".join(existing.differences(contract))
        raise IncompatibleModelError(
            f"'{name}' already holds models that predict {existing.describe()}; this model predicts {contract.describe()}. "
            f"A model with a different {what} cannot be a version of it: register it under a new name instead, for example "
            f"'{_free_name(client, contract)}'."
        )

    _guard(settings, action)


def check_registration(settings: Settings, name: str, alias: str | None, contract: Contract) -> None:
    """What a training job that registers its best model checks before it trains: the name, the
    alias, and that the name holds no other kind of model."""
    check_model_name(name)
    if alias:
        check_alias(alias)
    check_compatible(settings, name, contract)


def _exists(client, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
        return True
    except MlflowException:
        return False


def _free_name(client, contract: Contract) -> str:
    """The target's name as a model name, or the first ``-2``, ``-3``... that is free or already holds
    this kind of model."""
    base = _slug(contract.target or "model")
    for k in range(1, 100):
        candidate = base if k == 1 else f"{base}-{k}"
        if not _exists(client, candidate):
            return candidate
        existing = _model_contract(client, candidate)
        if existing is None or not existing.differences(contract):
            return candidate
    return f"{base}-{datetime.now(UTC):%Y%m%d%H%M%S}"


def suggest_name(settings: Settings, contract: Contract) -> str:
    """A registered model name for a newly trained model: the model that already predicts the same
    thing, else a free name made from the target."""
    return _guard(settings, lambda: _free_name(_client(settings), contract))


def suggest_name_for_run(settings: Settings, run_id: str) -> str:
    """:func:`suggest_name` for the model of a training run (what it predicts is read from the run)."""
    def action():
        client = _client(settings)
        contract = run_contract(client, run_id)
        if contract is None:
            parent = client.get_run(run_id).data.tags.get("mlflow.parentRunId")
            params = client.get_run(parent).data.params if parent else {}
            contract = Contract(task=params.get("task"), target=params.get("target"))
        return _free_name(client, contract)

    return _guard(settings, action)


# --- changes ---------------------------------------------------------------------------------
# What a change returns. ``to_dict()`` is what ``python -m core models ...`` prints and what a training
# job's stored result holds (``registered``); ``from_dict`` reads it back.


@dataclass(frozen=True)
class Registration:
    """A run's model registered as ``version`` of ``name`` (``alias`` pointed at it, if one was given).
    A run already registered under the name is refused (BadInputError "already version N"), so a
    Registration is always a new version."""

    name: str
    version: int
    alias: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "alias": self.alias}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Registration:
        return cls(name=data["name"], version=int(data["version"]), alias=data.get("alias"))


@dataclass(frozen=True)
class AliasChange:
    """``alias`` of ``name`` now points at ``version`` (None: the alias was removed); it pointed at
    ``from_version`` before (None: it was not set)."""

    name: str
    alias: str
    version: int | None
    from_version: int | None = None

    @property
    def action(self) -> str:
        """As in the alias history: ``set``, ``moved`` or ``removed``."""
        if self.version is None:
            return "removed"
        return "set" if self.from_version is None else "moved"

    def to_dict(self) -> dict[str, Any]:
        if self.version is None:  # a removal says where the alias pointed, not where it points
            return {"name": self.name, "alias": self.alias, "from_version": self.from_version}
        return {"name": self.name, "alias": self.alias, "version": self.version, "from_version": self.from_version}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AliasChange:
        version, before = data.get("version"), data.get("from_version")
        return cls(name=data["name"], alias=data["alias"], version=None if version is None else int(version),
                   from_version=None if before is None else int(before))


@dataclass(frozen=True)
class Promotion:
    """The challenger became the champion: ``champion`` is its version, ``previous_champion`` the
    version that was champion before (None: there was none)."""

    name: str
    champion: int
    previous_champion: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "champion": self.champion, "previous_champion": self.previous_champion}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Promotion:
        before = data.get("previous_champion")
        return cls(name=data["name"], champion=int(data["champion"]), previous_champion=None if before is None else int(before))


def register(settings: Settings, run_id: str, name: str, *, alias: str | None = None, model_uri: str | None = None,
             job_id: str | None = None, who: str | None = None) -> Registration:
    """Register the model of ``run_id`` as a new version of ``name`` (created if missing) and
    optionally point ``alias`` at it."""
    check_model_name(name)
    if alias:
        check_alias(alias)

    def action():
        from mlflow.exceptions import MlflowException

        client = _client(settings)
        try:
            run = client.get_run(run_id)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
                raise NotFoundError(f"There is no run '{run_id}'. Copy the run id of a model from the training results.") from exc
            raise
        uri = model_uri
        if uri is None:
            outputs = getattr(run, "outputs", None)
            model_ids = [o.model_id for o in (outputs.model_outputs if outputs else [])]
            if not model_ids:
                raise BadInputError(
                    f"Run '{run_id}' has no model to register (it may be a job's parent run or a failed model). "
                    "Pick the run of one trained model."
                )
            uri = f"models:/{model_ids[0]}"
        try:
            existing = client.search_model_versions(f"name='{name}'")
        except MlflowException:
            existing = []
        for version in existing:
            if version.run_id == run_id:
                raise BadInputError(f"This run is already version {version.version} of '{name}'.")
        contract = run_contract(client, run_id)
        if contract is not None:
            check_compatible(settings, name, contract)
        if not _exists(client, name):
            try:
                client.create_registered_model(name)
            except MlflowException as exc:  # created meanwhile by another machine: use it
                if "ALREADY_EXISTS" not in str(getattr(exc, "error_code", "")) and "already exists" not in str(exc).lower():
                    raise
        tags = {"studio.registered_at": _now(), "studio.registered_by": who or _who(), **(contract.tags() if contract else {})}
        from core.integrity import MANIFEST_TAG

        if run.data.tags.get(MANIFEST_TAG):  # the hashes recorded when the model was logged travel with it
            tags[MANIFEST_TAG] = run.data.tags[MANIFEST_TAG]
        if job_id:
            tags["studio.job_id"] = job_id
        # MLflow's sqlite registry resolves a models:/ source through the *global* tracking URI (a
        # TODO in its code), which a page process never sets: resolve the logged model here instead.
        model_id = uri.removeprefix("models:/") if uri.startswith("models:/m-") else None
        source = client.get_logged_model(model_id).artifact_location if model_id else uri
        mv = client.create_model_version(name, source=source, run_id=run_id, tags=tags, model_id=model_id)
        # Another studio machine on the same team server may have registered this run meanwhile (the
        # lock below is per machine): the lowest version of the run stays, a later one removes itself.
        same = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'") if v.run_id == run_id)
        if same and same[0] != int(mv.version):
            client.delete_model_version(name, mv.version)
            raise BadInputError(f"This run is already version {same[0]} of '{name}'.")
        return int(mv.version)

    from core.locks import locked

    with locked(settings, "registering", name):  # the "already version N" check and the creation, at once
        version = _guard(settings, action)
    if alias:
        set_alias(settings, name, version, alias, who=who)
    return Registration(name=name, version=version, alias=alias)


def _record_history(client, name: str, entries: list[dict[str, Any]], tag: str = HISTORY_TAG) -> None:
    model = client.get_registered_model(name)
    history = _history(model, tag) + entries
    text = json.dumps(history)
    while len(text) > HISTORY_MAX_CHARS and len(history) > 1:
        history = history[1:]
        text = json.dumps(history)
    client.set_registered_model_tag(name, tag, text)


def set_alias(settings: Settings, name: str, version: int, alias: str, *, who: str | None = None) -> AliasChange:
    """Point ``alias`` at ``version`` (moving it if it pointed elsewhere) and record who and when."""
    check_alias(alias)

    def action():
        client = _client(settings)
        model = _listed(settings, client, name)
        if int(version) not in {v.version for v in model.versions}:
            known = ", ".join(str(v.version) for v in model.versions)
            raise NotFoundError(f"'{name}' has no version {version}. Its versions: {known}.")
        previous = model.aliases.get(alias)
        client.set_registered_model_alias(name, alias, str(version))
        _record_history(client, name, [{"alias": alias, "version": int(version), "from_version": previous,
                                        "action": "set" if previous is None else "moved", "by": who or _who(), "at": _now()}])
        return AliasChange(name=name, alias=alias, version=int(version), from_version=previous)

    return _guard(settings, action)


def remove_alias(settings: Settings, name: str, alias: str, *, who: str | None = None) -> AliasChange:
    def action():
        client = _client(settings)
        model = _listed(settings, client, name)
        if alias not in model.aliases:
            known = ", ".join(sorted(model.aliases)) or "none"
            raise NotFoundError(f"'{name}' has no alias '{alias}'. Its aliases: {known}.")
        client.delete_registered_model_alias(name, alias)
        _record_history(client, name, [{"alias": alias, "version": None, "from_version": model.aliases[alias],
                                        "action": "removed", "by": who or _who(), "at": _now()}])
        return AliasChange(name=name, alias=alias, version=None, from_version=model.aliases[alias])

    return _guard(settings, action)


def promote(settings: Settings, name: str, *, source_alias: str = "challenger", target_alias: str = "champion",
            who: str | None = None, expected: int | None = None) -> Promotion:
    """Make the challenger the champion in one action: ``champion`` moves to the challenger's
    version and the ``challenger`` alias is removed. Both moves are recorded. ``expected``: the
    challenger's version the person saw; refused if the alias has moved since (a scheduled
    retraining registered another challenger meanwhile)."""
    def action():
        client = _client(settings)
        model = _listed(settings, client, name)
        if source_alias not in model.aliases:
            raise BadInputError(f"'{name}' has no {source_alias} to promote. Set the {source_alias} alias on a version first.")
        version = model.aliases[source_alias]
        if expected is not None and int(version) != int(expected):
            raise BadInputError(f"The {source_alias} of '{name}' is version {version} now, not version {expected} as shown: it "
                                "moved meanwhile (a retraining registered a new one). Nothing was promoted; look at the new "
                                "comparison and promote again.")
        previous = model.aliases.get(target_alias)
        client.set_registered_model_alias(name, target_alias, str(version))
        client.delete_registered_model_alias(name, source_alias)
        by, at = who or _who(), _now()
        _record_history(client, name, [
            {"alias": target_alias, "version": version, "from_version": previous, "action": "promoted", "by": by, "at": at},
            {"alias": source_alias, "version": None, "from_version": version, "action": "removed", "by": by, "at": at},
        ])
        return Promotion(name=name, champion=version, previous_champion=previous)

    return _guard(settings, action)


# --- the cut-off stored on a version ----------------------------------------------------------


@dataclass(frozen=True)
class CutoffChange:
    """The cut-off of ``version`` of ``name`` is now ``value`` for the class ``positive`` (None: it was
    removed, the version predicts the likelier class again); it was ``from_value`` before (None: none
    was set). On a removal ``positive`` is the class the removed cut-off was for."""

    name: str
    version: int
    value: float | None
    from_value: float | None = None
    positive: str | None = None
    from_positive: str | None = None
    unchanged: bool = False  # the same cut-off for the same class was stored already: nothing was recorded

    @property
    def action(self) -> str:
        if self.unchanged:
            return "unchanged"
        if self.value is None:
            return "removed" if self.from_value is not None else "unchanged"
        return "set" if self.from_value is None else "moved"

    def to_dict(self) -> dict[str, Any]:
        """What ``python -m core models threshold`` prints: the cut-off before (``from``) and now (``to``),
        each ``{"value", "positive"}`` or None (none was set / it was removed)."""
        before = None if self.from_value is None else {"value": self.from_value, "positive": self.from_positive}
        after = None if self.value is None else {"value": self.value, "positive": self.positive}
        return {"name": self.name, "version": self.version, "action": self.action, "from": before, "to": after}


def _cutoff_value(value: Any) -> float:
    """A cut-off typed or passed in: a number from 0 to 1 (text such as "0.35" is read as one)."""
    number = None
    if not isinstance(value, bool):
        text = value.strip() if isinstance(value, str) else value
        number = metrics.finite(text) if text != "" else None
    if number is None or not 0.0 <= number <= 1.0:
        raise BadInputError(f"A cut-off must be a number from 0 to 1 (for example 0.35); got {value!r}. A row is then "
                            "predicted positive when its probability of the positive class is at least that number.")
    return number


def _class_named(text: str, classes: tuple[str, str]) -> str | None:
    """The class ``text`` names, as people write it: exactly, as a number (1.0 for 1), or in any case
    (true for True, Benign for benign); None when it names neither."""
    if text in classes:
        return text
    try:
        number = float(text)
        if number.is_integer() and str(int(number)) in classes:
            return str(int(number))
    except ValueError:
        pass
    folded = [c for c in classes if c.casefold() == text.casefold()]
    return folded[0] if len(folded) == 1 else None


def _cutoff_classes(settings: Settings, client, name: str, view: VersionView) -> tuple[str, str]:
    """The two classes of a version a cut-off can be stored on (as the scored files name them), or a
    refusal saying why this version cannot have one."""
    from core import model_flavor

    contract = Contract.from_tags(view.tags) or (run_contract(client, view.run_id) if view.run_id else None)
    task = view.task or (contract.task if contract else None)
    which = f"Version {view.version} of '{name}'"
    if task != metrics.CLASSIFICATION:
        what = "predicts a number (regression)" if task == "regression" else "does not say what it predicts"
        raise BadInputError(f"{which} {what}, so it has no cut-off: a cut-off is for classifiers with two classes that "
                            "give probabilities.")
    classes = contract.classes if contract else ()
    if len(classes) != 2:
        listed = f" ({_short_list(classes)})" if classes else ""
        raise BadInputError(f"{which} sorts rows into {len(classes) or 'an unknown number of'} classes{listed}, so it has no "
                            "cut-off: a cut-off is for exactly two classes. It predicts the likelier class.")
    if not model_flavor._gives_probabilities(settings, name, view.version):
        raise BadInputError(f"{which} gives no probabilities (its algorithm, {view.algorithm or 'unknown'}, only says the "
                            "class), so it has no cut-off to move. Train an algorithm that gives probabilities, such as "
                            "logistic regression, and register it.")
    return classes[0], classes[1]


def cutoff(settings: Settings, name: str, version: int) -> Cutoff | None:
    """The cut-off stored on ``version`` of ``name`` (None: it predicts the likelier class), read from
    the store at each call (one call): it can change after a model was loaded and cached."""
    from mlflow.exceptions import MlflowException

    def action():
        client = _client(settings)
        try:
            mv = client.get_model_version(name, str(int(version)))
        except MlflowException as exc:
            from core.tracking import unreachable

            if unreachable(exc):
                raise
            resolve_in([_listed(settings, client, name)], f"{name}/{int(version)}")  # says what there is
            raise
        return Cutoff.from_tag((mv.tags or {}).get(CUTOFF_TAG))

    return _guard(settings, action)


def set_cutoff(settings: Settings, name: str, version: int, value: float | str | None, *, positive: str | None = None,
               who: str | None = None) -> CutoffChange:
    """Store the cut-off of ``version``: a row is then predicted ``positive`` (unless named, the class
    the cut-off stored now is for, else the last class; one of the two classes, written as people
    write it: 1.0 for 1, true for True) when its probability of that class is at least ``value``, by
    scoring, the Predict page and REST. ``value`` None removes it (the likelier class again). The
    change (who, when, from -> to) is recorded in the model's history beside the alias moves.
    Refused for a version that is not a classifier of two classes giving probabilities, and for a
    value that is not a number from 0 to 1."""
    number = None if value is None else _cutoff_value(value)

    def action():
        client = _client(settings)
        model = _listed(settings, client, name)
        view = next((v for v in model.versions if v.version == int(version)), None)
        if view is None:
            known = ", ".join(str(v.version) for v in sorted(model.versions, key=lambda v: v.version)) or "none"
            raise NotFoundError(f"'{name}' has no version {version}. Its versions: {known}.")
        before = Cutoff.from_tag(view.tags.get(CUTOFF_TAG))
        from_value, from_positive = (before.value, before.positive) if before else (None, None)
        if number is None:
            if before is None:  # nothing to remove: nothing changes, nothing is recorded
                return CutoffChange(name=name, version=view.version, value=None)
            client.delete_model_version_tag(name, str(view.version), CUTOFF_TAG)
            chosen = before.positive
        else:
            classes = _cutoff_classes(settings, client, name, view)
            if positive is None or str(positive).strip() == "":  # a new value alone keeps the class it was for
                chosen = before.positive if before is not None and before.positive in classes else classes[-1]
            else:
                chosen = _class_named(str(positive).strip(), classes)
                if chosen is None:
                    raise BadInputError(f"'{str(positive).strip()}' is not a class of version {view.version} of '{name}'; its "
                                        f"classes are {classes[0]} and {classes[1]}. Name one of them as the positive class.")
            if before is not None and Cutoff.same_rule(before, Cutoff(number, chosen)):  # nothing changes, nothing is recorded
                return CutoffChange(name=name, version=view.version, value=number, from_value=number, positive=chosen,
                                    from_positive=chosen, unchanged=True)
        by, at = who or _who(), _now()
        if number is not None:
            stored = Cutoff(value=number, positive=chosen, by=by, at=at)
            client.set_model_version_tag(name, str(view.version), CUTOFF_TAG, json.dumps(stored.to_dict()))
        _record_history(client, name, [{"action": CUTOFF_ACTION, "version": view.version, "cutoff": number,
                                        "from_cutoff": from_value, "positive": chosen, "from_positive": from_positive,
                                        "by": by, "at": at}], CUTOFF_HISTORY_TAG)
        return CutoffChange(name=name, version=view.version, value=number, from_value=from_value, positive=chosen,
                            from_positive=from_positive)

    return _guard(settings, action)


def update_version(settings: Settings, name: str, version: int, *, description: str | None = None,
                   set_tags: dict[str, str] | None = None, delete_tags: list[str] | None = None) -> VersionView:
    for key in (set_tags or {}):
        if not key.strip() or key.startswith("studio.") or len(key) > 250:
            raise BadInputError(f"'{key}' cannot be a tag name: use 1 to 250 characters, not starting with 'studio.' (kept by the studio).")

    def action():
        client = _client(settings)
        resolve_version(client, name, version)
        if description is not None:
            client.update_model_version(name, str(version), description=description)
        for key, value in (set_tags or {}).items():
            client.set_model_version_tag(name, str(version), key.strip(), value)
        for key in delete_tags or []:
            client.delete_model_version_tag(name, str(version), key)

    _guard(settings, action)
    return resolve(settings, f"{name}/{version}")


def resolve_version(client, name: str, version: int):
    model = _registered_model(client, name)
    for mv in client.search_model_versions(f"name='{model.name}'"):
        if int(mv.version) == int(version):
            return mv
    raise NotFoundError(f"'{name}' has no version {version}.")


def delete_version(settings: Settings, name: str, version: int, *, confirm: str) -> None:
    """Delete a version; ``confirm`` must name it (``name/version``) and no alias may point at it."""
    expected = f"{name}/{version}"
    if confirm.strip() != expected:
        raise BadInputError(f"To delete, type {expected} exactly; got '{confirm}'.")

    def action():
        client = _client(settings)
        model = _listed(settings, client, name)
        if int(version) not in {v.version for v in model.versions}:
            raise NotFoundError(f"'{name}' has no version {version}.")
        held = [a for a, v in model.aliases.items() if v == int(version)]
        if held:
            raise BadInputError(
                f"Version {version} of '{name}' is the {', '.join(sorted(held))}; move the alias to another version "
                "before deleting it."
            )
        client.delete_model_version(name, str(version))

    _guard(settings, action)


# --- comparison ------------------------------------------------------------------------------


def compare_table(versions: list[VersionView]) -> tuple[Any, dict[str, int]]:
    """Metrics of several versions side by side (one row per metric, one column per version) and,
    per metric, the version that is best (lowest loss / error, highest score)."""
    import pandas as pd

    names = [m for m in dict.fromkeys(k for v in versions for k in v.metrics)]
    rows, best = [], {}
    for metric in names:
        values = {f"v{v.version}": v.metrics.get(metric) for v in versions}
        winner = metrics.best(metric, values)  # lowest loss / error, highest score; missing figures skipped
        if winner is not None:
            best[metric] = int(winner[1:])
        # Unrounded: pages show three decimals once, like every other metric (rounding twice made
        # AUC 0.8105 read 0.811 here and 0.810 on the Train page).
        rows.append({"metric": metric, **values})
    return pd.DataFrame(rows), best


def incomparable(versions: list[VersionView]) -> str | None:
    """Why these versions cannot be ranked against each other (they predict different targets or
    tasks: registered before the studio refused that), or None when they can."""
    kinds = {(v.task, v.target) for v in versions if v.target}
    if len(kinds) < 2:
        return None
    listed = "; ".join(f"version {v.version} predicts '{v.target}' ({v.task})" for v in versions if v.target)
    return (f"These versions predict different things ({listed}), so their metrics cannot be compared. Register the "
            "odd one under its own name, then delete it here.")


def diff_params(versions: list[VersionView]) -> Any:
    """Hyperparameters and training facts that differ between the versions."""
    import pandas as pd

    facts = {v.version: {"algorithm": v.algorithm, "training table": v.table_name, "table hash": (v.table_digest or "")[:12],
                         "target": v.target, **{f"hp.{k}": x for k, x in v.params.items()}} for v in versions}
    keys = list(dict.fromkeys(k for f in facts.values() for k in f))
    rows = []
    for key in keys:
        values = [facts[v.version].get(key) for v in versions]
        if len({str(x) for x in values}) > 1:
            rows.append({"setting": key, **{f"v{v.version}": ("" if x is None else str(x)) for v, x in zip(versions, values, strict=True)}})
    return pd.DataFrame(rows)


def holdout_scores(settings: Settings, run_id: str):
    """The holdout rows' actual values, predictions and probabilities a training run kept."""
    import tempfile
    from pathlib import Path


    def action():
        with tempfile.TemporaryDirectory() as tmp:
            local = _client(settings).download_artifacts(run_id, "reference/holdout_scores.parquet", tmp)
            return datasets.read_parquet(Path(local))

    return _guard(settings, action)


def compare_figure(settings: Settings, versions: list[VersionView]):
    """Overlaid ROC curves (classification) or residuals (regression) of the versions' holdout rows."""
    from core.evaluation import overlay_figure

    curves = {}
    for v in versions:
        if v.run_id:
            curves[f"v{v.version}" + (f" ({', '.join(v.aliases)})" if v.aliases else "")] = holdout_scores(settings, v.run_id)
    task = next((v.task for v in versions if v.task), "classification")
    return overlay_figure(task, curves)
