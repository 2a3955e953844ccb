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
    result = drift.compare(drift.ReferenceProfile({"c": profile}), pd.DataFrame({"c": ["a"] * 100 + ["new"] * 100}))
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
        "constant column": pd.DataFrame({"x": [1.0] * drift.MIN_ROWS if kind == "numeric" else ["a"] * drift.MIN_ROWS}),
        "all missing": pd.DataFrame({"x": [np.nan] * drift.MIN_ROWS if kind == "numeric" else [None] * drift.MIN_ROWS}),
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
    report = drift.compare(profile, pd.DataFrame({"k": [3.0] * drift.MIN_ROWS}))
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


# --- batches too small to judge ----------------------------------------------------------------


def test_one_row_is_too_few_to_judge_not_significant_drift(kobe_frames):
    """One prediction on the Predict page read "Significant drift in 19 of 19 features": a single
    row's shares in ten bins are all 0 or 1. Under MIN_ROWS rows nothing is judged."""
    dev, prod = kobe_frames
    profile = drift.fit_profile(dev.drop(columns=["shot_made_flag"]))
    report = drift.compare(profile, prod.head(1))
    judged = {r.feature: r.status for r in report.features if r.status != "no data"}
    assert len(judged) >= 15 and set(judged.values()) == {drift.TOO_FEW}
    assert not any(r.flagged for r in report.features)
    assert report.summary["status"] == drift.TOO_FEW and report.summary["drifted"] == 0 and report.summary["significant"] == 0
    assert report.summary["message"] == f"There are too few rows (1) to judge drift; at least {drift.MIN_ROWS} are needed."
    assert not report.any_significant  # the CLI exits 0, not 3
    assert report.summary["worst_feature"] is None


def test_drift_is_judged_from_min_rows_on():
    rng = np.random.default_rng(3)
    profile = drift.fit_profile(pd.DataFrame({"x": rng.normal(size=5_000)}))
    far = pd.DataFrame({"x": rng.normal(8, 1, drift.MIN_ROWS)})
    assert drift.compare(profile, far.iloc[:-1]).features[0].status == drift.TOO_FEW
    assert drift.compare(profile, far).features[0].status == "significant"
    assert drift.compare(profile, far).summary["status"] == "significant"


def test_the_minimum_keeps_unchanged_batches_stable():
    """Why MIN_ROWS is what it is: batches drawn from the training distribution itself must come out
    stable; at 50 rows (ten bins with five expected rows each) PSI's sampling noise alone would call
    many of them drifted."""
    rng = np.random.default_rng(11)
    reference = rng.normal(size=20_000)
    profile = drift.fit_numeric("x", reference)

    def not_stable(n: int) -> float:
        scores = [drift.psi(profile.proportions, drift.numeric_shares(profile, np.sort(rng.normal(size=n)))) for _ in range(200)]
        return float(np.mean([drift.Thresholds().status(s) != "stable" for s in scores]))

    assert not_stable(drift.MIN_ROWS) < 0.05
    assert not_stable(50) > 0.5


def test_a_feature_with_too_few_values_is_counted_apart():
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"x": rng.normal(size=2_000), "sparse": rng.normal(size=2_000), "c": rng.choice(["a", "b"], 2_000)})
    batch = pd.DataFrame({"x": rng.normal(size=500), "sparse": [np.nan] * 470 + list(rng.normal(9, 1, 30)),
                          "c": rng.choice(["a", "b"], 500)})
    report = drift.compare(drift.fit_profile(reference), batch)
    by_name = {r.feature: r for r in report.features}
    assert by_name["sparse"].status == drift.TOO_FEW and by_name["sparse"].values == 30
    assert "Only 30 values" in by_name["sparse"].message
    assert by_name["x"].status == "stable" and by_name["c"].status == "stable"
    assert report.summary["status"] == "stable" and report.summary["too_few"] == 1
    assert "1 had too few values to judge" in report.summary["message"]
    assert "sparse" not in drift.psi_figure(report).data[0].y  # the PSI chart shows judged features only


# --- numbers for people ------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [
    (30_000, "30,000"), (50_000.0, "50,000"), (0.25, "0.25"), (0.5, "0.5"), (1_200_000, "1.2M"), (1_234_567, "1.235M"),
    (3.5e9, "3.5B"), (-118.2698, "-118.3"), (33.2533, "33.25"), (0, "0"), (12, "12"), (0.000123456, "0.0001235"),
    (2e-8, "2e-8"), (999_999, "999,999"),
])
def test_numbers_are_formatted_for_people(value, text):
    assert drift.format_number(value) == text


