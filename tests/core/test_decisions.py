"""core.decisions: the threshold table, the expected cost and its cheapest cut-off, gain and lift,
the comparison of a job's models; checked against brute force, scikit-learn and plain numpy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from core import decisions
from core.errors import BadInputError
from core.training import TrainingSummary


def scores(n: int = 997, seed: int = 0, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes and probabilities of a fair model: positives score higher on average; rounded to 2
    decimals (many equal scores, 0 and 1 among them) unless ``ties`` is False."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.35
    score = np.clip(rng.normal(0.35 + 0.25 * truth, 0.2), 0, 1)
    return truth, (score.round(2) if ties else score)


def test_threshold_table_equals_scikit_learn_at_every_cut_off():
    truth, score = scores()
    table = decisions.threshold_table(truth, score)
    assert list(table["cutoff"]) == [round(k / 100, 2) for k in range(101)]
    for row in table.itertuples():
        predicted = score >= row.cutoff
        assert row.share_positive == pytest.approx(predicted.mean())
        assert row.recall == pytest.approx(skm.recall_score(truth, predicted, zero_division=0))
        assert row.f1 == pytest.approx(skm.f1_score(truth, predicted, zero_division=0))
        if predicted.any():
            assert row.precision == pytest.approx(skm.precision_score(truth, predicted))
        else:
            assert math.isnan(row.precision)  # nothing flagged: no precision to measure, not 0
        assert (row.tp, row.fp, row.fn, row.tn) == tuple(skm.confusion_matrix(truth, predicted, labels=[False, True]).ravel()[[3, 1, 2, 0]])
    # at 0 every row is flagged, and recall can only fall as the cut-off rises
    assert table.loc[0, "share_positive"] == 1 and table.loc[0, "recall"] == 1
    assert (np.diff(table["recall"]) <= 1e-12).all() and (np.diff(table["share_positive"]) <= 1e-12).all()


def brute_force(truth, score, cost_fp, cost_fn):
    """The cheapest cut-off by trying every holdout score (and one above them all), one row at a time."""
    candidates = sorted(set(score.tolist()) | {max(1.0, np.nextafter(score.max(), 2))}, reverse=True)
    best = None
    for cutoff in candidates:
        fp = sum(1 for t, s in zip(truth, score, strict=True) if s >= cutoff and not t)
        fn = sum(1 for t, s in zip(truth, score, strict=True) if s < cutoff and t)
        cost = fp * cost_fp + fn * cost_fn
        if best is None or cost < best[1]:  # equal costs: the higher cut-off, met first, stays
            best = (cutoff, cost, fp, fn)
    return best


@pytest.mark.parametrize(("cost_fp", "cost_fn", "ties", "seed"), [
    (1, 5, True, 0), (1, 1, True, 1), (5, 1, False, 2), (1, 20, False, 3), (0.3, 0.7, True, 4), (0, 1, True, 5),
])
def test_the_cheapest_cut_off_equals_a_brute_force_search_over_the_scores(cost_fp, cost_fn, ties, seed):
    truth, score = scores(n=400, seed=seed, ties=ties)
    choice = decisions.best_cutoff(truth, score, cost_fp, cost_fn)
    cutoff, cost, fp, fn = brute_force(truth, score, cost_fp, cost_fn)
    assert choice.cutoff == cutoff
    assert choice.cost_per_row == pytest.approx(cost / len(score))
    assert (choice.fp, choice.fn, choice.rows) == (fp, fn, len(score))
    assert choice.flagged == int((score >= choice.cutoff).sum())
    # the value people read and store flags the same rows, and is never longer
    assert choice.shown <= choice.cutoff and int((score >= choice.shown).sum()) == choice.flagged
    assert len(repr(choice.shown)) <= len(repr(choice.cutoff))
    # and no cut-off of the chart's grid is cheaper than it
    grid = decisions.expected_costs(truth, score, cost_fp, cost_fn)
    assert grid["cost_per_row"].min() >= choice.cost_per_row - 1e-12


def test_dearer_misses_move_the_cut_off_down_and_free_misses_flag_nobody():
    truth, score = scores()
    cheap_misses = decisions.best_cutoff(truth, score, cost_fp=5, cost_fn=1)
    dear_misses = decisions.best_cutoff(truth, score, cost_fp=1, cost_fn=5)
    assert dear_misses.cutoff < cheap_misses.cutoff and dear_misses.flagged > cheap_misses.flagged
    nobody = decisions.best_cutoff(truth, score, cost_fp=1, cost_fn=0)
    assert nobody.flags_nobody and nobody.flagged == 0 and nobody.cost_per_row == 0 and nobody.cutoff > score.max()
    sentence = decisions.cost_sentence(nobody, 1, 0, "churn = Yes")
    assert sentence.startswith("Missing a positive row (churn = Yes) costs nothing here, so flagging no row is free")
    assert "costs more than it saves" not in sentence
    # the lowest score is a positive and misses are dear: flagging every row is cheapest
    everyone = decisions.best_cutoff([True, False, True, False, True], [0.1, 0.2, 0.3, 0.4, 0.9], cost_fp=1, cost_fn=10)
    assert everyone.flags_everyone and everyone.cutoff == 0.1 and everyone.cost_per_row == pytest.approx(2 / 5)
    assert "flag every row (any cut-off up to 0.100)" in decisions.cost_sentence(everyone, 1, 10, "churn = Yes")


def test_the_cost_sentence_states_the_fact_when_there_is_nothing_to_judge():
    """No positive row, no other row, a single row, a class absent from the rows: nothing is said about the model."""
    falling, rising = np.linspace(0.9, 0.1, 20), np.linspace(0.1, 0.9, 20)
    blame = ("costs more than it saves", "no better than treating", "cheapest")
    all_negative = decisions.decisions(pd.DataFrame({"actual": [0] * 20, "proba_0": falling, "proba_1": rising}),
                                       cost_fp=1, cost_fn=5, target="y")
    assert all_negative.cost.startswith("These 20 rows hold no row with y = 1, so the cost of a cut-off cannot be judged")
    for cost_fp, cost_fn in ((1, 5), (5, 1)):
        everyone = decisions.decisions(pd.DataFrame({"actual": [1] * 20, "proba_0": falling, "proba_1": rising}),
                                       cost_fp=cost_fp, cost_fn=cost_fn, target="y")
        assert everyone.cost.startswith("Every one of these 20 rows has y = 1, so the cost of a cut-off cannot be judged")
        assert not any(b in everyone.cost for b in blame)
    single = decisions.decisions(pd.DataFrame({"actual": [1], "proba_0": [0.3], "proba_1": [0.7]}), cost_fp=1, cost_fn=1,
                                 target="y")
    assert single.cost.startswith("This row has y = 1, so the cost of a cut-off cannot be judged")
    absent = decisions.decisions(pd.DataFrame({"actual": ["a"] * 12, "proba_a": [0.6] * 12, "proba_b": [0.3] * 12,
                                               "proba_c": [0.1] * 12}), positive="c", cost_fp=1, cost_fn=1, target="y")
    assert absent.cost.startswith("These 12 rows hold no row with y = c, so the cost of a cut-off cannot be judged")
    for sentence in (all_negative.cost, single.cost, absent.cost):
        assert not any(b in sentence for b in blame)


def test_a_free_mistake_is_said_to_be_free():
    truth, score = scores()
    separated = np.where(truth, 0.9, 0.1)  # a model that separates the classes perfectly
    free_misses = decisions.cost_sentence(decisions.best_cutoff(truth, separated, 1, 0), 1, 0, "churn = Yes")
    assert free_misses.startswith("Missing a positive row (churn = Yes) costs nothing here, so flagging no row is free")
    assert "costs more than it saves" not in free_misses
    # free false alarms: flagging rows is free; never "any cut-off up to 0.000"
    low = np.where(truth, score, 0.0)
    low[np.flatnonzero(truth)[0]] = 0.0  # a positive scored 0: every row must be flagged to miss none
    everyone = decisions.best_cutoff(truth, low, 0, 1)
    assert everyone.flags_everyone
    free_alarms = decisions.cost_sentence(everyone, 0, 1, "churn = Yes")
    assert free_alarms.startswith("A false alarm costs nothing here, so flagging rows is free")
    assert "flagging every row misses none and costs nothing" in free_alarms and "0.000" not in free_alarms
    some = decisions.best_cutoff(truth, separated, 0, 1)
    assert "flagging every row scored 0.9 or more" in decisions.cost_sentence(some, 0, 1, "churn = Yes")


def test_the_cost_sentence_says_the_cut_off_the_costs_and_the_cost_per_row():
    truth, score = scores()
    choice = decisions.best_cutoff(truth, score, 1, 5)
    sentence = decisions.cost_sentence(choice, 1, 5, "default = yes", at_half=0.9)
    assert sentence.startswith(f"At a cut-off of {choice.shown:g} the expected cost is lowest, {choice.cost_per_row:.3f} per row")
    assert "missing a positive row (default = yes) costs 5 and a false alarm costs 1" in sentence
    assert "(0.900 at the usual 0.5)" in sentence and f"{choice.fp:,} false alarms" in sentence


def test_costs_must_be_numbers_of_zero_or_more():
    truth, score = scores(n=50)
    for bad in (-1, float("nan"), "a lot", None):
        with pytest.raises(BadInputError, match="must be a number of 0 or more"):
            decisions.best_cutoff(truth, score, bad, 1)


def numpy_gain_lift(truth, score):
    """Gain and lift the plain way: rank the rows, count positives in each tenth of them."""
    order = np.argsort(-score, kind="stable")
    ranked = truth[order].astype(int)
    n, total = len(ranked), ranked.sum()
    gain = [ranked[:k].sum() / total for k in range(n + 1)]
    size = n // 10
    lift = [ranked[d * size:(d + 1) * size].mean() / ranked.mean() for d in range(10)]
    cumulative = [ranked[:(d + 1) * size].mean() / ranked.mean() for d in range(10)]
    return np.array(gain), np.array(lift), np.array(cumulative)


def test_gain_and_lift_equal_a_straightforward_numpy_computation():
    truth, score = scores(n=1000, ties=False)
    gain, lift = decisions.gain_lift(truth, score)
    expected_gain, expected_lift, expected_cumulative = numpy_gain_lift(truth, score)
    np.testing.assert_allclose(gain["share_of_positives"], expected_gain)
    np.testing.assert_allclose(gain["share_of_rows"], np.arange(1001) / 1000)
    np.testing.assert_allclose(lift["lift"], expected_lift)
    np.testing.assert_allclose(lift["cumulative_lift"], expected_cumulative)
    np.testing.assert_allclose(lift["cumulative_gain"], expected_gain[100::100])
    assert list(lift["rows"]) == [100] * 10 and lift["positives"].sum() == truth.sum()
    assert lift["lift"].iloc[0] > 1.3 > 0.7 > lift["lift"].iloc[-1]  # a fair model: the top tenth is rich in positives


def test_lift_of_a_small_example_worked_by_hand():
    # 20 rows, 5 positives (rate 0.25); the top two rows are positive, then one in each of deciles 3, 6 and 10
    truth = np.zeros(20, bool)
    truth[[0, 1, 4, 10, 19]] = True
    score = np.linspace(1, 0.05, 20)
    _, lift = decisions.gain_lift(truth, score)
    assert list(lift["positives"]) == [2, 0, 1, 0, 0, 1, 0, 0, 0, 1]
    assert list(lift["lift"]) == pytest.approx([4, 0, 2, 0, 0, 2, 0, 0, 0, 2])
    assert list(lift["cumulative_gain"]) == pytest.approx([0.4, 0.4, 0.6, 0.6, 0.6, 0.8, 0.8, 0.8, 0.8, 1.0])
    assert lift["cumulative_lift"].iloc[0] == pytest.approx(4) and lift["cumulative_lift"].iloc[-1] == pytest.approx(1)


def test_deciles_of_a_row_count_not_divisible_by_ten_differ_by_one_row_at_most():
    truth, score = scores(n=997)
    _, lift = decisions.gain_lift(truth, score)
    assert lift["rows"].sum() == 997 and set(lift["rows"]) == {99, 100}
    assert lift["positives"].sum() == truth.sum()


def test_gain_and_lift_refuse_rows_they_cannot_measure():
    with pytest.raises(BadInputError, match="at least 10 rows"):
        decisions.gain_lift([True, False, True], [0.9, 0.2, 0.4])
    with pytest.raises(BadInputError, match="None of these rows is positive"):
        decisions.gain_lift(np.zeros(30, bool), np.linspace(0, 1, 30))
    with pytest.raises(BadInputError, match="not numbers"):
        decisions.gain_lift(np.ones(30, bool), np.r_[np.linspace(0, 1, 29), np.nan])


def holdout(classes=("0", "1"), n=300, seed=0):
    """A holdout table as a training run keeps it: actual, predicted, one proba_<class> per class."""
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(len(classes)), n)
    actual = np.array([rng.choice(len(classes), p=p) for p in proba])
    labels = [int(c) if c.isdigit() else c for c in classes]
    table = pd.DataFrame({"actual": [labels[k] for k in actual], "predicted": [labels[k] for k in proba.argmax(1)]})
    for k, c in enumerate(classes):
        table[f"proba_{c}"] = proba[:, k]
    return table


def test_the_positive_class_is_the_last_and_another_one_can_be_chosen():
    table = holdout(("No", "Yes"))
    truth, score, positive = decisions.truth_and_score(table)
    assert positive == "Yes" and (truth == (table["actual"] == "Yes")).all() and (score == table["proba_Yes"]).all()
    three = holdout(("a", "b", "c"))
    truth, score, positive = decisions.truth_and_score(three, positive="a")
    assert positive == "a" and (truth == (three["actual"] == "a")).all() and (score == three["proba_a"]).all()
    with pytest.raises(BadInputError, match="'z' is not one of the model's classes"):
        decisions.truth_and_score(three, positive="z")
    with pytest.raises(BadInputError, match="gives no probabilities"):
        decisions.truth_and_score(table[["actual", "predicted"]])


def test_decisions_builds_the_charts_and_says_which_class_is_positive():
    table = holdout(("0", "1"), n=500)
    plain = decisions.decisions(table, target="shot_made_flag")
    assert list(plain.figures) == ["threshold", "gain", "lift"] and plain.cost is None
    assert "The positive class is 'shot_made_flag' = 1" in plain.note and "500 holdout rows" in plain.note
    costed = decisions.decisions(table, cost_fp=1, cost_fn=3, target="shot_made_flag")
    assert list(costed.figures) == ["threshold", "cost", "gain", "lift"]
    truth, score, _ = decisions.truth_and_score(table)
    assert costed.choice == decisions.best_cutoff(truth, score, 1, 3)
    assert costed.cost == decisions.cost_sentence(costed.choice, 1, 3, "shot_made_flag = 1",
                                                  float(decisions.expected_costs(truth, score, 1, 3, [0.5])["cost_per_row"][0]))
    threshold = costed.figures["threshold"]
    assert [t.name for t in threshold.data] == ["precision", "recall", "F1", "share of rows flagged"]
    assert threshold.layout.title.text == "Finding shot_made_flag = 1: the cut-off (holdout rows)"
    three = decisions.decisions(holdout(("a", "b", "c")), positive="b")
    assert "that class against all the others together" in three.note


def summary(compare: bool = False) -> TrainingSummary:
    """A finished job's summary as the job stores it: three models with CV means and standard deviations."""
    models = [
        {"algorithm": "lr", "name": "Logistic regression", "status": "FINISHED", "model_uri": "m:/1", "run_id": "a",
         "metrics": {"auc": 0.70, "f1": 0.55}, "cv_metrics": {"cv_auc_mean": 0.71, "cv_auc_std": 0.010, "cv_f1_mean": 0.50, "cv_f1_std": 0.03}},
        {"algorithm": "dt", "name": "Decision tree", "status": "FINISHED", "model_uri": "m:/2", "run_id": "b",
         "metrics": {"auc": 0.68, "f1": 0.60}, "cv_metrics": {"cv_auc_mean": 0.66, "cv_auc_std": 0.040, "cv_f1_mean": 0.58, "cv_f1_std": 0.02}},
        {"algorithm": "rf", "name": "Random forest", "status": "FINISHED", "model_uri": "m:/3", "run_id": "c",
         "metrics": {"auc": 0.74}, "cv_metrics": {"cv_auc_mean": 0.73, "cv_auc_std": 0.020}},
        {"algorithm": "nb", "name": "Naive Bayes", "status": "FAILED", "error": "boom", "metrics": {}, "cv_metrics": {}},
    ]
    return TrainingSummary.from_dict({"task": "classification", "models": models,
                                      "compare": {"metric": "f1", "folds": 4} if compare else None})


