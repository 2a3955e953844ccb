"""Performance estimated without labels: fitted on the holdout rows at training, kept with the
model run (artifact folder ``estimator/``), applied to every scored batch while it is scored.

- Classification, CBPE (confidence-based performance estimation): the holdout probabilities are
  calibrated (isotonic regression; two classes: the positive, last, class column; more: each class
  one-vs-rest, then each row divided by its sum). The calibration is kept as JSON (the isotonic
  thresholds, applied with ``np.interp``). For a batch, the calibrated probabilities and the
  predicted labels give the *expected* confusion matrix: among the rows predicted ``k``, the
  expected count of actual class ``j`` is the sum of their calibrated ``p_j``. Expected accuracy,
  precision, recall and F1 follow as from a confusion matrix (two classes: of the positive, last,
  class, as :mod:`core.scoring.outcomes`; more: macro averages, as sklearn's ``average="macro"``).
  Expected ROC AUC ranks the rows by the raw score and counts each row as a fractional positive
  (its calibrated probability) and a fractional negative (the rest), as NannyML does; rows are
  counted in fine bins of the raw score (:data:`BINS`), ties within a bin count half, so memory
  does not grow with the batch. More than two classes: the macro average of the one-vs-rest AUCs.
- Regression, DLE (direct loss estimation): two gradient-boosted trees (sklearn's
  ``HistGradientBoostingRegressor``) fitted on the holdout rows, one of the absolute error and one
  of the squared error, from the model's inputs and its prediction. The inputs are encoded here
  (numbers as they are, text as category codes of the holdout's values, missing left missing),
  not through the pipeline's own transformed features: the encoding does not depend on the
  algorithm or on PyCaret's steps, and the trees handle missing values and categories natively.
  Expected MAE is the mean predicted absolute error; expected RMSE the square root of the mean
  predicted squared error. The trees are pickled: their SHA-256 (like every file of the folder)
  is on the model run (tag :data:`MANIFEST_TAG`) and checked against the bytes before unpickling.

Bands (half widths, :data:`Z` standard errors as NannyML draws them). Two uncertainties add up:

1. the batch's own sampling: even a perfect estimate differs from the realized metric of ``n``
   rows by chance. Its standard error is measured on the holdout rows by bootstrap (the realized
   metric over resamples of the ``n_h`` holdout rows) and scaled to the batch by
   ``sqrt(n_h / n)``;
2. the estimator's own uncertainty, which does not shrink with the batch: the spread of the
   estimated metric (on the holdout rows) over calibrations / error models fitted on bootstrap
   resamples of the holdout, and never less than the holdout's own sampling sd (the estimator
   learned the metric's level from those rows, so it knows it no better than their chance
   variation).

``band = Z * sqrt(s_sample**2 * n_h / n + s_fit**2)``. For precision, recall, F1 and AUC the
rows that count are not all rows: ``n_h`` and ``n`` are the rows predicted positive (precision),
the (expected) actual positives (recall), both (F1), the fewer of positives and negatives (AUC),
the smallest class's for macro averages; so a batch where the model predicts almost no positive
gets the wide precision band it deserves. Bands of metrics between 0 and 1 are capped at 1. Each of
the two terms of a measure between 0 and 1 is at least the sampling error of a proportion near the
estimate on that many rows (Agresti-Coull; Hanley-McNeil for AUC, :func:`_least_sd`): a bootstrap of
a few holdout rows where the model is nearly always right measures almost no spread (a 24-row wine
holdout gave AUC 0.997 +- 0.002, and a false alarm of concept drift on the next 58 rows).

Checked on Kobe (tests/core/test_estimation.py): batches drawn from rows the model never saw,
filtered or reweighted on the shot distance (covariate shift), stay within the band (accuracy, F1
and AUC, five seeds); on the 3-point production file (the relation changed) the expected AUC
stays near the holdout's while the realized one falls to about 0.54, far outside it. What no band
covers: CBPE assumes that rows with the same score succeed as often as on the holdout rows. For a
model that is right on average but not within every group of inputs (a straight line through a
curved relation), a strong enough shift of the inputs breaks that too, and the estimate drifts.

Everything is accumulated batch by batch (sums and fixed-size histograms), so estimating a
1M-row scoring holds no more than one batch.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.catalog import CLASSIFICATION
from core.settings import Settings

FOLDER = "estimator"  # the model run's artifact folder
CONFIG = "estimator.json"
ERRORS = "errors.pkl"  # DLE's two error models (pickled; SHA-256 on the run)
MANIFEST_TAG = "studio.estimator_manifest"  # on the model run: file -> SHA-256 of the folder
TAG = "studio.estimate"  # on a scoring run: "cbpe", "dle", "unavailable" or "failed"
PREFIX, BAND_PREFIX = "est.", "est_band."
Z = 3.0
BINS = 1 << 14  # raw-score bins of the streamed expected AUC
SAMPLE_RESAMPLES = 100  # bootstrap resamples of the batch's sampling error
CALIBRATION_RESAMPLES = 30  # isotonic refits of CBPE's own uncertainty
ERROR_MODEL_RESAMPLES = 4  # error-model refits of DLE's own uncertainty
MAX_CODES = 250  # text values kept per column as category codes (the trees' limit is 255)
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "auc")
REGRESSION_METRICS = ("mae", "rmse")

ASSUMPTION = ("The estimate sees changes in the inputs, not a changed relationship between inputs and outcome: "
              "it assumes the model's probabilities (or errors) mean on new rows what they meant on the holdout rows.")
UNAVAILABLE = ("Estimated performance needs a version trained after estimates were added to the studio: "
               "retrain this model (same algorithm and data) and score with the new version to get one.")
CONCEPT_DRIFT = ("The realized performance is outside the band of the estimate: the relationship between the inputs "
                 "and the outcome has probably changed (concept drift), so retraining on recent labelled rows is advised.")


# --- the estimate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """The performance a batch is expected to have, without its labels."""

    method: str  # "cbpe" | "dle"
    rows: int
    values: dict[str, float]  # metric key (core.metrics) -> expected value
    bands: dict[str, float] = field(default_factory=dict)  # metric key -> half width

    def to_metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, value in self.values.items():
            if math.isfinite(value):
                out[PREFIX + key] = float(value)
                band = self.bands.get(key)
                if band is not None and math.isfinite(band):
                    out[BAND_PREFIX + key] = float(band)
        return out

    @classmethod
    def from_metrics(cls, run_metrics: Mapping[str, float], rows: int | None = None) -> Estimate | None:
        """The estimate logged on a scoring run (its metrics); None when there is none."""
        values = {k.removeprefix(PREFIX): float(v) for k, v in run_metrics.items() if k.startswith(PREFIX)}
        if not values:
            return None
        bands = {k.removeprefix(BAND_PREFIX): float(v) for k, v in run_metrics.items() if k.startswith(BAND_PREFIX)}
        method = "dle" if set(values) <= set(REGRESSION_METRICS) else "cbpe"
        return cls(method, int(rows if rows is not None else run_metrics.get("rows", 0)), values, bands)

    def disagreements(self, realized: Mapping[str, float]) -> list[str]:
        """The metric keys where the realized value lies outside the band of the estimate."""
        out = []
        for key, value in self.values.items():
            got, band = realized.get(key), self.bands.get(key)
            if got is None or band is None or not all(math.isfinite(x) for x in (float(got), value, band)):
                continue
            if abs(float(got) - value) > band:
                out.append(key)
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimate:
        return cls(str(data["method"]), int(data["rows"]), {k: float(v) for k, v in data["values"].items()},
                   {k: float(v) for k, v in (data.get("bands") or {}).items()})


# --- CBPE --------------------------------------------------------------------------------------


def _isotonic(raw: np.ndarray, outcome: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The isotonic map of a raw score to the share of positives, as (x, y) thresholds."""
    from sklearn.isotonic import IsotonicRegression

    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, outcome.astype(float))
    return np.asarray(fitted.X_thresholds_, dtype=float), np.asarray(fitted.y_thresholds_, dtype=float)


