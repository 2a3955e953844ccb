"""Train page: empty state, the form, a real background job, results and registration."""

from __future__ import annotations

import pytest

from core import jobs
from core.demo import store_demo
from core.tables import TableStore
from tests.app_pages.conftest import page_text


@pytest.fixture
def train_page(app):
    app.switch_page("app_pages/train.py").run()
    assert not app.exception, app.exception
    return app


def test_without_tables_the_page_points_to_the_data_page(train_page):
    assert "There is no table to train on yet" in page_text(train_page)


@pytest.fixture
def demo_page(app, workspace):
    dev, _ = store_demo(TableStore(workspace.tables_dir), workspace.data_dir)
    app.session_state["data.table_id"] = dev.record.table_id
    app.switch_page("app_pages/train.py").run()
    assert not app.exception, app.exception
    return app, dev.record


def test_target_choice_infers_the_task_and_lists_left_out_columns(demo_page):
    at, record = demo_page
    at.selectbox(key=f"train.target.{record.table_id}").select("shot_made_flag").run()
    assert not at.exception
    text = page_text(at)
    assert "Binary classification: 2 classes" in text
    assert "rows have no value in 'shot\\_made\\_flag' and will be left out" in text
    features = at.multiselect(key=f"train.features.{record.table_id}.shot_made_flag").value
    assert "shot_distance" in features and "shot_id" not in features and "team_name" not in features
    assert "columns were left out automatically" in " ".join(e.label for e in at.expander)
    assert at.radio(key=f"train.task.{record.table_id}.shot_made_flag").value == "classification"


def test_bad_target_is_refused_on_the_page(demo_page):
    at, record = demo_page
    at.selectbox(key=f"train.target.{record.table_id}").select("period").run()
    at.radio(key=f"train.task.{record.table_id}.period").set_value("classification").run()
    at.multiselect(key=f"train.features.{record.table_id}.period").set_value(["team_id"]).run()
    at.button(key="train.start").click().run()
    assert not at.exception
    assert any("No usable feature" in e.value for e in at.error)
    assert jobs.JobStore(at_settings()).list() == []


def at_settings():
    from core.settings import load_settings

    return load_settings()


def test_train_in_the_background_then_see_results_and_register(demo_page, workspace):
    at, record = demo_page
    at.selectbox(key=f"train.target.{record.table_id}").select("shot_made_flag").run()
    at.multiselect(key=f"train.features.{record.table_id}.shot_made_flag").set_value(["shot_distance", "combined_shot_type", "period"]).run()
    at.number_input(key="train.hp.classification.dt.max_depth").set_value(4).run()
    at.button(key="train.start").click().run()
    assert not at.exception, at.exception
    job_id = at.session_state["train.job_id"]
    assert jobs.status(workspace, job_id).state in ("queued", "running", "succeeded")
    done = jobs.wait(workspace, job_id, timeout=240)
    assert done.state == "succeeded", done.error
    at.run()
    assert not at.exception, at.exception
    text = page_text(at)
    assert "Results" in text and "holdout rows" in text
    table = at.dataframe[0].value
    assert list(table["model"]) == ["Logistic regression", "Decision tree"]
    assert table["log loss"].notna().all() and (table["best"] == "★").sum() == 1
    assert len(at.get("plotly_chart")) == 4  # ROC, precision-recall, confusion matrix, importance

    form_inputs = [t for t in at.text_input if t.label == "Registered model name"]
    form_inputs[0].input("demo-shots")
    [b for b in at.button if b.label == "Register"][0].click().run()
    assert not at.exception, at.exception
    assert any("as version 1 of 'demo\\-shots'" in s.value for s in at.success)
    from core.tracking import client

    version = client(workspace).get_model_version_by_alias("demo-shots", "champion")
    assert int(version.version) == 1

    [b for b in at.button if b.label == "Register"][0].click().run()  # the same run again
    assert any("already version 1" in e.value for e in at.error)


