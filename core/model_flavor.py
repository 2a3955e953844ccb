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

The cut-off stored on a registered version (:func:`core.registry.cutoff`) reaches REST through the
loader's ``STUDIO_CUTOFF`` (:func:`cutoff_env`), which ``python -m core serve`` and ``python -m core
image`` set. Models logged before (``studio_output`` format 1) carry a loader that ignores it:
:func:`cutoff_notice` says so and what to do, and :func:`rest_answer` tells the Predict page which
cut-off REST answers at.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, replace
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
    # A STUDIO_CUTOFF meant for a served model has nothing to do with this check: it is set aside meanwhile.
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    path = list(sys.path)
    served_cutoff = os.environ.pop(loader.CUTOFF_ENV, None)
    try:
        return Model.log(artifact_path=None, flavor=sys.modules[__name__], flavor_name="mlflow.sklearn", sk_model=pipeline, signature=signature,
                         studio_output=spec, **common)
    finally:
        sys.dont_write_bytecode = writes_bytecode
        sys.path[:] = path
        sys.modules.pop(LOADER_MODULE, None)
        if served_cutoff is not None:
            os.environ[loader.CUTOFF_ENV] = served_cutoff


# --- what a registered version answers over REST -------------------------------------------------


@dataclass(frozen=True)
class RestAnswer:
    """What a registered version's pyfunc (its REST answer) gives for each row."""

    probabilities: bool
    columns: tuple[str, ...]  # the keys of each answered row; () when the answer is a bare value
    sentence: str  # for the person at the screen
    labels_only: bool = False  # a classifier that answers without probabilities (the sentence says what to do)
    cutoff: dict[str, Any] | None = None  # the cut-off REST answers at ({"value", "positive"}), None: the likelier class
    cutoff_ignored: bool = False  # a cut-off is stored but this version's REST answer cannot apply it
    server_differs: bool = False  # the running server serves this version at another cut-off than the stored one

    @property
    def attention(self) -> bool:
        """Whether the sentence asks the person to act (shown as a notice rather than a caption)."""
        return self.labels_only or self.cutoff_ignored or self.server_differs


@dataclass(frozen=True)
class _Flavor:
    """What a version's MLmodel file says about its REST answer (read once per version)."""

    columns: tuple[str, ...] | None  # the probability columns of the studio's loader; None: a plain pyfunc
    loader_format: int | None  # the studio_output format (None: no studio loader)
    gives_probabilities: bool


_FLAVORS: dict[tuple[str, str, int, str | None], _Flavor] = {}


def loader_format(settings: Settings, name: str, version: int, run_id: str | None = None) -> int | None:
    """The format of the studio loader a registered version carries (None: MLflow's plain pyfunc):
    from :data:`core.studio_pyfunc_model.CUTOFF_FORMAT` on, its REST answer applies ``STUDIO_CUTOFF``."""
    return _flavor(settings, name, int(version), run_id).loader_format


def honours_cutoff(fmt: int | None) -> bool:
    """Whether a version whose loader is of format ``fmt`` answers over REST at a given cut-off."""
    return fmt is not None and fmt >= loader.CUTOFF_FORMAT


def folder_format(folder: Path | str) -> int | None:
    """The studio loader format of a local model folder (None: MLflow's plain pyfunc)."""
    from mlflow.models import Model

    conf = Model.load(str(Path(folder) / "MLmodel")).flavors.get("python_function") or {}
    output = conf.get(loader.CONF_KEY) if conf.get("loader_module") == LOADER_MODULE else None
    return int(output.get("format") or 0) if output else None


def cutoff_env(cutoff) -> str:
    """The value of ``STUDIO_CUTOFF`` that makes a served version answer at ``cutoff`` (a
    :class:`core.registry.Cutoff`): ``{"value": 0.35, "positive": "1"}``; "" for none."""
    return "" if cutoff is None else json.dumps({"value": cutoff.value, "positive": cutoff.positive})


def cutoff_notice(cutoff, version: int, fmt: int | None, name: str = "NAME") -> str | None:
    """The sentence for a stored ``cutoff`` that the REST answer of ``version`` of ``name`` (its loader
    of format ``fmt``) cannot apply; None when it can (or nothing is stored)."""
    import shlex

    if cutoff is None or honours_cutoff(fmt):
        return None
    return (f"Version {version} has a stored cut-off ({cutoff.shown} for class {cutoff.positive}), but its REST answer "
            "cannot apply it: the model was logged before the studio's REST answer used cut-offs, so over REST it "
            "predicts the likelier class, while python -m core score and the Predict page predict at the cut-off. To "
            "answer at the cut-off over REST, retrain the model on the Train page, register the new version and store "
            "the cut-off on it; or clear this version's cut-off (python -m core models threshold "
            f"{shlex.quote(name)} {version} --clear) so every route predicts the likelier class.")