def _calibrated(proba: np.ndarray, maps: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Calibrated probabilities (rows x classes) of raw ones."""
    if len(maps) == 1:  # two classes: the positive (last) column
        positive = np.interp(proba[:, -1], *maps[0])
        return np.column_stack([1.0 - positive, positive])
    out = np.column_stack([np.interp(proba[:, k], *m) for k, m in enumerate(maps)])
    sums = out.sum(axis=1, keepdims=True)
    flat = sums[:, 0] <= 0
    if flat.any():  # every class calibrated to 0: the raw row as it was
        out[flat] = proba[flat]
        sums[flat] = proba[flat].sum(axis=1, keepdims=True)
    return out / np.where(sums > 0, sums, 1.0)


def _bins(scores: np.ndarray) -> np.ndarray:
    where = (scores * BINS).astype(np.intp)
    np.minimum(where, BINS - 1, out=where)  # (two passes: np.clip on integers is several times slower)
    return np.maximum(where, 0, out=where)


class _Line:
    """A binary calibration map on the score bins: on a bin that holds no threshold of the map, the
    calibrated probability is a straight line ``a + s * score`` (np.interp is piecewise linear
    between its thresholds), so a bin's rows need only their count and the sum of their scores;
    rows in the few bins where the map bends are calibrated one by one with ``np.interp``. The
    result is the sum of ``np.interp`` row by row, without ``np.interp`` on every row."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y
        edges = np.arange(BINS + 1, dtype="float64") / BINS
        at = np.interp(edges, x, y)
        self.slope = (at[1:] - at[:-1]) * BINS
        self.start = at[:-1] - self.slope * edges[:-1]
        self.bent = np.zeros(BINS, dtype=bool)
        inner = x[(x > 0) & (x < 1)] * BINS
        self.bent[np.floor(inner[inner != np.floor(inner)]).astype(np.intp)] = True  # a threshold inside the bin


class _Expected:
    """Sums of the expected confusion matrix and of the AUC histograms over the rows added.

    Two classes: everything is counted per (score bin, predicted class) cell, from which both the
    matrix (summed over the bins) and the AUC's histograms (summed over the predicted classes)
    follow. Calibrated probabilities are either given (``add``, ``add_binary``) or made from the
    raw scores with a :class:`_Line` (``add_scores``, what scoring uses: the cheapest)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.rows = 0
        if k == 2:
            self.cell_rows = np.zeros(2 * BINS)
            self.cell_positive = np.zeros(2 * BINS)  # given probabilities, and the bent bins' corrections
            self.line_rows = np.zeros(2 * BINS)  # rows calibrated by the line, and their scores' sum
            self.line_scores = np.zeros(2 * BINS)
            self.line: _Line | None = None
        else:
            self._matrix = np.zeros((k, k))  # [actual j, predicted k]
            self._counts = np.zeros((k, BINS))
            self._positives = np.zeros((k, BINS))

    def add(self, raw: np.ndarray, calibrated: np.ndarray, predicted: np.ndarray) -> None:
        if not len(raw):
            return
        if self.k == 2:
            self.add_binary(np.ascontiguousarray(raw[:, -1]), np.ascontiguousarray(calibrated[:, 1]), predicted)
            return
        self.rows += len(raw)
        for j in range(self.k):  # actual class j: its calibrated probabilities summed per predicted class
            self._matrix[j] += np.bincount(predicted, weights=calibrated[:, j], minlength=self.k)[: self.k]
        for c in range(self.k):
            where = _bins(raw[:, c])
            self._counts[c] += np.bincount(where, minlength=BINS)
            self._positives[c] += np.bincount(where, weights=calibrated[:, c], minlength=BINS)

    @staticmethod
    def _cells(score: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        cell = _bins(score)
        cell *= 2
        cell += predicted
        return cell

    def add_binary(self, score: np.ndarray, positive: np.ndarray, predicted: np.ndarray) -> None:
        """Two classes: the raw positive score, its calibrated probability, the predicted class (0 or 1)."""
        if not len(score):
            return
        self.rows += len(score)
        cell = self._cells(score, predicted)
        self.cell_rows += np.bincount(cell, minlength=2 * BINS)
        self.cell_positive += np.bincount(cell, weights=positive, minlength=2 * BINS)

    def add_scores(self, score: np.ndarray, predicted: np.ndarray, line: _Line) -> None:
        """Two classes: the raw positive scores (between 0 and 1), calibrated by ``line``."""
        if not len(score):
            return
        if self.line is not None and self.line is not line:
            raise ValueError("one calibration per estimate")
        self.line = line
        self.rows += len(score)
        cell = self._cells(score, predicted)
        rows = np.bincount(cell, minlength=2 * BINS)
        self.cell_rows += rows
        self.line_rows += rows
        self.line_scores += np.bincount(cell, weights=score, minlength=2 * BINS)
        bent = np.flatnonzero(line.bent[cell >> 1])
        if len(bent):  # exactly: np.interp's value less the line's, on the rows of the bins where the map bends
            where, some = cell[bent], score[bent]
            b = where >> 1
            exact = np.interp(some, line.x, line.y)
            self.cell_positive += np.bincount(where, weights=exact - (line.start[b] + line.slope[b] * some), minlength=2 * BINS)

    def _binary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        positive = self.cell_positive.copy()
        if self.line is not None:
            positive += np.repeat(self.line.start, 2) * self.line_rows + np.repeat(self.line.slope, 2) * self.line_scores
        rows, positive = self.cell_rows.reshape(BINS, 2), positive.reshape(BINS, 2)
        by_prediction = positive.sum(axis=0)
        matrix = np.vstack([rows.sum(axis=0) - by_prediction, by_prediction])
        return matrix, rows.sum(axis=1)[None, :], positive.sum(axis=1)[None, :]

    @property
    def matrix(self) -> np.ndarray:
        return self._binary()[0] if self.k == 2 else self._matrix

    def _all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._binary() if self.k == 2 else (self._matrix, self._counts, self._positives)

    def metrics(self) -> dict[str, float]:
        return _from_expected(*self._all())

    def support(self) -> dict[str, float]:
        matrix, _, positives = self._all()
        return _support(matrix, positives)


def _support(matrix: np.ndarray, positives: np.ndarray) -> dict[str, float]:
    """The rows each metric's sampling error rests on (its standard error shrinks as one over the
    square root of this count): every row for accuracy; the rows predicted positive for precision,
    the actual positives for recall, both for F1, and the smaller of the positives and negatives
    for AUC. More than two classes (macro averages): the smallest class's count."""
    k = len(matrix)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    total = float(matrix.sum())
    ranked_p = positives.sum(axis=1)
    if k == 2:
        pp, ap = float(predicted[-1]), float(actual[-1])
        return {"accuracy": total, "precision": pp, "recall": ap, "f1": pp + ap,
                "auc": float(min(ranked_p[0], total - ranked_p[0]))}
    return {"accuracy": total, "precision": float(predicted.min()), "recall": float(actual.min()),
            "f1": float((predicted + actual).min()), "auc": float(np.minimum(ranked_p, total - ranked_p).min())}