def test_the_comparison_ranks_models_by_cv_mean_with_their_spread_and_holdout_value():
    table = decisions.comparison_table(summary(), "auc")
    assert list(table["model"]) == ["Random forest", "Logistic regression", "Decision tree"]
    assert list(table["cv_mean"]) == [0.73, 0.71, 0.66] and list(table["cv_std"]) == [0.02, 0.01, 0.04]
    assert list(table["holdout"]) == [0.74, 0.70, 0.68] and list(table["best"]) == [True, False, False]
    assert decisions.comparison_metrics(summary()) == ["auc", "f1"]  # the default tuning metric first; only those measured
    assert decisions.comparison_metrics(summary(compare=True))[0] == "f1"  # the ranking metric of the comparison first
    f1 = decisions.comparison_table(summary(), "f1")
    assert list(f1["model"]) == ["Decision tree", "Logistic regression"]  # the forest has no CV F1: left out
    fig = decisions.comparison_figure(summary(compare=True), "auc")
    cv = fig.data[0]
    assert list(cv.y) == ["Random forest (best CV)", "Logistic regression", "Decision tree"]
    assert list(cv.error_x.array) == [0.02, 0.01, 0.04] and "over the 4 folds" in cv.name
    assert list(fig.data[1].x) == [0.74, 0.70, 0.68] and "holdout" in fig.data[1].name
    assert "higher is better" in fig.layout.title.text