def _flavor(settings: Settings, name: str, version: int, run_id: str | None) -> _Flavor:
    key = (settings.tracking_uri, name, version, run_id)  # a re-created model is another
    if key not in _FLAVORS:
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
        found = _Flavor(tuple(output["columns"]), int(output.get("format") or 0), True) if output else \
            _Flavor(None, None, _gives_probabilities(settings, name, version))
        if len(_FLAVORS) > 256:
            _FLAVORS.clear()
        _FLAVORS[key] = found
    return _FLAVORS[key]


def rest_answer(settings: Settings, model) -> RestAnswer:
    """What a registered version (a :class:`core.scoring.ScoringModel`: its ``name``, ``version``
    and ``task``) answers over REST: class probabilities or not, read from its MLmodel file alone
    (nothing is unpickled; kept per process, a version's files never change), and for a classifier
    the cut-off its ``prediction`` follows, read fresh from the registry (it can change at any time),
    and whether the running REST server (:func:`core.serving.read_state`) serves this version at it."""
    from core import registry, serving

    name, version = model.name, int(model.version)
    flavor = _flavor(settings, name, version, getattr(model, "run_id", None))
    task = model.task
    stored = registry.cutoff(settings, name, version) if task == CLASSIFICATION else None
    target = getattr(model, "target", None)
    ignored = cutoff_notice(stored, version, flavor.loader_format, name)
    applied = stored if stored is not None and ignored is None else None
    if flavor.columns is not None:
        columns = (loader.PREDICTION, *flavor.columns)
        rule = (f" {stored.rule(target)}, the version's stored cut-off (python -m core serve and python -m core image "
                "apply it)." if applied else " 'prediction' is the likelier class" + (
                    "." if ignored else " (no cut-off is stored on this version)."))
        answer = RestAnswer(True, columns, (
            f"Version {version} answers each row with the predicted class ('prediction') and the probability of "
            f"each class ({', '.join(flavor.columns)}).{rule}"), cutoff=json.loads(cutoff_env(applied)) if applied else None)
    elif task != CLASSIFICATION:
        answer = RestAnswer(False, (), f"Version {version} answers each row with the predicted value.")
    elif not flavor.gives_probabilities:
        answer = RestAnswer(False, (), (
            f"Version {version} answers with labels only (no probabilities): its algorithm gives classes, not "
            "probabilities. To get probabilities over REST, train an algorithm that gives them and register it."), True)
    else:
        answer = RestAnswer(False, (), (
            f"Version {version} answers with labels only (no probabilities): it was logged before the studio "
            "added probabilities to the REST answer. To get them, retrain the model on the Train page and register "
            "the new version (then make it the champion, the version the REST server serves)."), True)
    if ignored:
        answer = replace(answer, sentence=f"{answer.sentence} {ignored}", cutoff=None, cutoff_ignored=True)
    found = serving.other_cutoff(settings, name, version, answer.cutoff) if task == CLASSIFICATION else None
    if found is not None:  # the server was started at another cut-off (recorded by python -m core serve)
        where, running = found
        at = f"cut-off {running['value']:.6g} for class {running['positive']}" if running else "no cut-off (the likelier class)"
        answer = replace(answer, server_differs=True, sentence=(
            f"{answer.sentence} The REST server at {where} was started with {at}: the stored "
            "cut-off changed since. Restart it (stop it, then make serve or python -m core serve) to answer at the "
            "stored cut-off."))
    return answer


def _gives_probabilities(settings: Settings, name: str, version: int) -> bool:
    """False when the version's training run names an algorithm of the catalogue that gives classes only."""
    from core import catalog, registry

    try:
        named = registry.resolve(settings, f"{name}/{version}").algorithm  # its name (or key) as the run recorded it
    except Exception:  # noqa: BLE001 - a model from elsewhere: said as logged before the change
        return True
    return all(a.probabilities for a in catalog.algorithms(CLASSIFICATION) if named in (a.key, a.name))
