"""The studio's pyfunc loader, shipped inside every classification model it logs (``code/`` of the
model folder), so that MLflow's scoring server, ``mlflow.pyfunc.load_model`` and a container built
with ``mlflow models generate-dockerfile`` answer with the label **and** one ``proba_<class>``
column per class.

This file is copied as it is into the model folder and imported there by MLflow under the name
``studio_pyfunc_model``: it must stay self-contained. It imports only MLflow, pandas and numpy
(a container has no studio code), never ``core``.

What it answers, one row per input row, a DataFrame that MLflow's server writes as
``{"predictions": [{"prediction": ..., "proba_<c1>": ..., ...}, ...]}``:

- ``prediction``: the class with the highest probability (the same rule as the studio's scoring; a
  tie goes to the first class), or, given a cut-off (below), the positive class when its probability
  is at or above the cut-off and the other class otherwise; written as the studio's scored files
  write it;
- ``proba_<class>``: the pipeline's ``predict_proba`` columns, in their order (a cut-off never
  changes them).

The cut-off: the environment variable ``STUDIO_CUTOFF`` of the process that loads the model (the
REST server, a container), read once when the model is loaded. Either a JSON object
``{"value": 0.35, "positive": "1"}`` (``value`` a number from 0 to 1; ``positive`` the positive
class as the probability columns name it, ``proba_<positive>``) or a bare number ``0.35`` (the
positive class is then the last class, the studio's default). Unset or empty: no cut-off. It applies
only to a model with exactly two classes; anything else is refused at load time with a ValueError
saying what is wrong. ``python -m core serve`` and ``python -m core image`` set it from the cut-off
stored on the registered version; ``podman run -e STUDIO_CUTOFF=...`` overrides an image's.

The classes, their order and the column names come from the model's MLmodel file (the
``python_function`` flavor's ``studio_output`` entry), written when the model was logged. Its
``format`` 2 marks a model whose loader applies ``STUDIO_CUTOFF``; a model of format 1 (logged
before cut-offs, carrying the loader of then) ignores it, and this loader reads it the same way.
"""

from __future__ import annotations

import json
import math
import os

FORMAT = 2  # the version of the ``studio_output`` entry this loader writes
READS = (1, 2)  # the versions it reads (1: logged before cut-offs, which it ignores for them)
CUTOFF_FORMAT = 2  # the first version whose models apply STUDIO_CUTOFF
CONF_KEY = "studio_output"
PREDICTION = "prediction"
CUTOFF_ENV = "STUDIO_CUTOFF"


class StudioClassifier:
    """A fitted pipeline that answers with its label and class probabilities (at ``cutoff``:
    ``(value, index of the positive class)``, or by the likelier class when None)."""

    def __init__(self, pipeline, labels, columns, cutoff=None) -> None:
        if len(labels) != len(columns):
            raise ValueError(f"The model folder lists {len(labels)} classes but {len(columns)} probability columns.")
        self.pipeline = pipeline
        self.labels = list(labels)
        self.columns = list(columns)
        self.cutoff = cutoff

    def predict(self, data, params=None):
        return answer(self.pipeline, self.labels, self.columns, data, self.cutoff)


def parse_cutoff(text, labels, columns):
    """``STUDIO_CUTOFF``'s text read against the model's classes: ``(value, index of the positive
    class)``, or None when it is unset or empty. A ValueError says what is wrong and what to do."""
    given = (text or "").strip()
    if not given:
        return None
    shown = given if len(given) <= 80 else given[:77] + "..."
    form = (f'{CUTOFF_ENV} must be a cut-off from 0 to 1, as JSON: {{"value": 0.35, "positive": "CLASS"}} (CLASS as '
            f"the probability columns name it: {', '.join(c[len('proba_'):] for c in columns)}) or a bare number such as "
            f"0.35 (for the last class); got '{shown}'. Correct it, or unset {CUTOFF_ENV} to predict the likelier class.")
    try:
        read = json.loads(given)
    except ValueError:
        raise ValueError(form) from None
    if isinstance(read, dict):
        unknown = sorted(set(read) - {"value", "positive", "by", "at"})
        if unknown or "value" not in read:
            raise ValueError(form)
        value, positive = read["value"], read.get("positive")
    else:
        value, positive = read, None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(form)
    if len(columns) != 2:
        raise ValueError(f"{CUTOFF_ENV} is set ('{shown}'), but a cut-off applies only to a model with two classes, and "
                         f"this one has {len(columns)} ({', '.join(c[len('proba_'):] for c in columns)}). Unset {CUTOFF_ENV}.")
    names = [c[len("proba_"):] for c in columns]
    if positive is None:
        index = len(columns) - 1
    else:
        if isinstance(positive, float) and positive.is_integer():
            positive = int(positive)
        if isinstance(positive, bool) or str(positive) not in names:
            raise ValueError(f"{CUTOFF_ENV} names the positive class '{positive}', which this model does not have: its "
                             f"classes are {' and '.join(names)}. Give one of them as \"positive\", or unset {CUTOFF_ENV}.")
        index = names.index(str(positive))
    return float(value), index


def answer(pipeline, labels, columns, data, cutoff=None):
    """The DataFrame the model answers ``data`` with: ``prediction`` then one probability column per class.
    ``cutoff`` (from :func:`parse_cutoff`): the positive class when its probability is at or above it."""
    import numpy as np
    import pandas as pd

    if len(data) == 0:  # no rows asked about, none answered (scikit-learn would refuse an empty table)
        return pd.DataFrame({PREDICTION: pd.Series([], dtype=object), **{c: pd.Series([], dtype=float) for c in columns}})
    proba = np.asarray(pipeline.predict_proba(data), dtype=float)
    if proba.ndim != 2 or proba.shape[1] != len(columns):
        raise ValueError(
            f"The model gave {proba.shape[-1] if proba.ndim else 0} probabilities per row, but it was logged with "
            f"{len(columns)} classes ({', '.join(columns)}); its files do not belong together."
        )
    if cutoff is None:
        chosen = proba.argmax(axis=1)
    else:
        value, positive = cutoff
        chosen = np.where(proba[:, positive] >= value, positive, 1 - positive)
    frame = pd.DataFrame(proba, columns=columns)
    frame.insert(0, PREDICTION, pd.Series(labels).to_numpy()[chosen])
    return frame


def _load_pyfunc(path):
    """Called by ``mlflow.pyfunc.load_model`` with the model folder."""
    import mlflow.sklearn
    from mlflow.models import Model

    folder = path if os.path.isdir(path) else os.path.dirname(path)
    conf = Model.load(os.path.join(folder, "MLmodel")).flavors["python_function"].get(CONF_KEY) or {}
    if conf.get("format") not in READS:
        raise ValueError(
            f"This model was written for version {conf.get('format')} of the studio's pyfunc loader, and this "
            f"loader reads versions {', '.join(map(str, READS))}. Load it in a process that has not loaded another "
            "studio model first."
        )
    # a model of format 1 carries a loader that ignores STUDIO_CUTOFF: read here, it answers the same
    cutoff = parse_cutoff(os.environ.get(CUTOFF_ENV), conf["labels"], conf["columns"]) \
        if conf["format"] >= CUTOFF_FORMAT else None
    return StudioClassifier(mlflow.sklearn.load_model(folder), conf["labels"], conf["columns"], cutoff)
