"""The decisions people make with a classifier's scores: where to put the cut-off (precision, recall,
F1 and the share of rows flagged at each cut-off; the expected cost of mistakes and the cut-off that
makes it lowest), how much better than picking at random it ranks the rows (cumulative gain and lift
per decile), and how the models of one training job compare on cross-validation.

Everything works on (truth, score): ``truth`` says whether a row was positive, ``score`` is the
model's probability of the positive class. The rule everywhere: a row is predicted positive when its
score is at or above the cut-off. The holdout rows of a training run (``reference/holdout_scores.parquet``)
and a labelled scored batch both give (truth, score). Charts of these tables: core.evaluation.

A cut-off chosen here can be stored on a registered version (core.registry.set_cutoff); scoring,
Predict and REST then use it. Without one, they predict the likelier class (for two classes: positive
only above 0.5, a tie going to the first class). The metrics of those yes/no decisions at a cut-off
(:func:`at_cutoff`) are kept apart from those that do not depend on any cut-off (:func:`threshold_free`:
AUC and log loss), and labelled so.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from core import datasets, metrics
from core.errors import BadInputError

# The cut-offs the threshold and cost charts are drawn at (0, 0.01, ..., 1).
GRID = np.round(np.linspace(0.0, 1.0, 101), 2)
DECILES = 10

THRESHOLD_HELP = ("A row is predicted positive when the model's probability is at or above the cut-off. A lower "
                  "cut-off finds more of the positive rows (recall rises) but raises more false alarms (precision falls).")
GAIN_HELP = ("Cumulative gain: the share of all positive rows found when you act on the rows the model scores highest "
             "first; the dashed diagonal is picking rows at random.")
LIFT_HELP = ("Lift per decile: the rows split into ten equal groups from the highest score down; a lift of 2 means "
             "that group holds twice as many positives as a random group of the same size.")


def _truth_score(truth: Sequence, score: Sequence) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth, dtype=bool)
    score = np.asarray(score, dtype="float64")
    if truth.shape != score.shape or truth.ndim != 1:
        raise BadInputError("The outcomes and the scores must be two columns of the same length.")
    if len(score) == 0:
        raise BadInputError("There are no rows with both an outcome and a score.")
    if not np.isfinite(score).all():
        raise BadInputError("Some scores are missing or not numbers; the rows need a probability each.")
    return truth, score


def _counts(truth: np.ndarray, score: np.ndarray, cutoffs: np.ndarray) -> tuple[np.ndarray, ...]:
    """(true positives, false positives, false negatives, true negatives) at each cut-off (score >= cut-off)."""
    order = np.sort(score)
    pos_scores = np.sort(score[truth])
    # rows at or above each cut-off: all rows minus those strictly below it
    flagged = len(score) - np.searchsorted(order, cutoffs, side="left")
    tp = len(pos_scores) - np.searchsorted(pos_scores, cutoffs, side="left")
    fp = flagged - tp
    fn = len(pos_scores) - tp
    tn = len(score) - tp - fp - fn
    return tp, fp, fn, tn


def threshold_table(truth: Sequence, score: Sequence, cutoffs: Sequence | None = None) -> pd.DataFrame:
    """Precision, recall, F1 and the share of rows predicted positive at each cut-off (``GRID`` unless
    given), with the counts behind them. Precision is NaN where no row is flagged (nothing to measure)."""
    truth, score = _truth_score(truth, score)
    cutoffs = GRID if cutoffs is None else np.asarray(cutoffs, dtype="float64")
    tp, fp, fn, tn = _counts(truth, score, cutoffs)
    flagged = tp + fp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(flagged > 0, tp / np.maximum(flagged, 1), np.nan)
        positives = tp + fn
        recall = np.where(positives > 0, tp / np.maximum(positives, 1), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
    return pd.DataFrame({"cutoff": cutoffs, "precision": precision, "recall": recall, "f1": f1,
                         "share_positive": flagged / len(score), "tp": tp, "fp": fp, "fn": fn, "tn": tn})


def expected_costs(truth: Sequence, score: Sequence, cost_fp: float, cost_fn: float,
                   cutoffs: Sequence | None = None) -> pd.DataFrame:
    """The expected cost per row at each cut-off: (false positives × their cost + false negatives × theirs) / rows."""
    truth, score = _truth_score(truth, score)
    cost_fp, cost_fn = _costs(cost_fp, cost_fn)
    cutoffs = GRID if cutoffs is None else np.asarray(cutoffs, dtype="float64")
    _, fp, fn, _ = _counts(truth, score, cutoffs)
    return pd.DataFrame({"cutoff": cutoffs, "cost_per_row": (fp * cost_fp + fn * cost_fn) / len(score), "fp": fp, "fn": fn})


def _costs(cost_fp: Any, cost_fn: Any) -> tuple[float, float]:
    values = []
    for name, value in (("false alarm", cost_fp), ("missed positive", cost_fn)):
        number = metrics.finite(value)
        if number is None or number < 0:
            raise BadInputError(f"The cost of a {name} must be a number of 0 or more; got {value!r}.")
        values.append(number)
    return values[0], values[1]


@dataclass(frozen=True)
class CostChoice:
    """The cut-off whose expected cost per row is lowest on the rows given."""

    cutoff: float  # the lowest score that is still flagged; above every score when flagging nobody is cheapest
    cost_per_row: float
    fp: int
    fn: int
    flagged: int
    rows: int
    flags_nobody: bool
    # the same decisions on these rows, written short: the shortest decimal above the next lower score
    # and at most ``cutoff`` (0.3555 rather than 0.35555555555555557), the value people read and store
    readable: float | None = None
    # False when no cut-off a version can store (0 to 1) makes these decisions: flagging nobody is
    # cheapest while some rows score 1.0, which every cut-off up to 1 flags (``note`` says so)
    storable: bool = True
    note: str | None = None

    @property
    def shown(self) -> float:
        """The value people read and store: never above 1 (when not :attr:`storable`, 1, the highest
        cut-off a version stores, which flags the rows scored 1.0: :attr:`note`)."""
        if not self.storable:
            return 1.0
        return self.cutoff if self.readable is None else self.readable

    @property
    def shown_text(self) -> str:
        """:attr:`shown` as printed (:func:`cutoff_text`): never rounded to another value."""
        return cutoff_text(self.shown)

    @property
    def flags_everyone(self) -> bool:
        return self.flagged == self.rows

    @property
    def positives(self) -> int:
        """The positive rows among them: those flagged that are not false alarms, and those missed."""
        return self.flagged - self.fp + self.fn


def best_cutoff(truth: Sequence, score: Sequence, cost_fp: float, cost_fn: float) -> CostChoice:
    """The exact cut-off that minimises the expected cost. The cost only changes where the cut-off
    passes a score, so the candidates are every distinct score (flag the rows at or above it) and one
    above them all (flag nobody); among equal costs the highest cut-off wins (fewer rows flagged).
    When flagging nobody is cheapest and some rows score 1.0, that cut-off is above 1, which no
    version stores: the choice says so (``storable`` False, ``note``)."""
    truth, score = _truth_score(truth, score)
    cost_fp, cost_fn = _costs(cost_fp, cost_fn)
    top = float(score.max())
    above = 1.0 if top < 1.0 else float(np.nextafter(top, math.inf))
    candidates = np.concatenate([[above], np.unique(score)[::-1]])  # from flagging nobody to flagging everyone
    _, fp, fn, _ = _counts(truth, score, candidates)
    cost = fp * cost_fp + fn * cost_fn
    k = int(np.argmin(cost))  # the first of equals: the highest cut-off
    flagged = int(len(score) - np.searchsorted(np.sort(score), candidates[k], side="left"))
    lower = float(candidates[k + 1]) if k + 1 < len(candidates) else -math.inf
    storable, note, readable = bool(candidates[k] <= 1.0), None, None
    if storable:
        readable = short_cutoff(float(candidates[k]), lower)
    else:
        at_one = int((score >= 1.0).sum())
        note = (f"No cut-off from 0 to 1 flags nobody, because some rows score 1.0: the highest, 1, flags "
                f"{at_one:,} row{'' if at_one == 1 else 's'}.")
    return CostChoice(cutoff=float(candidates[k]), cost_per_row=float(cost[k] / len(score)), fp=int(fp[k]), fn=int(fn[k]),
                      flagged=flagged, rows=len(score), flags_nobody=k == 0, readable=readable, storable=storable, note=note)


def short_cutoff(cutoff: float, lower: float) -> float:
    """The shortest decimal (up to 6 places) in (``lower``, ``cutoff``]: a cut-off that flags the same
    rows as ``cutoff`` when no score lies between ``lower`` and it. ``cutoff`` itself when none is
    shorter (print it with :func:`cutoff_text`, which never rounds it)."""
    for places in range(0, 7):
        value = round(math.floor(cutoff * 10**places) / 10**places, places)
        if lower < value <= cutoff:
            return value
    return cutoff


def cutoff_text(value: float) -> str:
    """A cut-off as printed: up to 6 significant digits when they are the value itself, else its
    exact shortest form (repr): never a rounded value that would flag other rows (0.355556 for
    0.35555555555555557 flags fewer)."""
    value = float(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def cost_sentence(choice: CostChoice, cost_fp: float, cost_fn: float, positive: str, at_half: float | None = None,
                  now: str = "the usual 0.5") -> str:
    """One sentence for people: where the cost is lowest and why (``positive``: how the positive
    rows are called, "shot_made_flag = 1"), with the cost of what scoring does now (``at_half``, at
    ``now``: the usual 0.5, or the cut-off stored on the version). When there is nothing to judge (no
    positive row, or no other row) or a cost is 0, it says that fact rather than judging the model.
    A choice no version can store (:attr:`CostChoice.storable`) ends with its note."""
    sentence = _cost_sentence(choice, cost_fp, cost_fn, positive, at_half, now)
    return sentence if choice.note is None else f"{sentence} {choice.note}"


def _cost_sentence(choice: CostChoice, cost_fp: float, cost_fn: float, positive: str, at_half: float | None,
                   now: str) -> str:
    costs = f"missing a positive row ({positive}) costs {cost_fn:,.4g} and a false alarm costs {cost_fp:,.4g}"
    half = f" ({at_half:,.3f} at {now})" if at_half is not None else ""
    these = "this row" if choice.rows == 1 else f"these {choice.rows:,} rows"
    if choice.positives == 0:
        return (f"{these[0].upper()}{these[1:]} hold{'s' if choice.rows == 1 else ''} no row with {positive}, so the cost of a "
                "cut-off cannot be judged: there is nothing to find, and any row flagged would be a false alarm. "
                "Judge it on rows that hold both kinds of outcome.")
    if choice.positives == choice.rows:
        which = f"this row has {positive}" if choice.rows == 1 else f"every one of these {choice.rows:,} rows has {positive}"
        return (f"{which[0].upper()}{which[1:]}, so the cost of a cut-off cannot be judged: there is no false alarm to "
                "avoid, and flagging every row misses none. Judge it on rows that hold both kinds of outcome.")
    if cost_fn == 0 and cost_fp == 0:
        return "Both costs are 0, so every cut-off costs nothing: give a cost to a false alarm or a missed positive."
    if cost_fn == 0:
        return (f"Missing a positive row ({positive}) costs nothing here, so flagging no row is free, while each "
                f"false alarm costs {cost_fp:,.4g}: at these costs no cut-off is cheaper than flagging nobody{half}.")
    if cost_fp == 0:
        flagged = ("every row" if choice.flags_everyone else
                   f"every row scored {choice.shown_text} or more ({choice.flagged / choice.rows:.0%} of the rows)")
        return (f"A false alarm costs nothing here, so flagging rows is free, while each missed positive row ({positive}) "
                f"costs {cost_fn:,.4g}: flagging {flagged} misses none and costs nothing{half}.")
    if choice.flags_nobody:
        return (f"As {costs}, the cheapest is to flag no row at all ({choice.cost_per_row:,.3f} per row{half}): "
                "acting on this model's scores costs more than it saves.")
    if choice.flags_everyone:
        thousandths = math.floor(choice.cutoff * 1000)  # rounded down: every cut-off up to it flags every row
        thousandths += (thousandths + 1) / 1000 <= choice.cutoff  # (0.29 * 1000 is 289.99999999999997)
        upto = "a cut-off of 0" if thousandths <= 0 else f"any cut-off up to {thousandths / 1000:.3f}"
        return (f"As {costs}, the cheapest is to flag every row ({upto}): "
                f"{choice.cost_per_row:,.3f} per row{half}, so at these costs the model's scores do no better than "
                "treating every row as positive.")
    return (f"At a cut-off of {choice.shown_text} the expected cost is lowest, {choice.cost_per_row:,.3f} per row{half}, "
            f"as {costs}: it flags {choice.flagged / choice.rows:.0%} of the rows, with {choice.fp:,} false alarms and "
            f"{choice.fn:,} positives missed out of {choice.rows:,}.")


def gain_lift(truth: Sequence, score: Sequence, groups: int = DECILES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cumulative gain, lift per decile) of rows ranked by score, highest first (equal scores keep
    the rows' order). Gain: after each row, the share of rows taken and the share of all positives
    found. Deciles: ``groups`` groups as equal as possible (sizes differ by one at most), each with its
    rows, positives, positive rate, lift (its rate against the rate of all rows), cumulative gain
    and cumulative lift."""
    truth, score = _truth_score(truth, score)
    if len(score) < groups:
        raise BadInputError(f"Gain and lift need at least {groups} rows with an outcome; there are {len(score)}.")
    total = int(truth.sum())
    if total == 0:
        raise BadInputError("None of these rows is positive, so there is nothing for gain and lift to find.")
    ranked = truth[np.argsort(-score, kind="stable")]
    found = np.cumsum(ranked)
    n = len(ranked)
    gain = pd.DataFrame({"share_of_rows": np.concatenate([[0.0], np.arange(1, n + 1) / n]),
                         "share_of_positives": np.concatenate([[0.0], found / total])})
    rate = total / n
    rows, positives = [], []
    for part in np.array_split(ranked, groups):
        rows.append(len(part))
        positives.append(int(part.sum()))
    rows_a, pos_a = np.array(rows), np.array(positives)
    lift = pd.DataFrame({"decile": np.arange(1, groups + 1), "rows": rows_a, "positives": pos_a,
                         "positive_rate": pos_a / rows_a, "lift": pos_a / rows_a / rate,
                         "cumulative_gain": np.cumsum(pos_a) / total,
                         "cumulative_lift": (np.cumsum(pos_a) / np.cumsum(rows_a)) / rate})
    return gain, lift


