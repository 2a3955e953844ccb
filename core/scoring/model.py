"""The model a scoring uses: a registered version, its signature (read without loading the model,
once per process), and its pipeline, unpickled only from a copy whose hashes were checked."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core import datasets
from core.catalog import CLASSIFICATION
from core.errors import BadInputError, NotFoundError
from core.settings import Settings, redact

if TYPE_CHECKING:
    from core.registry import Cutoff

# --- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoringModel:
    name: str
    version: int
    run_id: str
    task: str
    target: str | None
    features: tuple[str, ...]
    types: dict[str, str]  # MLflow signature type per feature: double, long, string, boolean, ...
    classes: tuple[Any, ...]
    holdout_metrics: dict[str, float]
    categories: dict[str, frozenset[str]]  # values seen in training, per text feature
    # the cut-off stored on the version when it was loaded (None: the likelier class). It can change
    # while a loaded model is cached: scoring and Predict use :func:`with_current_cutoff`.
    cutoff: Cutoff | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class Signature:
    """What a version's signature says about its input: the columns, and their MLflow types."""

    features: tuple[str, ...]
    types: dict[str, str]  # double, long, string, boolean, ...


def _signature_of(info, name: str, version: int) -> Signature:
    if info.signature is None or info.signature.inputs is None:
        raise BadInputError(
            f"{name} version {version} has no signature, so its input cannot be checked. "
            "Register a model trained by the studio (they all carry one)."
        )
    inputs = info.signature.inputs
    types = {col.name: str(col.type.name if hasattr(col.type, "name") else col.type) for col in inputs.inputs}
    return Signature(tuple(inputs.input_names()), types)


# A version's model files never change (a new model is a new version): its signature is read once
# per process, by (store, name, version, training run).
_SIGNATURES: dict[tuple[str, str, int, str | None], Signature] = {}


def signature(settings: Settings, view) -> Signature:
    """The input columns and types of a registered version (:class:`core.registry.VersionView`),
    read from its MLmodel file alone: the model itself is not loaded."""
    key = (settings.tracking_uri, view.name, int(view.version), view.run_id)
    if key not in _SIGNATURES:
        from mlflow.models import get_model_info

        from core import tracking

        tracking.use(settings)
        try:
            info = get_model_info(view.model_uri)
        except Exception as exc:  # noqa: BLE001 - said for what it is: missing, unreachable, or a bug
            tracking.raise_unreachable(settings, exc)
            if not tracking.missing_artifact(exc):
                raise
            raise NotFoundError(
                f"The model files of {view.name} version {view.version} cannot be read from the store "
                f"({redact(exc)}). Register the training run again, or choose another version."
            ) from exc
        if len(_SIGNATURES) > 256:
            _SIGNATURES.clear()
        _SIGNATURES[key] = _signature_of(info, view.name, view.version)
    return _SIGNATURES[key]


def load_model(settings: Settings, version):
    """(ScoringModel, fitted pipeline) of a registered version: ``name@alias``, ``name/version`` or
    ``name`` (resolved here), or a :class:`core.registry.VersionView` already resolved. The
    pipeline is unpickled only from the copy whose SHA-256 hashes were checked
    (:func:`core.integrity.verified_copy`)."""
    from core import integrity, registry, tracking

    view = registry.resolve(settings, version) if isinstance(version, str) else version
    tracking.use(settings)
    import mlflow.sklearn
    from mlflow.models import Model

    folder = tempfile.TemporaryDirectory()
    try:  # the model is loaded from the very copy whose hashes were checked
        local = integrity.verified_copy(settings, view.name, view.version, Path(folder.name))
        info = Model.load(str(local / "MLmodel"))
        pipeline = mlflow.sklearn.load_model(str(local))
    finally:
        folder.cleanup()
    inputs = _signature_of(info, view.name, view.version)
    meta, categories = _training_facts(settings, view.run_id, inputs.features)
    task = meta.get("task") or view.task or (CLASSIFICATION if hasattr(pipeline, "predict_proba") else "regression")
    classes = tuple(meta.get("classes") or ())
    if task == CLASSIFICATION and not classes:
        classes = tuple(getattr(pipeline, "classes_", ()))
    model = ScoringModel(
        name=view.name, version=view.version, run_id=view.run_id or "", task=task, target=meta.get("target") or view.target,
        features=inputs.features, types=inputs.types, classes=classes, holdout_metrics=dict(view.metrics), categories=categories,
        cutoff=_stored_cutoff(settings, view.name, view.version, task),
    )
    return model, pipeline