def _from_expected(matrix: np.ndarray, counts: np.ndarray, positives: np.ndarray) -> dict[str, float]:
    """accuracy, precision, recall, f1 and auc of an (expected) confusion matrix and AUC histograms."""
    total = matrix.sum()
    if total <= 0:
        return {m: math.nan for m in CLASSIFICATION_METRICS}
    k = len(matrix)
    tp = np.diag(matrix)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)  # zero_division=0, as the realized metrics
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(predicted + actual > 0, 2 * tp / (predicted + actual), 0.0)
    pick = (lambda a: float(a[-1])) if k == 2 else (lambda a: float(np.mean(a)))
    aucs = []
    for count, pos in zip(counts, positives, strict=True):
        neg = count - pos
        p, n = pos.sum(), neg.sum()
        if p <= 1e-12 or n <= 1e-12:
            aucs.append(math.nan)
            continue
        below = np.cumsum(neg) - neg  # negatives in lower bins
        aucs.append(float((np.dot(pos, below) + 0.5 * np.dot(pos, neg)) / (p * n)))
    return {"accuracy": float(tp.sum() / total), "precision": pick(precision), "recall": pick(recall), "f1": pick(f1),
            "auc": float(np.mean(aucs)) if not any(math.isnan(a) for a in aucs) else math.nan}


