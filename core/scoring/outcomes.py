"""The metrics of a labelled file (one that holds the outcome), counted batch by batch while it is
scored, exactly as on the whole file, and their charts. The classes they count are the ones scoring
predicted (:func:`core.scoring.model.decide`): at the version's stored cut-off when it has one, so
accuracy, F1, precision and recall are measured at that cut-off (:func:`core.metrics.depends_on_cutoff`),
and :func:`holdout_at_cutoff` gives the training holdout's figures at the same cut-off to compare with.
AUC and log loss read the probabilities alone."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import evaluation
from core.catalog import CLASSIFICATION
from core.scoring.model import _label, _same_kind


class _Outcomes:
    """The metrics of a labelled file, accumulated batch by batch, as
    :func:`core.evaluation.classification_metrics` / ``regression_metrics`` give them on the whole
    file, without holding its rows:

    - classification: the rows per (actual, predicted) pair give accuracy, F1, precision, recall
      (sklearn on those pairs, weighted by their counts: the same figures) and the confusion matrix;
      log loss is the sum of sklearn's per-row losses (clipped and renormalised as sklearn does),
      and the log loss of guessing the class shares follows from the counts per class. AUC is
      exact (the Mann-Whitney count of (positive, negative) pairs in order, ties counted half, which
      is the ROC area without the rounding of the curve): it needs every score, so each batch's
      scores go to a private temporary folder, sorted, and are counted back one score range at a
      time (see :class:`_RankedScores`); one-vs-rest, class by class, for more than two classes.
    - regression: sums of absolute and squared errors and of relative errors, the mean and sum of
      squared deviations of the outcome (merged per batch), and for the charts a uniform sample of
      at most 5,000 rows (every row when the file has no more, as the charts already sample).

    Sums are added per batch and then exactly (``math.fsum``), so a metric differs from the
    whole-file computation only by the rounding of numpy's own summation (well under 1e-12)."""

    SAMPLE = 5_000

    def __init__(self, task: str, classes: tuple[Any, ...], folder: Path) -> None:
        self.task, self.classes = task, tuple(classes)
        self.rows = 0
        self._chart = None  # the confusion chart's frame, once made (see prepare)
        if task == CLASSIFICATION:
            self.pairs: dict[tuple[Any, Any], int] = {}
            self.truth_kind: Any = None
            self.log_loss_parts: list[float] = []
            self.with_proba: bool | None = None
            self.finite = True
            self.binary = len(self.classes) == 2
            try:
                self.sorted_classes = sorted(self.classes)  # the column order sklearn's log_loss assumes
            except TypeError:
                self.sorted_classes = list(self.classes)
            # the scores AUC ranks: the last class's column for two classes; else each class's column
            # against the other classes (one-vs-rest, columns in sorted class order, as sklearn)
            self.ranked = [_RankedScores(folder, f"class{k}") for k in range(1 if self.binary else len(self.classes))]
            self.ranks_defined = True  # sklearn's one-vs-rest AUC is undefined for labels outside the classes
        else:
            self.errors = {"abs": [], "sq": [], "rel": []}
            self.relative_rows = 0
            self.mean = 0.0
            self.m2 = 0.0
            self.rng = np.random.default_rng(0)
            self.sample = (np.empty(0), np.empty(0, dtype="int64"), np.empty(0), np.empty(0))  # key, row, actual, predicted

    def prepare(self) -> None:
        """Make early what finishing needs and the rows do not decide: the confusion-matrix chart's
        frame (plotly builds it slowly, about 0.1 s; :meth:`finish` only puts the counts in) and the
        modules counting imports. Scoring calls it while its first batch is scored; optional."""
        if self.task == CLASSIFICATION and self._chart is None:
            import scipy.special  # noqa: F401 - the log loss
            from sklearn import metrics  # noqa: F401

            self._chart = _confusion_frame(list(self.classes))

    def add(self, truth: np.ndarray, predicted: np.ndarray, proba: np.ndarray | None) -> None:
        """The labelled rows of one batch (missing outcomes already left out)."""
        if not len(truth):
            return
        if self.task == CLASSIFICATION:
            self._add_classification(_same_kind(truth, self.classes), predicted, proba)
        else:
            self._add_regression(np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float))
        self.rows += len(truth)

    def _add_classification(self, truth: np.ndarray, predicted: np.ndarray, proba: np.ndarray | None) -> None:
        if self.truth_kind is None:
            self.truth_kind = truth.dtype
        column = _codes(truth, self.sorted_classes)  # position in the sorted classes, -1 for another label
        self._count_pairs(truth, column, predicted)
        self.with_proba = proba is not None
        if proba is None:
            return
        from scipy.special import xlogy

        if not np.isfinite(proba).all():
            self.finite = False
        # sklearn's log_loss: clip to [eps, 1 - eps], divide each row by its sum, the -log of the
        # actual class's column (columns in sorted class order; for two classes, another label
        # counts as the first class, for more it adds nothing): the same divisions, on the
        # actual class's column only
        eps = np.finfo(np.float64).eps
        clipped = np.clip(proba, eps, 1 - eps)
        sums = clipped.sum(axis=1)
        if self.binary:
            actual = np.where(column == 1, clipped[:, 1], clipped[:, 0]) / sums
        else:
            rows = np.flatnonzero(column >= 0)
            actual = clipped[rows, column[rows]] / sums[rows]
        self.log_loss_parts.append(float(np.sum(-xlogy(1, actual))))
        if self.binary:
            self.ranked[0].add(proba[:, 1], truth == self.classes[-1])
            return
        if (column < 0).any() or not np.allclose(1, proba.sum(axis=1)):  # what sklearn refuses
            self.ranks_defined = False
        if self.ranks_defined:
            for k, ranked in enumerate(self.ranked):
                ranked.add(proba[:, k], column == k)

    def _count_pairs(self, truth: np.ndarray, truth_codes: np.ndarray, predicted: np.ndarray) -> None:
        """Rows per (actual, predicted) pair: by class positions, labels outside the classes apart."""
        k = len(self.sorted_classes)
        predicted_codes = _codes(predicted, self.sorted_classes)
        counts = np.bincount((truth_codes + 1) * (k + 1) + predicted_codes + 1, minlength=(k + 1) ** 2)
        labels = [None, *self.sorted_classes]
        for cell in np.flatnonzero(counts[k + 2:]) + k + 2:  # both labels among the classes
            a, b = divmod(int(cell), k + 1)
            if a and b:
                key = (labels[a], labels[b])
                self.pairs[key] = self.pairs.get(key, 0) + int(counts[cell])
        other = (truth_codes < 0) | (predicted_codes < 0)
        if other.any():  # rare: the other labels as they are
            t_codes, t_values = pd.factorize(truth[other])
            p_codes, p_values = pd.factorize(predicted[other])
            width = len(p_values)
            cells = np.bincount(t_codes * width + p_codes, minlength=len(t_values) * width)
            t_list, p_list = t_values.tolist(), p_values.tolist()
            for cell in np.flatnonzero(cells):
                key = (t_list[cell // width], p_list[cell % width])
                self.pairs[key] = self.pairs.get(key, 0) + int(cells[cell])

    def _add_regression(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        error = truth - predicted
        self.errors["abs"].append(float(np.sum(np.abs(error))))
        self.errors["sq"].append(float(np.sum(error ** 2)))
        nonzero = truth != 0
        self.errors["rel"].append(float(np.sum(np.abs(error[nonzero] / truth[nonzero]))))
        self.relative_rows += int(nonzero.sum())
        n, m = self.rows, len(truth)
        mean = float(np.mean(truth))
        m2 = float(np.sum((truth - mean) ** 2))
        if n == 0:
            self.mean, self.m2 = mean, m2
        else:  # Chan et al.'s merge of two groups' means and squared deviations
            delta = mean - self.mean
            self.mean += delta * m / (n + m)
            self.m2 += m2 + delta * delta * n * m / (n + m)
        key, row, actual, guess = self.sample
        key = np.concatenate([key, self.rng.random(m)])
        row = np.concatenate([row, np.arange(n, n + m)])
        actual, guess = np.concatenate([actual, truth]), np.concatenate([guess, predicted])
        if len(key) > self.SAMPLE:  # the rows with the smallest random keys: a uniform sample
            keep = np.argpartition(key, self.SAMPLE)[: self.SAMPLE]
            key, row, actual, guess = key[keep], row[keep], actual[keep], guess[keep]
        self.sample = (key, row, actual, guess)

    def finish(self) -> tuple[dict[str, float], dict[str, Any]]:
        """(metrics, charts by name) of every row added."""
        if self.task == CLASSIFICATION:
            return self._classification()
        n = self.rows
        _, row, actual, guess = self.sample
        order = np.argsort(row)
        figures = evaluation.batch_figures(self.task, actual[order], guess[order], self.classes)
        numerator = math.fsum(self.errors["sq"])
        if n < 2:
            r2 = math.nan  # sklearn: not well-defined with less than two samples
        elif numerator == 0:
            r2 = 1.0
        elif self.m2 == 0:
            r2 = 0.0
        else:
            r2 = 1 - numerator / self.m2
        metrics = {
            "mae": math.fsum(self.errors["abs"]) / n,
            "rmse": math.sqrt(numerator / n),
            "r2": float(r2),
            "mape": math.fsum(self.errors["rel"]) / self.relative_rows if self.relative_rows else math.nan,
        }
        return metrics, figures

    def unknown_labels(self) -> list[Any]:
        """Outcomes in the file that are none of the model's classes (a classifier only)."""
        if self.task != CLASSIFICATION:
            return []
        known = set(self.classes)
        return sorted({actual for actual, _ in self.pairs if actual not in known}, key=str)

    def _classification(self) -> tuple[dict[str, float], dict[str, Any]]:
        from sklearn import metrics as skm

        classes = list(self.classes)
        keys = list(self.pairs)
        kind = self.truth_kind if self.truth_kind is not None and self.truth_kind.kind in "biuf" else object
        if classes and all(isinstance(c, (bool, np.bool_)) for c in classes) and not self.unknown_labels():
            kind = bool  # a True/False model: sklearn reads an object array of booleans as no known kind of target
        truth = np.asarray([k[0] for k in keys], dtype=kind)
        predicted = np.asarray([k[1] for k in keys], dtype=kind)
        weight = np.asarray([self.pairs[k] for k in keys], dtype="int64")
        binary = len(classes) == 2
        average = "binary" if binary else "macro"
        kwargs = {"pos_label": classes[-1]} if binary else {}
        result = {
            "accuracy": skm.accuracy_score(truth, predicted, sample_weight=weight),
            "f1": skm.f1_score(truth, predicted, average=average, zero_division=0, sample_weight=weight, **kwargs),
            "precision": skm.precision_score(truth, predicted, average=average, zero_division=0, sample_weight=weight, **kwargs),
            "recall": skm.recall_score(truth, predicted, average=average, zero_division=0, sample_weight=weight, **kwargs),
            "log_loss": math.nan,
            "auc": math.nan,
        }
        result["log_loss_ratio"] = math.nan
        n = self.rows
        if self.with_proba and self.finite:
            result["log_loss"] = math.fsum(self.log_loss_parts) / n
            per_class: dict[Any, int] = {}
            for (actual, _), count in self.pairs.items():
                per_class[actual] = per_class.get(actual, 0) + count
            # guessing every row's class shares: sklearn's log_loss of that constant guess
            eps = np.finfo(np.float64).eps
            guess = np.clip(np.clip([per_class.get(c, 0) / n for c in classes], 1e-15, 1), eps, 1 - eps)
            guess = guess / guess.sum()
            losses = []
            for actual, count in per_class.items():
                j = self.sorted_classes.index(actual) if actual in self.sorted_classes else (0 if binary else -1)
                if j >= 0:
                    losses.append(count * -math.log(guess[j]))
            guess_loss = math.fsum(losses) / n
            if guess_loss > 1e-6:  # one class only: guessing its share is perfect, a ratio to it means nothing
                result["log_loss_ratio"] = result["log_loss"] / guess_loss
            if binary or self.ranks_defined:
                # macro average of the one-vs-rest AUCs; undefined (NaN) when a class has no row,
                # or every row, in the file (sklearn raises, the metric is left out)
                result["auc"] = float(np.mean([ranked.auc() for ranked in self.ranked]))
        matrix = np.zeros((len(classes), len(classes)), dtype="int64")
        position = {c: i for i, c in enumerate(classes)}
        for (actual, guessed), count in self.pairs.items():
            if actual in position and guessed in position:
                matrix[position[actual], position[guessed]] += count
        figure, self._chart = (self._chart if self._chart is not None else _confusion_frame(classes)), None
        figure.data[0].update(z=matrix, text=matrix)  # the counts replace the frame's ones
        return {k: float(v) for k, v in result.items()}, {"confusion_matrix": figure}


def _confusion_frame(classes: list[Any]):
    """evaluation's confusion-matrix chart for these classes with a count of one in every cell: the
    chart takes rows, one row per cell draws it, and the file's counts then replace the ones."""
    pairs = [(a, b) for a in classes for b in classes]
    return evaluation.confusion_figure([a for a, _ in pairs], [b for _, b in pairs], classes, evaluation.BATCH_ROWS_LABEL)


class _RankedScores:
    """Exact AUC of one score against a yes/no outcome, in memory that does not grow with the rows.

    Each batch's scores of the yes rows and of the no rows are sorted and written, as distinct
    values with their counts, to the scoring's private temporary folder (``.npy`` files: 16 bytes
    per distinct score at most). At the end the values are read back one score range at a time
    (ranges cut at quantiles of a sample of the values, about ``RANGE`` values each; equal scores
    always fall in one range, so a score shared by millions of rows is one entry per batch), and
    the pairs are counted range by range: within a range from the merged counts, and every yes row
    of a range above every no row of the ranges below."""

    RANGE = 1 << 20

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self.runs: list[tuple[Path, Path]] = []
        self.positives = self.negatives = 0
        self.finite = True
        self.entries = 0

    def add(self, scores: np.ndarray, positive: np.ndarray) -> None:
        scores = np.asarray(scores, dtype="float64")
        if not np.isfinite(scores).all():  # sklearn refuses NaN and infinity: AUC undefined
            self.finite = False
            return
        paths = []
        for label, part in (("yes", scores[positive]), ("no", scores[~positive])):
            part.sort()
            values, counts = _distinct(part)
            path = self.folder / f"{self.name}-{len(self.runs)}-{label}.npy"
            np.save(path, np.vstack([values, counts.astype("float64")]))  # counts exact in float64 (< 2**53)
            paths.append(path)
            self.entries += len(values)
        self.runs.append((paths[0], paths[1]))
        self.positives += int(positive.sum())
        self.negatives += len(scores) - int(positive.sum())

    def auc(self) -> float:
        if not self.finite or not self.positives or not self.negatives:
            return math.nan
        edges = self._edges()
        below = ties = 0  # pairs with the no row's score below the yes row's, and equal
        negatives_under = 0  # no rows in the ranges done
        for low, high in zip([-math.inf, *edges], [*edges, math.inf], strict=True):
            yes_values, yes_counts = self._range(0, low, high)
            no_values, no_counts = self._range(1, low, high)
            # each batch's values are sorted already: a stable sort (timsort, for floats) merges those runs
            order = np.argsort(no_values, kind="stable")
            no_values = no_values[order]
            no_under = np.concatenate([[0], np.cumsum(no_counts[order].astype("int64"))])  # no rows under each position
            order = np.argsort(yes_values, kind="stable")  # sorted needles: numpy's fast path
            yes_values, yes_counts = yes_values[order], yes_counts[order].astype("int64")
            left = no_under[np.searchsorted(no_values, yes_values, side="left")]
            right = no_under[np.searchsorted(no_values, yes_values, side="right")]
            below += int(np.dot(yes_counts, left)) + int(yes_counts.sum()) * negatives_under
            ties += int(np.dot(yes_counts, right - left))
            negatives_under += int(no_under[-1])
        return (2 * below + ties) / (2 * self.positives * self.negatives)

    def _edges(self) -> list[float]:
        """Inner range bounds: none when everything fits in one range."""
        ranges = -(-self.entries // self.RANGE)
        if ranges <= 1:
            return []
        sample = []
        step = max(1, self.entries // (ranges * 64))
        for pair in self.runs:
            for path in pair:
                values = np.load(path, mmap_mode="r")[0]
                sample.append(np.array(values[::step]))
                del values
        pooled = np.sort(np.concatenate(sample))
        return list(np.unique(np.quantile(pooled, np.arange(1, ranges) / ranges)))

    def _range(self, side: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
        """The values in [low, high) and their counts, from every batch (side 0: yes, 1: no)."""
        values, counts = [], []
        for pair in self.runs:
            run = np.load(pair[side], mmap_mode="r")
            start, stop = np.searchsorted(run[0], [low, high], side="left") if high < math.inf else (
                int(np.searchsorted(run[0], low, side="left")), run.shape[1])
            part = np.array(run[:, start:stop])
            del run
            values.append(part[0])
            counts.append(part[1])
        return np.concatenate(values), np.concatenate(counts)


def _codes(values: np.ndarray, sorted_classes: list[Any]) -> np.ndarray:
    """Each value's position among the (sorted) classes, -1 when it is none of them."""
    if len(sorted_classes) <= 8 and values.dtype.kind in "biufUO":  # a few classes: one comparison each
        codes = np.full(len(values), -1, dtype=np.intp)
        for position, label in enumerate(sorted_classes):
            hit = np.asarray(values == label)
            if hit.shape == codes.shape:  # (text compared with a number is no match at all)
                codes[hit] = position
        return codes
    if values.dtype.kind in "biuf" and all(isinstance(c, (int, float, np.number)) and not isinstance(c, bool) for c in sorted_classes):
        grid = np.asarray(sorted_classes, dtype="float64")
        found = np.minimum(np.searchsorted(grid, values), len(grid) - 1)
        return np.where(grid[found] == values, found, -1)
    return pd.Index(sorted_classes).get_indexer(values)


def _distinct(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a sorted array and how often each occurs."""
    if not len(sorted_values):
        return sorted_values, np.zeros(0, dtype="int64")
    first = np.empty(len(sorted_values), dtype=bool)
    first[0] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return sorted_values[starts], np.diff(np.append(starts, len(sorted_values)))


def holdout_at_cutoff(settings, model) -> dict[str, float]:
    """The training holdout's metrics to compare a labelled file scored by ``model`` with:
    :func:`holdout_at` at the model's cut-off (a regression's as training measured them)."""
    if model.task != CLASSIFICATION:
        return dict(model.holdout_metrics)
    return holdout_at(settings, model.run_id, model.holdout_metrics, model.classes, model.cutoff)


def holdout_at(settings, run_id: str, holdout_metrics: dict[str, float], classes, cutoff) -> dict[str, float]:
    """A classifier's training holdout metrics (``holdout_metrics``, as training measured them: the
    likelier class) at ``cutoff`` (a :class:`core.registry.Cutoff`; None: those metrics as they are).
    With one, the metrics that depend on it (:func:`core.metrics.depends_on_cutoff`) are measured
    again at it on the holdout rows training run ``run_id`` kept, by :func:`core.decisions.at_cutoff`
    (precision, recall and F1 for the last of ``classes``, as training's), so that a file and the
    holdout are judged by the same rule. When those rows cannot be read, or the cut-off does not fit
    ``classes``, the metrics that depend on the cut-off are left out (not compared) rather than
    compared with figures of another rule."""
    from core import metrics

    holdout = dict(holdout_metrics)
    if cutoff is None:
        return holdout
    kept = {k: v for k, v in holdout.items() if not metrics.depends_on_cutoff(k)}
    names = [_label(c.item() if isinstance(c, np.generic) else c) for c in classes or ()]
    if len(names) != 2 or cutoff.positive not in names or not run_id:
        return kept
    try:
        from core import datasets, decisions, tracking

        scores = datasets.read_parquet(tracking.run_artifact(settings, run_id, "reference") / "holdout_scores.parquet")
        if any(f"proba_{c}" not in scores for c in names):
            return kept
        truth, score, _ = decisions.truth_and_score(scores, cutoff.positive)
        again = decisions.at_cutoff(truth, score, cutoff.value, positive=cutoff.positive, classes=names).as_metrics()
    except Exception:  # noqa: BLE001 - a model without its holdout rows: those metrics are not compared
        return kept
    return {**kept, **{k: v for k, v in again.items() if k in holdout}}
