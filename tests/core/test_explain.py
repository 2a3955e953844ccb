"""core.explain: SHAP contributions of each original input column, on real Kobe and house-price
models trained and registered in a real sqlite MLflow store, loaded the verified way."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core import explain, registry, scoring
from core.errors import BadInputError, EmptyTableError
from core.settings import load_settings
from core.training import TrainingSpec, train
from tests.conftest import KOBE_FEATURES, cli_on, houses

# combined_shot_type has 6 values: PyCaret one-hot encodes it (one column per value)
KOBE_COLUMNS = (*KOBE_FEATURES, "combined_shot_type")


@pytest.fixture(scope="module")
def studio(tmp_path_factory, kobe_dev):
    """A workspace with Kobe classifiers (logistic regression, LightGBM, naive Bayes) and house-price
    regressors (linear regression, decision tree), each registered as champion."""
    ws = tmp_path_factory.mktemp("explain")
    settings = load_settings({"STUDIO_WORKSPACE": str(ws / "ws"), "STUDIO_DATA_DIR": str(ws / "data")})
    kobe = train(settings, TrainingSpec(target="shot_made_flag", features=KOBE_COLUMNS, algorithms=("lr", "lightgbm", "nb"), folds=2),
                 pd.read_parquet(kobe_dev), table_name="kobe dev", table_digest="d" * 64)
    prices = train(settings, TrainingSpec(target="price", algorithms=("lr", "dt"), folds=2), houses(600, 0),
                   table_name="houses", table_digest="h" * 64)
    banded = houses(600, 1).assign(band=lambda f: pd.cut(f["price"], 3, labels=["cheap", "middle", "dear"]).astype(str))
    bands = train(settings, TrainingSpec(target="band", features=("size", "rooms", "area"), algorithms=("lr", "dt", "lightgbm"),
                                         folds=2),
                  banded, table_name="bands", table_digest="b" * 64)
    for result, prefix in ((kobe, "kobe"), (prices, "prices"), (bands, "bands")):
        for m in result.models:
            assert m.status == "FINISHED", m.error
            registry.register(settings, m.run_id, f"{prefix}-{m.algorithm}", alias="champion")
    return settings


@pytest.fixture(scope="module")
def shots(kobe_prod) -> pd.DataFrame:
    """Production shots of several kinds (every combined_shot_type), as read from the file."""
    frame = pd.read_parquet(kobe_prod)
    return frame.groupby("combined_shot_type", group_keys=False).head(8).reset_index(drop=True)


def loaded(settings, name: str):
    model, pipeline = scoring.load_model(settings, f"{name}@champion")
    return model, pipeline, explain.background(settings, model, pipeline)


def features_seen(pipeline, frame: pd.DataFrame) -> pd.DataFrame:
    """The pipeline's steps before its estimator, run by hand (the target's label encoding gives
    back (X, None) when there is no target)."""
    X = frame
    for _, step in pipeline.steps[:-1]:
        X = step.transform(X)
        X = X[0] if isinstance(X, tuple) else X
    return X


def pieces(columns, original: str) -> list[str]:
    """The transformed columns that come from ``original``: itself, or its one-hot columns."""
    return [c for c in columns if c == original or str(c).startswith(f"{original}_")]


@pytest.mark.parametrize(("name", "rows_of", "text_column"), [("kobe-lr", "shots", "combined_shot_type"),
                                                               ("prices-lr", "houses", "area")])
def test_linear_contributions_are_coefficient_times_value_minus_the_background_mean(studio, shots, name, rows_of, text_column):
    model, pipeline, background = loaded(studio, name)
    frame = shots if rows_of == "shots" else houses(40, 7)
    explained = explain.explain_rows(model, pipeline, frame, background)
    assert explained.explainer == explain.LINEAR and explained.columns == model.features
    X = features_seen(pipeline, frame[list(model.features)])
    B = features_seen(pipeline, background)
    encoded = pieces(X.columns, text_column)
    assert len(encoded) >= 3 and text_column not in encoded  # really one-hot encoded
    coef = np.ravel(pipeline.steps[-1][1].coef_)
    by_hand_transformed = (X.to_numpy(float) - B.to_numpy(float).mean(axis=0)) * coef
    by_hand = pd.DataFrame(by_hand_transformed, columns=X.columns)
    for j, column in enumerate(model.features):
        expected = by_hand[pieces(X.columns, column)].sum(axis=1).to_numpy()
        np.testing.assert_allclose(explained.contributions[:, j], expected, rtol=1e-9, atol=1e-9, err_msg=column)
    assert np.abs(explained.contributions[:, list(model.features).index(text_column)]).max() > 0


@pytest.mark.parametrize(("name", "explainer", "output"), [
    ("kobe-lr", explain.LINEAR, explain.LOG_ODDS),
    ("kobe-lightgbm", explain.TREE, explain.PROBABILITY),
    ("kobe-nb", explain.PERMUTATION, explain.PROBABILITY),
    ("prices-lr", explain.LINEAR, explain.PREDICTION),
    ("prices-dt", explain.TREE, explain.PREDICTION),
])
def test_base_value_plus_contributions_is_the_models_output(studio, shots, name, explainer, output):
    model, pipeline, background = loaded(studio, name)
    frame = shots if name.startswith("kobe") else houses(40, 7)
    explained = explain.explain_rows(model, pipeline, frame, background)
    assert (explained.explainer, explained.output) == (explainer, output)
    # the output, computed here by the whole pipeline from the original columns
    if output == explain.PREDICTION:
        expected = pipeline.predict(frame[list(model.features)])
        assert explained.output_class is None
    else:
        probability = pipeline.predict_proba(frame[list(model.features)])[:, -1]
        expected = np.log(probability / (1 - probability)) if output == explain.LOG_ODDS else probability
        assert explained.output_class == 1 and explained.output_label.endswith("of 1")
    np.testing.assert_allclose(explained.outputs, expected, rtol=1e-9, atol=1e-9)
    total = explained.base_value + explained.contributions.sum(axis=1)
    # Exact for tree and linear, to 1e-6; for a prediction in large units (prices of ~200,000),
    # 1e-6 of the prediction: SHAP's tree explainer keeps leaf values in float32 (off by ~0.02 there).
    # SHAP's permutation explainer reuses unchanged model evaluations, which leaves a few rows off
    # by up to ~3e-6 (measured on these shots).
    scale = np.maximum(1.0, np.abs(explained.outputs)) if output == explain.PREDICTION else 1.0
    tolerance = 1e-6 if explainer != explain.PERMUTATION else 1e-4
    assert (np.abs(total - explained.outputs) / scale).max() < tolerance
    assert explained.contributions.shape == (len(frame), len(model.features))
    assert explained.background_rows == min(explain.BACKGROUND_ROWS[explainer], len(explain.reference_rows(studio, model)))


@pytest.mark.parametrize(("name", "output"), [("bands-dt", explain.PROBABILITY), ("bands-lr", explain.SCORE)])
def test_with_three_classes_the_last_class_is_explained(studio, name, output):
    model, pipeline, background = loaded(studio, name)
    frame = houses(30, 8)
    explained = explain.explain_rows(model, pipeline, frame, background)
    assert len(model.classes) == 3 and explained.output_class == model.classes[-1]
    assert explained.output == output and explained.output_label == f"the {output} of {model.classes[-1]}"
    if output == explain.PROBABILITY:
        expected = pipeline.predict_proba(frame[list(model.features)])[:, -1]
    else:  # the linear score of the last class, before the softmax turns the three scores into probabilities
        expected = pipeline.steps[-1][1].decision_function(features_seen(pipeline, frame[list(model.features)]))[:, -1]
    np.testing.assert_allclose(explained.outputs, expected, atol=1e-9)
    assert np.abs(explained.base_value + explained.contributions.sum(axis=1) - explained.outputs).max() < 1e-6


def test_a_tree_model_whose_probabilities_shap_cannot_add_up_is_explained_by_permutation(studio):
    """LightGBM with three classes turns its scores into probabilities with a softmax; SHAP's tree
    explainer squashes each class's score on its own, so its contributions missed predict_proba by
    ~0.25. The explanation is made again by permutation, says so, and adds up."""
    model, pipeline, background = loaded(studio, "bands-lightgbm")
    frame = houses(12, 9)
    explained = explain.explain_rows(model, pipeline, frame, background)
    assert explained.explainer == explain.PERMUTATION and any("permutation" in n for n in explained.notes)
    np.testing.assert_allclose(explained.outputs, pipeline.predict_proba(frame[list(model.features)])[:, -1], atol=1e-9)
    assert np.abs(explained.base_value + explained.contributions.sum(axis=1) - explained.outputs).max() < 1e-4


@pytest.mark.parametrize("name", ["bands-dt", "bands-lr"])
def test_with_three_classes_a_row_is_explained_for_the_class_it_was_predicted(studio, name):
    """The Predict and Score pages explain a prediction: with more than two classes, the probability
    (or score) of the class the row was predicted, not the last class."""
    from core import predict

    model, pipeline, background = loaded(studio, name)
    fields = predict.form_spec(model, None)  # the form without a profile: the values below are given whole
    rows = houses(60, 10)[list(model.features)]
    proba = pipeline.predict_proba(rows)
    row = next(i for i in range(len(rows)) if proba[i].argmax() != len(model.classes) - 1)  # not the last class
    values = rows.iloc[row].to_dict()
    explained = predict.explain_one(model, pipeline, values, fields, background)
    assert explained.output_class == model.classes[int(proba[row].argmax())] != model.classes[-1]
    with pytest.raises(BadInputError, match="not a class"):
        explain.explain_rows(model, pipeline, rows.head(1), background, explain_class="priceless")


def test_the_base_value_is_the_average_output_over_the_background(studio):
    model, pipeline, background = loaded(studio, "kobe-lightgbm")
    explained = explain.explain_rows(model, pipeline, background.head(3), background)
    assert explained.base_value == pytest.approx(pipeline.predict_proba(background)[:, -1].mean(), abs=1e-9)


def test_importance_on_original_columns_sums_the_one_hot_parts(studio, shots):
    import shap

    model, pipeline, background = loaded(studio, "kobe-lightgbm")
    explained = explain.explain_rows(model, pipeline, shots, background)
    importance = explain.global_importance(explained)
    assert set(importance.index) == set(model.features)
    assert list(importance) == sorted(importance, reverse=True)
    # SHAP on the transformed columns, computed here, then the one-hot parts of each row summed
    X = features_seen(pipeline, shots[list(model.features)])
    B = features_seen(pipeline, background)
    estimator = pipeline.steps[-1][1]
    values = shap.TreeExplainer(estimator, data=B.to_numpy(float), model_output="probability",
                                feature_perturbation="interventional").shap_values(X.to_numpy(float))
    per_piece = pd.DataFrame(values, columns=X.columns)
    assert len(pieces(X.columns, "combined_shot_type")) >= 3
    for column in model.features:
        summed = per_piece[pieces(X.columns, column)].sum(axis=1)
        assert importance[column] == pytest.approx(summed.abs().mean(), abs=1e-9), column


def test_a_contribution_in_words(studio, shots):
    assert (explain.sentence("shot_distance", 25, 0.2134, explain.PROBABILITY, 1)
            == "shot_distance = 25 raised the probability of 1 by 0.21")
    assert (explain.sentence("tenure", 2.0, -0.05, explain.PROBABILITY, "Yes")
            == "tenure = 2 lowered the probability of Yes by 0.05")
    assert explain.sentence("size", 120.5, 1234.4, explain.PREDICTION, target="price") == "size = 120.5 raised the predicted price by 1,234"
    assert explain.sentence("area", None, 0.0, explain.PREDICTION, target="price") == "area = missing did not change the predicted price"
    model, pipeline, background = loaded(studio, "kobe-lightgbm")
    explained = explain.explain_rows(model, pipeline, shots.head(1), background)
    said = explain.sentences(explained, 0)
    ordered = explained.row(0)
    assert [s.split(" = ")[0] for s in said] == list(ordered.index)  # largest effect first
    assert list(ordered.abs()) == sorted(ordered.abs(), reverse=True)
    distance = next(s for s in said if s.startswith("shot_distance = "))
    assert distance.startswith(f"shot_distance = {int(shots.loc[0, 'shot_distance'])} ")


def test_an_explanation_round_trips_through_json(studio, shots):
    model, pipeline, background = loaded(studio, "kobe-lr")
    explained = explain.explain_rows(model, pipeline, shots.head(4), background)
    again = explain.Explanation.from_dict(json.loads(json.dumps(explained.to_dict())))
    np.testing.assert_array_equal(again.contributions, explained.contributions)
    np.testing.assert_array_equal(again.outputs, explained.outputs)
    assert (again.columns, again.output, again.output_class, again.explainer) == (explained.columns, "log_odds", 1, "linear")
    assert explain.sentences(again, 3) == explain.sentences(explained, 3)


def test_the_training_rows_are_read_once_per_run(studio):
    model, pipeline, _ = loaded(studio, "kobe-lr")
    first = explain.reference_rows(studio, model)
    cached = studio.cache_dir / "runs" / model.run_id / "reference" / "train.parquet"
    assert cached.is_file() and list(first.columns) == list(model.features)
    cached.rename(cached.with_suffix(".moved"))
    try:
        assert explain.reference_rows(studio, model) is first
        again = explain.background(studio, model, pipeline)
        assert len(again) == explain.BACKGROUND_ROWS[explain.LINEAR] and again.index.equals(explain.background(studio, model, pipeline).index)
    finally:
        cached.with_suffix(".moved").rename(cached)


def test_bad_rows_are_refused_by_name(studio, shots):
    model, pipeline, background = loaded(studio, "kobe-lr")
    with pytest.raises(BadInputError, match="lacks 2 columns the model needs: lat, combined_shot_type"):
        explain.explain_rows(model, pipeline, shots.drop(columns=["lat", "combined_shot_type"]), background)
    with pytest.raises(EmptyTableError, match="holds no rows"):
        explain.explain_rows(model, pipeline, shots.head(0), background)


def test_the_permutation_explainer_stops_at_its_time_limit(studio, shots):
    model, pipeline, background = loaded(studio, "kobe-nb")
    ticks = iter(range(1_000))  # a clock that moves one second each time it is read
    with pytest.raises(BadInputError, match="longer than 2 s: 2 of 5 rows were done"):
        explain.explain_rows(model, pipeline, shots.head(5), background, time_limit=2.5, clock=lambda: next(ticks))


def test_cli_writes_the_contributions_and_refuses_bad_input(studio, kobe_prod, tmp_path, monkeypatch, capsys):
    with cli_on(monkeypatch, studio.workspace):
        def run(*args):
            code = explain.main(list(args))
            out = capsys.readouterr()
            return code, out.out, out.err

        code, out, err = run("--model", "kobe-lightgbm@champion", "--input", str(kobe_prod), "--rows", "5",
                             "--output", str(tmp_path / "why.parquet"))
        assert code == 0, err
        written = pd.read_parquet(tmp_path / "why.parquet")
        assert list(written.columns) == ["row_number", *KOBE_COLUMNS, "base_value", "output"]
        assert list(written["row_number"]) == [1, 2, 3, 4, 5]  # from 1, as a scored file's row_number
        model, pipeline = scoring.load_model(studio, "kobe-lightgbm@champion")
        first = pd.read_parquet(kobe_prod).head(5)
        np.testing.assert_allclose(written["output"], pipeline.predict_proba(first[list(model.features)])[:, -1], atol=1e-9)
        np.testing.assert_allclose(written[list(KOBE_COLUMNS)].sum(axis=1) + written["base_value"], written["output"], atol=1e-6)
        summary = json.loads(out)
        assert (summary["rows"], summary["explainer"], summary["explained"]) == (5, "tree", "the probability of 1")
        assert "explained 5 of 5 rows" in err and "row 1:" in err and "row 0:" not in err and "the probability of 1 by" in err

        code, _, err = run("--model", "kobe-lr@champion", "--input", str(kobe_prod), "--rows", "3", "--output", str(tmp_path / "why.csv"))
        assert code == 0, err
        assert len(pd.read_csv(tmp_path / "why.csv")) == 3

        lacking = tmp_path / "lacking.csv"
        pd.read_parquet(kobe_prod).head(20).drop(columns=["shot_distance"]).to_csv(lacking, index=False)
        header_only = tmp_path / "header.csv"
        header_only.write_text(",".join(KOBE_COLUMNS) + "\n")
        refused = [
            (("--model", "nope@champion", "--input", str(kobe_prod)), 4, "There is no registered model 'nope'"),
            (("--model", "kobe-lr@ghost", "--input", str(kobe_prod)), 4, "has no alias 'ghost'"),
            (("--model", "kobe-lr@champion", "--input", str(lacking)), 2, "lacks 1 column the model needs: shot_distance"),
            (("--model", "kobe-lr@champion", "--input", str(header_only)), 2, "holds no rows"),
            (("--model", "kobe-lr@champion", "--input", str(tmp_path / "absent.csv")), 2, "There is no file at"),
        ]
        for args, exit_code, message in refused:
            destination = tmp_path / "refused.parquet"
            code, out, err = run(*args, "--output", str(destination))
            assert (code, message in err, "Traceback" in err, out) == (exit_code, True, False, ""), (args, err)
            assert not destination.exists() and not list(tmp_path.glob(".refused*"))
        code, _, err = run("--model", "kobe-lr@champion", "--input", str(kobe_prod), "--output", str(tmp_path / "why.xlsx"))
        assert code == 2 and "--output must end in .parquet or .csv" in err


def test_explain_and_score_refuse_an_output_that_cannot_be_written_or_is_the_input(studio, kobe_prod, tmp_path, monkeypatch, capsys):
    """A folder, a path inside a file, the input itself: exit 2 naming the path, before any work, input untouched."""
    source = tmp_path / "shots.csv"
    pd.read_parquet(kobe_prod).head(20).to_csv(source, index=False)
    before = source.read_bytes()
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "plain").write_text("a file")
    (tmp_path / "sub").mkdir()
    cases = [(tmp_path / "folder.csv", "is a folder"),
             (tmp_path / "plain" / "why.csv", f"'{tmp_path / 'plain'}' is a file, not a folder"),
             (source, "is the input file itself"),
             (tmp_path / "sub" / ".." / "shots.csv", "is the input file itself")]  # the same file written another way
    with cli_on(monkeypatch, studio.workspace) as cli:
        for command, extra in (("explain", ("--rows", "3")), ("score", ())):
            for destination, message in cases:
                code = cli.main([command, "--model", "kobe-lr@champion", "--input", str(source), "--output", str(destination),
                                 *extra])
                err = capsys.readouterr().err
                assert (code, message in err, str(destination) in err, "Unexpected error" in err) == (2, True, True, False), \
                    (command, destination, err)
                assert source.read_bytes() == before
    assert list((tmp_path / "folder.csv").iterdir()) == [] and (tmp_path / "plain").read_text() == "a file"


def test_explain_notes_say_a_column_with_no_usable_value_was_treated_as_missing(studio, kobe_prod, tmp_path, monkeypatch, capsys):
    rows = pd.read_parquet(kobe_prod).head(6)
    unusable = tmp_path / "abc.csv"
    rows.assign(shot_distance="abc").to_csv(unusable, index=False)
    with cli_on(monkeypatch, studio.workspace) as cli:
        code = cli.main(["explain", "--model", "kobe-lr@champion", "--input", str(unusable), "--output", str(tmp_path / "o.csv")])
        err = capsys.readouterr().err
    assert code == 0, err
    assert "'shot_distance' holds no usable value in any of the 6 rows" in err and "treated as missing in every row" in err
    assert "input_problems" not in err and "converted" not in err  # scoring's words: an explanation has no such column
    assert "row_number" in pd.read_csv(tmp_path / "o.csv").columns


def test_explain_class_chooses_the_class_explained(studio, kobe_prod, tmp_path, monkeypatch, capsys):
    bands = tmp_path / "bands.csv"
    houses(30, 5).to_csv(bands, index=False)

    with cli_on(monkeypatch, studio.workspace) as cli:
        def run(*args):
            code = cli.main(["explain", *args])
            out = capsys.readouterr()
            return code, out.out, out.err

        # a model of three classes: by default the last, said in the summary and on stderr
        code, out, err = run("--model", "bands-lightgbm@champion", "--input", str(bands), "--rows", "4",
                             "--output", str(tmp_path / "last.csv"))
        assert code == 0, err
        summary = json.loads(out)
        assert sorted(summary["classes"]) == ["cheap", "dear", "middle"]
        last = summary["classes"][-1]
        assert summary["output_class"] == last and f"the explanation is about the last one, {last}" in summary["class_note"]
        assert "--class chooses another" in summary["class_note"] and "--class chooses another" in err
        chosen = next(c for c in summary["classes"] if c != last)
        code, out, err = run("--model", "bands-lightgbm@champion", "--input", str(bands), "--rows", "4", "--class", chosen,
                             "--output", str(tmp_path / "chosen.parquet"))
        assert code == 0, err
        assert json.loads(out)["output_class"] == chosen and "class_note" not in json.loads(out)
        model, pipeline = scoring.load_model(studio, "bands-lightgbm@champion")
        written = pd.read_parquet(tmp_path / "chosen.parquet")
        k = [str(c) for c in model.classes].index(chosen)
        np.testing.assert_allclose(written["output"], pipeline.predict_proba(houses(30, 5).head(4)[list(model.features)])[:, k],
                                   atol=1e-9)

        # a yes/no model's first class: its probability, exactly the sum of its contributions
        code, out, err = run("--model", "kobe-lightgbm@champion", "--input", str(kobe_prod), "--rows", "5", "--class", "0",
                             "--output", str(tmp_path / "zero.parquet"))
        assert code == 0, err
        assert json.loads(out)["explained"] == "the probability of 0" and "class_note" not in json.loads(out)
        model, pipeline = scoring.load_model(studio, "kobe-lightgbm@champion")
        zero = pd.read_parquet(tmp_path / "zero.parquet")
        first = pd.read_parquet(kobe_prod).head(5)[list(model.features)]
        np.testing.assert_allclose(zero["output"], pipeline.predict_proba(first)[:, 0], atol=1e-9)
        np.testing.assert_allclose(zero[list(KOBE_COLUMNS)].sum(axis=1) + zero["base_value"], zero["output"], atol=1e-6)
        # and a linear one in log-odds: minus those of class 1
        code, out, err = run("--model", "kobe-lr@champion", "--input", str(kobe_prod), "--rows", "5", "--class", "0",
                             "--output", str(tmp_path / "lr0.parquet"))
        assert code == 0, err
        model, pipeline = scoring.load_model(studio, "kobe-lr@champion")
        p0 = pipeline.predict_proba(first)[:, 0]
        np.testing.assert_allclose(pd.read_parquet(tmp_path / "lr0.parquet")["output"], np.log(p0 / (1 - p0)), atol=1e-6)

        for args, message in ((("--model", "kobe-lr@champion", "--class", "7"), "'7' is not a class of kobe-lr"),
                              (("--model", "prices-lr@champion", "--class", "1"), "--class is for a classifier")):
            code, out, err = run(*args, "--input", str(kobe_prod if "kobe" in args[1] else bands), "--rows", "2",
                                 "--output", str(tmp_path / "refused.csv"))
            assert (code, message in err, out) == (2, True, ""), err
            assert not (tmp_path / "refused.csv").exists()


# --- for people: probability shares, the chart, a row of a scored file -------------------------


def made(contributions, base: float, output: str = explain.LOG_ODDS, columns=("a", "b"), values=None) -> explain.Explanation:
    """An explanation written by hand (outputs = base + contributions, as SHAP's are)."""
    phi = np.asarray(contributions, dtype=float)
    frame = pd.DataFrame(values if values is not None else [[1.0] * len(columns)] * len(phi), columns=list(columns))
    return explain.Explanation(model="m/1", explainer=explain.LINEAR, output=output, output_class=1, target="y",
                               columns=tuple(columns), base_value=base, contributions=phi, outputs=base + phi.sum(axis=1),
                               values=frame, background_rows=10)


def logit(p):
    return np.log(p / (1 - p))


def test_log_odds_restated_as_probability_shares_add_up_to_the_probability(studio, shots):
    model, pipeline, background = loaded(studio, "kobe-lr")
    exact = explain.explain_rows(model, pipeline, shots, background)
    shares = explain.probability_shares(exact)
    assert (exact.output, shares.output, shares.output_label) == (explain.LOG_ODDS, explain.PROBABILITY, "the probability of 1")
    probability = pipeline.predict_proba(shots[list(model.features)])[:, -1]
    np.testing.assert_allclose(shares.outputs, probability, rtol=0, atol=1e-12)
    assert shares.base_value == pytest.approx(1 / (1 + np.exp(-exact.base_value)), abs=1e-15)
    # additive in probability: a typical training row's probability plus the shares is the row's probability
    assert np.abs(shares.base_value + shares.contributions.sum(axis=1) - probability).max() < 1e-9
    # the formula, row by row: the log-odds contribution x (p - p_base) / (logit(p) - logit(p_base))
    factor = (probability - shares.base_value) / (logit(probability) - logit(shares.base_value))
    np.testing.assert_allclose(shares.contributions, exact.contributions * factor[:, None], rtol=1e-6, atol=1e-12)
    for i in range(exact.rows):  # same order, same signs, row by row
        assert list(shares.row(i).index) == list(exact.row(i).index)
        assert (np.sign(shares.contributions[i]) == np.sign(exact.contributions[i])).all()
    assert explain.is_shares(shares) and not explain.is_shares(exact)
    assert explain.readable(exact).contributions.tolist() == shares.contributions.tolist()
    assert explain.caption(shares) == explain.SHARES_NOTE
    assert explain.base_line(shares).startswith("For a typical training row (the average log-odds over the training rows) "
                                                f"the probability of 1 is {round(shares.base_value, 4)}")
    said = explain.sentences(shares, 0)
    assert all("the probability of 1 by" in s or "did not change" in s for s in said)


def test_probability_shares_of_a_row_at_the_base_value_use_the_slope_and_other_outputs_are_kept():
    at_base = made([[0.3, -0.3], [0.0, 0.0]], base=0.4)  # the effects cancel: logit(p) - logit(p_base) = 0
    shares = explain.probability_shares(at_base)
    p_base = 1 / (1 + np.exp(-0.4))
    assert np.isfinite(shares.contributions).all()
    np.testing.assert_allclose(shares.contributions[0], [0.3 * p_base * (1 - p_base), -0.3 * p_base * (1 - p_base)], atol=1e-15)
    np.testing.assert_allclose(shares.contributions[1], [0.0, 0.0])
    np.testing.assert_allclose(shares.outputs, [p_base, p_base], atol=1e-15)
    huge = explain.probability_shares(made([[800.0, 5.0]], base=-3.0))  # far past where 1 / (1 + e^-z) overflows
    assert huge.outputs[0] == 1.0 and abs(huge.base_value + huge.contributions.sum() - 1.0) < 1e-9
    for output in (explain.PROBABILITY, explain.PREDICTION, explain.SCORE):
        kept = made([[0.1, 0.2]], 0.3, output=output)
        assert explain.probability_shares(kept) is kept and explain.readable(kept) is kept and not explain.is_shares(kept)
        assert explain.base_line(kept).startswith(f"On average over the training rows {kept.output_label} is 0.3; ")
    price = made([[1500.25, -20.0]], 231234.5678, output=explain.PREDICTION)
    assert explain.base_line(price) == "On average over the training rows the predicted y is 231,235; for this row it is 232,715."
    assert list(explain.figure(price).data[0].text) == ["231,235", "+1,500", "−20", "232,715"]


def test_the_chart_shows_the_base_each_input_largest_first_and_the_output_with_escaped_labels():
    columns = [f"c{k}" for k in range(12)] + ["<b>odd</b>"]
    phi = [[0.01 * (k + 1) * (-1) ** k for k in range(12)] + [0.5]]
    values = [[*range(12), "<script>x</script>"]]
    explained = made(phi, 0.2, output=explain.PROBABILITY, columns=columns, values=values)
    trace = explain.figure(explained, top=5).data[0]
    labels = list(trace.y)
    assert labels[0] == "average over the training rows" and labels[-1] == "this row"
    assert labels[1] == "&lt;b&gt;odd&lt;/b&gt; = &lt;script&gt;x&lt;/script&gt;"  # the largest first, escaped
    assert labels[2:6] == ["c11 = 11", "c10 = 10", "c9 = 9", "c8 = 8"]
    assert labels[6] == "8 other inputs"
    assert list(trace.measure) == ["absolute", *["relative"] * 6, "total"]
    x = list(trace.x)
    assert x[0] == 0.2 and x[-1] == pytest.approx(explained.outputs[0], abs=1e-12)
    assert x[0] + sum(x[1:-1]) == pytest.approx(x[-1], abs=1e-12)  # the bars end where the output is
    assert x[6] == pytest.approx(sum(phi[0][:8]), abs=1e-12)
    assert list(trace.text[1:3]) == ["+0.50", "−0.12"]
    assert not any("<" in str(t) for t in (*trace.y, *trace.hovertext))
    shares = explain.figure(explain.probability_shares(made([[0.2, -0.1]], 0.0))).data[0]
    assert shares.y[0] == "a typical training row" and len(shares.y) == 4
    tiny = explain.figure(made([[4.7e-05, -0.3]], 0.5, output=explain.PROBABILITY)).data[0]
    assert list(tiny.text) == ["0.5", "−0.30", "+0.000047", "0.2"]  # written out, not 4.7e-05


@pytest.fixture(scope="module")
def scored(studio, kobe_prod):
    """Kobe's production shots scored by the LightGBM champion in batches of 2,000 rows (several row groups)."""
    report = scoring.run(studio, scoring.plan(studio, "kobe-lightgbm@champion", kobe_prod), batch_rows=2_000, measure_drift=False)
    return report


def test_a_row_of_a_scored_file_is_read_by_its_row_number_and_explained(studio, scored, kobe_prod):
    model, pipeline, background = loaded(studio, "kobe-lightgbm")
    output = scoring.output_path(studio, scored.run_id)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(output).metadata.num_row_groups > 1
    written = pd.read_parquet(output)
    for number in (1, 4_321, scored.rows):
        row, shown = explain.explain_scored_row(output, number, model, pipeline, background)
        expected = written[written["row_number"] == number].iloc[0]
        assert row.row_number == number and row.prediction == expected["prediction"]
        assert row.probabilities == {"0": expected["proba_0"], "1": expected["proba_1"]}
        assert (row.model_name, row.model_version) == ("kobe-lightgbm", 1)
        assert row.values.iloc[0].to_dict() == expected[list(model.features)].to_dict()
        same = explain.explain_rows(model, pipeline, pd.read_parquet(kobe_prod).iloc[[number - 1]], background)
        np.testing.assert_allclose(shown.contributions, same.contributions, atol=1e-12)
        assert shown.outputs[0] == pytest.approx(expected["proba_1"], abs=1e-9)
        assert abs(shown.base_value + shown.contributions.sum() - shown.outputs[0]) < 1e-6
    for number, message in ((0, f"has rows 1 to {scored.rows:,}; there is no row 0"),
                            (scored.rows + 1, f"there is no row {scored.rows + 1:,}"), ("ten", "is a whole number")):
        with pytest.raises(BadInputError, match=message):
            explain.scored_row(output, number, model)
    other, other_pipeline, other_background = loaded(studio, "kobe-lr")
    with pytest.raises(BadInputError, match="was scored by kobe-lightgbm version 1, not by kobe-lr version 1"):
        explain.explain_scored_row(output, 1, other, other_pipeline, other_background)



# --- importance at training (core.training stores it with the model run) -------------------------


@pytest.mark.parametrize("name", ["bands-dt", "bands-lr"])
def test_importance_of_three_classes_is_the_mean_over_the_classes(studio, name):
    """A classifier of three classes: each class's mean |contribution| (in the space it is explained
    in), averaged over the classes; the axis says so."""
    model, pipeline, background = loaded(studio, name)
    rows = houses(300, 11)
    found = explain.holdout_importance(pipeline, rows, background, task=model.task, classes=model.classes,
                                       features=model.features, target=model.target, budget=60.0)  # all rows, however busy the machine
    assert found is not None and found.rows == 300 and found.explainer in (explain.TREE, explain.LINEAR)
    used = rows.sample(300, random_state=explain.SEED) if len(rows) > explain.IMPORTANCE_ROWS else rows
    per_class = [explain.global_importance(explain.readable(explain.explain_rows(model, pipeline, used[list(model.features)], background,
                                                                                 explain_class=c)))
                 for c in model.classes]
    expected = sum(p.reindex(list(model.features)) for p in per_class) / 3
    np.testing.assert_allclose(found.values.reindex(list(model.features)).to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-12)
    space = "probability" if found.explainer == explain.TREE else "score"
    assert found.measure == f"mean |effect| on the {space} of each class (averaged over the 3 classes)"


def test_importance_is_left_to_permutation_for_models_shap_explains_neither_exactly_nor_fast(studio):
    for name, rows in (("kobe-nb", None), ("bands-lightgbm", houses(100, 12))):
        model, pipeline, background = loaded(studio, name)
        rows = background.head(100) if rows is None else rows
        assert explain.holdout_importance(pipeline, rows, background, task=model.task, classes=model.classes,
                                          features=model.features) is None, name


def test_importance_of_a_slow_model_is_sized_to_its_time_budget(studio, shots):
    """With no time to spare, only the first rows are explained (timed to size the rest); with time, all."""
    model, pipeline, background = loaded(studio, "kobe-lightgbm")
    rows = pd.concat([shots] * 10, ignore_index=True)  # 480 rows
    tight = explain.holdout_importance(pipeline, rows, background, task=model.task, classes=model.classes,
                                       features=model.features, budget=0.0)
    roomy = explain.holdout_importance(pipeline, rows, background, task=model.task, classes=model.classes,
                                       features=model.features, budget=600.0)
    assert tight.rows == explain.IMPORTANCE_FIRST_ROWS < roomy.rows == len(rows)
    assert roomy.measure == "mean |effect| on the probability of 1" and set(roomy.values.index) == set(model.features)