# --- DLE ---------------------------------------------------------------------------------------


def _encode(frame: pd.DataFrame, prediction: np.ndarray, encoding: dict[str, list[str] | None]) -> np.ndarray:
    """The error models' inputs: each feature as a number (text: its code among the holdout's
    values, unseen or missing: NaN), then the prediction."""
    columns = []
    for name, values in encoding.items():
        column = frame[name] if name in frame.columns else pd.Series(np.nan, index=frame.index)
        if values is None:
            columns.append(pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan))
        else:
            codes = pd.Index(values).get_indexer(column.astype("string").fillna("\0missing").astype(object))
            columns.append(np.where(codes >= 0, codes, np.nan).astype("float64"))
    columns.append(np.asarray(prediction, dtype="float64"))
    return np.column_stack(columns)


def _one_thread():
    """The trees' OpenMP threads held to one: on a busy machine (two cores shared with scoring's
    own threads) two spinning OpenMP threads made a fit of 400 rows take 20 s instead of 0.1 s."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def _error_model(X: np.ndarray, target: np.ndarray, categorical: list[bool], seed: int):
    """A tree model of one error. Errors are mostly noise, so it is held back: early stopping on a
    fifth of the rows (it stops after a few rounds when the inputs tell nothing about the error),
    a small learning rate, leaves of at least 2% of the rows."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = HistGradientBoostingRegressor(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=max(20, len(target) // 50),
        l2_regularization=1.0, categorical_features=categorical or None, early_stopping=len(target) >= 200,
        validation_fraction=0.2, n_iter_no_change=10, random_state=seed)
    with _one_thread():
        return model.fit(X, target)


def _predict(model, X: np.ndarray) -> np.ndarray:
    with _one_thread():
        return np.maximum(model.predict(X), 0.0)


# --- the estimator -----------------------------------------------------------------------------




def _least_sd(metric: str, value: float, rows: float) -> float:
    """The smallest honest standard error of a measure between 0 and 1 near ``value`` on ``rows``
    rows, pulled away from 0 and 1 by two rows' worth (Agresti-Coull: ``(v n + 2) / (n + 4)``), so
    that a measure that was perfect on a few rows is not taken as certain. Accuracy, precision,
    recall and F1: the proportion's binomial error. AUC: Hanley and McNeil's error with ``rows``
    positives and negatives."""
    n = max(float(rows), 1.0)
    v = (min(max(value, 0.0), 1.0) * n + 2) / (n + 4)
    if metric != "auc":
        return math.sqrt(v * (1 - v) / (n + 4))
    q1, q2 = v / (2 - v), 2 * v * v / (1 + v)
    return math.sqrt(max(v * (1 - v) + (n - 1) * (q1 - v * v) + (n - 1) * (q2 - v * v), 0.0) / (n * n))


_LINE_LOCK = threading.Lock()


