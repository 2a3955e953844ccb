"""Drift of a batch against a reference profile fitted once, at training time.

Fit on reference, calculate on a batch: for each numeric feature the profile keeps the sorted
distinct reference values with their cumulative counts (an exact ECDF, so the two-sample
Kolmogorov-Smirnov test is exact without re-sorting the reference) and the PSI bins (10 quantile
bins of the reference, open-ended outer bins) with the reference proportions; for each categorical
feature the category counts (categories under 1% merged into "other"); for both, the missing rate.
Bins come from the reference only, never from reference and current pooled.

:data:`STATISTICS` is the one description of the statistics: each entry a small function with one
signature, ``(profile, counts) -> (value, p_value)``, computing it from what the comparison gathered
of a feature's batch, with its name, the kinds it applies to, its threshold (a :class:`Thresholds`
field) and whether a value above or below it flags, its MLflow metric name, its place on a
:class:`DriftResult` and its help. The comparison, :meth:`DriftReport.statistic_rows` (feature, statistic,
value, p-value, threshold, flagged), the Monitor page, the CLI and the MLflow metrics iterate it:
adding a statistic is adding one entry. Degenerate input (an empty batch, an all-missing column)
gives NaN, status "no data" and a message, never an exception.

PSI = sum over bins of (cur - ref) * ln(cur / ref); proportions of empty bins are floored at
``EPSILON`` = 1e-4 so the logarithm stays finite (the floor is documented here and on the page).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

EPSILON = 1e-4
N_BINS = 10
KS_BLOCK = 64  # ks_test evaluates every 64th reference value first (measured: 32 to 128 all do)
RARE_SHARE = 0.01
OTHER = "(other)"
UNSEEN = "(new in this batch)"
# The fewest values of a feature (rows of a batch) whose drift is judged; below it the status is
# TOO_FEW. PSI compares the batch's shares in the reference's 10 deciles: a batch drawn from the very
# training distribution expects n / 10 rows per bin, and the usual rule for comparing counts (>= 5
# expected per bin) already needs 50. That is not enough here: PSI of such an unchanged batch is
# sampling noise of about chi-square(9) / n, and measured on 400 unchanged batches each
# (benchmarks-style simulation, normal reference of 20,000 rows) it is "significant" for 29% of
# 50-row batches and "moderate" for 87%; at 100 rows 0.5% and 41%; at 150, 0% and 10%; at 200, 0%
# and 2%. 200 is the smallest round size at which an unchanged batch is almost never called
# anything but stable (20 expected rows per bin).
MIN_ROWS = 200
TOO_FEW = "too few rows"


# --- thresholds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """Status rules: PSI drives the status; a p-value under ``p_value`` only flags the feature."""

    psi_moderate: float = 0.1
    psi_significant: float = 0.25
    p_value: float = 0.05
    # The performance rule (core.health): the largest allowed fall of core.health.rule_metric from its
    # holdout value, realized or estimated: absolute for AUC (0.05 = 0.60 -> 0.55), a share of the holdout
    # value for RMSE (0.05 = 5% larger), whose unit is the target's.
    performance_drop: float = 0.05

    def status(self, psi: float) -> str:
        if psi is None or not math.isfinite(psi):
            return "no data"
        if psi >= self.psi_significant:
            return "significant"
        if psi >= self.psi_moderate:
            return "moderate"
        return "stable"

    @classmethod
    def load(cls, path: Path) -> Thresholds:
        try:
            data = json.loads(Path(path).read_text())
            return cls(**{k: float(v) for k, v in data.items() if k in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        from core.errors import BadInputError

        if not 0 < self.psi_moderate < self.psi_significant:
            raise BadInputError("The moderate PSI threshold must be above 0 and below the significant one.")
        if not 0 < self.p_value < 1:
            raise BadInputError("The p-value threshold must be between 0 and 1 (0.05 is usual).")
        if not (math.isfinite(self.performance_drop) and self.performance_drop >= 0):
            raise BadInputError("The allowed performance drop must be 0 or more (0.05 is usual: AUC 0.05 lower, RMSE 5% higher).")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(asdict(self), indent=1))


# --- the reference profile ---------------------------------------------------------------------


@dataclass(frozen=True)
class NumericProfile:
    name: str
    rows: int  # including missing
    values: np.ndarray  # sorted distinct non-missing reference values (float64)
    cumcounts: np.ndarray  # rows <= each value (int64)
    edges: np.ndarray  # inner PSI bin edges (at most N_BINS - 1)
    proportions: np.ndarray  # reference share per bin (len(edges) + 1)
    kind: str = "numeric"

    @property
    def count(self) -> int:
        return int(self.cumcounts[-1]) if len(self.cumcounts) else 0

    @property
    def missing_rate(self) -> float:
        return 1 - self.count / self.rows if self.rows else math.nan


@dataclass(frozen=True)
class CategoricalProfile:
    name: str
    rows: int
    categories: tuple[str, ...]  # kept categories, then OTHER when rare ones were merged
    counts: np.ndarray  # reference rows per category (same order)
    known: tuple[str, ...] = ()  # every category seen in the reference, rare ones included
    kind: str = "categorical"

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    @property
    def missing_rate(self) -> float:
        return 1 - self.count / self.rows if self.rows else math.nan


Profile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceProfile:
    features: dict[str, Profile]
    prediction: NumericProfile | None = None

    def save(self, folder: Path) -> None:
        """``profile.json`` (names, kinds, categories) + ``profile.npz`` (arrays, no pickles)."""
        folder.mkdir(parents=True, exist_ok=True)
        meta, arrays = {"features": [], "prediction": None}, {}
        for i, p in enumerate([*self.features.values(), *( [self.prediction] if self.prediction else [])]):
            key = f"p{i}"
            entry = {"name": p.name, "kind": p.kind, "rows": p.rows, "key": key}
            if isinstance(p, NumericProfile):
                arrays.update({f"{key}_values": p.values, f"{key}_cum": p.cumcounts, f"{key}_edges": p.edges, f"{key}_props": p.proportions})
            else:
                entry["categories"] = list(p.categories)
                entry["known"] = list(p.known)
                arrays[f"{key}_counts"] = p.counts
            if self.prediction is not None and p is self.prediction:
                meta["prediction"] = entry
            else:
                meta["features"].append(entry)
        (folder / "profile.json").write_text(json.dumps(meta, indent=1))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        (folder / "profile.npz").write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, folder: Path) -> ReferenceProfile:
        meta = json.loads((folder / "profile.json").read_text())
        with np.load(folder / "profile.npz", allow_pickle=False) as arrays:
            def build(entry):
                key = entry["key"]
                if entry["kind"] == "numeric":
                    return NumericProfile(entry["name"], entry["rows"], arrays[f"{key}_values"], arrays[f"{key}_cum"],
                                          arrays[f"{key}_edges"], arrays[f"{key}_props"])
                return CategoricalProfile(entry["name"], entry["rows"], tuple(entry["categories"]), arrays[f"{key}_counts"],
                                          tuple(entry.get("known", entry["categories"])))

            features = {e["name"]: build(e) for e in meta["features"]}
            prediction = build(meta["prediction"]) if meta.get("prediction") else None
        return cls(features=features, prediction=prediction)


def is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def fit_numeric(name: str, values: np.ndarray | pd.Series, bins: int = N_BINS) -> NumericProfile:
    array = np.asarray(values, dtype="float64")
    rows = len(array)
    present = np.sort(array[~np.isnan(array)])
    distinct, counts = np.unique(present, return_counts=True)
    cumcounts = np.cumsum(counts).astype("int64")
    if len(present):
        inner = np.quantile(present, np.arange(1, bins) / bins)  # exact fractions: 3 / 10, not 0.30000000000000004
        edges = np.unique(inner)  # ties collapse bins; the outer bins stay open-ended
        idx = np.searchsorted(present, edges, side="left")
        bounds = np.concatenate([[0], idx, [len(present)]])
        proportions = np.diff(bounds) / len(present)
    else:
        edges, proportions = np.array([]), np.array([])
    return NumericProfile(name, rows, distinct, cumcounts, edges, proportions)


def fit_categorical(name: str, values: pd.Series, rare_share: float = RARE_SHARE) -> CategoricalProfile:
    series = pd.Series(values)
    rows = len(series)
    counts = series.dropna().astype(str).value_counts()
    if len(counts) and counts.sum():
        keep = counts[counts / counts.sum() >= rare_share]
        rare = int(counts.sum() - keep.sum())
        categories = tuple(keep.index) + ((OTHER,) if rare else ())
        numbers = np.array([*keep.to_numpy(), *([rare] if rare else [])], dtype="int64")
    else:
        categories, numbers = (), np.array([], dtype="int64")
    return CategoricalProfile(name, rows, categories, numbers, tuple(counts.index))


def fit_profile(frame: pd.DataFrame, features: list[str] | None = None, scores: np.ndarray | None = None) -> ReferenceProfile:
    """The reference profile of ``frame``'s features (and of the model's scores on the holdout rows)."""
    features = list(features or frame.columns)
    profiles: dict[str, Profile] = {}
    for name in features:
        column = frame[name]
        profiles[name] = fit_numeric(name, column) if is_numeric(column) else fit_categorical(name, column)
    prediction = fit_numeric("prediction score", scores) if scores is not None else None
    return ReferenceProfile(profiles, prediction)


# --- statistics (one pure function each, registered below) -------------------------------------


def ks_test(profile: NumericProfile, current_sorted: np.ndarray) -> tuple[float, float]:
    """Exact two-sample KS statistic and p-value, as ``scipy.stats.ks_2samp(method="auto")`` gives
    them, from the reference ECDF and the sorted current values (no NaN).

    scipy evaluates both ECDFs at every distinct point of the pooled data. Between two reference
    values the reference ECDF is flat and the current one rises, so the difference F_ref - F_cur is
    largest at a reference value and smallest just before one: evaluating it there (one search of
    the sorted current values per reference value) reaches the same extremes.

    Only the values near the extremes matter, though, and a million searches cost ~45 ms. So the
    differences are first evaluated exactly at every ``KS_BLOCK``-th reference value; since both
    ECDFs are non-decreasing these bound the differences in between, and only the blocks whose
    bounds could beat the extremes found so far are evaluated value by value (~3 ms in all for a
    million values a side). The skipped blocks provably hold nothing beyond those extremes, so the
    result is the very float a full evaluation gives. When little can be skipped (a batch equal to
    the reference: the difference is flat at 0) every value is evaluated: about 1.2 times the cost
    of a plain full evaluation (measured), the price of the bounding pass."""
    n1, n2 = profile.count, len(current_sorted)
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan
    m, cum = len(profile.values), profile.cumcounts
    grid = np.arange(0, m, KS_BLOCK)
    if grid[-1] != m - 1:
        grid = np.append(grid, m - 1)
    at, before, left, right = _ecdf_differences(profile, current_sorted, grid)
    high, low = at.max(), min(at.min(), before.min(), 0.0)  # 0: past the last value both ECDFs are 1
    # For a value i strictly between grid points g < h, the reference counts at and just below it
    # lie in [cum[g], cum[h]] and the current ones in [right[g], left[h]]; so F_ref - F_cur there
    # lies in [lower, upper]. IEEE division and subtraction round monotonically, so the bounds also
    # hold for the rounded differences _ecdf_differences computes: a block is skipped only when it
    # cannot change ``high`` or ``low``.
    upper = cum[grid[1:]] / n1 - right[:-1] / n2
    lower = cum[grid[:-1]] / n1 - left[1:] / n2
    open_blocks = (upper > high) | (lower < low)
    if open_blocks.any():
        if 2 * np.count_nonzero(open_blocks) > len(open_blocks):  # mostly open: every value (views)
            index = slice(None)
        else:
            index = np.flatnonzero(np.repeat(open_blocks, np.diff(grid)))  # the values of those blocks
        at, before, _, _ = _ecdf_differences(profile, current_sorted, index)
        high, low = max(high, at.max()), min(low, at.min(), before.min())
    max_s, min_s = high, np.clip(-low, 0, 1)
    d = float(min_s if min_s > max_s else max_s)
    return d, ks_pvalue(d, n1, n2)


def _ecdf_differences(profile: NumericProfile, current_sorted: np.ndarray, index: np.ndarray | slice):
    """F_ref - F_cur at the reference values ``index`` (sorted positions in ``profile.values``, or a
    slice) and just before each of them, with the current counts below (``left``) and at or below
    (``right``) each value."""
    n1, n2 = profile.count, len(current_sorted)
    values = profile.values[index]
    counts = np.concatenate([[0], profile.cumcounts])  # reference rows below value i, then at or below
    left = np.searchsorted(current_sorted, values, side="left")  # sorted needles: numpy's fast path
    # right = left + the current rows equal to the value: the two differ only where
    # current_sorted[left] == value (left == n2 means every current row is smaller, never equal),
    # so a second search is needed for those ties only (for all values when most are tied).
    tied = np.flatnonzero(current_sorted[np.minimum(left, n2 - 1)] == values)
    if 2 * len(tied) > len(values):
        right = np.searchsorted(current_sorted, values, side="right")
    else:
        right = left.copy()
        right[tied] = np.searchsorted(current_sorted, values[tied], side="right")
    return counts[1:][index] / n1 - right / n2, counts[:-1][index] / n1 - left / n2, left, right


def ks_from_counts(profile: NumericProfile, below: np.ndarray, at_or_below: np.ndarray, n2: int) -> tuple[float, float]:
    """The KS statistic and p-value of :func:`ks_test` from the current values' counts alone: for
    each reference value, how many current values lie below it and at or below it (what
    :func:`ks_test` searches the sorted current values for). Both ECDFs change only at those points,
    as ks_test's docstring explains, so these counts decide the statistic; every reference value is
    evaluated (no block skipping), which gives the very float ks_test gives."""
    n1 = profile.count
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan
    counts = np.concatenate([[0], profile.cumcounts])  # reference rows below value i, then at or below
    at = counts[1:] / n1 - at_or_below / n2
    before = counts[:-1] / n1 - below / n2
    high, low = at.max(), min(at.min(), before.min(), 0.0)  # 0: past the last value both ECDFs are 1
    max_s, min_s = high, np.clip(-low, 0, 1)
    d = float(min_s if min_s > max_s else max_s)
    return d, ks_pvalue(d, n1, n2)


def ks_pvalue(d: float, n1: int, n2: int) -> float:
    """The p-value ``ks_2samp`` reports for statistic ``d`` (exact up to 10,000 rows a side, else asymptotic)."""
    from scipy.stats import distributions

    if max(n1, n2) <= 10_000:
        try:
            from scipy.stats._stats_py import _attempt_exact_2kssamp  # the pinned scipy's own exact method

            success, _, prob = _attempt_exact_2kssamp(n1, n2, gcd(n1, n2), d, "two-sided")
            if success:
                return float(np.clip(prob, 0, 1))
        except ImportError:  # pragma: no cover - a scipy without it: fall back as ks_2samp does
            pass
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = float(np.round(m * n / (m + n)))
    if en > 20_000:
        # For large n, kstwo.sf is O(n) when d * sqrt(n) is between about 1.5 and 7 (0.7 s at
        # n = 500,000). The Pelz-Good expansion scipy itself ships is within 3e-8 of it there
        # (measured for n = 20,001 and 500,000) and takes 0.2 ms.
        try:
            from scipy.stats._ksstats import _kolmogn_PelzGood

            return float(np.clip(_kolmogn_PelzGood(int(en), d, cdf=False), 0, 1))
        except ImportError:  # pragma: no cover
            pass
    return float(np.clip(distributions.kstwo.sf(d, en), 0, 1))


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two proportion vectors, empty shares floored at EPSILON."""
    if len(reference) == 0 or not np.isfinite(current).all() or current.sum() == 0:
        return math.nan
    ref = np.maximum(reference, EPSILON)
    cur = np.maximum(current, EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def numeric_shares(profile: NumericProfile, current_sorted: np.ndarray) -> np.ndarray:
    """Share of the current values in each reference bin (bins from the reference only)."""
    if len(current_sorted) == 0:
        return np.full(len(profile.proportions), np.nan)
    idx = np.searchsorted(current_sorted, profile.edges, side="left")
    bounds = np.concatenate([[0], idx, [len(current_sorted)]])
    return np.diff(bounds) / len(current_sorted)


def categorical_counts(profile: CategoricalProfile, current: pd.Series) -> tuple[np.ndarray, int]:
    """Current rows per reference category (rare reference categories in OTHER), and apart the
    number of values never seen in the reference at all."""
    return _per_category(profile, _value_counts(current))


def _value_counts(current: pd.Series) -> pd.Series:
    """Rows per distinct non-missing value, labelled with str(value) as the reference categories are."""
    counts = current.value_counts(dropna=True)  # count first, then label: str() on a million cells is slow
    if len(counts) and not all(isinstance(k, str) for k in counts.index):
        counts = counts.groupby(counts.index.map(str)).sum()
    return counts


def _per_category(profile: CategoricalProfile, counts: pd.Series) -> tuple[np.ndarray, int]:
    kept = [c for c in profile.categories if c != OTHER]
    out = np.array([int(counts.get(c, 0)) for c in kept], dtype="int64")
    known = set(profile.known)
    unseen = int(sum(n for c, n in counts.items() if c not in known))
    if OTHER in profile.categories:
        out = np.append(out, int(counts.sum() - out.sum() - unseen))
    return out, unseen


def chi2_test(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """p-value of ``scipy.stats.chi2_contingency`` on the 2 x k table (categories with no row on
    either side dropped, as the test requires)."""
    from scipy.stats import chi2_contingency

    table = np.vstack([reference_counts, current_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return math.nan
    return float(chi2_contingency(table)[1])


# --- the table of statistics -------------------------------------------------------------------
#
# Every statistic is one entry of STATISTICS: a function with one signature,
# ``compute(profile, counts) -> (value, p_value)`` (NaN for a part it has not), and what the studio
# needs to judge, show and record it. The comparison (whole frame or batch by batch), the uniform
# rows of DriftReport.statistic_rows, the Monitor page's table, the CLI's table and the MLflow metrics iterate
# STATISTICS; adding a statistic is adding one entry (its value is kept in DriftResult.extra when it
# names no DriftResult field).
#
# ``counts`` is what the comparison already gathered of one feature's batch:
# - numeric (features and the prediction score): ``rows`` and ``present`` (non-missing values),
#   ``shares()`` (the current share per reference PSI bin), ``ks()`` (the exact KS statistic and
#   p-value) and ``ecdf()`` (for each reference value, the current values below it and at or below
#   it). The same calls whether the batch is held whole (:class:`SortedValues`, :func:`compare`) or
#   counted batch by batch (:class:`_NumericCounts`, :class:`BatchComparison`); each call computes
#   afresh, so a statistic calls what it needs once.
# - categorical: a :class:`CategoryCounts` (rows, present, current rows per reference category,
#   values never seen in training).


class SortedValues:
    """A numeric feature's batch held whole (:func:`compare`): its non-missing values, sorted."""

    def __init__(self, profile: NumericProfile, values: np.ndarray, rows: int) -> None:
        self.profile, self.values, self.rows, self.present = profile, values, rows, len(values)

    def shares(self) -> np.ndarray:
        return numeric_shares(self.profile, self.values)

    def ks(self) -> tuple[float, float]:
        return ks_test(self.profile, self.values)  # block skipping on the sorted values: the fast path

    def ecdf(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.searchsorted(self.values, self.profile.values, side="left"),
                np.searchsorted(self.values, self.profile.values, side="right"))


@dataclass(frozen=True)
class CategoryCounts:
    """A categorical feature's batch: rows, present values, current rows per reference category
    (rare ones in OTHER) and values never seen in training."""

    rows: int
    present: int
    counts: np.ndarray
    unseen: int

    def table(self, profile: CategoricalProfile) -> tuple[np.ndarray, np.ndarray]:
        """Reference and current rows per category; new categories get a bin of their own, empty in
        the reference (floored at EPSILON by PSI)."""
        if not self.unseen:
            return profile.counts, self.counts
        return np.append(profile.counts, 0), np.append(self.counts, self.unseen)


def _psi(profile: Profile, counts: Any) -> tuple[float, float]:
    if isinstance(profile, NumericProfile):
        return psi(profile.proportions, counts.shares()), math.nan
    ref_counts, cur_counts = counts.table(profile)
    return psi(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()), math.nan


def _ks(profile: NumericProfile, counts: Any) -> tuple[float, float]:
    return counts.ks()


def _chi2(profile: CategoricalProfile, counts: CategoryCounts) -> tuple[float, float]:
    return math.nan, chi2_test(*counts.table(profile))  # only the p-value is kept


def _missing_change(profile: Profile, counts: Any) -> tuple[float, float]:
    if not counts.rows:
        return math.nan, math.nan
    return (1 - counts.present / counts.rows) - profile.missing_rate, math.nan


def _unseen_share(profile: CategoricalProfile, counts: CategoryCounts) -> tuple[float, float]:
    return (counts.unseen / counts.present if counts.present else math.nan), math.nan


@dataclass(frozen=True)
class Statistic:
    """One statistic: how to compute it, judge it, show it and record it."""

    key: str  # also the MLflow metric piece: drift.<key>.<feature>, drift.<key>_pvalue.<feature>
    name: str  # display name
    short: str  # in sentences and labels: "KS" (the p-value column is "KS p-value")
    applies_to: tuple[str, ...]  # "numeric", "categorical"
    compute: Callable[[Any, Any], tuple[float, float]]  # (profile, counts) -> (value, p_value)
    help: str  # what the value says (the page's column help)
    attr: str | None = None  # the value's accessor on a DriftResult (a field, else DriftResult.extra); None: not kept
    p_attr: str | None = None  # the p-value's accessor; None: no p-value
    p_help: str = ""
    column: str | None = None  # the value's column on the Monitor page (default: the name)
    threshold: str | float | None = None  # a Thresholds field (user-editable), or a fixed limit; None: never flags
    flags_on: str = "p_value"  # what is held against the threshold: "value" or "p_value"
    flags_when: str = "below"  # "below": under the threshold flags; "above": at or above it
    drives_status: bool = False  # the status statistic (PSI: Thresholds.status); the others only flag
    needs_values: bool = True  # NaN unless both the batch and the reference have values
    prediction: bool = False  # its value is also recorded for the prediction score (drift.prediction_<key>)

    @property
    def p_column(self) -> str:
        return f"{self.short} p-value"

    @property
    def value_column(self) -> str:
        return self.column or self.name

    def limit(self, thresholds: Thresholds) -> float | None:
        """The threshold under ``thresholds`` (a field of them, or the entry's fixed limit)."""
        return getattr(thresholds, self.threshold) if isinstance(self.threshold, str) else self.threshold

    @property
    def default_threshold(self) -> float | None:
        return self.limit(Thresholds())

    def of(self, result: DriftResult) -> tuple[float, float]:
        """The (value, p-value) recorded on ``result`` (NaN for a part not kept)."""
        return (result.get(self.attr) if self.attr else math.nan, result.get(self.p_attr) if self.p_attr else math.nan)

    def flags(self, value: float, p_value: float, thresholds: Thresholds) -> bool:
        limit = self.limit(thresholds)
        x = p_value if self.flags_on == "p_value" else value
        if limit is None or x is None or not math.isfinite(x):
            return False
        return bool(x < limit if self.flags_when == "below" else x >= limit)

    def condition(self, thresholds: Thresholds) -> str:
        """When it flags, in words: "KS p < 0.05"."""
        subject = f"{self.short} p" if self.flags_on == "p_value" else self.short
        return f"{subject} {'<' if self.flags_when == 'below' else '≥'} {self.limit(thresholds):g}"

    def metrics(self, value: float, p_value: float) -> list[tuple[str, float]]:
        """(MLflow metric piece, number) of the parts kept: ``<key>`` and ``<key>_pvalue``."""
        return [*([(self.key, value)] if self.attr else []), *([(f"{self.key}_pvalue", p_value)] if self.p_attr else [])]

    def columns(self) -> list[tuple[str, str, str]]:
        """(column, DriftResult accessor, help) of the parts kept, value first."""
        return [*([(self.value_column, self.attr, self.help)] if self.attr else []),
                *([(self.p_column, self.p_attr, self.p_help)] if self.p_attr else [])]


STATISTICS: dict[str, Statistic] = {s.key: s for s in (
    Statistic("psi", "PSI (population stability index)", "PSI", ("numeric", "categorical"), _psi,
              "How much the share of rows per bin moved. Under 0.1: stable; 0.1 to 0.25: a moderate shift worth "
              "watching; above 0.25: the data has changed, retrain or investigate. PSI 0.3 means this feature "
              "looks clearly different from what the model learned on.",
              attr="psi", column="PSI", threshold="psi_moderate", flags_on="value", flags_when="above",
              drives_status=True, prediction=True),
    Statistic("ks", "Kolmogorov-Smirnov test", "KS", ("numeric",), _ks,
              "The largest gap between the two cumulative distributions, from 0 (same) to 1 (no overlap).",
              attr="ks_statistic", p_attr="ks_pvalue", column="KS statistic",
              p_help="How surprising the gap would be if nothing had changed. On large batches tiny, harmless shifts give "
                     "p-values near 0, so p-values only flag; PSI and the KS statistic drive the status.",
              threshold="p_value", prediction=True),
    Statistic("chi2", "Chi-square test", "chi-square", ("categorical",), _chi2,
              "Whether the category counts of the batch and of training could come from one distribution.",
              p_attr="chi2_pvalue", p_help="Like the KS p-value, for categories: small means the category shares differ.",
              threshold="p_value"),
    Statistic("missing_change", "Change in missing values", "missing change", ("numeric", "categorical"), _missing_change,
              "Share of missing values in this file minus the share at training.",
              attr="missing_change", column="missing change", needs_values=False),
    Statistic("unseen_share", "Values never seen in training", "new categories", ("categorical",), _unseen_share,
              "Share of this file's values never seen at training.",
              attr="unseen_share", column="new categories", needs_values=False),
)}


def statistics_for(kind: str) -> list[Statistic]:
    """The statistics of a feature of ``kind`` ("numeric" or "categorical"), in the table's order."""
    return [s for s in STATISTICS.values() if kind in s.applies_to]


@dataclass(frozen=True)
class StatisticRow:
    """One statistic of one feature, as every statistic is reported: the threshold in force and
    whether the value (or p-value) is past it (never for a feature not judged)."""

    feature: str
    statistic: str  # the key in STATISTICS
    value: float
    p_value: float
    threshold: float | None
    flagged: bool


# --- the comparison ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftResult:
    feature: str
    kind: str
    ks_statistic: float
    ks_pvalue: float
    psi: float
    chi2_pvalue: float
    missing_reference: float
    missing_current: float
    missing_change: float
    unseen_share: float
    status: str
    flagged: bool
    rows: int
    message: str = ""
    values: int = 0  # the batch's non-missing values of the feature (what the tests compare)
    # values of statistics whose accessor names no field above (statistics added to STATISTICS)
    extra: dict[str, float] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """The fields, NaN as None; ``extra`` only when it holds something (reports of the built-in
        statistics read as they always did)."""
        data = {k: _finite_or_none(v) for k, v in asdict(self).items() if k != "extra"}
        if self.extra:
            data["extra"] = {k: _finite_or_none(float(v)) for k, v in self.extra.items()}
        return data

    def get(self, name: str) -> Any:
        """The value a statistic's accessor names: a field, else an ``extra`` value (NaN if absent)."""
        return getattr(self, name) if name in _RESULT_FIELDS else self.extra.get(name, math.nan)

    def statistic_rows(self, thresholds: Thresholds) -> list[StatisticRow]:
        """One uniform row per statistic of the feature's kind, in the table's order."""
        out = []
        for s in statistics_for(self.kind):
            value, p = s.of(self)
            out.append(StatisticRow(self.feature, s.key, value, p, s.limit(thresholds), self.judged and s.flags(value, p, thresholds)))
        return out

    @property
    def judged(self) -> bool:
        """Whether the status says something about drift (not "no data", not "too few rows")."""
        return self.status not in ("no data", TOO_FEW)


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


_RESULT_FIELDS = frozenset(DriftResult.__dataclass_fields__) - {"extra"}


@dataclass
class DriftReport:
    features: list[DriftResult]
    prediction: DriftResult | None
    summary: dict[str, Any]
    thresholds: Thresholds = field(default_factory=Thresholds)

    def to_dict(self) -> dict[str, Any]:
        return {"features": [f.to_dict() for f in self.features],
                "prediction": self.prediction.to_dict() if self.prediction else None,
                "summary": self.summary, "thresholds": asdict(self.thresholds)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], thresholds: Thresholds | None = None) -> DriftReport:
        """A report read back from :meth:`to_dict` (``drift/drift_report.json`` of a scoring run),
        judged again with ``thresholds`` when given (the statuses, flags and summary follow rules
        edited since), else with the ones it was made with."""
        thresholds = thresholds or Thresholds(**data.get("thresholds", {}))
        features = [_rejudge(_result_from_dict(f), thresholds) for f in data["features"]]
        prediction = _rejudge(_result_from_dict(data["prediction"]), thresholds) if data.get("prediction") else None
        return cls(features, prediction, summarise(features, int(data["summary"]["rows"])), thresholds)

    def table(self) -> pd.DataFrame:
        """One row per feature: the fields, and a column per ``extra`` value."""
        rows = []
        for f in self.features:
            data = f.to_dict()
            extra = data.pop("extra", {})
            rows.append({**data, **extra})
        return pd.DataFrame(rows)

    def statistic_rows(self, prediction: bool = False) -> list[StatisticRow]:
        """Every statistic of every feature (and of the prediction score when ``prediction``) as
        uniform rows: feature, statistic, value, p_value, threshold, flagged (see STATISTICS)."""
        results = [*self.features, *([self.prediction] if prediction and self.prediction is not None else [])]
        return [row for r in results for row in r.statistic_rows(self.thresholds)]

    @property
    def any_significant(self) -> bool:
        """Whether a feature drifted significantly (the CLI's exit code 3); never for a batch with
        too few rows, whose features are not judged."""
        return any(f.status == "significant" for f in self.features)


_FLOATS = ("ks_statistic", "ks_pvalue", "psi", "chi2_pvalue", "missing_reference", "missing_current", "missing_change",
           "unseen_share")


def _result_from_dict(data: dict[str, Any]) -> DriftResult:
    """A DriftResult from :meth:`DriftResult.to_dict` (which writes NaN as None)."""
    values = {k: data[k] for k in DriftResult.__dataclass_fields__ if k in data}
    for k in _FLOATS:
        values[k] = math.nan if values.get(k) is None else float(values[k])
    values["extra"] = {k: math.nan if v is None else float(v) for k, v in (data.get("extra") or {}).items()}
    return DriftResult(**values)


def _verdict(kind: str, pairs: dict[str, tuple[float, float]], thresholds: Thresholds) -> tuple[str, bool]:
    """The status (from the statistic that drives it: PSI) and the flag (any other statistic past its
    threshold) of a feature whose statistics gave ``pairs`` (key -> (value, p-value))."""
    statistics = statistics_for(kind)
    score = next((pairs[s.key][0] for s in statistics if s.drives_status), math.nan)
    flagged = any(s.flags(*pairs[s.key], thresholds) for s in statistics if not s.drives_status)
    return thresholds.status(score), flagged


def _rejudge(result: DriftResult, thresholds: Thresholds) -> DriftResult:
    """The status and flag of a judged result under ``thresholds`` (what the comparison would have
    said with them); "no data" and "too few rows" do not depend on thresholds."""
    if not result.judged:
        return result
    from dataclasses import replace

    status, flagged = _verdict(result.kind, {s.key: s.of(result) for s in statistics_for(result.kind)}, thresholds)
    status, flagged, message = _judge(status, result.values, flagged, result.message)
    return replace(result, status=status, flagged=flagged, message=message)


def _judge(status: str, values: int, flagged: bool, message: str) -> tuple[str, bool, str]:
    """The status, flag and note of a feature with ``values`` values: too few values are not judged."""
    if status == "no data" or values >= MIN_ROWS:
        return status, flagged, message
    return TOO_FEW, False, message or f"Only {values:,} values; at least {MIN_ROWS:,} are needed to judge drift."


def _numbers(series: pd.Series) -> np.ndarray:
    """A batch column as the numeric comparison reads it: numbers, anything else missing (NaN)."""
    if isinstance(series.dtype, np.dtype) and series.dtype.kind in "biuf":  # numbers already: to_numeric keeps them
        return series.to_numpy(dtype="float64")
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _compare_numeric(profile: NumericProfile, values: np.ndarray, thresholds: Thresholds) -> DriftResult:
    array = np.asarray(values, dtype="float64")
    present = array[~np.isnan(array)]  # a copy: sorting it in place spares a second one
    present.sort()  # numpy's sort releases the GIL: columns sort in parallel
    return _numeric_result(profile, SortedValues(profile, present, len(array)), thresholds)


def _numeric_result(profile: NumericProfile, counts: Any, thresholds: Thresholds) -> DriftResult:
    """The result of a numeric feature from what the comparison gathered of its batch (``counts``:
    see STATISTICS). One function for a whole frame and for a file compared batch by batch."""
    rows, present = counts.rows, counts.present
    message = ""
    if rows == 0:
        message = "The batch has no rows."
    elif present == 0:
        message = "Every value is missing in this batch."
    elif profile.count == 0:
        message = "The reference has no value for this feature."
    return _result(profile, counts, message, thresholds)


def _result(profile: Profile, counts: Any, message: str, thresholds: Thresholds) -> DriftResult:
    """A feature's result: every statistic of its kind computed from ``counts`` (those that need
    values only when ``message`` names no reason to skip them), judged, and kept in the result's
    fields (or ``extra``) their accessors name."""
    statistics = statistics_for(profile.kind)
    pairs = {s.key: (math.nan, math.nan) if message and s.needs_values else s.compute(profile, counts) for s in statistics}
    status, flagged = _verdict(profile.kind, pairs, thresholds)
    status, flagged, message = _judge(status, counts.present, flagged, message)
    values: dict[str, float] = dict.fromkeys(_STATISTIC_FIELDS, math.nan)
    extra: dict[str, float] = {}
    for s in statistics:
        for attr, x in zip((s.attr, s.p_attr), pairs[s.key], strict=True):
            if attr is not None:
                (values if attr in _STATISTIC_FIELDS else extra)[attr] = x
    rows = counts.rows
    return DriftResult(profile.name, profile.kind, **values, missing_reference=profile.missing_rate,
                       missing_current=1 - counts.present / rows if rows else math.nan, status=status, flagged=flagged,
                       rows=rows, message=message, values=counts.present, extra=extra)


_STATISTIC_FIELDS = ("ks_statistic", "ks_pvalue", "psi", "chi2_pvalue", "missing_change", "unseen_share")  # filled from STATISTICS


def _compare_categorical(profile: CategoricalProfile, values: pd.Series, thresholds: Thresholds) -> DriftResult:
    series = pd.Series(values)
    value_counts = _value_counts(series)
    # value_counts(dropna=True) counts exactly the cells notna() counts (both skip the same missing
    # markers), so its total is the number of present values without a second pass over the column.
    counts, unseen = _per_category(profile, value_counts)
    return _categorical_result(profile, CategoryCounts(len(series), int(value_counts.sum()), counts, unseen), thresholds)


def _categorical_result(profile: CategoricalProfile, counts: CategoryCounts, thresholds: Thresholds) -> DriftResult:
    """The result of a categorical feature from its counts per reference category and of unseen values."""
    message = "" if counts.present else ("The batch has no rows." if counts.rows == 0 else "Every value is missing in this batch.")
    if not message and profile.count == 0:
        message = "The reference has no value for this feature."
    return _result(profile, counts, message, thresholds)


def _no_such_column(p: Profile) -> DriftResult:
    return DriftResult(p.name, p.kind, math.nan, math.nan, math.nan, math.nan, p.missing_rate, math.nan, math.nan,
                       math.nan, "no data", False, 0, "The batch has no such column.")


def compare(profile: ReferenceProfile, frame: pd.DataFrame, thresholds: Thresholds | None = None,
            scores: np.ndarray | None = None, threads: int = 2) -> DriftReport:
    """Every profiled feature of ``frame`` against the reference; columns missing from ``frame``
    are reported with status "no data"."""
    thresholds = thresholds or Thresholds()

    def one(name: str) -> DriftResult:
        p = profile.features[name]
        if name not in frame.columns:
            return _no_such_column(p)
        if isinstance(p, NumericProfile):
            return _compare_numeric(p, _numbers(frame[name]), thresholds)
        return _compare_categorical(p, frame[name], thresholds)

    names = list(profile.features)
    # Counting a categorical column holds the GIL while sorting and searching a numeric one release
    # it: alternating the two kinds in the queue lets one thread count while the other sorts.
    categorical = [n for n in names if isinstance(profile.features[n], CategoricalProfile)]
    numeric = [n for n in names if not isinstance(profile.features[n], CategoricalProfile)]
    order = [*(n for pair in zip(categorical, numeric) for n in pair),
             *categorical[len(numeric):], *numeric[len(categorical):]]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        done = dict(zip(order, pool.map(one, order), strict=True))
    results = [done[n] for n in names]  # back in the profile's order
    prediction = None
    if profile.prediction is not None and scores is not None:
        prediction = _compare_numeric(profile.prediction, np.asarray(scores, dtype="float64"), thresholds)
    return DriftReport(results, prediction, summarise(results, int(len(frame))), thresholds)


class BatchComparison:
    """:func:`compare` for a file read batch by batch: each batch adds to counts, and
    :meth:`report` gives the report ``compare`` gives on the whole file (the same floats).

    What is kept does not grow with the rows added (:meth:`held` counts it):

    - a numeric feature (and the prediction score): for each reference value, the current values
      below it and at or below it (2 x the reference's distinct values: the KS test needs no more,
      see :func:`ks_from_counts`), the values below each PSI bin edge, and the rows and present
      values. Each batch is sorted and the reference values are searched in it;
    - a categorical feature: the rows per reference category (rare ones in OTHER), the values
      never seen in training, the rows and present values. A column read as whole numbers in some
      batches and as decimals in others (whole numbers with gaps: pandas makes them decimals) is
      counted both ways until the end says which one the whole file is, since "1" and "1.0" are
      different categories.

    ``columns`` names the file's columns (a profiled feature missing from them is "no data"); by
    default, those of the first batch."""

    def __init__(self, profile: ReferenceProfile, columns: list[str] | None = None) -> None:
        self.profile = profile
        self.columns = None if columns is None else list(columns)
        self.rows = 0
        self._features = {name: (_NumericCounts(p) if isinstance(p, NumericProfile) else _CategoryCounts(p))
                          for name, p in profile.features.items()}
        self._prediction = _NumericCounts(profile.prediction) if profile.prediction is not None else None
        self._scored = False

    def add(self, frame: pd.DataFrame, scores: np.ndarray | None = None) -> None:
        """Count one batch: its profiled columns, and the model's scores on its rows (optional)."""
        if self.columns is None:
            self.columns = list(frame.columns)
        present = set(self.columns)
        self.rows += len(frame)
        for name, counts in self._features.items():
            if name in present:
                counts.add(frame[name])
        if self._prediction is not None and scores is not None:
            self._prediction.add(np.asarray(scores, dtype="float64"))
            self._scored = True

    def report(self, thresholds: Thresholds | None = None) -> DriftReport:
        thresholds = thresholds or Thresholds()
        present = set(self.columns or ())
        results = [counts.result(thresholds) if name in present else _no_such_column(self.profile.features[name])
                   for name, counts in self._features.items()]
        prediction = self._prediction.result(thresholds) if self._prediction is not None and self._scored else None
        return DriftReport(results, prediction, summarise(results, int(self.rows)), thresholds)

    def held(self) -> int:
        """How many numbers the comparison holds (arrays and counters): set by the profile, never
        by the rows added."""
        parts = [*self._features.values(), *([self._prediction] if self._prediction is not None else [])]
        return sum(part.held() for part in parts)


class _NumericCounts:
    """One numeric feature's counts (see :class:`BatchComparison`)."""

    def __init__(self, profile: NumericProfile) -> None:
        self.profile = profile
        # per reference value: the current values below it, and at or below it (summed over the
        # batches, these are the whole file's counts); per inner bin edge, the values below it
        self.below = np.zeros(len(profile.values), dtype="int64")
        self.at_or_below = np.zeros(len(profile.values), dtype="int64")
        self.under_edges = np.zeros(len(profile.edges), dtype="int64")
        self.rows = 0
        self.present = 0

    def add(self, values: pd.Series | np.ndarray) -> None:
        array = values if isinstance(values, np.ndarray) else _numbers(values)
        array = np.asarray(array, dtype="float64")
        self.rows += len(array)
        missing = np.isnan(array)
        x = array[~missing] if missing.any() else array.copy()  # a copy: sorted in place
        if not len(x):
            return
        self.present += len(x)
        reference = self.profile.values
        if len(reference) <= 4:  # a flag or a handful of values: a few passes beat a sort
            self.below += [np.count_nonzero(x < v) for v in reference]
            self.at_or_below += [np.count_nonzero(x <= v) for v in reference]
            self.under_edges += [np.count_nonzero(x < e) for e in self.profile.edges]
            return
        x.sort()  # then the reference values are searched in the batch (sorted needles: numpy's fast path)
        self.below += np.searchsorted(x, reference, side="left")
        self.at_or_below += np.searchsorted(x, reference, side="right")
        self.under_edges += np.searchsorted(x, self.profile.edges, side="left")

    # What a statistic reads of the counts (see STATISTICS): the calls SortedValues answers for a
    # batch held whole, with the very floats.

    def shares(self) -> np.ndarray:  # as numeric_shares gives them on the whole file
        bounds = np.concatenate([[0], self.under_edges, [self.present]])
        return np.diff(bounds) / self.present

    def ks(self) -> tuple[float, float]:
        return ks_from_counts(self.profile, self.below, self.at_or_below, self.present)

    def ecdf(self) -> tuple[np.ndarray, np.ndarray]:
        return self.below, self.at_or_below  # the counts themselves: read, never written

    def result(self, thresholds: Thresholds) -> DriftResult:
        return _numeric_result(self.profile, self, thresholds)

    def held(self) -> int:
        return len(self.below) + len(self.at_or_below) + len(self.under_edges) + 2


class _CategoryCounts:
    """One categorical feature's counts (see :class:`BatchComparison`)."""

    def __init__(self, profile: CategoricalProfile) -> None:
        self.profile = profile
        self.counts = np.zeros(len(profile.categories), dtype="int64")
        self.as_decimals = np.zeros(len(profile.categories), dtype="int64")  # whole-number batches labelled as decimals
        self.unseen = self.unseen_as_decimals = 0
        self.rows = self.present = 0
        self.whole_numbers = self.decimals = False  # whether some batch read the column so

    def add(self, values: pd.Series) -> None:
        series = pd.Series(values)
        self.rows += len(series)
        value_counts = _value_counts(series)
        self.present += int(value_counts.sum())
        counts, unseen = _per_category(self.profile, value_counts)
        self.counts += counts
        self.unseen += unseen
        if series.dtype.kind in "iu":
            self.whole_numbers = True
            counts, unseen = _per_category(self.profile, _value_counts(series.astype("float64")))
        elif series.dtype.kind == "f":
            self.decimals = True
        self.as_decimals += counts
        self.unseen_as_decimals += unseen

    def result(self, thresholds: Thresholds) -> DriftResult:
        mixed = self.whole_numbers and self.decimals  # the whole column reads as decimals
        counts, unseen = (self.as_decimals, self.unseen_as_decimals) if mixed else (self.counts, self.unseen)
        return _categorical_result(self.profile, CategoryCounts(self.rows, self.present, counts.copy(), int(unseen)), thresholds)

    def held(self) -> int:
        return len(self.counts) + len(self.as_decimals) + 4


def summarise(results: list[DriftResult], rows: int) -> dict[str, Any]:
    """The batch's verdict over the judged features (features with too few values are counted
    apart and never make a batch drift), with the verdict in one sentence (``message``)."""
    scored = [r for r in results if r.judged and math.isfinite(r.psi)]
    too_few = [r for r in results if r.status == TOO_FEW]
    drifted = [r for r in scored if r.status != "stable"]
    worst = max(scored, key=lambda r: r.psi) if scored else None
    if scored:
        status = ("significant" if any(r.status == "significant" for r in scored) else "moderate" if drifted else "stable")
    else:
        status = TOO_FEW if too_few else "no data"
    summary = {
        "features": len(results),
        "drifted": len(drifted),
        "drifted_share": len(drifted) / len(scored) if scored else None,
        "significant": sum(r.status == "significant" for r in results),
        "too_few": len(too_few),
        "min_rows": MIN_ROWS,
        "worst_feature": worst.feature if worst else None,
        "worst_psi": worst.psi if worst else None,
        "rows": rows,
        "status": status,
    }
    if status == TOO_FEW:
        summary["message"] = (too_few_message(rows) if rows < MIN_ROWS else
                              f"Every feature has too few values ({max(r.values for r in too_few):,} at most) to judge drift; "
                              f"at least {MIN_ROWS:,} are needed.")
    elif status == "no data":
        summary["message"] = "No feature could be compared: the batch has no rows, or no values in the profiled columns."
    elif drifted:
        summary["message"] = (f"{len(drifted)} of {len(scored)} features drifted; worst: {worst.feature} "
                              f"(PSI {worst.psi:.3f}); status {status}.")
    else:
        summary["message"] = f"No feature drifted: all {len(scored)} look like the training data."
    if too_few and status != TOO_FEW:
        summary["message"] += f" {len(too_few)} had too few values to judge (at least {MIN_ROWS:,} are needed)."
    return summary


def too_few_message(rows: int) -> str:
    return f"There are too few rows ({rows:,}) to judge drift; at least {MIN_ROWS:,} are needed."


def flag_reason(result: DriftResult, thresholds: Thresholds) -> str:
    """Why a feature is flagged, in words ("" when it is not): the statistics past their threshold
    (a p-value under the limit: "KS p < 0.05"), which on a stable feature means a real but small shift."""
    if not result.flagged:
        return ""
    flagging = [s for s in statistics_for(result.kind) if not s.drives_status and s.threshold is not None]
    past = [s for s in flagging if s.flags(*s.of(result), thresholds)] or flagging  # judged with other limits: every test
    meaning = "a real but small shift" if result.status == "stable" else "the shift is not chance"
    return f"{', '.join(s.condition(thresholds) for s in past)} ({meaning})"


# --- numbers for people ------------------------------------------------------------------------

_LARGE = ((1e12, "T"), (1e9, "B"), (1e6, "M"))


def format_number(value: float, digits: int = 4) -> str:
    """A number as people write it, with ``digits`` significant digits at most: 30,000; 0.25;
    -118.3; 1.2M; 3.5B (never 3e+04). Whole numbers under a million keep every digit."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(x):
        return "missing" if math.isnan(x) else ("∞" if x > 0 else "-∞")
    if x == 0:
        return "0"
    size = abs(x)
    for scale, suffix in _LARGE:
        if size >= scale and size < 1e15:
            return f"{_decimals(x / scale, digits)}{suffix}"
    if size >= 1e15 or size < 1e-6:
        mantissa, exponent = f"{x:.{max(1, digits - 1)}e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if x.is_integer():
        return f"{x:,.0f}"
    return _decimals(x, digits)


def _decimals(x: float, digits: int) -> str:
    """``x`` rounded to ``digits`` significant digits in fixed notation with thousands separators,
    trailing zeros dropped."""
    places = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    text = f"{x:,.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def bin_labels(edges: np.ndarray | list[float], low: float | None = None, high: float | None = None) -> list[str]:
    """Labels of the bins that the inner ``edges`` cut, for people: "< 30,000", "30,000 to 50,000",
    ..., "≥ 1.2M" (open outer bins), or "low to ..." and "... to high" when the outer bins are closed
    by the data's extremes. Digits are added until no two different edges read the same. Every
    chart that labels bins (the Monitor histograms, the Predict page's place of a value) uses this."""
    edges = [float(e) for e in edges]
    if not edges:
        return ["all" if low is None or high is None else f"{format_number(low)} to {format_number(high)}"]
    points = [*([low] if low is not None else []), *edges, *([high] if high is not None else [])]
    distinct = len(set(points))
    text = [format_number(v) for v in points]
    for digits in range(4, 16):
        text = [format_number(v, digits) for v in points]
        if len(set(text)) == distinct:
            break
    names = dict(zip(points, text, strict=True))
    inner = [f"{names[a]} to {names[b]}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    first = f"< {names[edges[0]]}" if low is None else f"{names[low]} to {names[edges[0]]}"
    last = f"≥ {names[edges[-1]]}" if high is None else f"{names[edges[-1]]} to {names[high]}"
    return [first, *inner, last]


# --- a batch too small to judge: its values beside the training data ---------------------------


def values_beside_reference(profile: ReferenceProfile, frame: pd.DataFrame, max_rows: int = 10) -> pd.DataFrame:
    """Per profiled feature, what training looked like (median and range, or the most common
    category) beside the batch: each row's value and where it lies among the training rows when the
    batch has at most ``max_rows`` rows, else the batch's own median and range. For batches too
    small to judge drift, where looking at the values says more than any statistic."""
    each = len(frame) <= max_rows
    out = []
    for name, p in profile.features.items():
        row: dict[str, Any] = {"feature": name, "in training": _training_summary(p)}
        values = frame[name] if name in frame.columns else pd.Series([None] * len(frame), dtype=object)
        if each:
            for k, value in enumerate(values.tolist(), start=1):
                row[f"row {k}"] = _position(p, value)
        else:
            row["this batch"] = _batch_summary(p, values)
        out.append(row)
    return pd.DataFrame(out)


def _median(p: NumericProfile) -> float:
    return float(p.values[np.searchsorted(p.cumcounts, (p.count + 1) / 2)])


def _training_summary(p: Profile) -> str:
    if p.count == 0:
        return "no value in training"
    if isinstance(p, NumericProfile):
        return f"median {format_number(_median(p))} · {format_number(p.values[0])} to {format_number(p.values[-1])}"
    top = int(np.argmax(p.counts))
    return f"most common {p.categories[top]} ({p.counts[top] / p.count:.0%}) · {len(p.known):,} categories"


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _position(p: Profile, value: Any) -> str:
    """One value and its place in the training distribution."""
    if _missing(value):
        return "missing"
    if isinstance(p, NumericProfile):
        try:
            x = float(value)
        except (TypeError, ValueError):
            return f"{value} (not a number)"
        if p.count == 0 or not math.isfinite(x):
            return format_number(x)
        if x < p.values[0]:
            return f"{format_number(x)} · below the training range"
        if x > p.values[-1]:
            return f"{format_number(x)} · above the training range"
        below = int(np.searchsorted(p.values, x, side="left"))
        share = (p.cumcounts[below - 1] if below else 0) / p.count
        return f"{format_number(x)} · higher than {share:.0%} of training rows"
    text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if text in p.categories:
        return f"{text} · {p.counts[p.categories.index(text)] / max(p.count, 1):.0%} of training rows"
    if text in p.known:
        return f"{text} · rare in training (under {RARE_SHARE:.0%})"
    return f"{text} · never seen in training"


def _batch_summary(p: Profile, values: pd.Series) -> str:
    present = values.dropna()
    if present.empty:
        return "every value missing"
    if isinstance(p, NumericProfile):
        numbers = pd.to_numeric(present, errors="coerce").dropna()
        if numbers.empty:
            return "no number"
        return f"median {format_number(numbers.median())} · {format_number(numbers.min())} to {format_number(numbers.max())}"
    counts = _value_counts(present)
    top = counts.idxmax()
    return f"most common {top} ({counts.max() / counts.sum():.0%}) · {len(counts):,} categories"


# --- charts ------------------------------------------------------------------------------------


def feature_figures(profile: Profile, values: pd.Series) -> list:
    """Charts of one feature: reference vs current shares on the reference bins and the two ECDFs
    with the KS distance marked (numeric), or side-by-side category shares (categorical)."""
    import html

    import plotly.graph_objects as go

    name = html.escape(profile.name)
    if isinstance(profile, CategoricalProfile):
        counts, unseen = categorical_counts(profile, pd.Series(values))
        labels = list(profile.categories)
        ref_share = profile.counts / max(profile.count, 1)
        cur = counts.astype(float)
        if unseen:
            labels.append(UNSEEN)
            ref_share = np.append(ref_share, 0)
            cur = np.append(cur, unseen)
        cur_share = cur / max(cur.sum(), 1)
        fig = go.Figure([go.Bar(name="reference (training)", x=[html.escape(x) for x in labels], y=ref_share),
                         go.Bar(name="this batch", x=[html.escape(x) for x in labels], y=cur_share)])
        fig.update_layout(barmode="group", title=f"{name}: share of rows per category", yaxis_tickformat=".0%", height=360)
        return [fig]
    array = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype="float64")
    present = np.sort(array[~np.isnan(array)])
    labels = bin_labels(profile.edges)
    shares = numeric_shares(profile, present)
    bars = go.Figure([go.Bar(name="reference (training)", x=labels, y=profile.proportions),
                      go.Bar(name="this batch", x=labels, y=shares)])
    bars.update_layout(barmode="group", title=f"{name}: share of rows per reference bin", yaxis_tickformat=".0%", height=360)
    ecdf = go.Figure()
    if profile.count and len(present):
        ref_x, ref_y = _thin_step(profile.values, profile.cumcounts / profile.count)
        cur_values, cur_counts = np.unique(present, return_counts=True)
        cur_x, cur_y = _thin_step(cur_values, np.cumsum(cur_counts) / len(present))
        ecdf.add_trace(go.Scatter(x=ref_x, y=ref_y, mode="lines", line_shape="hv", name="reference (training)"))
        ecdf.add_trace(go.Scatter(x=cur_x, y=cur_y, mode="lines", line_shape="hv", name="this batch"))
        grid = np.concatenate([profile.values, present])
        rank = np.searchsorted(profile.values, grid, side="right")
        f1 = np.where(rank > 0, profile.cumcounts[np.maximum(rank - 1, 0)], 0) / profile.count
        f2 = np.searchsorted(present, grid, side="right") / len(present)
        k = int(np.argmax(np.abs(f1 - f2)))
        ecdf.add_trace(go.Scatter(x=[grid[k], grid[k]], y=[f1[k], f2[k]], mode="lines+markers", name=f"KS distance {abs(f1[k] - f2[k]):.3f}",
                                  line={"color": "#C8102E", "width": 3}))
    ecdf.update_layout(title=f"{name}: cumulative share of rows (ECDF)", yaxis_tickformat=".0%", height=360)
    return [bars, ecdf]


def _thin_step(x: np.ndarray, y: np.ndarray, points: int = 600) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= points:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, points).astype(int))
    return x[keep], y[keep]


def psi_figure(report: DriftReport):
    """PSI per feature, sorted, with the threshold lines."""
    import html

    import plotly.graph_objects as go

    rows = sorted([f for f in report.features if f.judged and f.psi is not None and math.isfinite(f.psi)], key=lambda f: f.psi)
    colours = {"stable": "#2E7D32", "moderate": "#F9A825", "significant": "#C8102E"}
    fig = go.Figure(go.Bar(x=[f.psi for f in rows], y=[html.escape(f.feature) for f in rows], orientation="h",
                           marker_color=[colours[f.status] for f in rows], text=[f"{f.psi:.3f}" for f in rows],
                           textposition="outside"))
    # The two lines sit close together when one feature's PSI is large, so they are named in the
    # title rather than labelled (their labels overlapped).
    limits = report.thresholds
    for value in (limits.psi_moderate, limits.psi_significant):
        fig.add_vline(x=value, line_dash="dash", line_color="#52606D")
    title = (f"PSI per feature (longer bar = more change)<br><sup>dashed lines: {limits.psi_moderate:g} moderate, "
             f"{limits.psi_significant:g} significant</sup>")
    fig.update_layout(title=title, height=max(300, 28 * len(rows) + 120),
                      margin={"l": 10, "r": 40, "t": 80, "b": 10}, xaxis_title="PSI")
    return fig

