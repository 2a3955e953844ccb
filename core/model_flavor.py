"""How a model the studio logs answers outside the studio: over REST (MLflow's scoring server, what
``python -m core serve`` runs, or a container built with ``mlflow models generate-dockerfile``) and
through ``mlflow.pyfunc.load_model``.

A classification model whose algorithm gives probabilities is logged with the ``sklearn`` flavor as
before (the studio itself loads the pipeline with ``mlflow.sklearn.load_model``), and its
``python_function`` flavor points at :mod:`core.studio_pyfunc_model`, copied into the model folder's
``code/``: it answers each row with ``prediction`` and one ``proba_<class>`` column per class, in
the order of ``predict_proba`` and named as in the studio's scored files. Regression models, and
algorithms without probabilities, keep MLflow's plain scikit-learn pyfunc (the prediction alone).

Every file of the folder, ``code/`` included, is hashed by :func:`core.integrity.record` like the
pickle: a changed loader is refused as a changed model is.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import studio_pyfunc_model as loader
from core.catalog import CLASSIFICATION
from core.settings import Settings

LOADER_MODULE = "studio_pyfunc_model"
LOADER_FILE = Path(loader.__file__)
CODE_DIR = "code"


def output_spec(classes: list[Any] | tuple[Any, ...]) -> dict[str, Any]:
    """The ``studio_output`` entry of the pyfunc flavor for a classifier of ``classes`` (as the
    training run's ``model_info.json`` lists them, in ``predict_proba`` order): the label written
    for each class (as the studio's scoring writes it) and its probability column's name."""
    import numpy as np

    from core.scoring.model import _label, _same_kind

    plain = [c.item() if isinstance(c, np.generic) else c for c in classes]
    classes = tuple(json.loads(json.dumps(plain, default=str)))  # as scoring reads them back (model_info.json)
    labels = _same_kind(np.asarray(classes, dtype=object), classes)
    return {"format": loader.FORMAT, "labels": [v.item() if hasattr(v, "item") else v for v in labels],
            "columns": [f"proba_{_label(c)}" for c in classes]}


def save_model(sk_model, path, mlflow_model=None, studio_output: dict[str, Any] | None = None, **kwargs) -> None:
    """``mlflow.sklearn.save_model``, then (given ``studio_output``) the loader copied into ``code/``
    and the ``python_function`` flavor pointed at it. The ``sklearn`` flavor is left as it is.
    (This module is the ``flavor`` handed to ``mlflow.models.Model.log``.)"""
    import mlflow.sklearn
    from mlflow.models import Model

    mlflow_model = Model() if mlflow_model is None else mlflow_model
    mlflow.sklearn.save_model(sk_model, path, mlflow_model=mlflow_model, **kwargs)
    if studio_output is None:
        return
    folder = Path(path)
    (folder / CODE_DIR).mkdir()
    shutil.copyfile(LOADER_FILE, folder / CODE_DIR / f"{LOADER_MODULE}.py")
    pyfunc = mlflow_model.flavors["python_function"]
    pyfunc.update({"loader_module": LOADER_MODULE, "code": CODE_DIR, loader.CONF_KEY: studio_output})
    pyfunc.pop("predict_fn", None)  # the loader's object answers through predict()
    mlflow_model.model_size_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    mlflow_model.save(str(folder / "MLmodel"))


def log_model(pipeline, example, *, task: str, classes, probabilities: bool, pip_requirements: list[str]):
    """Log ``pipeline`` as the active run's ``model`` (MLflow's ``ModelInfo`` back). A classifier
    with ``probabilities`` answers with its label and class probabilities; anything else with the
    prediction alone. The signature's output describes that answer."""
    import mlflow.sklearn
    from mlflow.models import Model, infer_signature

    common = {"name": "model", "input_example": example, "pip_requirements": pip_requirements,
              "serialization_format": "cloudpickle"}
    if task != CLASSIFICATION or not probabilities or not classes:
        return mlflow.sklearn.log_model(pipeline, signature=infer_signature(example, pipeline.predict(example)), **common)
    spec = output_spec(classes)
    signature = infer_signature(example, loader.answer(pipeline, spec["labels"], spec["columns"], example))
    # MLflow checks the input example by loading the model through the loader, which imports it from the
    # folder about to be uploaded: no __pycache__ may land there (it would be uploaded and hashed too).
    # That check also puts the temporary folder's code/ first on sys.path and keeps the loader it
    # imported from there: both are undone afterwards, so no later import in this process looks in a
    # deleted /tmp folder (anyone could make it again) and a later load imports its own checked copy.
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    path = list(sys.path)
    try:
        return Model.log(artifact_path=None, flavor=sys.modules[__name__], flavor_name="mlflow.sklearn", sk_model=pipeline, signature=signature,
                         studio_output=spec, **common)
    finally:
        sys.dont_write_bytecode = writes_bytecode
        sys.path[:] = path
        sys.modules.pop(LOADER_MODULE, None)


# --- what a registered version answers over REST -------------------------------------------------


@dataclass(frozen=True)
class RestAnswer:
    """What a registered version's pyfunc (its REST answer) gives for each row."""

    probabilities: bool
    columns: tuple[str, ...]  # the keys of each answered row; () when the answer is a bare value
    sentence: str  # for the person at the screen
    labels_only: bool = False  # a classifier that answers without probabilities (the sentence says what to do)


_ANSWERS: dict[tuple[str, str, int, str | None], RestAnswer] = {}


def rest_answer(settings: Settings, model) -> RestAnswer:
    """Whether a registered version (a :class:`core.scoring.ScoringModel`: its ``name``, ``version``
    and ``task``) answers over REST with class probabilities, read from its MLmodel file alone
    (nothing is unpickled). Kept per process: a version's files never change."""
    name, version = model.name, int(model.version)
    key = (settings.tracking_uri, name, version, getattr(model, "run_id", None))  # a re-created model is another
    if key not in _ANSWERS:
        from mlflow.models import get_model_info

        from core import tracking

        tracking.use(settings)
        try:
            flavors = get_model_info(f"models:/{name}/{version}").flavors
        except Exception as exc:  # noqa: BLE001 - an unreachable store is said as such
            tracking.raise_unreachable(settings, exc)
            raise
        conf = flavors.get("python_function") or {}
        output = conf.get(loader.CONF_KEY) if conf.get("loader_module") == LOADER_MODULE else None
        task = model.task
        if output:
            columns = (loader.PREDICTION, *output["columns"])
            answer = RestAnswer(True, columns, (
                f"Version {version} answers each row with the predicted class ('prediction') and the probability of "
                f"each class ({', '.join(output['columns'])})."))
        elif task != CLASSIFICATION:
            answer = RestAnswer(False, (), f"Version {version} answers each row with the predicted value.")
        elif not _gives_probabilities(settings, name, version):
            answer = RestAnswer(False, (), (
                f"Version {version} answers with labels only (no probabilities): its algorithm gives classes, not "
                "probabilities. To get probabilities over REST, train an algorithm that gives them and register it."), True)
        else:
            answer = RestAnswer(False, (), (
                f"Version {version} answers with labels only (no probabilities): it was logged before the studio "
                "added probabilities to the REST answer. To get them, retrain the model on the Train page and register "
                "the new version (then make it the champion, the version the REST server serves)."), True)
        if len(_ANSWERS) > 256:
            _ANSWERS.clear()
        _ANSWERS[key] = answer
    return _ANSWERS[key]


def _gives_probabilities(settings: Settings, name: str, version: int) -> bool:
    """False when the version's training run names an algorithm of the catalogue that gives classes only."""
    from core import catalog, registry

    try:
        named = registry.resolve(settings, f"{name}/{version}").algorithm  # its name (or key) as the run recorded it
    except Exception:  # noqa: BLE001 - a model from elsewhere: said as logged before the change
        return True
    return all(a.probabilities for a in catalog.algorithms(CLASSIFICATION) if named in (a.key, a.name))