@dataclass
class Estimator:
    """What was fitted on the holdout rows of one model (see the module's text)."""

    method: str
    task: str
    classes: tuple[Any, ...]
    features: tuple[str, ...]
    holdout_rows: int
    spread: dict[str, tuple[float, float]]  # metric -> (sampling sd on the holdout rows, estimator's own sd)
    support: dict[str, float] = field(default_factory=dict)  # metric -> the holdout's rows its sampling error rests on
    calibration: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # CBPE
    encoding: dict[str, list[str] | None] = field(default_factory=dict)  # DLE: text values per column (None: a number)
    error_models: tuple[Any, Any] | None = None  # DLE: (absolute, squared)

    def band(self, metric: str, support: float, value: float | None = None) -> float:
        """The half width of ``metric``'s estimate on a batch whose support for it (see
        :func:`_support`; rows for accuracy, MAE and RMSE) is ``support``. For a measure between 0
        and 1 each of the two terms is at least the sampling error a proportion near ``value`` has on
        that many rows (:func:`_least_sd`): a bootstrap of a few holdout rows where the model is
        nearly always right measures almost no spread, which would make a tiny band and a false
        alarm of concept drift on the next small batch."""
        sample, fit = self.spread.get(metric, (math.nan, math.nan))
        before = self.support.get(metric, self.holdout_rows)
        batch_term, fit_term = sample ** 2 * before / max(support, 1.0), fit ** 2
        if value is not None and metric in CLASSIFICATION_METRICS and math.isfinite(value):
            batch_term = max(batch_term, _least_sd(metric, value, support) ** 2)
            fit_term = max(fit_term, _least_sd(metric, value, before) ** 2)
        return Z * math.sqrt(batch_term + fit_term)

    def start(self) -> BatchEstimate:
        return BatchEstimate(self)

    def line(self) -> _Line:
        """The two-class calibration on the score bins (made once)."""
        if getattr(self, "_line", None) is None:
            with _LINE_LOCK:  # an estimator is shared by the scorings of one process: one line for all of them
                if getattr(self, "_line", None) is None:
                    self._line = _Line(*self.calibration[0])
        return self._line

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        return _calibrated(np.asarray(proba, dtype="float64"), self.calibration)

    # the folder
    def save(self, folder: Path) -> dict[str, str]:
        """Write the estimator into ``folder``; returns its manifest (file -> SHA-256)."""
        folder.mkdir(parents=True, exist_ok=True)
        config = {"format": 1, "method": self.method, "task": self.task, "classes": [_plain(c) for c in self.classes],
                  "features": list(self.features), "holdout_rows": self.holdout_rows, "z": Z, "support": self.support,
                  "spread": {k: list(v) for k, v in self.spread.items()},
                  "calibration": [{"x": x.tolist(), "y": y.tolist()} for x, y in self.calibration],
                  "encoding": self.encoding}
        (folder / CONFIG).write_text(json.dumps(config))
        if self.error_models is not None:
            (folder / ERRORS).write_bytes(pickle.dumps(self.error_models, protocol=pickle.HIGHEST_PROTOCOL))
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}

    @classmethod
    def read(cls, folder: Path, manifest: Mapping[str, str], label: str = "this model") -> Estimator:
        """The estimator in ``folder``, each file's bytes checked against ``manifest`` before use
        (the pickled error models are unpickled from the very bytes that were checked)."""
        from core.integrity import UntrustedModelError

        found = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}
        changed = sorted(n for n in set(found) | set(manifest)
                         if n not in found or hashlib.sha256(found[n]).hexdigest() != manifest.get(n))
        if changed:
            raise UntrustedModelError(
                f"The performance estimator of {label} is not the one logged at training ({', '.join(changed)} changed, "
                "appeared or went missing), so the studio will not load it: someone or something altered the artifact "
                "store. Restore the files from a backup, or retrain and register a new version.")
        config = json.loads(found[CONFIG])
        errors = pickle.loads(found[ERRORS]) if ERRORS in found else None  # noqa: S301 - its SHA-256 was checked above
        return cls(method=config["method"], task=config["task"], classes=tuple(config["classes"]),
                   features=tuple(config["features"]), holdout_rows=int(config["holdout_rows"]),
                   spread={k: (float(v[0]), float(v[1])) for k, v in config["spread"].items()},
                   support={k: float(v) for k, v in (config.get("support") or {}).items()},
                   calibration=[(np.asarray(m["x"], dtype=float), np.asarray(m["y"], dtype=float)) for m in config["calibration"]],
                   encoding=config.get("encoding") or {}, error_models=errors)