# --- the decisions at one cut-off, and what no cut-off changes -----------------------------------

# What scoring does without a stored cut-off, as a cut-off: the likelier class, so a yes/no row is
# positive only when its probability is above 0.5 (a tie goes to the first class). For the first
# class of two, that tie is its own: :func:`likelier`.
LIKELIER = float(np.nextafter(0.5, 1.0))


def likelier(positive: str | None, classes: Sequence | None) -> float:
    """The likelier class as a cut-off on the probability of ``positive``: above 0.5 for the last of
    two ``classes`` (a tie goes to the first class), 0.5 itself for the first."""
    names = [str(c) for c in classes or ()]
    return 0.5 if len(names) == 2 and positive is not None and str(positive) == names[0] else LIKELIER


@dataclass(frozen=True)
class AtCutoff:
    """The yes/no decisions made at one cut-off (a row is predicted the cut-off's class ``positive``
    when its score is at or above it), measured against the outcomes. ``tp``, ``fp``, ``fn``, ``tn``
    and ``share_positive`` count the rows of the cut-off's class (flagged: ``tp + fp``). Precision,
    recall and F1 are for ``metric_class``: the last of the two classes, the class training's metrics,
    scoring and the Monitor page measure, even when the cut-off is for the first (then they count the
    rows not flagged). Precision is NaN when no row is predicted that class, recall when no row is of it."""

    cutoff: float
    rows: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    share_positive: float
    tp: int
    fp: int
    fn: int
    tn: int
    positive: str | None = None  # the class the cut-off flags (None: not named)
    metric_class: str | None = None  # the class precision, recall and F1 are for (None: ``positive``'s)

    @property
    def metric_note(self) -> str | None:
        """Words to print beside precision, recall and F1 when they are not for the cut-off's class
        (None when they are)."""
        if self.metric_class is None or self.positive is None or self.metric_class == self.positive:
            return None
        return (f"Precision, recall and F1 are for class {self.metric_class}, as in training, scoring and monitoring "
                f"(a row is predicted {self.metric_class} when its probability of {self.positive} is below the cut-off).")

    def as_metrics(self) -> dict[str, float]:
        """Under the training metric keys (:mod:`core.metrics`): accuracy, precision, recall, F1."""
        return {"accuracy": self.accuracy, "precision": self.precision, "recall": self.recall, "f1": self.f1}


