"""Models page: the newcomer's path (register two versions, champion, compare, promote, history),
empty state, a tracking server that is down, and a remote server."""

from __future__ import annotations

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import decisions, metrics, registry
from core.training import TrainingSpec, train
from tests.app_pages.conftest import APP, page_text
from tests.conftest import KOBE_FEATURES
from ui import md


@pytest.fixture
def models_page(app):
    app.switch_page("app_pages/models.py").run()
    assert not app.exception, app.exception
    return app


def test_empty_registry_says_what_to_do(models_page):
    assert "No model is registered yet" in page_text(models_page)


def click(at: AppTest, label: str) -> None:
    [b for b in at.button if b.label == label][0].click().run()
    assert not at.exception, at.exception


def test_newcomer_registers_two_kobe_versions_and_promotes_the_challenger(models_page, workspace, kobe_dev):
    result = train(workspace, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, folds=3),
                   pd.read_parquet(kobe_dev), table_name="dataset_kobe_dev", table_digest="k" * 64)
    lr, dt = (m.run_id for m in result.models)
    at = models_page

    # Register two versions from the page: the first as champion.
    at.text_input(key="models.register.run").input(lr)
    at.text_input(key="models.register.name").input("kobe")
    at.selectbox(key="models.register.alias").select("champion")
    [b for b in at.button if b.label == "Register"][0].click().run()
    assert not at.exception, at.exception
    assert "Registered version 1 of 'kobe'" in page_text(at)
    at.text_input(key="models.register.run").input(dt)
    at.text_input(key="models.register.name").input("kobe")
    at.selectbox(key="models.register.alias").select("(none)")
    [b for b in at.button if b.label == "Register"][0].click().run()
    assert "Registered version 2 of 'kobe'" in page_text(at)
    versions = at.dataframe[0].value
    assert list(versions["version"]) == [2, 1] and list(versions["aliases"]) == ["", "champion"]
    assert set(versions["training table"]) == {"dataset_kobe_dev"}

    # Make version 2 the challenger.
    at.selectbox(key="models.alias.version.kobe").select(2)
    at.selectbox(key="models.alias.name.kobe").select("challenger")
    click(at, "Set alias")
    assert registry.get_model(at_settings(), "kobe").aliases == {"champion": 1, "challenger": 2}

    # Compare them: metrics side by side with the best marked, ROC curves overlaid, what differs.
    assert sorted(at.multiselect(key="models.compare.kobe").value) == [1, 2]  # champion and challenger
    compare_tables = [d.value for d in at.dataframe if "metric" in getattr(d.value, "columns", [])]
    assert compare_tables and set(compare_tables[0]["metric"]) >= {"log loss", "F1", "AUC"}
    assert len(at.get("plotly_chart")) == 4  # the ROC curves overlaid; the champion's cut-off chart, gain and lift

    # The cut-off of a version on its holdout rows, and what mistakes cost.
    assert at.selectbox(key="models.cut.version.kobe").value == 1  # the champion first
    text = page_text(at)
    assert "The positive class is 'shot\\_made\\_flag' = 1" in text and "No cut-off is stored on version 1" in text
    assert "Scoring, Predict and REST predict the likelier class" in text
    # the chart read the run's reference folder whole: drift monitoring still finds its training rows there
    from core import tracking

    assert (tracking.run_artifact(at_settings(), lr, "reference") / "train.parquet").is_file()
    at.selectbox(key="models.cut.version.kobe").select(2).run()
    at.number_input(key="models.cut.kobe.2.fp").set_value(2.0).run()
    at.number_input(key="models.cut.kobe.2.fn").set_value(1.0).run()
    assert not at.exception, at.exception
    expected = decisions.for_run(at_settings(), dt, cost_fp=2, cost_fn=1)
    assert [i.value for i in at.info if "a false alarm costs" in i.value] == [md(expected.cost)]
    assert len(at.get("plotly_chart")) == 5  # and the expected cost against the cut-off
    lift = next(d.value for d in at.dataframe if "lift" in getattr(d.value, "columns", []))
    assert list(lift["decile (1 = highest scores)"]) == list(range(1, 11)) and lift["lift"].iloc[0] > 1

    # Promote the challenger, after a confirmation that shows both versions' metrics.
    click(at, "Promote version 2 to champion")
    assert "Version 2 (challenger) replaces version 1 (champion)" in page_text(at)
    assert registry.get_model(at_settings(), "kobe").aliases == {"champion": 1, "challenger": 2}  # not yet
    click(at, "Yes, promote")
    assert "Version 2 is now the champion" in page_text(at)
    assert registry.get_model(at_settings(), "kobe").aliases == {"champion": 2}

    # The history of the alias.
    history = at.dataframe[-1].value
    assert list(history["what"])[:2] == ["removed: removed from version 2", "promoted: version 1 → version 2"]
    assert list(history["of"]) == ["alias challenger", "alias champion", "alias challenger", "alias champion"]