def test_the_comparison_puts_the_lowest_first_for_an_error_metric():
    models = [{"algorithm": k, "name": k, "status": "FINISHED", "model_uri": f"m:/{k}", "metrics": {},
               "cv_metrics": {"cv_rmse_mean": v, "cv_rmse_std": 0.1}} for k, v in (("a", 3.0), ("b", 2.0), ("c", 4.0))]
    table = decisions.comparison_table(TrainingSummary.from_dict({"task": "regression", "models": models}), "rmse")
    assert list(table["model"]) == ["b", "a", "c"] and table["best"].tolist() == [True, False, False]


def test_the_usual_cut_off_costs_what_scoring_predicts_today_ties_included():
    """Scoring predicts the likelier class, so a yes/no row whose probability is exactly 0.5 goes to
    the first class: the cost 'at the usual 0.5' is that of scoring's own predictions (a decision
    tree gives many such ties), not of counting 0.5 as positive."""
    rng = np.random.default_rng(3)
    p1 = np.concatenate([np.full(40, 0.5), rng.uniform(0, 1, 160)])
    actual = (rng.uniform(0, 1, 200) < p1).astype(int)
    scores = pd.DataFrame({"actual": actual, "predicted": np.argmax(np.c_[1 - p1, p1], axis=1), "proba_0": 1 - p1, "proba_1": p1})
    predicted = scores["predicted"].to_numpy()
    expected = (2.0 * ((predicted == 1) & (actual == 0)).sum() + 5.0 * ((predicted == 0) & (actual == 1)).sum()) / len(actual)
    found = decisions.decisions(scores, None, 2.0, 5.0)
    assert f"({expected:,.3f} at the usual 0.5)" in found.cost


