"""Train page: empty state, the form, a real background job, results and registration."""

from __future__ import annotations

import pytest

from core import decisions, jobs
from core.demo import store_demo
from core.tables import TableStore
from core.training import TrainingSummary, best_in
from tests.app_pages.conftest import page_text
from ui import md


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
    # the models side by side (CV mean and spread), ROC, precision-recall, confusion matrix, importance,
    # the cut-off chart, gain and lift
    assert len(at.get("plotly_chart")) == 8
    best = next(m for m in TrainingSummary.from_dict(done.result).finished if m.run_id == best_in(done.result))
    text = page_text(at)
    assert "Where to put the cut-off" in text and "The positive class is 'shot\\_made\\_flag' = 1" in text
    assert "How much better than picking rows at random?" in text
    assert "Enter the cost of a false alarm and of a missed positive" in text
    # nothing is stored from here, and the page says where a cut-off is stored; the metrics of what scoring
    # does now (the usual 0.5) are apart from AUC and log loss
    assert "Nothing is stored from this page" in text and "on the Models page \\(tab Cut\\-off, gain and lift\\)" in text
    plain = decisions.for_run(workspace, best.run_id)
    shown = next(d.value for d in at.dataframe if "measure" in getattr(d.value, "columns", [])
                 and "F1" in set(d.value["measure"])).set_index("measure")
    assert "**At the usual 0.5**" in text and shown.loc["F1", "value"] == f"{plain.at_cutoff.f1:.3f}"
    at.number_input(key=f"train.cut.{best.run_id}.fp").set_value(1.0).run()
    at.number_input(key=f"train.cut.{best.run_id}.fn").set_value(3.0).run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 9  # and the expected cost against the cut-off
    expected = decisions.for_run(workspace, best.run_id, cost_fp=1, cost_fn=3)
    assert [i.value for i in at.info if "a false alarm costs" in i.value] == [md(expected.cost)]

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


def test_compare_mode_draws_every_model_with_its_cv_spread_and_a_class_can_be_chosen(workspace):
    """A three-class table compared on the page: the chart shows every compared model's CV mean with its
    standard deviation over the folds, as the job recorded them; the cut-off charts take one class
    against the others, and the class can be changed; a model without probabilities says so."""
    import numpy as np
    import plotly.io as pio

    from core.training import TrainingSpec
    from tests.app_pages.conftest import open_page

    frame = churn_table(600)
    noisy = frame["tenure"] + np.random.default_rng(5).normal(0, 12, len(frame))  # the classes overlap: folds differ
    frame["Contract"] = np.where(noisy > 40, "Two year", np.where(noisy > 15, "One year", "Month-to-month"))
    record = _stored(workspace, frame.drop(columns=["customerID"]), "contracts.parquet")
    job = jobs.submit_training(workspace, TrainingSpec(target="Contract", features=("tenure", "MonthlyCharges", "Churn"),
                                                       algorithms=("lr", "dt", "nb", "svm"), compare=True, folds=3, tune_metric="f1"),
                               record.table_id)
    done = jobs.wait(workspace, job.job_id, timeout=300)
    assert done.state == "succeeded", done.error
    summary = TrainingSummary.from_dict(done.result)
    at = open_page("app_pages/train.py", job=job.job_id)
    assert at.selectbox(key=f"train.compare.by.{job.job_id}").value == "f1"  # the metric the comparison ranked by
    chart = pio.from_json(at.get("plotly_chart")[0].proto.spec).data[0]
    by_name = {m.name: m for m in summary.finished}
    assert len(chart.y) == len(by_name) == 4
    for name, mean, std in zip(chart.y, chart.x, chart.error_x.array, strict=True):
        model = by_name[name.removesuffix(" (best CV)")]
        assert (mean, std) == (model.cv_metrics["cv_f1_mean"], model.cv_metrics["cv_f1_std"])
    assert std > 0 or any(s > 0 for s in chart.error_x.array)  # the folds differ: there is a spread to draw
    assert chart.y[0].endswith(" (best CV)") and list(chart.x) == sorted(chart.x, reverse=True)  # best CV F1 first, marked

    best = summary.best()
    key = f"train.cut.{best.run_id}"
    assert at.selectbox(key=f"{key}.positive").value == "Two year"  # the last class, against the others
    assert "against all the others together" in page_text(at)
    at.selectbox(key=f"{key}.positive").select("Month-to-month").run()
    assert not at.exception, at.exception
    assert "The positive class is 'Contract' = Month\\-to\\-month" in page_text(at)

    # a model without probabilities: said in words, no cut-off charts
    at.selectbox(key=f"train.charts.{job.job_id}").select("Linear SVM").run()
    assert not at.exception, at.exception
    assert [i.value for i in at.info if "no probabilities" in i.value] == [md(decisions.NO_PROBABILITIES)]
    assert "How much better than picking rows at random?" not in page_text(at)