def churn_table(n: int = 400):
    """A table of another kind than the demo (a churn file): another target, other classes."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    tenure = rng.integers(1, 72, n)
    charges = rng.normal(70, 20, n).round(2)
    churn = np.where(rng.random(n) < 1 / (1 + np.exp((tenure - 20) / 8)), "Yes", "No")
    return pd.DataFrame({"customerID": [f"C{k:05d}" for k in range(n)], "tenure": tenure, "MonthlyCharges": charges,
                         "Contract": rng.choice(["Month-to-month", "One year", "Two year"], n), "Churn": churn})


def test_pages_open_on_the_table_and_job_in_the_link_and_the_name_is_the_jobs_own(workspace):
    from core import registry
    from core.training import TrainingSpec
    from tests.app_pages.conftest import open_page

    store = TableStore(workspace.tables_dir)
    demo, _ = store_demo(store, workspace.data_dir)
    first = jobs.submit_training(workspace, TrainingSpec(target="shot_made_flag", features=("shot_distance", "period"),
                                                         algorithms=("lr",), folds=2), demo.record.table_id)
    done = jobs.wait(workspace, first.job_id, timeout=240)
    assert done.state == "succeeded", done.error
    shots = done.result["models"][0]["run_id"]
    registry.register(workspace, shots, "demo-shots", alias="champion")
    churn = store.ingest(churn_table().to_csv(index=False).encode(), "churn.csv").record

    # The Data page's "Next" opens Train on the churn table: the demo job's results and form stay away.
    at = open_page("app_pages/train.py", table=churn.table_id)
    at.session_state["train.job_id"] = first.job_id  # leftover state of an earlier visit must not win
    at.run()
    assert at.selectbox(key="train.table").value == churn.table_id
    text = page_text(at)
    assert "Results" not in text and "Keep a model" not in text
    assert at.selectbox(key=f"train.target.{churn.table_id}").value == "Churn"

    # Its own job: started from the page, in the link, and reattached by a new session (a reload).
    at.multiselect(key="train.algorithms.classification").set_value(["lr"]).run()
    at.button(key="train.start").click().run()
    assert not at.exception, at.exception
    second = at.session_state["train.job_id"]
    assert second != first.job_id and at.query_params["job"] in (second, [second])
    at.button(key="train.start").click().run()  # a second click while it runs starts nothing new
    assert len(jobs.JobStore(workspace).list("training")) == 2 or jobs.status(workspace, second).finished
    reloaded = open_page("app_pages/train.py")
    if not jobs.status(workspace, second).finished:
        assert "Training:" in page_text(reloaded)
    assert jobs.wait(workspace, second, timeout=240).state == "succeeded"

    reloaded.run()
    text = page_text(reloaded)
    assert "Results" in text and "Churn on churn" in text
    name_box = [t for t in reloaded.text_input if t.label == "Registered model name"][0]
    assert name_box.value == "churn"  # from this job's target, not the demo model registered before
    name_box.input("demo-shots")
    [b for b in reloaded.button if b.label == "Register"][0].click().run()
    assert not reloaded.exception, reloaded.exception
    assert any("'demo-shots' already holds models that predict" in e.value for e in reloaded.error), [e.value for e in reloaded.error]
    assert [v.version for v in registry.get_model(workspace, "demo-shots").versions] == [1]


def _stored(workspace, frame, name):
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return TableStore(workspace.tables_dir).ingest(buffer.getvalue(), name).record


def test_infinite_values_are_refused_until_the_box_treats_them_as_missing(workspace):
    from tests.app_pages.conftest import open_page
    from tests.core.test_training import income_table

    record = _stored(workspace, income_table(), "income.parquet")
    at = open_page("app_pages/train.py", table=record.table_id)
    assert at.selectbox(key=f"train.target.{record.table_id}").value == "label"
    box = at.checkbox(key=f"train.inf.{record.table_id}.label")
    assert box.label == "Treat the 3 infinite values in income as missing" and box.value is False
    at.multiselect(key="train.algorithms.classification").set_value(["lr"]).run()
    at.number_input(key="train.folds").set_value(2).run()
    at.button(key="train.start").click().run()
    assert not at.exception, at.exception
    assert any(e.value.startswith("'income' holds 3 infinite values (inf or -inf)") for e in at.error), [e.value for e in at.error]
    assert "Traceback" not in page_text(at) and jobs.JobStore(workspace).list() == []

    at.multiselect(key=f"train.features.{record.table_id}.label").set_value(["age"]).run()  # no inf among the features: no box
    assert not [c for c in at.checkbox if c.key == f"train.inf.{record.table_id}.label"]
    at.multiselect(key=f"train.features.{record.table_id}.label").set_value(["income", "age"]).run()
    at.checkbox(key=f"train.inf.{record.table_id}.label").check().run()
    at.button(key="train.start").click().run()
    assert not at.exception, at.exception
    job_id = at.session_state["train.job_id"]
    assert jobs.JobStore(workspace).payload(job_id)["spec"]["inf_as_missing"] is True
    done = jobs.wait(workspace, job_id, timeout=240)
    assert done.state == "succeeded", done.error
    assert any("in 'income' were treated as missing" in n for n in done.result["notes"])


def test_columns_that_copy_the_target_are_left_out_and_warned_about_when_chosen(workspace):
    from tests.app_pages.conftest import open_page
    from tests.core.test_training import regression_table

    frame = regression_table()
    frame["target_copy"] = frame["price"]
    frame["target_x2"] = 2 * frame["price"]
    record = _stored(workspace, frame, "houses.parquet")
    at = open_page("app_pages/train.py", table=record.table_id)
    at.selectbox(key=f"train.target.{record.table_id}").select("price").run()
    assert not at.exception, at.exception
    key = f"train.features.{record.table_id}.price"
    assert at.multiselect(key=key).value == ["size", "rooms", "area"]
    text = page_text(at).replace("\\", "")  # as read on the page, without markdown escapes
    assert "**target_copy**: it copies the target (it equals 'price' in every row where it has a value): it would leak the answer" in text
    assert "**target_x2**: it copies the target up to scale (its correlation with 'price' is 1.000): it would leak the answer" in text
    assert not at.warning

    at.multiselect(key=key).set_value(["size", "target_x2"]).run()
    assert not at.exception, at.exception
    assert [w.value.replace("\\", "") for w in at.warning] == [
        "'target_x2' copies the target up to scale (its correlation with 'price' is 1.000): it would leak the answer. "
        "It was kept because you chose it: keep it only if its value is known before the outcome is (else the model "
        "will look far better than it will be), or remove it from the features."]


def test_a_constant_regression_target_is_refused_on_the_page(workspace):
    import numpy as np
    import pandas as pd

    from tests.app_pages.conftest import open_page

    frame = pd.DataFrame({"size": np.linspace(20, 200, 60), "rooms": [1, 2, 3] * 20, "price": [250_000.0] * 60})
    record = _stored(workspace, frame, "flat.parquet")
    at = open_page("app_pages/train.py", table=record.table_id)
    at.selectbox(key=f"train.target.{record.table_id}").select("price").run()
    at.radio(key=f"train.task.{record.table_id}.price").set_value("regression").run()
    at.button(key="train.start").click().run()
    assert not at.exception, at.exception
    assert any(e.value.startswith("'price' has the same value (250000) in every row with a value: there is nothing to predict")
               for e in at.error), [e.value for e in at.error]
    assert jobs.JobStore(workspace).list() == []