@pytest.mark.parametrize(("cutoff", "seed"), [(0.35, 0), (0.5, 1), (0.0, 2), (1.0, 3), (0.62, 4)])
def test_the_metrics_at_a_cut_off_equal_a_straightforward_numpy_computation(cutoff, seed):
    truth, score = scores(n=500, seed=seed)
    found = decisions.at_cutoff(truth, score, cutoff)
    predicted = score >= cutoff  # the rule: at or above the cut-off is positive
    tp, fp = int((predicted & truth).sum()), int((predicted & ~truth).sum())
    fn, tn = int((~predicted & truth).sum()), int((~predicted & ~truth).sum())
    assert (found.tp, found.fp, found.fn, found.tn, found.rows) == (tp, fp, fn, tn, 500)
    assert found.accuracy == pytest.approx((predicted == truth).mean())
    assert found.recall == pytest.approx(tp / (tp + fn))
    assert found.share_positive == pytest.approx(predicted.mean())
    if tp + fp:
        assert found.precision == pytest.approx(tp / (tp + fp))
        assert found.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn))
    else:
        assert math.isnan(found.precision)  # nothing flagged: no precision, not 0
    rows = {r["measure"]: r["value"] for r in decisions.at_cutoff_rows(found)}
    assert rows["share predicted positive"] == f"{predicted.mean():.1%}"
    assert rows["precision"] == ("n/a" if tp + fp == 0 else f"{tp / (tp + fp):.3f}")