def at_cutoff(truth: Sequence, score: Sequence, cutoff: float, *, positive: str | None = None,
              classes: Sequence | None = None) -> AtCutoff:
    """Accuracy, precision, recall, F1 and the share of rows predicted positive at ``cutoff``:
    ``truth`` says whether each row is of the cut-off's class ``positive``, ``score`` is its probability.
    With the two ``classes`` (as the model orders them), precision, recall and F1 are for the last
    one, as :func:`core.evaluation.classification_metrics` measures them (``pos_label`` the last
    class), whichever class the cut-off is for; without them, for ``positive``. The one measure of
    decisions at a cut-off: the Models page, the Monitor page and the holdout a scored file is compared
    with (:func:`core.scoring.outcomes.holdout_at_cutoff`) all use it."""
    truth, score = _truth_score(truth, score)
    value = metrics.finite(cutoff)
    if value is None or not 0 <= value <= 1:
        raise BadInputError(f"A cut-off must be a number from 0 to 1; got {cutoff!r}.")
    names = [_label(c) for c in classes or ()]
    positive = None if positive is None else _label(positive)
    if names and (len(names) != 2 or positive not in names):
        raise BadInputError(f"A cut-off for class '{positive}' does not fit the classes {', '.join(names)}: a cut-off is "
                            "for one of two classes.")
    metric_class = names[-1] if names else positive
    row = threshold_table(truth, score, [value]).iloc[0]
    tp, fp, fn, tn = (int(row[k]) for k in ("tp", "fp", "fn", "tn"))
    precision, recall, f1 = float(row["precision"]), float(row["recall"]), float(row["f1"])
    if names and positive != metric_class:  # the last class is the one not flagged: its rows are tn + fp
        precision = tn / (tn + fn) if tn + fn else math.nan
        recall = tn / (tn + fp) if tn + fp else math.nan
        f1 = 2 * tn / (2 * tn + fn + fp) if 2 * tn + fn + fp else math.nan
    return AtCutoff(cutoff=value, rows=len(score), accuracy=(tp + tn) / len(score), precision=precision, recall=recall,
                    f1=f1, share_positive=float(row["share_positive"]), tp=tp, fp=fp, fn=fn, tn=tn, positive=positive,
                    metric_class=metric_class)