class BatchEstimate:
    """The estimate of a scoring, accumulated batch by batch (memory does not grow with the rows)."""

    def __init__(self, estimator: Estimator) -> None:
        self.estimator = estimator
        self.rows = 0
        if estimator.method == "cbpe":
            self.expected = _Expected(len(estimator.classes))
            self.position = {_plain(c): i for i, c in enumerate(estimator.classes)}
        else:
            self.sums = [0.0, 0.0]  # predicted absolute errors, predicted squared errors

    def add(self, prediction: np.ndarray, proba: np.ndarray | None, features: pd.DataFrame | None) -> None:
        """One batch: its predictions, raw class probabilities (classes in the model's order;
        None for a regression) and model inputs (used by DLE)."""
        prediction = np.asarray(prediction)
        if not len(prediction):
            return
        if self.estimator.method == "cbpe":
            if proba is None:
                raise ValueError("CBPE needs the class probabilities of each row")
            raw = np.asarray(proba, dtype="float64")
            usable = np.isfinite(raw).all(axis=1)
            if not usable.all():
                raw, prediction = raw[usable], prediction[usable]
            codes = self._codes(prediction, raw)
            score = np.ascontiguousarray(raw[:, -1])
            if len(self.estimator.calibration) == 1 and len(score) and 0 <= score.min() and score.max() <= 1:
                self.expected.add_scores(score, codes, self.estimator.line())  # two classes: the positive column alone
            else:
                self.expected.add(raw, self.estimator.calibrate(raw), codes)
            self.rows += len(raw)
            return
        guess = np.asarray(prediction, dtype="float64")
        X = _encode(features if features is not None else pd.DataFrame(index=range(len(guess))), guess, self.estimator.encoding)
        usable = np.isfinite(guess)
        absolute, squared = self.estimator.error_models
        self.sums[0] += math.fsum(_predict(absolute, X[usable]))
        self.sums[1] += math.fsum(_predict(squared, X[usable]))
        self.rows += int(usable.sum())

    def _codes(self, prediction: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """Each predicted label's class position (a label that is none of the classes: the argmax)."""
        classes = list(self.position)
        numeric = prediction.dtype.kind in "biuf" and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes)
        if numeric and len(classes) == 2:  # the usual case, in two passes
            second = prediction == classes[1]
            if np.count_nonzero(second) + np.count_nonzero(prediction == classes[0]) == len(prediction):
                return second.astype(np.intp)
        if numeric:
            codes = np.full(len(prediction), -1, dtype=np.intp)
            for label, k in self.position.items():
                codes[prediction == label] = k
        else:
            codes = pd.Index(classes).get_indexer(prediction)
        missing = codes < 0
        if missing.any():
            codes[missing] = raw[missing].argmax(axis=1)
        return codes

    def confusion(self) -> np.ndarray:
        """The expected confusion matrix so far (actual class by row, predicted by column; CBPE)."""
        return self.expected.matrix.copy()

    def finish(self) -> Estimate | None:
        if self.rows == 0:
            return None
        est = self.estimator
        if est.method == "cbpe":
            values, support = self.expected.metrics(), self.expected.support()
        else:
            values = {"mae": self.sums[0] / self.rows, "rmse": math.sqrt(self.sums[1] / self.rows)}
            support = {k: float(self.rows) for k in values}
        values = {k: v for k, v in values.items() if math.isfinite(v)}
        bands = {k: est.band(k, support[k], values[k]) for k in values}
        if est.method == "cbpe":  # a metric between 0 and 1: a band wider than that says nothing more
            bands = {k: min(b, 1.0) for k, b in bands.items()}
        return Estimate(est.method, self.rows, values, {k: b for k, b in bands.items() if math.isfinite(b)})