def _stored_cutoff(settings: Settings, name: str, version: int, task: str | None) -> Cutoff | None:
    from core import registry

    return registry.cutoff(settings, name, version) if task == CLASSIFICATION else None


def with_current_cutoff(settings: Settings, model: ScoringModel) -> ScoringModel:
    """``model`` with the cut-off stored on its version now (one read of the store): a loaded model
    may be cached (the pages keep one per version) while someone moves the cut-off. What a scoring
    and a prediction call before they decide any label."""
    from dataclasses import replace

    current = _stored_cutoff(settings, model.name, model.version, model.task)
    return model if current == model.cutoff else replace(model, cutoff=current)


def decide(proba: np.ndarray, classes, cutoff: Cutoff | None) -> np.ndarray:
    """The labels the studio predicts from the probabilities (one row per row, one column per class in
    ``classes``' order), as the model's classes (:func:`_same_kind`). Without a cut-off: the likelier
    class (a tie goes to the first class). With one (two classes only): ``cutoff.positive`` where its
    probability is at or above ``cutoff.value``, else the other class."""
    proba = np.asarray(proba, dtype=float)
    if proba.ndim == 1:
        proba = proba.reshape(1, -1)
    classes = tuple(classes) if classes is not None and len(classes) else tuple(range(proba.shape[1]))
    labels = _same_kind(np.asarray(classes, dtype=object), classes)
    if cutoff is None:
        return labels[proba.argmax(axis=1)]
    names = [_label(c.item() if isinstance(c, np.generic) else c) for c in classes]
    if len(names) != 2 or proba.shape[1] != 2 or cutoff.positive not in names:
        raise BadInputError(f"The cut-off stored for class '{cutoff.positive}' does not fit this model, whose classes are "
                            f"{', '.join(names)}: a cut-off is for two classes. Clear it on the Models page "
                            "(or with python -m core models threshold NAME VERSION --clear) and set it again.")
    k = names.index(cutoff.positive)
    return np.where(proba[:, k] >= cutoff.value, labels[k], labels[1 - k])


def _training_facts(settings: Settings, run_id: str | None, features: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, frozenset[str]]]:
    """What the training run kept about the model (``model_info.json``) and the text values each text
    feature took in training (from its reference sample); empty for a model registered from
    elsewhere, which is scored without these extras."""
    from core import tracking

    meta: dict[str, Any] = {}
    categories: dict[str, frozenset[str]] = {}
    if not run_id:
        return meta, categories
    try:
        meta = json.loads(tracking.run_artifact(settings, run_id, "model_info.json").read_text())
        train = datasets.read_parquet(tracking.run_artifact(settings, run_id, "reference") / "train.parquet")
        for column in features:
            if column in train and not pd.api.types.is_numeric_dtype(train[column]) and not pd.api.types.is_bool_dtype(train[column]):
                categories[column] = frozenset(train[column].dropna().astype(str).unique())
    except Exception:  # noqa: BLE001 - a model registered from elsewhere: score without these extras
        pass
    return meta, categories


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _same_kind(values: np.ndarray, classes: tuple[Any, ...]) -> np.ndarray:
    """Labels in the type of the model's classes (a CSV may hold 1 where training had 1.0)."""
    if not classes:
        return values
    sample = classes[0]
    if all(isinstance(c, (bool, np.bool_)) for c in classes):  # a True/False target: labels stay True and False
        return np.asarray([_as_bool(v) for v in values], dtype=object)
    try:
        if isinstance(sample, (int, float, np.number)) and not isinstance(sample, bool):
            return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        pass
    return np.asarray([_label(v) if not isinstance(v, str) else v for v in values], dtype=object)


_BOOL_TEXT = {"true": True, "false": False}


def _as_bool(value: Any) -> Any:
    """True or False for a class of a True/False model (a file may write them as text, or 1 / 0); any
    other value as text, which then counts as a label the model never learned."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
        return _BOOL_TEXT[value.strip().lower()]
    if isinstance(value, (int, float, np.number)) and value in (0, 1):
        return bool(value)
    return _label(value)
