"""core.drift: exact KS, PSI, chi-square against scipy and an independent implementation;
degenerate input; the real Kobe case."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, ks_2samp

from core import drift


@pytest.fixture(scope="module")
def kobe_frames(kobe_dev, kobe_prod):
    return pd.read_parquet(kobe_dev), pd.read_parquet(kobe_prod)


@pytest.fixture(scope="module")
def kobe_report(kobe_frames):
    dev, prod = kobe_frames
    return drift.compare(drift.fit_profile(dev), prod)


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if drift.is_numeric(frame[c])]


def test_ks_matches_scipy_on_every_numeric_kobe_column(kobe_frames, kobe_report):
    dev, prod = kobe_frames
    by_name = {r.feature: r for r in kobe_report.features}
    columns = numeric_columns(dev)
    assert len(columns) >= 10
    for column in columns:
        expected = ks_2samp(dev[column].dropna().to_numpy(float), prod[column].dropna().to_numpy(float))
        assert by_name[column].ks_statistic == pytest.approx(expected.statistic, abs=1e-12), column
        assert by_name[column].ks_pvalue == pytest.approx(expected.pvalue, abs=1e-6), column


def test_ks_matches_scipy_in_both_of_its_methods():
    rng = np.random.default_rng(1)
    for n_ref, n_cur in ((300, 200), (5_000, 4_000), (20_000, 15_000)):  # exact, exact, asymptotic
        ref, cur = rng.normal(size=n_ref), rng.normal(0.05, 1.1, size=n_cur)
        d, p = drift.ks_test(drift.fit_numeric("x", ref), np.sort(cur))
        expected = ks_2samp(ref, cur)
        assert d == pytest.approx(expected.statistic, abs=1e-12) and p == pytest.approx(expected.pvalue, abs=1e-6)


def independent_psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """PSI written from its definition: reference deciles, open outer bins, shares floored at eps."""
    reference = reference[~np.isnan(reference)]
    current = current[~np.isnan(current)]
    cuts = np.unique(np.quantile(reference, [i / bins for i in range(1, bins)]))
    ref_bins = np.digitize(reference, cuts, right=False)
    cur_bins = np.digitize(current, cuts, right=False)
    total = 0.0
    for b in range(len(cuts) + 1):
        r = max(np.mean(ref_bins == b), eps)
        c = max(np.mean(cur_bins == b), eps)
        total += (c - r) * math.log(c / r)
    return total


@pytest.mark.parametrize("shape", ["shifted", "same sample", "heavy ties", "tiny batch", "disjoint", "one value"])
def test_ks_block_skipping_gives_scipys_statistic_on_every_shape(shape):
    """ks_test evaluates every 64th reference value first and skips blocks that cannot hold the
    extremes; on shapes where few, most or no blocks are skipped it must still equal scipy."""
    rng = np.random.default_rng(7)
    reference = rng.normal(0, 1, 50_000)
    current = {
        "shifted": rng.normal(0.05, 1, 40_000),
        "same sample": reference.copy(),
        "heavy ties": np.round(rng.normal(0, 1, 40_000), 1),
        "tiny batch": rng.normal(0, 1, 3),
        "disjoint": rng.normal(10, 1, 40_000),
        "one value": np.full(1_000, 0.25),
    }[shape]
    if shape == "heavy ties":
        reference = np.round(reference, 1)
    d, _ = drift.ks_test(drift.fit_numeric("x", reference), np.sort(current))
    assert d == pytest.approx(ks_2samp(reference, current).statistic, abs=1e-12)


def test_psi_equals_an_independent_implementation(kobe_frames, kobe_report):
    dev, prod = kobe_frames
    by_name = {r.feature: r for r in kobe_report.features}
    for column in numeric_columns(dev):
        expected = independent_psi(dev[column].to_numpy(float), prod[column].to_numpy(float))
        assert by_name[column].psi == pytest.approx(expected, rel=1e-9, abs=1e-12), column


def test_chi_square_equals_scipy(kobe_frames, kobe_report):
    dev, prod = kobe_frames
    by_name = {r.feature: r for r in kobe_report.features}
    for column in ("combined_shot_type", "opponent", "season"):
        profile = drift.fit_profile(dev, [column]).features[column]
        counts, unseen = drift.categorical_counts(profile, prod[column])
        ref, cur = profile.counts, counts
        if unseen:
            ref, cur = np.append(ref, 0), np.append(cur, unseen)
        table = np.vstack([ref, cur])
        table = table[:, table.sum(axis=0) > 0]
        assert by_name[column].chi2_pvalue == pytest.approx(chi2_contingency(table)[1], abs=1e-12), column


def test_the_real_case_flags_shot_distance_as_significant(kobe_report):
    by_name = {r.feature: r for r in kobe_report.features}
    assert by_name["shot_distance"].status == "significant"
    assert by_name["playoffs"].status == "stable"
    assert kobe_report.summary["status"] == "significant"


def test_bins_come_from_the_reference_only():
    ref = np.arange(1000, dtype=float)
    profile = drift.fit_numeric("x", ref)
    shifted = drift.compare(drift.ReferenceProfile({"x": profile}), pd.DataFrame({"x": ref + 5000}))
    again = drift.compare(drift.ReferenceProfile({"x": profile}), pd.DataFrame({"x": ref + 9000}))
    np.testing.assert_array_equal(profile.edges, np.quantile(ref, np.arange(1, 10) / 10))
    assert shifted.features[0].psi == pytest.approx(again.features[0].psi)  # both entirely in the open top bin


def test_unseen_categories_are_counted_apart_and_rare_ones_merged():
    ref = pd.Series(["a"] * 500 + ["b"] * 495 + ["rare"] * 5)
    profile = drift.fit_categorical("c", ref)
    assert profile.categories == ("a", "b", drift.OTHER) and "rare" in profile.known
    result = drift.compare(drift.ReferenceProfile({"c": profile}), pd.DataFrame({"c": ["a"] * 50 + ["new"] * 50}))
    assert result.features[0].unseen_share == pytest.approx(0.5)
    assert result.features[0].status == "significant"


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
@pytest.mark.parametrize("case", ["empty batch", "constant column", "all missing"])
def test_degenerate_input_has_a_defined_answer(kind, case):
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=200) if kind == "numeric" else rng.choice(["a", "b", "c"], 200)})
    profile = drift.fit_profile(ref)
    current = {
        "empty batch": ref.iloc[:0],
        "constant column": pd.DataFrame({"x": [1.0] * 50 if kind == "numeric" else ["a"] * 50}),
        "all missing": pd.DataFrame({"x": [np.nan] * 50 if kind == "numeric" else [None] * 50}),
    }[case]
    result = drift.compare(profile, current).features[0]
    if case == "constant column":
        assert math.isfinite(result.psi) and result.status in ("moderate", "significant")
    else:
        assert math.isnan(result.psi) and result.status == "no data" and result.message
        assert result.flagged is False
    if kind == "numeric" and case != "constant column":
        assert math.isnan(result.ks_statistic) and math.isnan(result.ks_pvalue)
    assert drift.compare(profile, current).summary["status"] in ("no data", "moderate", "significant")


def test_a_constant_reference_and_missing_column_do_not_crash():
    profile = drift.fit_profile(pd.DataFrame({"k": [3.0] * 100, "gone": [1.0, 2.0] * 50}))
    report = drift.compare(profile, pd.DataFrame({"k": [3.0] * 10}))
    by_name = {r.feature: r for r in report.features}
    assert by_name["k"].psi == pytest.approx(0.0) and by_name["k"].status == "stable"
    assert by_name["gone"].status == "no data" and "no such column" in by_name["gone"].message


def test_profile_round_trip(tmp_path, kobe_frames):
    dev, prod = kobe_frames
    profile = drift.fit_profile(dev, ["shot_distance", "combined_shot_type"], scores=np.linspace(0, 1, 100))
    profile.save(tmp_path)
    loaded = drift.ReferenceProfile.load(tmp_path)
    a, b = drift.compare(profile, prod), drift.compare(loaded, prod)
    assert [r.to_dict() for r in a.features] == [r.to_dict() for r in b.features]
    assert loaded.prediction is not None and loaded.prediction.count == 100


def test_thresholds_drive_status_and_are_checked(tmp_path):
    t = drift.Thresholds(psi_moderate=0.2, psi_significant=0.5)
    assert [t.status(x) for x in (0.1, 0.3, 0.6, math.nan)] == ["stable", "moderate", "significant", "no data"]
    t.save(tmp_path / "m.json")
    assert drift.Thresholds.load(tmp_path / "m.json") == t
    from core.errors import BadInputError

    with pytest.raises(BadInputError, match="moderate PSI threshold"):
        drift.Thresholds(psi_moderate=0.3, psi_significant=0.2).save(tmp_path / "x.json")