def _plain(value: Any) -> Any:
    """A class label as JSON keeps it (numpy scalars as Python numbers; 1.0 stays 1.0)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- fitting -----------------------------------------------------------------------------------


def fit(task: str, classes, features, holdout: pd.DataFrame, truth, prediction, proba: np.ndarray | None,
        seed: int = 0) -> Estimator | None:
    """The estimator of a model, fitted on its holdout rows (``holdout``: their features; ``truth``:
    their outcomes; ``prediction`` / ``proba``: the model's output on them). None when no estimate
    can be fitted (a classifier without probabilities, a holdout without every class)."""
    rng = np.random.default_rng(seed)
    truth = np.asarray(truth)
    n = len(truth)
    if n < 20:
        return None
    if task == CLASSIFICATION:
        if proba is None or not len(classes) >= 2:
            return None
        return _fit_cbpe(tuple(classes), tuple(features), truth, np.asarray(proba, dtype="float64"), rng)
    return _fit_dle(tuple(features), holdout, truth.astype("float64"), np.asarray(prediction, dtype="float64"), rng, seed)


def _fit_cbpe(classes, features, truth, proba, rng) -> Estimator | None:
    k = len(classes)
    position = {_plain(c): i for i, c in enumerate(classes)}
    actual = np.asarray([position.get(_plain(t), -1) for t in truth])
    keep = (actual >= 0) & np.isfinite(proba).all(axis=1)
    actual, proba = actual[keep], proba[keep]
    if len(actual) < 20 or len(np.unique(actual)) < k:
        return None
    onehot = np.eye(k)[actual]
    predicted = proba.argmax(axis=1)  # what scoring predicts

    def maps_of(rows) -> list[tuple[np.ndarray, np.ndarray]]:
        if k == 2:
            return [_isotonic(proba[rows, -1], actual[rows] == 1)]
        return [_isotonic(proba[rows, j], actual[rows] == j) for j in range(k)]

    def metrics_of(rows, probabilities) -> dict[str, float]:
        expected = _Expected(k)
        expected.add(proba[rows], probabilities, predicted[rows])
        return expected.metrics()

    everything = np.arange(len(actual))
    calibration = maps_of(everything)
    n = len(actual)
    sampled = [metrics_of(rows, onehot[rows]) for rows in (rng.integers(0, n, n) for _ in range(SAMPLE_RESAMPLES))]
    refitted = []
    for _ in range(CALIBRATION_RESAMPLES):
        rows = rng.integers(0, n, n)
        if len(np.unique(actual[rows])) < k:
            continue
        refitted.append(metrics_of(everything, _calibrated(proba, maps_of(rows))))
    spread = _spread(sampled, refitted, CLASSIFICATION_METRICS)
    realized = _Expected(k)
    realized.add(proba, onehot, predicted)
    return Estimator("cbpe", CLASSIFICATION, classes, features, n, spread, realized.support(), calibration=calibration)


def _fit_dle(features, holdout: pd.DataFrame, truth, prediction, rng, seed) -> Estimator | None:
    keep = np.isfinite(truth) & np.isfinite(prediction)
    truth, prediction, holdout = truth[keep], prediction[keep], holdout.loc[keep]
    n = len(truth)
    if n < 20:
        return None
    encoding: dict[str, list[str] | None] = {}
    for name in features:
        column = holdout[name]
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            encoding[name] = None
        else:
            counts = column.astype("string").fillna("\0missing").value_counts()
            encoding[name] = [str(v) for v in counts.index[:MAX_CODES]]
    categorical = [v is not None for v in encoding.values()] + [False]
    X = _encode(holdout, prediction, encoding)
    error = truth - prediction
    targets = (np.abs(error), error ** 2)
    models = tuple(_error_model(X, t, categorical, seed) for t in targets)

    def estimated(pair, rows=slice(None)) -> dict[str, float]:
        a, s = (_predict(m, X[rows]) for m in pair)
        return {"mae": float(a.mean()), "rmse": math.sqrt(float(s.mean()))}

    sampled = []
    for _ in range(SAMPLE_RESAMPLES):
        rows = rng.integers(0, n, n)
        sampled.append({"mae": float(targets[0][rows].mean()), "rmse": math.sqrt(float(targets[1][rows].mean()))})
    refitted = []
    for r in range(ERROR_MODEL_RESAMPLES):
        rows = rng.integers(0, n, n)
        pair = tuple(_error_model(X[rows], t[rows], categorical, seed + 1 + r) for t in targets)
        refitted.append(estimated(pair))
    spread = _spread(sampled, refitted, REGRESSION_METRICS)
    return Estimator("dle", "regression", (), features, n, spread, encoding=encoding, error_models=models)


def _spread(sampled: list[dict[str, float]], refitted: list[dict[str, float]], names) -> dict[str, tuple[float, float]]:
    """metric -> (sampling sd on the holdout rows, the estimator's own sd). The estimator's own is
    never taken below the holdout's sampling sd: whatever it learned, it learned the level of the
    metric from those rows, so it knows it no better than their own chance variation (the refits are
    judged on rows they were fitted on, which understates their spread)."""
    out = {}
    for m in names:
        sample, fit = _sd([s[m] for s in sampled]), _sd([r[m] for r in refitted])
        out[m] = (sample, max(fit, sample) if math.isfinite(fit) else sample)
    return out


def _sd(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.std(finite, ddof=1)) if len(finite) >= 2 else math.nan


# --- the model run -----------------------------------------------------------------------------


def log(mlflow, estimator: Estimator | None, folder: Path) -> None:
    """Write ``estimator`` into ``folder`` (the run's ``estimator/`` artifacts, logged by the caller)
    and tag the active run with its files' SHA-256."""
    if estimator is None:
        return
    digests = estimator.save(folder)
    mlflow.set_tag(MANIFEST_TAG, json.dumps(digests, sort_keys=True, separators=(",", ":")))


# A model run's estimator never changes: read and checked once per process, by (store, run id).
_LOADED: dict[tuple[str, str], Estimator | None] = {}


def load(settings: Settings, training_run_id: str) -> Estimator | None:
    """The estimator logged with a model run; None for a model trained before estimators existed
    (or without one: a classifier without probabilities). Refused with
    :class:`core.integrity.UntrustedModelError` when its files are not the ones logged."""
    key = (settings.tracking_uri, training_run_id)
    if key in _LOADED:
        return _LOADED[key]
    from core import tracking

    if not training_run_id:
        return None
    run = tracking.client(settings).get_run(training_run_id)
    text = run.data.tags.get(MANIFEST_TAG)
    if not text:
        found = None
    else:
        label = f"the model of run {training_run_id}"
        try:
            folder = tracking.run_artifact(settings, training_run_id, FOLDER)
        except Exception as exc:  # noqa: BLE001 - said for what it is: unreachable, gone, or a bug
            tracking.raise_unreachable(settings, exc)
            if not tracking.missing_artifact(exc):
                raise
            from core.integrity import UntrustedModelError

            raise UntrustedModelError(
                f"The performance estimator of {label} is recorded on its run but its files are gone from the artifact "
                "store. Restore them from a backup, or retrain and register a new version.") from exc
        found = Estimator.read(folder, json.loads(text), label)
    if len(_LOADED) >= 32:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[key] = found
    return found


# --- scored outputs ----------------------------------------------------------------------------


def _scored_name(columns: list[str], name: str) -> str | None:
    """The output's column for an added ``name``: a clash with an input column got '_scored'
    suffixes (core.scoring.runs._output_names), so the longest such name is the scored one."""
    found = [c for c in columns if c == name or (c.startswith(name) and set(c[len(name):].split("_scored")) == {""})]
    return max(found, key=len) if found else None


def _columns(estimator: Estimator, columns: list[str]) -> tuple[str, list[str]]:
    from core.scoring.model import _label

    prediction = _scored_name(columns, "prediction")
    if prediction is None:
        from core.errors import BadInputError

        raise BadInputError("This table is not a scored output: it has no 'prediction' column.")
    proba = []
    if estimator.method == "cbpe":
        for c in estimator.classes:
            name = _scored_name(columns, f"proba_{_label(c)}")
            if name is None:
                from core.errors import BadInputError

                raise BadInputError(f"This scored output has no probability column 'proba_{_label(c)}', so its "
                                    "performance cannot be estimated.")
            proba.append(name)
    return prediction, proba


def _add_frame(batch: BatchEstimate, frame: pd.DataFrame, prediction: str, proba: list[str]) -> None:
    features = frame[[f for f in batch.estimator.features if f in frame.columns]]
    batch.add(frame[prediction].to_numpy(), frame[proba].to_numpy(dtype="float64") if proba else None, features)


class FrameEstimate:
    """The estimate of scored-output rows given part by part (their prediction, proba_* and feature
    columns), so that memory does not grow with the rows."""

    def __init__(self, estimator: Estimator) -> None:
        self.estimator, self.batch, self.columns = estimator, estimator.start(), None

    def add(self, frame: pd.DataFrame) -> None:
        if not len(frame):
            return
        if self.columns is None:
            self.columns = _columns(self.estimator, [str(c) for c in frame.columns])
        _add_frame(self.batch, frame, *self.columns)

    def finish(self) -> Estimate | None:
        return self.batch.finish()


def start_frames(settings: Settings, training_run_id: str) -> FrameEstimate | None:
    """A :class:`FrameEstimate` with the version's estimator; None when it has none."""
    estimator = load(settings, training_run_id)
    return None if estimator is None else FrameEstimate(estimator)


def estimate_frame(settings: Settings, training_run_id: str, output_frame: pd.DataFrame) -> Estimate | None:
    """The estimate of some scored-output rows (their prediction, proba_* and feature columns), e.g.
    only the rows that received labels; None when the model has no estimator or no rows are given."""
    frames = start_frames(settings, training_run_id)
    if frames is None or not len(output_frame):
        return None
    frames.add(output_frame)
    return frames.finish()


def estimate_file(estimator: Estimator, path: Path, batch_rows: int = 250_000) -> Estimate | None:
    """The estimate of a scored output parquet, read batch by batch."""
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path)
    prediction, proba = _columns(estimator, list(handle.schema_arrow.names))
    wanted = [prediction, *proba, *[f for f in estimator.features if f in handle.schema_arrow.names]]
    batch = estimator.start()
    for part in handle.iter_batches(batch_size=batch_rows, columns=list(dict.fromkeys(wanted))):
        _add_frame(batch, part.to_pandas(), prediction, proba)
    return batch.finish()


def record(settings: Settings, scoring_run_id: str, estimate: Estimate | None, status: str | None = None) -> None:
    """Log an estimate (``est.<m>``, ``est_band.<m>``) and the tag on a scoring run."""
    import time

    from mlflow.entities import Metric

    from core import tracking

    client = tracking.client(settings)
    if estimate is not None:
        stamp = int(time.time() * 1000)
        client.log_batch(scoring_run_id, metrics=[Metric(k, v, stamp, 0) for k, v in estimate.to_metrics().items()])
    client.set_tag(scoring_run_id, TAG, status or (estimate.method if estimate is not None else "unavailable"))


def complete(settings: Settings, scoring_run_id: str) -> Estimate | None:
    """The estimate of a scored batch: the one logged on its run, else (a batch scored before
    estimates existed, or whose estimate failed) computed once from its output, streamed, and
    recorded on the run. None, with the run tagged ``unavailable``, for a version without an
    estimator (:data:`UNAVAILABLE` says what to do)."""
    from core import registry, tracking

    run = tracking.client(settings).get_run(scoring_run_id)
    tags, metrics = run.data.tags, run.data.metrics
    if "studio.model_name" not in tags or "studio.model_version" not in tags:
        from core.errors import NotFoundError

        raise NotFoundError(f"Run {scoring_run_id} is not a scoring of a registered version, so it has no estimate.")
    logged = Estimate.from_metrics(metrics)
    if logged is not None:
        return logged
    if tags.get(TAG) == "unavailable":
        return None
    view = registry.resolve(settings, f"{tags['studio.model_name']}/{tags['studio.model_version']}")
    estimator = load(settings, view.run_id or "")
    if estimator is None:
        record(settings, scoring_run_id, None)
        return None
    from core.scoring import load_report

    estimate = estimate_file(estimator, Path(load_report(settings, scoring_run_id).output))
    record(settings, scoring_run_id, estimate, None if estimate is not None else "unavailable")
    return estimate