def at_settings():
    from core.settings import load_settings

    return load_settings()


def test_delete_needs_the_typed_name(models_page, workspace):
    from tests.core.test_registry import table

    result = train(workspace, TrainingSpec(target="label", folds=2), table(), table_name="t", table_digest="t" * 64)
    registry.register(workspace, result.models[0].run_id, "small", alias="champion")
    registry.register(workspace, result.models[1].run_id, "small")
    at = models_page
    at.run()
    at.selectbox(key="models.edit.version.small").select(2).run()
    delete = [b for b in at.button if b.label == "Delete this version"][0]
    assert delete.disabled
    at.text_input(key="models.delete.confirm.small.2").input("small/2").run()
    click(at, "Delete this version")
    assert [v.version for v in registry.get_model(workspace, "small").versions] == [1]
    at.selectbox(key="models.edit.version.small").select(1).run()
    assert "is the champion: move the alias" in page_text(at)


def test_a_server_that_is_down_is_named_and_the_page_still_renders(workspace, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("app_pages/models.py").run()
    assert not at.exception
    assert any("http://127.0.0.1:9 cannot be reached" in e.value for e in at.error)
    assert "Models" in page_text(at)


def test_the_page_lists_models_of_a_remote_server(workspace, monkeypatch, mlflow_server):
    from core.settings import load_settings
    from tests.core.test_registry import table

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    remote = load_settings()
    result = train(remote, TrainingSpec(target="label", algorithms=("lr",), folds=2), table(), table_name="remote t", table_digest="r" * 64)
    registry.register(remote, result.models[0].run_id, "remote-page-model", alias="champion")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.session_state["models.name"] = "remote-page-model"
    at.switch_page("app_pages/models.py").run()
    assert not at.exception, at.exception
    assert "remote\\-page\\-model" in page_text(at)
    assert list(at.dataframe[0].value["training table"]) == ["remote t"]


@pytest.fixture
def two_kobe_versions(workspace, kobe_dev):
    """Kobe: logistic regression as champion, a decision tree as challenger (no batch scored yet)."""
    result = train(workspace, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, folds=3),
                   pd.read_parquet(kobe_dev), table_name="dataset_kobe_dev", table_digest="k" * 64)
    lr, dt = (m.run_id for m in result.models)
    registry.register(workspace, lr, "kobe", alias="champion")
    registry.register(workspace, dt, "kobe", alias="challenger")
    return workspace


def test_champion_vs_challenger_on_the_same_labelled_rows_then_one_click_promotion(two_kobe_versions, kobe_prod, models_page):
    from pathlib import Path

    from core import retraining, scoring

    settings = two_kobe_versions
    at = models_page
    at.run()
    assert not at.exception, at.exception
    assert "Champion vs challenger" in page_text(at)
    assert any("has outcomes yet" in i.value for i in at.info)  # nothing labelled to compare on yet

    # The champion scores the 3-point shots, whose file holds the outcome: the rows to compare on.
    model, pipeline = scoring.load_model(settings, "kobe@champion")
    scoring.score(settings, model, pipeline, scoring.open_input(settings, Path(kobe_prod)))
    at.run()
    assert not at.exception, at.exception
    expected = retraining.compare(settings, "kobe")
    text = page_text(at)
    assert f"same {expected.rows:,} labelled rows" in text and "dataset\\_kobe\\_prod\\.parquet" in text
    table = next(d.value for d in at.dataframe if "measure" in getattr(d.value, "columns", [])).set_index("measure")
    assert list(table.columns[:2]) == ["champion (version 1)", "challenger (version 2)"]
    for row in expected.rows_by_metric:
        champion, challenger = metrics.fmt(row.metric, row.champion), metrics.fmt(row.metric, row.challenger)
        assert table.loc[row.label, "champion (version 1)"] == champion
        assert table.loc[row.label, "challenger (version 2)"] == challenger
        # the better one marked; a difference the three decimals cannot show is level
        assert table.loc[row.label, "better"] == (f"{row.better} ✓" if row.better and champion != challenger else "level")
        assert table.loc[row.label, "direction"] == metrics.direction(row.metric)
    primary = next(r for r in expected.rows_by_metric if r.metric == expected.primary)
    if metrics.fmt(primary.metric, primary.champion) != metrics.fmt(primary.metric, primary.challenger):
        assert f"The {expected.winner} is better on {metrics.label(expected.primary)}" in text
    else:
        assert f"level on {metrics.label(expected.primary)}" in text

    click(at, "Promote the challenger")
    assert "Version 2 is now the champion (it was version 1)" in page_text(at)
    assert registry.get_model(settings, "kobe").aliases == {"champion": 2}
    assert "Champion vs challenger" not in page_text(at)  # no challenger any more
    history = at.dataframe[-1].value
    assert list(history["what"])[:2] == ["removed: removed from version 2", "promoted: version 1 → version 2"]