def test_the_threshold_free_metrics_equal_scikit_learn_and_do_not_move_with_the_cut_off():
    truth, score = scores(n=600, seed=7, ties=False)
    free = decisions.threshold_free(truth, score)
    assert free.auc == pytest.approx(skm.roc_auc_score(truth, score))
    assert free.log_loss == pytest.approx(skm.log_loss(truth, np.c_[1 - score, score]))
    assert decisions.threshold_free(np.ones(20, bool), np.linspace(0.1, 0.9, 20)).auc is None  # nothing to rank
    with pytest.raises(BadInputError, match="must be a number from 0 to 1"):
        decisions.at_cutoff(truth, score, 1.5)


def test_decisions_measure_scoring_at_the_stored_cut_off_else_the_likelier_class():
    table = holdout(("0", "1"), n=400, seed=5)
    truth, score, _ = decisions.truth_and_score(table)
    plain = decisions.decisions(table, target="y")
    assert plain.stored is None
    # no cut-off stored: what scoring predicts, the likelier class (a probability of exactly 0.5 is not positive)
    likelier = table["proba_1"].to_numpy() > table["proba_0"].to_numpy()
    assert (plain.at_cutoff.tp + plain.at_cutoff.fp) == int(likelier.sum())
    stored = decisions.decisions(table, target="y", stored=0.3, cost_fp=1, cost_fn=4)
    assert stored.stored == 0.3 and stored.at_cutoff == decisions.at_cutoff(truth, score, 0.3, positive="1", classes=("0", "1"))
    assert stored.at_cutoff.as_metrics() == decisions.at_cutoff(truth, score, 0.3).as_metrics()  # the last class: the same
    assert stored.threshold_free == plain.threshold_free == decisions.threshold_free(truth, score)
    at_stored = float(decisions.expected_costs(truth, score, 1, 4, [0.3])["cost_per_row"].iloc[0])
    assert f"({at_stored:,.3f} at the stored cut-off 0.3)" in stored.cost
    assert any(s.x0 == 0.3 for s in stored.figures["threshold"].layout.shapes)  # marked on the chart
    assert not any(s.x0 == 0.3 for s in plain.figures["threshold"].layout.shapes)
    three = decisions.decisions(holdout(("a", "b", "c")), positive="b", stored=0.3)
    assert three.stored is None and three.at_cutoff is None  # a cut-off is stored for two classes only