def test_bin_labels_read_like_money_and_stay_distinct():
    assert drift.bin_labels([30_000, 50_000, 1_200_000]) == ["< 30,000", "30,000 to 50,000", "50,000 to 1.2M", "≥ 1.2M"]
    assert drift.bin_labels([0.25, 0.5], low=0, high=1) == ["0 to 0.25", "0.25 to 0.5", "0.5 to 1"]
    close = drift.bin_labels([33.25301, 33.25349, 34.0])
    assert len(set(close)) == 4 and "33.253 to 33.2535" in close  # digits added until the edges differ
    assert drift.bin_labels([]) == ["all"]


def test_the_monitor_histogram_of_money_has_readable_bins():
    rng = np.random.default_rng(2)
    income = pd.Series(rng.uniform(10_000, 2_000_000, 5_000), name="income")
    profile = drift.fit_numeric("income", income)
    bars, _ = drift.feature_figures(profile, income.head(300))
    labels = list(bars.data[0].x)
    assert len(labels) == 10 and not any("e+" in label for label in labels)
    assert labels[0].startswith("< ") and labels[-1].startswith("≥ ") and labels[-1].endswith("M")
    assert labels == drift.bin_labels(profile.edges)


# --- flags and values in words -----------------------------------------------------------------


def test_a_flag_says_why_and_on_a_stable_feature_that_the_shift_is_small():
    rng = np.random.default_rng(4)
    profile = drift.fit_profile(pd.DataFrame({"x": rng.normal(size=50_000), "y": rng.normal(size=50_000)}))
    report = drift.compare(profile, pd.DataFrame({"x": rng.normal(0.04, 1, 50_000), "y": rng.normal(size=50_000)}))
    x, y = report.features
    assert x.status == "stable" and x.flagged
    assert drift.flag_reason(x, report.thresholds) == "KS p < 0.05 (a real but small shift)"
    assert drift.flag_reason(y, report.thresholds) == ""  # not flagged: nothing to say
    cats = drift.fit_profile(pd.DataFrame({"c": ["a"] * 500 + ["b"] * 500}))
    moved = drift.compare(cats, pd.DataFrame({"c": ["a"] * 900 + ["b"] * 100})).features[0]
    assert moved.status == "significant" and drift.flag_reason(moved, drift.Thresholds()) == "chi-square p < 0.05 (the shift is not chance)"


def test_a_few_rows_are_shown_beside_the_training_data():
    reference = pd.DataFrame({"x": np.arange(1000, dtype=float), "c": ["a"] * 700 + ["b"] * 295 + ["rare"] * 5})
    profile = drift.fit_profile(reference)
    few = pd.DataFrame({"x": [500.0, 5_000.0, np.nan], "c": ["a", "new", "rare"]})
    table = drift.values_beside_reference(profile, few).set_index("feature")
    assert list(table.columns) == ["in training", "row 1", "row 2", "row 3"]
    assert table.loc["x", "in training"] == "median 500 · 0 to 999"
    assert table.loc["x", "row 1"] == "500 · higher than 50% of training rows"
    assert table.loc["x", "row 2"] == "5,000 · above the training range"
    assert table.loc["x", "row 3"] == "missing"
    assert table.loc["c", "in training"] == "most common a (70%) · 3 categories"
    assert table.loc["c", "row 1"] == "a · 70% of training rows"
    assert table.loc["c", "row 2"] == "new · never seen in training"
    assert table.loc["c", "row 3"] == "rare · rare in training (under 1%)"
    many = drift.values_beside_reference(profile, pd.DataFrame({"x": np.arange(50.0), "c": ["b"] * 50})).set_index("feature")
    assert list(many.columns) == ["in training", "this batch"]
    assert many.loc["x", "this batch"] == "median 24.5 · 0 to 49"


# --- a file compared batch by batch ------------------------------------------------------------


def same_report(streamed: drift.DriftReport, whole: drift.DriftReport) -> None:
    """The batch-by-batch report is the whole-frame report: the same floats (repr-equal)."""
    assert repr(streamed.features) == repr(whole.features)
    assert repr(streamed.prediction) == repr(whole.prediction)
    assert streamed.summary == whole.summary
    assert streamed.to_dict() == whole.to_dict()


