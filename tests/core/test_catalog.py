"""core.catalog: algorithm specs drive the form and validate CLI input."""

from __future__ import annotations

import pytest

from core import catalog
from core.errors import BadInputError

REQUIRED = {
    "classification": {"lr", "dt", "rf", "et", "knn", "nb", "svm", "gbc", "lightgbm"},
    "regression": {"lr", "ridge", "lasso", "en", "dt", "rf", "et", "knn", "gbr", "lightgbm"},
}


@pytest.mark.parametrize("task", catalog.TASKS)
def test_catalogue_covers_the_required_algorithms_with_valid_defaults(task):
    keys = {a.key for a in catalog.algorithms(task)}
    assert REQUIRED[task] <= keys
    for algorithm in catalog.algorithms(task):
        assert algorithm.params, algorithm.key
        assert algorithm.validate({}) == algorithm.defaults()  # every default is inside its own range


@pytest.mark.parametrize(
    ("option", "expected"),
    [("dt.max_depth=5", {"dt": {"max_depth": 5}}), ("lr.C=0.5", {"lr": {"C": 0.5}}),
     ("dt.criterion=entropy", {"dt": {"criterion": "entropy"}}), ("lr.max_iter=2e3", {"lr": {"max_iter": 2000}})],
)
def test_set_options_are_parsed_and_typed(option, expected):
    assert catalog.parse_set_options("classification", [option]) == expected


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("dt.max_depth=0", r"dt\.max_depth = 0 is out of range: it must be an integer from 1 to 50"),
        ("dt.max_depth=2.5", r"must be an integer from 1 to 50; got '2\.5'"),
        ("dt.max_depth=deep", r"must be an integer"),
        ("dt.criterion=best", r"must be one of 'gini', 'entropy', 'log_loss'; got 'best'"),
        ("lr.C=-1", r"lr\.C = -1 is out of range"),
        ("lr.C=nan", r"must be a number"),
        ("dt.depth=3", r"has no hyperparameter 'depth'\. Valid: max_depth, min_samples_leaf, criterion"),
        ("xgb.depth=3", r"There is no classification algorithm 'xgb'\. Valid: lr"),
        ("max_depth=3", r"--set expects ALGORITHM\.PARAM=VALUE"),
        ("dt.max_depth", r"--set expects ALGORITHM\.PARAM=VALUE"),
    ],
)
def test_bad_set_options_say_what_is_valid(option, message):
    with pytest.raises(BadInputError, match=message):
        catalog.parse_set_options("classification", [option])


def test_bool_and_none_handling():
    lr = catalog.get("regression", "lr")
    assert lr.validate({"fit_intercept": "false"}) == {"fit_intercept": False}
    assert catalog.estimator_kwargs(catalog.get("classification", "lr"), {})["class_weight"] is None
    with pytest.raises(BadInputError, match="true or false"):
        lr.validate({"fit_intercept": "maybe"})


def test_tune_metric_check():
    assert catalog.check_tune_metric("classification", None) == "auc"
    with pytest.raises(BadInputError, match="Valid: rmse, mae, r2, mape"):
        catalog.check_tune_metric("regression", "auc")