def test_the_cut_off_people_read_is_the_shortest_decimal_that_flags_the_same_rows():
    # a tree's leaf probability 16/45 is the cheapest cut-off; the next lower score is 0.35
    truth = np.array([True, True, True, True, False, False, False, False])
    score = np.array([0.9, 0.6, 16 / 45, 16 / 45, 0.35, 0.35, 0.2, 0.1])
    choice = decisions.best_cutoff(truth, score, cost_fp=2, cost_fn=3)
    assert choice.cutoff == 16 / 45 and choice.readable == 0.355  # in (0.35, 0.3555...]: 0.36 is above it, 0.35 flags more
    assert decisions.short_cutoff(0.5, 0.2) == 0.5 and decisions.short_cutoff(0.123456789, 0.1234567) == 0.123456789
    assert decisions.short_cutoff(0.05, -math.inf) == 0.0  # flagging every row: 0 does the same
    costed = decisions.decisions(pd.DataFrame({"actual": truth.astype(int), "proba_0": 1 - score, "proba_1": score}),
                                 cost_fp=2, cost_fn=3)
    assert costed.cost.startswith("At a cut-off of 0.355 the expected cost is lowest")
    assert costed.figures["cost"].data[1].x[0] == 0.355 and "0.355" in costed.figures["cost"].data[1].name


def test_flagging_nobody_when_rows_score_1_cannot_be_stored_and_says_so():
    """The cheapest is to flag nobody, but two rows score exactly 1.0: the cut-off that flags nobody is
    above 1, which no version stores; the choice says so and never offers a value above 1."""
    truth = np.array([True, False, False, True, False])
    score = np.array([1.0, 1.0, 0.9, 0.2, 0.1])
    choice = decisions.best_cutoff(truth, score, cost_fp=100, cost_fn=1)
    assert choice.flags_nobody and choice.flagged == 0 and choice.cutoff > 1
    assert not choice.storable and choice.shown == 1.0 and choice.shown_text == "1"
    assert choice.note == "No cut-off from 0 to 1 flags nobody, because some rows score 1.0: the highest, 1, flags 2 rows."
    assert decisions.cost_sentence(choice, 100, 1, "y = 1").endswith(choice.note)
    found = decisions.decisions(pd.DataFrame({"actual": truth.astype(int), "proba_0": 1 - score, "proba_1": score}),
                                cost_fp=100, cost_fn=1)
    assert not found.choice.storable and found.cost.endswith(choice.note)
    at_one = found.at(found.choice.shown)  # what the page says before storing it: no error, the 2 rows at 1.0
    assert (at_one.tp + at_one.fp, at_one.cutoff) == (2, 1.0)
    # a top score below 1: flagging nobody is a cut-off of 1 and can be stored
    below = decisions.best_cutoff(truth, np.array([0.98, 0.99, 0.9, 0.2, 0.1]), cost_fp=100, cost_fn=1)
    assert below.flags_nobody and below.storable and below.note is None and below.shown == 1.0