@dataclass(frozen=True)
class ThresholdFree:
    """What the scores are worth whatever the cut-off: how well they rank the rows (AUC; None when the
    rows hold one kind of outcome only) and how close the probabilities are to the outcomes (log loss)."""

    auc: float | None
    log_loss: float
    rows: int


def threshold_free(truth: Sequence, score: Sequence) -> ThresholdFree:
    """AUC and log loss of the probabilities of the positive class (for two classes, the model's log loss)."""
    truth, score = _truth_score(truth, score)
    p = np.clip(score, 1e-15, 1 - 1e-15)
    loss = float(-np.mean(np.where(truth, np.log(p), np.log1p(-p))))
    auc = None
    if truth.any() and not truth.all():
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(truth, score))
    return ThresholdFree(auc=auc, log_loss=loss, rows=len(score))


def _share(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def at_cutoff_rows(at: AtCutoff) -> list[dict[str, str]]:
    """The metrics at a cut-off for a table people read: measure, value, what it says (precision and
    recall said for their class when it is not the one the cut-off flags: :attr:`AtCutoff.metric_note`)."""
    if at.metric_note is None:
        precision = ("of the rows flagged, the share truly positive" if not math.isnan(at.precision)
                     else "no row is predicted positive at this cut-off")
        recall = "of the positive rows, the share found"
        f1 = "precision and recall together"
    else:
        c = at.metric_class
        precision = (f"of the rows predicted {c} (not flagged), the share truly {c}" if not math.isnan(at.precision)
                     else f"no row is predicted {c} at this cut-off")
        recall = f"of the rows of class {c}, the share predicted {c}"
        f1 = f"precision and recall of class {c} together"
    return [
        {"measure": "accuracy", "value": _share(at.accuracy), "what it says": "share of rows predicted right"},
        {"measure": "precision", "value": _share(at.precision), "what it says": precision},
        {"measure": "recall", "value": _share(at.recall), "what it says": recall},
        {"measure": "F1", "value": _share(at.f1), "what it says": f1},
        {"measure": "share predicted positive", "value": f"{at.share_positive:.1%}",
         "what it says": f"{at.tp + at.fp:,} of {at.rows:,} rows"},
    ]


def threshold_free_rows(free: ThresholdFree) -> list[dict[str, str]]:
    """AUC and log loss for a table people read, apart from the metrics at a cut-off."""
    return [
        {"measure": "AUC", "value": "n/a" if free.auc is None else f"{free.auc:.3f}",
         "what it says": "how well positive rows are ranked first (0.5 random, 1 perfect)"
         if free.auc is not None else "the rows hold one kind of outcome only: nothing to rank"},
        {"measure": "log loss", "value": f"{free.log_loss:.3f}",
         "what it says": "how close the probabilities are to the outcomes (lower is better)"},
    ]


# --- the holdout rows of a training run -------------------------------------------------------


def _label(value: Any) -> str:
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def score_classes(scores: pd.DataFrame) -> list[str]:
    """The classes a holdout (or scored) table has probabilities for, in the model's order."""
    return [str(c).removeprefix("proba_") for c in scores.columns if str(c).startswith("proba_")]


NO_PROBABILITIES = ("This model gives no probabilities (a linear SVM only says the class), so there is no cut-off to move "
                    "and no ranking for gain and lift: train a model that gives probabilities to see them.")


def truth_and_score(scores: pd.DataFrame, positive: str | None = None, actual: str = "actual") -> tuple[np.ndarray, np.ndarray, str]:
    """(is the row positive, the probability of the positive class, that class) of a table with the
    actual outcome and ``proba_<class>`` columns; the positive class is the last one unless named
    (one class against all the others when there are more than two). Rows without an outcome are left out."""
    classes = score_classes(scores)
    if not classes:
        raise BadInputError(NO_PROBABILITIES)
    positive = classes[-1] if positive is None else str(positive)
    if positive not in classes:
        raise BadInputError(f"'{positive}' is not one of the model's classes ({', '.join(classes)}).")
    known = scores[actual].notna()
    truth = scores.loc[known, actual].map(_label).to_numpy() == positive
    score = pd.to_numeric(scores.loc[known, f"proba_{positive}"], errors="coerce").to_numpy(dtype="float64")
    return truth, score, positive


@dataclass
class Decisions:
    """What the cut-off and gain sections of a page draw, for one model's rows."""

    positive: str
    classes: list[str]
    rows: int
    positives: int
    note: str  # which class is positive, on which rows
    figures: dict[str, Any] = field(default_factory=dict)  # threshold, cost (with costs), gain, lift
    lift: pd.DataFrame | None = None  # for people: decile, rows, positives, rate, lift, cumulative
    cost: str | None = None  # the sentence on the cheapest cut-off (with costs)
    choice: CostChoice | None = None
    gain_error: str | None = None  # why gain and lift are not drawn (too few rows, no positive)
    unavailable: str | None = None  # why nothing is drawn (a model without probabilities)
    stored: float | None = None  # the cut-off stored on the version, if any (two classes only)
    at_cutoff: AtCutoff | None = None  # the decisions scoring makes: at the stored cut-off, else the likelier class
    threshold_free: ThresholdFree | None = None  # AUC and log loss (two classes)
    truth: np.ndarray | None = field(default=None, repr=False)  # the rows behind the charts, for :meth:`at`
    score: np.ndarray | None = field(default=None, repr=False)

    def at(self, cutoff: float) -> AtCutoff:
        """The decisions at another cut-off on the same rows (a cut-off the user considers storing),
        precision, recall and F1 for the same class as :attr:`at_cutoff`'s."""
        two = len(self.classes) == 2
        return at_cutoff(self.truth, self.score, cutoff, positive=self.positive if two else None,
                         classes=self.classes if two else None)

    @property
    def metric_class(self) -> str | None:
        """The class precision, recall and F1 are for (the last class; None with more than two)."""
        return None if self.at_cutoff is None else self.at_cutoff.metric_class


LIFT_COLUMNS = {"decile": "decile (1 = highest scores)", "rows": "rows", "positives": "positives",
                "positive_rate": "share positive", "lift": "lift", "cumulative_gain": "positives found so far",
                "cumulative_lift": "cumulative lift"}


def decisions(scores: pd.DataFrame, positive: str | None = None, cost_fp: float = 0.0, cost_fn: float = 0.0,
              rows_label: str = "holdout rows", target: str | None = None, actual: str = "actual",
              stored: float | None = None) -> Decisions:
    """Everything the pages draw for one classifier's scored rows with their outcomes (column
    ``actual`` and ``proba_<class>`` columns: a run's holdout rows, or a labelled scored batch): the
    threshold chart, with costs (either above 0) the cost chart and its sentence, gain and lift. With
    two classes, the metrics of the decisions scoring makes (at the ``stored`` cut-off of the version,
    else the likelier class) and the threshold-free ones."""
    from core import evaluation

    truth, score, positive = truth_and_score(scores, positive, actual)
    classes = score_classes(scores)
    two = len(classes) == 2
    stored = stored if two else None
    what = f"'{target}' = {positive}" if target else f"class {positive}"
    name = html.escape(f"{target} = {positive}" if target else f"class {positive}")
    note = f"The positive class is {what}: the charts are about finding those rows, on {len(score):,} {rows_label}."
    if len(classes) > 2:
        note += f" With {len(classes)} classes, it is that class against all the others together."
    result = Decisions(positive=positive, classes=classes, rows=len(score), positives=int(truth.sum()), note=note,
                       truth=truth, score=score)
    result.figures["threshold"] = figure = evaluation.threshold_figure(threshold_table(truth, score), name, rows_label)
    if stored is not None:
        figure.add_vline(x=stored, line_color="#2E7D32", line_width=2, annotation_text=f"stored {stored:g}",
                         annotation_position="bottom right")
    # what scoring does now: at the stored cut-off, else the likelier class (the last class positive only above 0.5)
    now = likelier(positive, classes) if stored is None else stored
    if two:
        result.stored = stored
        result.at_cutoff = at_cutoff(truth, score, now, positive=positive, classes=classes)
        result.threshold_free = threshold_free(truth, score)
    cost_fp, cost_fn = _costs(cost_fp, cost_fn)
    if cost_fp > 0 or cost_fn > 0:
        choice = best_cutoff(truth, score, cost_fp, cost_fn)
        at_now = float(expected_costs(truth, score, cost_fp, cost_fn, [now])["cost_per_row"].iloc[0])
        result.choice = choice
        result.cost = cost_sentence(choice, cost_fp, cost_fn, f"{target} = {positive}" if target else f"class {positive}", at_now,
                                    "the usual 0.5" if stored is None else f"the stored cut-off {stored:g}")
        # marked where people read it (the same rows flagged): the value the sentence says and a version stores
        shown = replace(choice, cutoff=choice.shown) if choice.storable else choice
        result.figures["cost"] = evaluation.cost_figure(expected_costs(truth, score, cost_fp, cost_fn), shown, rows_label)
    try:
        gain, lift = gain_lift(truth, score)
    except BadInputError as exc:
        result.gain_error = str(exc)
    else:
        result.figures["gain"] = evaluation.gain_figure(gain, rows_label)
        result.figures["lift"] = evaluation.lift_figure(lift, rows_label)
        result.lift = lift.rename(columns=LIFT_COLUMNS)
    return result


# --- the models of one training job -----------------------------------------------------------


def comparison_metrics(summary) -> list[str]:
    """The metrics the comparison chart can show for a training summary: those with a CV mean on
    some model, the ranking (or default tuning) metric first."""
    task = summary.task
    first = (summary.compare or {}).get("metric") or metrics.default_tune(task)
    names = [first, *(k for k in metrics.tunable(task) if k != first)]
    return [k for k in names if any(metrics.finite(m.cv_metrics.get(f"cv_{k}_mean")) is not None for m in summary.finished)]


def comparison_table(summary, metric: str) -> pd.DataFrame:
    """Every trained model of a job with the metric's CV mean and standard deviation over the folds
    and its holdout value, best CV mean first (``metrics`` says which way is better); ``best`` marks it."""
    rows = []
    for m in summary.finished:
        mean = metrics.finite(m.cv_metrics.get(f"cv_{metric}_mean"))
        if mean is None:
            continue
        std = metrics.finite(m.cv_metrics.get(f"cv_{metric}_std"))
        rows.append({"model": m.name, "cv_mean": mean, "cv_std": 0.0 if std is None else std,
                     "holdout": metrics.finite(m.metrics.get(metric)), "best": False})
    table = pd.DataFrame(rows, columns=["model", "cv_mean", "cv_std", "holdout", "best"])
    if table.empty:
        return table
    table = table.sort_values("cv_mean", ascending=not metrics.higher_is_better(metric), kind="stable").reset_index(drop=True)
    table.loc[0, "best"] = True
    return table


def comparison_figure(summary, metric: str):
    """The chart of :func:`comparison_table`: each model's CV mean with ± one standard deviation, and its holdout value."""
    from core import evaluation

    folds = (summary.compare or {}).get("folds")
    return evaluation.comparison_figure(comparison_table(summary, metric), metric, folds)


def for_run(settings, run_id: str, positive: str | None = None, cost_fp: float = 0.0, cost_fn: float = 0.0,
            stored: float | None = None) -> Decisions:
    """:func:`decisions` on the holdout rows a training run kept (``reference/holdout_scores.parquet``),
    its target named from ``model_info.json`` (``stored``: the cut-off stored on the version, with
    ``positive`` its class). Raises NotFoundError when the run kept none."""
    import json

    from core import tracking
    from core.errors import NotFoundError

    try:
        # the whole folder, as drift monitoring reads it: the cache holds a run's folder whole or not at all
        scores = datasets.read_parquet(tracking.run_artifact(settings, run_id, "reference") / "holdout_scores.parquet")
        info = json.loads(tracking.run_artifact(settings, run_id, "model_info.json").read_text())
    except Exception as exc:  # noqa: BLE001 - said for what it is: missing, unreachable, or a bug
        tracking.raise_unreachable(settings, exc)
        if not tracking.missing_artifact(exc):
            raise
        raise NotFoundError(f"The training run {run_id} kept no holdout scores, so its cut-off cannot be charted.") from exc
    if info.get("task") != metrics.CLASSIFICATION:
        raise BadInputError("A cut-off, gain and lift are for classification models; this one predicts a number.")
    if not score_classes(scores):
        return Decisions(positive="", classes=[], rows=len(scores), positives=0, note="", unavailable=NO_PROBABILITIES)
    return decisions(scores, positive, cost_fp, cost_fn, target=info.get("target"), stored=stored)
