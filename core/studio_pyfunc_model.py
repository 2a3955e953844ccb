"""The studio's pyfunc loader, shipped inside every classification model it logs (``code/`` of the
model folder), so that MLflow's scoring server, ``mlflow.pyfunc.load_model`` and a container built
with ``mlflow models generate-dockerfile`` answer with the label **and** one ``proba_<class>``
column per class.

This file is copied as it is into the model folder and imported there by MLflow under the name
``studio_pyfunc_model``: it must stay self-contained. It imports only MLflow, pandas and numpy
(a container has no studio code), never ``core``.

What it answers, one row per input row, a DataFrame that MLflow's server writes as
``{"predictions": [{"prediction": ..., "proba_<c1>": ..., ...}, ...]}``:

- ``prediction``: the class with the highest probability (the same rule as the studio's scoring),
  written as the studio's scored files write it;
- ``proba_<class>``: the pipeline's ``predict_proba`` columns, in their order.

The classes, their order and the column names come from the model's MLmodel file (the
``python_function`` flavor's ``studio_output`` entry), written when the model was logged.
"""

from __future__ import annotations

import os

FORMAT = 1  # the version of the ``studio_output`` entry this loader understands
CONF_KEY = "studio_output"
PREDICTION = "prediction"


class StudioClassifier:
    """A fitted pipeline that answers with its label and class probabilities."""

    def __init__(self, pipeline, labels, columns) -> None:
        if len(labels) != len(columns):
            raise ValueError(f"The model folder lists {len(labels)} classes but {len(columns)} probability columns.")
        self.pipeline = pipeline
        self.labels = list(labels)
        self.columns = list(columns)

    def predict(self, data, params=None):
        return answer(self.pipeline, self.labels, self.columns, data)


def answer(pipeline, labels, columns, data):
    """The DataFrame the model answers ``data`` with: ``prediction`` then one probability column per class."""
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
    frame = pd.DataFrame(proba, columns=columns)
    frame.insert(0, PREDICTION, pd.Series(labels).to_numpy()[proba.argmax(axis=1)])
    return frame


def _load_pyfunc(path):
    """Called by ``mlflow.pyfunc.load_model`` with the model folder."""
    import mlflow.sklearn
    from mlflow.models import Model

    folder = path if os.path.isdir(path) else os.path.dirname(path)
    conf = Model.load(os.path.join(folder, "MLmodel")).flavors["python_function"].get(CONF_KEY) or {}
    if conf.get("format") != FORMAT:
        raise ValueError(
            f"This model was written for version {conf.get('format')} of the studio's pyfunc loader, and this "
            f"loader reads version {FORMAT}. Load it in a process that has not loaded another studio model first."
        )
    return StudioClassifier(mlflow.sklearn.load_model(folder), conf["labels"], conf["columns"])