def test_a_cut_off_no_short_decimal_can_write_is_printed_exactly_never_rounded_up():
    """No decimal of up to 6 places lies between the next lower score and the cheapest cut-off: what is
    printed is the exact value, never 0.123457, which is above it and flags one row fewer."""
    cut, lower = 0.1234567891, 0.123456789
    truth = np.array([True, True, False, False])
    score = np.array([0.9, cut, lower, 0.1])
    choice = decisions.best_cutoff(truth, score, cost_fp=1, cost_fn=1)
    assert (choice.cutoff, choice.flagged, choice.shown) == (cut, 2, cut)
    assert f"{cut:g}" == "0.123457" and int((score >= float(f"{cut:g}")).sum()) == 1  # what :g would print flags fewer
    assert choice.shown_text == "0.1234567891" and decisions.cutoff_text(0.355) == "0.355"
    printed = float(choice.shown_text)
    assert printed <= choice.cutoff and int((score >= printed).sum()) == choice.flagged
    sentence = decisions.cost_sentence(choice, 1, 1, "y = 1")
    assert sentence.startswith("At a cut-off of 0.1234567891 the expected cost is lowest") and "0.123457" not in sentence
    found = decisions.decisions(pd.DataFrame({"actual": truth.astype(int), "proba_0": 1 - score, "proba_1": score}),
                                cost_fp=1, cost_fn=1)
    assert found.figures["cost"].data[1].name == "lowest cost: cut-off 0.1234567891"
    # flagging every row: "any cut-off up to" rounds down, never to a value that flags fewer
    everyone = decisions.best_cutoff([True, False, True], [0.1235, 0.5, 0.9], cost_fp=1, cost_fn=10)
    assert everyone.flags_everyone and "any cut-off up to 0.123)" in decisions.cost_sentence(everyone, 1, 10, "y = 1")


@pytest.mark.parametrize("positive", ["0", "1"])
def test_the_metrics_at_a_cut_off_are_for_the_last_class_whichever_class_the_cut_off_flags(positive):
    """Precision, recall and F1 at a cut-off are those of the last class, as training and scoring
    measure them (classification_metrics, pos_label the last class, on the labels the rule decides)."""
    from core import evaluation, registry, scoring

    table = holdout(("0", "1"), n=400, seed=11)
    truth, score, _ = decisions.truth_and_score(table, positive)
    found = decisions.at_cutoff(truth, score, 0.42, positive=positive, classes=("0", "1"))
    proba = table[["proba_0", "proba_1"]].to_numpy()
    predicted = scoring.decide(proba, (0, 1), registry.Cutoff(value=0.42, positive=positive))
    expected = evaluation.classification_metrics(table["actual"].to_numpy(), predicted, proba, (0, 1))
    assert found.metric_class == "1" and found.positive == positive
    for key, value in found.as_metrics().items():
        assert value == pytest.approx(expected[key], abs=1e-12), key
    assert found.tp + found.fp == int((predicted == int(positive)).sum())  # the counts: the rows the cut-off flags
    rows = {r["measure"]: r["what it says"] for r in decisions.at_cutoff_rows(found)}
    if positive == "0":
        assert found.metric_note.startswith("Precision, recall and F1 are for class 1")
        assert rows["precision"] == "of the rows predicted 1 (not flagged), the share truly 1"
        # for the cut-off's own class they would differ: the figures are not those of class 0
        assert found.precision != pytest.approx(skm.precision_score(truth, score >= 0.42))
    else:
        assert found.metric_note is None and rows["precision"] == "of the rows flagged, the share truly positive"
    charted = decisions.decisions(table, positive, stored=0.42)
    assert charted.metric_class == "1" and charted.at_cutoff == found and charted.at(0.42) == found