def test_store_the_cheapest_cut_off_then_a_typed_one_then_remove_it_and_see_the_history(models_page, workspace, kobe_dev):
    result = train(workspace, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=2),
                   pd.read_parquet(kobe_dev), table_name="dataset_kobe_dev", table_digest="k" * 64)
    run_id = result.models[0].run_id
    registry.register(workspace, run_id, "kobe", alias="champion")
    registry.set_alias(workspace, "kobe", 1, "challenger")  # an alias move and cut-off changes share the history
    at = models_page
    at.run()
    assert not at.exception, at.exception
    assert "No cut-off is stored on version 1" in page_text(at)
    likelier = next(d.value for d in at.dataframe if "measure" in getattr(d.value, "columns", [])
                    and "accuracy" in set(d.value["measure"]))
    # without a cut-off, the metrics are those of the likelier class, apart from AUC and log loss
    plain = decisions.for_run(workspace, run_id)
    assert likelier.set_index("measure").loc["recall", "value"] == f"{plain.at_cutoff.recall:.3f}"
    assert "**At the usual 0.5**" in page_text(at) and "**Threshold-free**" in page_text(at)
    free = next(d.value for d in at.dataframe if "measure" in getattr(d.value, "columns", []) and "AUC" in set(d.value["measure"]))
    assert free.set_index("measure").loc["AUC", "value"] == f"{plain.threshold_free.auc:.3f}"

    # Costs given: the cheapest cut-off is offered, and stored with one click.
    at.number_input(key="models.cut.kobe.1.fp").set_value(1.0).run()
    at.number_input(key="models.cut.kobe.1.fn").set_value(3.0).run()
    expected = decisions.for_run(workspace, run_id, cost_fp=1, cost_fn=3).choice
    assert at.radio(key="models.cut.kobe.1.how").value == "cheapest"
    click(at, f"Use cut-off {expected.shown:.6g} for version 1")
    stored = registry.cutoff(workspace, "kobe", 1)
    assert stored is not None and stored.value == expected.shown and stored.positive == "1"
    text = page_text(at)
    assert f"Version 1 now predicts shot\\_made\\_flag = 1 when its probability of 1 is at least {expected.shown:.6g}" in text
    assert f"Version 1 predicts at the cut-off {stored.shown}" in text
    assert f"**At the stored cut-off {expected.shown:.6g}**" in text
    assert at.dataframe[0].value["cut-off"].iloc[0] == f"{stored.shown} (class 1)"
    at_stored = decisions.at_cutoff(*decisions.truth_and_score(
        registry.holdout_scores(workspace, run_id))[:2], expected.shown)
    shown = next(d.value for d in at.dataframe if "measure" in getattr(d.value, "columns", [])
                 and "accuracy" in set(d.value["measure"])).set_index("measure")
    assert shown.loc["share predicted positive", "value"] == f"{at_stored.share_positive:.1%}"
    assert shown.loc["share predicted positive", "value"] != likelier.set_index("measure").loc["share predicted positive", "value"]

    # A typed cut-off moves it; the same value again cannot be stored twice.
    at.radio(key="models.cut.kobe.1.how").set_value("typed").run()
    at.number_input(key="models.cut.kobe.1.value").set_value(0.35).run()
    assert "At 0.35 on the" in page_text(at)
    click(at, "Use cut-off 0.35 for version 1")
    assert registry.cutoff(workspace, "kobe", 1).value == 0.35
    assert [b for b in at.button if b.label == "Use cut-off 0.35 for version 1"][0].disabled

    click(at, "Remove the cut-off of version 1")
    assert registry.cutoff(workspace, "kobe", 1) is None
    assert "Removed the cut-off 0.35 of version 1" in page_text(at)
    history = at.dataframe[-1].value
    assert list(history["what"])[:3] == ["cut-off removed: 0.35 → the likelier class",
                                        f"cut-off moved: {expected.shown:.6g} → 0.35 (positive class 1)",
                                        f"cut-off set: the likelier class → {expected.shown:.6g} (positive class 1)"]
    assert list(history["of"]) == ["cut-off of version 1"] * 3 + ["alias challenger", "alias champion"]
    own = next(d.value for d in at.dataframe if list(getattr(d.value, "columns", [])) == ["when", "who", "what"])
    assert list(own["what"]) == list(history["what"])[:3]  # the version's own cut-off history in its tab