def batches_of(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[start:start + size] for start in range(0, len(frame), size)]


def test_the_kobe_file_compared_batch_by_batch_gives_the_whole_frame_report(kobe_frames):
    dev, prod = kobe_frames
    rng = np.random.default_rng(0)
    profile = drift.fit_profile(dev.drop(columns=["shot_made_flag"]), scores=rng.uniform(size=4_000))
    scores = rng.uniform(0.2, 0.6, len(prod))
    comparison = drift.BatchComparison(profile)
    for start, part in zip(range(0, len(prod), 1_000), batches_of(prod, 1_000), strict=True):
        comparison.add(part, scores[start:start + 1_000])
    same_report(comparison.report(), drift.compare(profile, prod, scores=scores))
    assert comparison.report().summary["status"] == "significant"


def ragged(n: int, seed: int) -> pd.DataFrame:
    """Numbers with heavy ties and gaps, text with missing values and categories training never
    saw, and a numeric-looking text feature."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "tied": np.round(rng.normal(0, 2, n)),  # a few dozen distinct values
        "smooth": rng.normal(0, 1, n),
        "city": rng.choice(["lisbon", "porto", "faro", "braga", "tiny"], n, p=[0.4, 0.3, 0.2, 0.095, 0.005]).astype(object),
        "code": rng.integers(0, 4, n).astype(str),  # text in training
        "sparse": rng.normal(0, 1, n),
    })
    frame.loc[rng.random(n) < 0.1, "tied"] = np.nan
    frame.loc[rng.random(n) < 0.05, "city"] = None
    return frame


def test_batch_by_batch_equals_the_whole_frame_with_ties_missing_values_and_unseen_categories():
    reference = ragged(20_000, 1)
    profile = drift.fit_profile(reference, scores=np.round(np.random.default_rng(2).uniform(size=3_000), 2))
    current = ragged(9_000, 3)
    current["tied"] += np.random.default_rng(4).choice([0, 1], len(current))  # values off the reference grid too
    current.loc[current.index[::7], "city"] = "new town"  # never seen in training
    current.loc[current.index[:50], "city"] = "tiny"  # rare in training: counted in "other"
    current["sparse"] = np.nan
    current.loc[current.index[:150], "sparse"] = 5.0  # too few values to judge
    current["smooth"] = current["smooth"].astype(object)
    current.loc[current.index[3], "smooth"] = "not a number"  # unusable: missing, as compare reads it
    current = current.drop(columns=["code"])  # a profiled column the file lacks: "no data"
    scores = np.round(np.random.default_rng(5).uniform(0.1, 0.9, len(current)), 2)  # ties with the reference scores
    limits = drift.Thresholds(psi_moderate=0.05, psi_significant=0.2, p_value=0.01)
    whole = drift.compare(profile, current, limits, scores=scores)
    for size in (1, 997, 4_000, len(current)):  # one row per batch, uneven batches, one batch
        comparison = drift.BatchComparison(profile)
        comparison.add(current.iloc[:0], scores[:0])  # an empty batch changes nothing
        for start, part in zip(range(0, len(current), size), batches_of(current, size), strict=True):
            comparison.add(part, scores[start:start + size])
        same_report(comparison.report(limits), whole)
    by_name = {r.feature: r for r in whole.features}
    assert by_name["code"].status == "no data" and by_name["sparse"].status == drift.TOO_FEW
    assert by_name["city"].unseen_share > 0.1 and by_name["tied"].missing_current > 0


def test_whole_numbers_in_some_batches_and_decimals_in_others_count_as_the_whole_file_reads_them():
    """A text feature that a file holds as numbers: pandas reads a batch without gaps as whole
    numbers ("1") and one with a gap as decimals ("1.0"); the whole file, gaps included, reads as
    decimals, so every batch is counted that way."""
    profile = drift.fit_profile(pd.DataFrame({"code": ["1", "2", "3", "1.0"] * 100}))
    whole_numbers = pd.DataFrame({"code": np.array([1, 2, 3, 3] * 60)})
    with_gaps = pd.DataFrame({"code": [1.0, np.nan, 2.0, 1.0] * 60})
    for parts in ([whole_numbers, with_gaps], [with_gaps, whole_numbers], [whole_numbers, whole_numbers]):
        comparison = drift.BatchComparison(profile)
        for part in parts:
            comparison.add(part)
        same_report(comparison.report(), drift.compare(profile, pd.concat(parts, ignore_index=True)))


@pytest.mark.parametrize("shape", ["shifted", "same sample", "heavy ties", "tiny batch", "disjoint", "one value", "below and above"])
def test_ks_from_counts_is_ks_test(shape):
    rng = np.random.default_rng(8)
    reference = np.round(rng.normal(0, 1, 30_000), 1 if shape == "heavy ties" else 6)
    current = {
        "shifted": rng.normal(0.05, 1, 20_000),
        "same sample": reference.copy(),
        "heavy ties": np.round(rng.normal(0, 1, 20_000), 1),
        "tiny batch": rng.normal(0, 1, 2),
        "disjoint": rng.normal(10, 1, 20_000),
        "one value": np.full(500, reference[0]),
        "below and above": np.concatenate([rng.normal(-9, 1, 300), rng.normal(9, 1, 300)]),
    }[shape]
    profile = drift.fit_numeric("x", reference)
    comparison = drift.BatchComparison(drift.ReferenceProfile({"x": profile}))
    for part in np.array_split(current, 5):
        comparison.add(pd.DataFrame({"x": part}))
    streamed = comparison.report().features[0]
    d, p = drift.ks_test(profile, np.sort(current))
    assert (streamed.ks_statistic, streamed.ks_pvalue) == (d, p)
    assert d == pytest.approx(ks_2samp(reference, current).statistic, abs=1e-12)


def test_what_the_batch_comparison_holds_does_not_grow_with_the_rows():
    reference = ragged(5_000, 6)
    profile = drift.fit_profile(reference, scores=np.random.default_rng(7).uniform(size=1_000))
    comparison = drift.BatchComparison(profile)
    comparison.add(ragged(1_000, 8), np.random.default_rng(9).uniform(size=1_000))
    held = comparison.held()
    for seed in range(10, 40):  # 30 more batches, 30 times the rows
        comparison.add(ragged(1_000, seed), np.random.default_rng(seed).uniform(size=1_000))
    assert comparison.rows == 31_000 and comparison.held() == held
    # bounded by the reference profile: two counts per distinct reference value (+ bins and totals)
    distinct = sum(len(p.values) for p in [*profile.features.values(), profile.prediction] if isinstance(p, drift.NumericProfile))
    categories = sum(len(p.categories) for p in profile.features.values() if isinstance(p, drift.CategoricalProfile))
    assert held <= 2 * distinct + 2 * categories + 20 * (len(profile.features) + 1)


def test_a_report_read_back_is_the_same_report_and_follows_thresholds_edited_since():
    reference, current = ragged(10_000, 11), ragged(3_000, 12)
    current["smooth"] += 0.15
    current.loc[current.index[:100], "sparse"] = np.nan
    profile = drift.fit_profile(reference, scores=np.random.default_rng(13).uniform(size=2_000))
    scores = np.random.default_rng(14).uniform(0, 0.8, len(current))
    report = drift.compare(profile, current, scores=scores)
    import json

    stored = json.loads(json.dumps(report.to_dict()))  # as logged on the run and read back
    same_report(drift.DriftReport.from_dict(stored), report)
    stricter = drift.Thresholds(psi_moderate=0.01, psi_significant=0.02, p_value=0.5)
    same_report(drift.DriftReport.from_dict(stored, stricter), drift.compare(profile, current, stricter, scores=scores))


# --- the table of statistics -------------------------------------------------------------------


def same_number(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_the_uniform_rows_agree_with_the_results_and_the_thresholds():
    reference, current = ragged(10_000, 21), ragged(3_000, 22)
    current["smooth"] += 0.5
    current.loc[current.index[:2_900], "sparse"] = np.nan  # too few values: no row flags
    profile = drift.fit_profile(reference, scores=np.random.default_rng(23).uniform(size=2_000))
    limits = drift.Thresholds(psi_moderate=0.05, psi_significant=0.3, p_value=0.01)
    report = drift.compare(profile, current, limits, scores=np.random.default_rng(24).uniform(0, 0.9, len(current)))
    rows = report.statistic_rows()
    assert [(r.feature, r.statistic) for r in rows] == [(f.feature, s.key) for f in report.features for s in drift.statistics_for(f.kind)]
    assert {r.statistic for r in rows} == {"psi", "ks", "chi2", "missing_change", "unseen_share"}
    by_feature = {f.feature: f for f in report.features}
    fields = {"psi": ("psi", None), "ks": ("ks_statistic", "ks_pvalue"), "chi2": (None, "chi2_pvalue"),
              "missing_change": ("missing_change", None), "unseen_share": ("unseen_share", None)}
    limit = {"psi": 0.05, "ks": 0.01, "chi2": 0.01, "missing_change": None, "unseen_share": None}
    for row in rows:
        f = by_feature[row.feature]
        value_field, p_field = fields[row.statistic]
        assert same_number(row.value, getattr(f, value_field) if value_field else math.nan), row
        assert same_number(row.p_value, getattr(f, p_field) if p_field else math.nan), row
        assert row.threshold == limit[row.statistic]
    for f in report.features:
        flags = {r.statistic: r.flagged for r in rows if r.feature == f.feature}
        assert flags["psi"] == (f.status in ("moderate", "significant"))  # PSI drives the status
        assert any(flag for key, flag in flags.items() if key != "psi") == f.flagged  # the others flag
    assert by_feature["smooth"].status != "stable" and by_feature["sparse"].status == drift.TOO_FEW
    assert not any(r.flagged for r in rows if r.feature == "sparse")
    prediction = [r for r in report.statistic_rows(prediction=True) if r.feature == "prediction score"]
    assert [r.statistic for r in prediction] == ["psi", "ks", "missing_change"]
    assert prediction[0].value == report.prediction.psi
    import json

    again = drift.DriftReport.from_dict(json.loads(json.dumps(report.to_dict())))  # as stored on a run and read back
    assert repr(again.statistic_rows(prediction=True)) == repr(report.statistic_rows(prediction=True))
    assert "extra" not in report.to_dict()["features"][0]  # the built-in statistics write the report as before


def test_every_threshold_is_a_thresholds_field_or_none():
    for s in drift.STATISTICS.values():
        assert s.threshold is None or s.threshold in drift.Thresholds.__dataclass_fields__, s.key
        assert s.flags_on in ("value", "p_value") and s.flags_when in ("above", "below")
        assert set(s.applies_to) <= {"numeric", "categorical"}
    assert drift.STATISTICS["psi"].default_threshold == drift.Thresholds().psi_moderate
    assert drift.STATISTICS["ks"].default_threshold == drift.STATISTICS["chi2"].default_threshold == drift.Thresholds().p_value
    assert [s.key for s in drift.STATISTICS.values() if s.drives_status] == ["psi"]


def out_of_range(profile: drift.NumericProfile, counts) -> tuple[float, float]:
    """Share of the batch's values outside the training range, and how surprising that many would be
    if the batch came from the training distribution (binomial, 2 / (n + 1) expected outside)."""
    from scipy.stats import binom

    below, at_or_below = counts.ecdf()
    outside = int(below[0] + counts.present - at_or_below[-1])
    return outside / counts.present, float(binom.sf(outside - 1, counts.present, 2 / (profile.count + 1)))


OUT_OF_RANGE = drift.Statistic(
    "out_of_range", "Values outside the training range", "out of range", ("numeric",), out_of_range,
    "Share of this file's values below the least or above the greatest training value.",
    attr="out_of_range", p_attr="out_of_range_pvalue", p_help="Chance of that many outside if nothing changed.",
    threshold=0.01, flags_on="value", flags_when="above", prediction=True)


@pytest.fixture
def with_out_of_range(monkeypatch):
    """The table with one more numeric statistic, for one test: nothing else is edited."""
    monkeypatch.setitem(drift.STATISTICS, OUT_OF_RANGE.key, OUT_OF_RANGE)
    return OUT_OF_RANGE


def out_of_range_case() -> tuple[drift.ReferenceProfile, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(31)
    reference = pd.DataFrame({"x": rng.normal(size=5_000), "y": rng.normal(size=5_000), "c": rng.choice(["a", "b"], 5_000)})
    profile = drift.fit_profile(reference, scores=rng.uniform(size=2_000))
    current = pd.DataFrame({"x": np.concatenate([rng.normal(size=1_800), np.full(200, 10.0)]), "y": rng.normal(size=2_000),
                            "c": rng.choice(["a", "b"], 2_000)})
    return profile, current, rng.uniform(size=2_000)


def recorded_metrics(settings, report: drift.DriftReport) -> dict[str, float]:
    from core import monitoring, tracking

    client = tracking.client(settings)
    experiment = client.get_experiment_by_name("table of statistics") or client.get_experiment(client.create_experiment("table of statistics"))
    run_id = client.create_run(experiment.experiment_id).info.run_id
    monitoring.record(settings, run_id, report)
    return client.get_run(run_id).data.metrics


def test_the_mlflow_metric_names_of_the_built_in_statistics_stay_as_they_were(workspace):
    profile, current, scores = out_of_range_case()
    report = drift.compare(profile, current, scores=scores)
    metrics = recorded_metrics(workspace, report)
    assert set(metrics) == {
        *(f"drift.{m}.{f}" for f in ("x", "y") for m in ("psi", "ks", "ks_pvalue", "missing_change")),
        *(f"drift.{m}.c" for m in ("psi", "chi2_pvalue", "missing_change", "unseen_share")),
        "drift.prediction_psi", "drift.prediction_ks", "drift.drifted_share",
    }
    by_name = {f.feature: f for f in report.features}
    assert metrics["drift.psi.x"] == by_name["x"].psi and metrics["drift.chi2_pvalue.c"] == by_name["c"].chi2_pvalue
    assert metrics["drift.prediction_ks"] == report.prediction.ks_statistic


def test_a_statistic_added_to_the_table_is_computed_judged_shown_and_recorded(with_out_of_range, workspace, monkeypatch, capsys):
    profile, current, scores = out_of_range_case()
    report = drift.compare(profile, current, scores=scores)
    # computed, the same floats batch by batch
    comparison = drift.BatchComparison(profile)
    for start, part in zip(range(0, len(current), 300), batches_of(current, 300), strict=True):
        comparison.add(part, scores[start:start + 300])
    same_report(comparison.report(), report)
    x, y, c = report.features
    expected = float(np.mean((current["x"] < profile.features["x"].values[0]) | (current["x"] > profile.features["x"].values[-1])))
    assert x.extra["out_of_range"] == pytest.approx(expected, abs=1e-12) and x.extra["out_of_range_pvalue"] < 1e-10
    assert "out_of_range" not in c.extra  # numeric only
    # in the uniform rows, with its threshold; it flags x (and says so), not y
    rows = {(r.feature, r.statistic): r for r in report.statistic_rows(prediction=True)}
    assert rows["x", "out_of_range"].value == x.extra["out_of_range"] and rows["x", "out_of_range"].threshold == 0.01
    assert rows["x", "out_of_range"].flagged and not rows["y", "out_of_range"].flagged
    assert ("c", "out_of_range") not in rows and ("prediction score", "out_of_range") in rows
    assert x.flagged and "out of range ≥ 0.01" in drift.flag_reason(x, report.thresholds)
    # kept in the stored report, and an older report without it still reads
    import json

    stored = json.loads(json.dumps(report.to_dict()))
    same_report(drift.DriftReport.from_dict(stored), report)
    for feature in stored["features"]:
        feature.pop("extra", None)
    older = drift.DriftReport.from_dict(stored)
    assert math.isnan(older.features[0].get("out_of_range")) and older.features[0].psi == x.psi
    # in the MLflow metrics, beside the built-in ones
    metrics = recorded_metrics(workspace, report)
    assert metrics["drift.out_of_range.x"] == x.extra["out_of_range"]
    assert metrics["drift.out_of_range_pvalue.x"] == x.extra["out_of_range_pvalue"]
    assert "drift.prediction_out_of_range" in metrics and "drift.out_of_range.c" not in metrics
    assert {"drift.psi.x", "drift.ks.x", "drift.ks_pvalue.x", "drift.chi2_pvalue.c", "drift.prediction_psi"} <= set(metrics)
    # in the CLI's table
    from core import monitoring
    from core.__main__ import main

    monkeypatch.setattr(monitoring, "file_drift", lambda settings, reference, frame: report)
    path = workspace.data_dir / "current.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    current.to_csv(path, index=False)
    assert main(["drift", "--model", "m@champion", "--input", str(path)]) == (3 if report.any_significant else 0)
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:4] == ["feature", "kind", "status", "psi"] and header[-2:] == ["out_of_range", "out_of_range_pvalue"]
    assert "prediction drift: PSI " in out and ", out of range " in out
