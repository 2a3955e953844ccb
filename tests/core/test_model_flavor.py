"""core.model_flavor: a logged classifier's pyfunc (what REST, ``mlflow.pyfunc.load_model`` and a
container answer with) gives the label and one ``proba_<class>`` column per class, the same as the
studio's own scoring; regression and versions logged before keep the prediction alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import integrity, model_flavor, registry, scoring
from core.settings import load_settings
from core.training import TrainingSpec, _pinned_requirements, train
from tests.conftest import KOBE_FEATURES, houses


def log_the_old_way(settings, name: str, frame: pd.DataFrame):
    """A Kobe classifier logged as the studio logged every model before probabilities reached REST
    (plain ``mlflow.sklearn.log_model``), its hashes recorded, registered as ``name@champion``."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from core import tracking

    tracking.use(settings)
    known = frame.dropna(subset=["shot_made_flag"])
    X, y = known[list(KOBE_FEATURES)], known["shot_made_flag"]
    pipeline = LogisticRegression(max_iter=1000).fit(X, y)
    with mlflow.start_run(experiment_id=tracking.ensure_experiment(settings, "old-way")) as run:
        info = mlflow.sklearn.log_model(pipeline, name="model", signature=infer_signature(X.head(5), pipeline.predict(X.head(5))),
                                        input_example=X.head(5), pip_requirements=_pinned_requirements(),
                                        serialization_format="cloudpickle")
    client = tracking.client(settings)
    integrity.record(client, run.info.run_id, client.get_logged_model(info.model_id).artifact_location)
    registry.register(settings, run.info.run_id, name, alias="champion")
    return pipeline


# The loader the studio shipped in every classifier's folder before cut-offs reached REST (format 1),
# as it was (docstrings left out): it ignores STUDIO_CUTOFF.
FIRST_LOADER = """\
from __future__ import annotations
import os
FORMAT = 1
CONF_KEY = 'studio_output'
PREDICTION = 'prediction'

class StudioClassifier:

    def __init__(self, pipeline, labels, columns) -> None:
        if len(labels) != len(columns):
            raise ValueError(f'The model folder lists {len(labels)} classes but {len(columns)} probability columns.')
        self.pipeline = pipeline
        self.labels = list(labels)
        self.columns = list(columns)

    def predict(self, data, params=None):
        return answer(self.pipeline, self.labels, self.columns, data)

def answer(pipeline, labels, columns, data):
    import numpy as np
    import pandas as pd
    if len(data) == 0:
        return pd.DataFrame({PREDICTION: pd.Series([], dtype=object), **{c: pd.Series([], dtype=float) for c in columns}})
    proba = np.asarray(pipeline.predict_proba(data), dtype=float)
    if proba.ndim != 2 or proba.shape[1] != len(columns):
        raise ValueError(f"The model gave {(proba.shape[-1] if proba.ndim else 0)} probabilities per row, but it was logged with {len(columns)} classes ({', '.join(columns)}); its files do not belong together.")
    frame = pd.DataFrame(proba, columns=columns)
    frame.insert(0, PREDICTION, pd.Series(labels).to_numpy()[proba.argmax(axis=1)])
    return frame

def _load_pyfunc(path):
    import mlflow.sklearn
    from mlflow.models import Model
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    conf = Model.load(os.path.join(folder, 'MLmodel')).flavors['python_function'].get(CONF_KEY) or {}
    if conf.get('format') != FORMAT:
        raise ValueError(f"This model was written for version {conf.get('format')} of the studio's pyfunc loader, and this loader reads version {FORMAT}. Load it in a process that has not loaded another studio model first.")
    return StudioClassifier(mlflow.sklearn.load_model(folder), conf['labels'], conf['columns'])
"""


def train_with_the_first_loader(settings, name: str, frame: pd.DataFrame, folder: Path) -> None:
    """A Kobe logistic regression trained by the studio as it was before cut-offs reached REST: its
    folder carries :data:`FIRST_LOADER` and a ``studio_output`` of format 1. Registered as ``name@champion``."""
    old = folder / "studio_pyfunc_model.py"
    old.write_text(FIRST_LOADER)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_flavor, "LOADER_FILE", old)
        patch.setattr(model_flavor.loader, "FORMAT", 1)
        result = train(settings, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=2),
                       frame, table_name=name, table_digest="f" * 64)
    assert result.models[0].status == "FINISHED", result.models[0].error
    registry.register(settings, result.models[0].run_id, name, alias="champion")


def credit(n: int, seed: int) -> pd.DataFrame:
    """A credit-default table whose target is text ("yes" / "no"), with a categorical feature."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"income": rng.normal(50_000, 15_000, n), "debt": rng.uniform(0, 40_000, n),
                          "term": rng.choice(["short", "long"], n)})
    risk = frame["debt"] / frame["income"].clip(lower=5_000) + np.where(frame["term"] == "long", 0.2, 0.0) + rng.normal(0, 0.2, n)
    frame["default"] = np.where(risk > 0.5, "yes", "no")
    return frame


@pytest.fixture(scope="module")
def studio(tmp_path_factory, kobe_dev):
    """A workspace with a Kobe model trained by the studio (``kobe``), a credit model with a text
    target (``credit``), a house-price regression (``houses``), a linear SVM that gives classes only
    (``credit-svm``), a Kobe model logged the old way (``old``) and one trained with the loader of
    before cut-offs (``kobe-v1``)."""
    ws = tmp_path_factory.mktemp("flavor")
    settings = load_settings({"STUDIO_WORKSPACE": str(ws / "ws"), "STUDIO_DATA_DIR": str(ws / "data")})
    frame = pd.read_parquet(kobe_dev)
    for name, table, spec in (
        ("kobe", frame, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=2)),
        ("credit", credit(600, 0), TrainingSpec(target="default", algorithms=("lr",), folds=2)),
        ("houses", houses(300, 0), TrainingSpec(target="price", algorithms=("lr",), folds=2)),
        ("credit-svm", credit(600, 0), TrainingSpec(target="default", algorithms=("svm",), folds=2)),
    ):
        result = train(settings, spec, table, table_name=name, table_digest="e" * 64)
        assert result.models[0].status == "FINISHED", result.models[0].error
        registry.register(settings, result.models[0].run_id, name, alias="champion")
    log_the_old_way(settings, "old", frame)
    train_with_the_first_loader(settings, "kobe-v1", frame, ws)
    return settings


def pyfunc_of(settings, name: str, tmp_path: Path):
    """``mlflow.pyfunc.load_model`` of ``name`` version 1, from the copy whose hashes were checked."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(integrity.verified_copy(settings, name, 1, tmp_path)))


def scored(settings, name: str, path: Path) -> pd.DataFrame:
    """The studio's own scoring of ``path`` with ``name``'s champion: its output table."""
    model, pipeline = scoring.load_model(settings, f"{name}@champion")
    report = scoring.score(settings, model, pipeline, scoring.open_input(settings, path), force=True, measure_drift=False)
    return pd.read_parquet(report.output)


def test_a_kobe_model_answers_with_the_label_and_the_probability_of_each_class(studio, kobe_prod, tmp_path):
    prod = pd.read_parquet(kobe_prod)
    answer = pyfunc_of(studio, "kobe", tmp_path).predict(prod[list(KOBE_FEATURES)])
    assert isinstance(answer, pd.DataFrame)
    assert list(answer.columns) == ["prediction", "proba_0", "proba_1"] and len(answer) == len(prod) == 6426
    _, pipeline = scoring.load_model(studio, "kobe@champion")
    np.testing.assert_allclose(answer[["proba_0", "proba_1"]].to_numpy(), pipeline.predict_proba(prod[list(KOBE_FEATURES)]))
    out = scored(studio, "kobe", kobe_prod)  # the studio's scored file: same labels, same probabilities
    assert answer["prediction"].tolist() == out["prediction"].tolist()
    np.testing.assert_allclose(answer[["proba_0", "proba_1"]].to_numpy(), out[["proba_0", "proba_1"]].to_numpy())
    assert set(answer["prediction"]) == {0.0, 1.0}  # the 3-point shots are not all called misses


def test_the_signature_describes_the_answer(studio):
    from mlflow.models import get_model_info

    from core import tracking

    tracking.use(studio)
    info = get_model_info("models:/kobe/1")
    assert info.signature.outputs.input_names() == ["prediction", "proba_0", "proba_1"]
    assert [t.name for t in info.signature.outputs.input_types()] == ["double", "double", "double"]
    assert info.signature.inputs.input_names() == list(KOBE_FEATURES)
    assert info.flavors["sklearn"]["pickled_model"] == "model.pkl"  # the studio's own loading is unchanged
    assert info.flavors["python_function"]["loader_module"] == "studio_pyfunc_model"


def test_a_text_labelled_model_answers_with_its_own_labels(studio, tmp_path):
    table = credit(400, 1)
    path = tmp_path / "credit.parquet"
    table.drop(columns="default").to_parquet(path)
    answer = pyfunc_of(studio, "credit", tmp_path / "model").predict(table.drop(columns="default"))
    assert list(answer.columns) == ["prediction", "proba_no", "proba_yes"]
    assert set(answer["prediction"]) == {"no", "yes"}
    _, pipeline = scoring.load_model(studio, "credit@champion")  # PyCaret encoded the text target: 0/1 inside
    np.testing.assert_allclose(answer[["proba_no", "proba_yes"]].to_numpy(), pipeline.predict_proba(table.drop(columns="default")))
    clear = (answer["proba_yes"] - 0.5).abs() > 1e-6
    assert (answer["prediction"][clear] == pd.Series(pipeline.predict(table.drop(columns="default")))[clear]).all()
    assert (answer["prediction"] == scored(studio, "credit", path)["prediction"]).all()
    assert (answer["prediction"] == table["default"]).mean() > 0.8


def test_regression_answers_with_the_prediction_as_before(studio, tmp_path):
    from mlflow.models import Model

    folder = integrity.verified_copy(studio, "houses", 1, tmp_path / "model")
    assert Model.load(str(folder / "MLmodel")).flavors["python_function"]["loader_module"] == "mlflow.sklearn"
    assert not (folder / "code").exists()
    model, pipeline = scoring.load_model(studio, "houses@champion")
    table = houses(50, 3)[list(model.features)]
    answer = pyfunc_of(studio, "houses", tmp_path / "again").predict(table)
    assert np.asarray(answer).shape == (50,)
    np.testing.assert_allclose(np.asarray(answer, dtype=float), pipeline.predict(table))


def test_the_loader_runs_without_the_studio_code(studio, kobe_prod, tmp_path):
    """As in a container built from the model folder alone: ``core`` cannot be imported at all."""
    folder = integrity.verified_copy(studio, "kobe", 1, tmp_path / "model")
    rows = pd.read_parquet(kobe_prod)[list(KOBE_FEATURES)].head(20)
    rows.to_parquet(tmp_path / "rows.parquet")
    code = ("import sys; sys.modules['core'] = None\n"  # any 'import core' fails
            "import mlflow.pyfunc, pyarrow.parquet as pq\n"
            f"answer = mlflow.pyfunc.load_model({str(folder)!r}).predict(pq.ParquetFile({str(tmp_path / 'rows.parquet')!r}).read().to_pandas())\n"
            "print(answer.to_json(orient='split'))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    answer = pd.read_json(out.stdout.strip().splitlines()[-1], orient="split")
    expected = pyfunc_of(studio, "kobe", tmp_path / "here").predict(rows)
    assert list(answer.columns) == list(expected.columns)
    np.testing.assert_allclose(answer.to_numpy(dtype=float), expected.to_numpy(dtype=float))


def test_every_file_of_the_model_is_hashed_and_a_changed_loader_is_refused(studio, tmp_path):
    from core import tracking

    client = tracking.client(studio)
    mv = client.get_model_version("kobe", "1")
    recorded = integrity.expected(client, mv)
    assert "code/studio_pyfunc_model.py" in recorded and "model.pkl" in recorded
    assert not any("__pycache__" in p for p in recorded)  # nothing compiled slipped into the upload
    source = client.get_logged_model(mv.source.removeprefix("models:/")).artifact_location if mv.source.startswith("models:/") \
        else mv.source
    loader = Path(source.removeprefix("file://")) / "code" / "studio_pyfunc_model.py"
    original = loader.read_bytes()
    try:
        loader.write_bytes(original + b"\nimport os  # added by someone\n")
        with pytest.raises(integrity.UntrustedModelError, match=r"code/studio_pyfunc_model.py changed"):
            integrity.verified_copy(studio, "kobe", 1, tmp_path / "tampered")
    finally:
        loader.write_bytes(original)
    assert (integrity.verified_copy(studio, "kobe", 1, tmp_path / "restored") / "code" / "studio_pyfunc_model.py").is_file()


def test_a_version_logged_before_still_loads_and_answers_with_labels(studio, kobe_prod, tmp_path):
    rows = pd.read_parquet(kobe_prod)[list(KOBE_FEATURES)].head(50)
    answer = pyfunc_of(studio, "old", tmp_path).predict(rows)
    assert np.asarray(answer).shape == (50,) and set(np.unique(answer)) <= {0.0, 1.0}
    model, pipeline = scoring.load_model(studio, "old@champion")  # the studio still scores it
    assert model.classes == (0.0, 1.0)
    np.testing.assert_array_equal(np.asarray(answer), pipeline.predict(rows))


def test_what_each_version_answers_over_rest(studio):
    def said(name):
        model, _ = scoring.load_model(studio, f"{name}@champion")
        return model_flavor.rest_answer(studio, model)

    kobe, text, old, regression, svm = said("kobe"), said("credit"), said("old"), said("houses"), said("credit-svm")
    assert kobe.probabilities and kobe.columns == ("prediction", "proba_0", "proba_1")
    assert "probability of each class (proba_0, proba_1)" in kobe.sentence
    assert text.columns == ("prediction", "proba_no", "proba_yes")
    assert not old.probabilities and old.columns == ()
    assert "labels only" in old.sentence and "retrain the model" in old.sentence and "register the new version" in old.sentence
    assert not regression.probabilities and "predicted value" in regression.sentence and not regression.labels_only
    assert old.labels_only and kobe.labels_only is False
    assert svm.labels_only and "its algorithm gives classes, not probabilities" in svm.sentence


def test_an_algorithm_without_probabilities_answers_with_its_labels(studio, tmp_path):
    table = credit(100, 2).drop(columns="default")
    answer = pyfunc_of(studio, "credit-svm", tmp_path).predict(table)
    _, pipeline = scoring.load_model(studio, "credit-svm@champion")
    assert np.asarray(answer).shape == (100,)
    assert list(np.asarray(answer)) == list(pipeline.predict(table)) and set(np.asarray(answer)) <= {"no", "yes"}


def test_output_spec_names_columns_as_the_scored_files_do():
    assert model_flavor.output_spec([0, 1]) == {"format": 2, "labels": [0.0, 1.0], "columns": ["proba_0", "proba_1"]}
    assert model_flavor.output_spec(["no", "yes"])["labels"] == ["no", "yes"]
    assert model_flavor.output_spec([True, False]) == {"format": 2, "labels": [True, False], "columns": ["proba_True", "proba_False"]}
    assert json.loads(json.dumps(model_flavor.output_spec([np.int64(2), np.int64(7)]))) == \
        {"format": 2, "labels": [2.0, 7.0], "columns": ["proba_2", "proba_7"]}


def test_logging_a_classifier_leaves_no_temporary_folder_on_the_import_path(studio, kobe_dev, monkeypatch):
    """MLflow checks the input example by loading the model through its loader, from the temporary
    folder about to be uploaded: that puts the folder's code/ first on sys.path and keeps the loader
    module. Both are undone, so no later import of the process looks in a deleted /tmp folder
    (which anyone could make again) and a later load imports the loader of its own checked copy."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from core import tracking

    tracking.use(studio)
    known = pd.read_parquet(kobe_dev).dropna(subset=["shot_made_flag"]).head(500)
    X = known[list(KOBE_FEATURES)]
    pipeline = LogisticRegression(max_iter=500).fit(X, known["shot_made_flag"])
    before = list(sys.path)
    monkeypatch.setenv("STUDIO_CUTOFF", "lots")  # meant for a served model: it does not stop the logging's own check
    with mlflow.start_run(experiment_id=tracking.ensure_experiment(studio, "flavor-path")):
        info = model_flavor.log_model(pipeline, X.head(5), task="classification", classes=[0.0, 1.0], probabilities=True,
                                      pip_requirements=_pinned_requirements())
    assert sys.path == before
    assert model_flavor.LOADER_MODULE not in sys.modules
    assert os.environ["STUDIO_CUTOFF"] == "lots"
    monkeypatch.delenv("STUDIO_CUTOFF")
    assert mlflow.pyfunc.load_model(info.model_uri).predict(X.head(3)).columns.tolist() == ["prediction", "proba_0", "proba_1"]


# --- the cut-off over REST (issue 18) -------------------------------------------------------------


def test_a_cutoff_in_the_environment_decides_the_label_and_leaves_the_probabilities(studio, kobe_prod, tmp_path, monkeypatch):
    rows = pd.read_parquet(kobe_prod)[list(KOBE_FEATURES)].head(400)
    monkeypatch.delenv("STUDIO_CUTOFF", raising=False)
    plain = pyfunc_of(studio, "kobe", tmp_path / "plain").predict(rows)
    proba_1 = plain["proba_1"].to_numpy()
    at = float(proba_1[0])  # exactly one row's probability: "at or above" makes that row positive
    assert (plain["prediction"] == np.where(proba_1 > 0.5, 1.0, 0.0)).all()  # argmax without a cut-off
    monkeypatch.setenv("STUDIO_CUTOFF", json.dumps({"value": at, "positive": "1"}))
    answer = pyfunc_of(studio, "kobe", tmp_path / "at").predict(rows)
    np.testing.assert_array_equal(answer[["proba_0", "proba_1"]].to_numpy(), plain[["proba_0", "proba_1"]].to_numpy())
    assert answer["prediction"].tolist() == np.where(proba_1 >= at, 1.0, 0.0).tolist()
    assert answer["prediction"].iloc[0] == 1.0 and (answer["prediction"] != plain["prediction"]).sum() > 0
    monkeypatch.setenv("STUDIO_CUTOFF", json.dumps({"value": 0.6, "positive": 0, "by": "ana", "at": "2026-12-02T11:40:00+00:00"}))
    by_zero = pyfunc_of(studio, "kobe", tmp_path / "zero").predict(rows)  # the registry's own tag JSON is read too
    assert by_zero["prediction"].tolist() == np.where(plain["proba_0"] >= 0.6, 0.0, 1.0).tolist()
    monkeypatch.setenv("STUDIO_CUTOFF", "0.4")  # a bare number: for the last class
    bare = pyfunc_of(studio, "kobe", tmp_path / "bare").predict(rows)
    assert bare["prediction"].tolist() == np.where(proba_1 >= 0.4, 1.0, 0.0).tolist()


def test_a_text_class_cutoff_answers_with_the_models_own_labels(studio, tmp_path, monkeypatch):
    table = credit(300, 4).drop(columns="default")
    monkeypatch.setenv("STUDIO_CUTOFF", json.dumps({"value": 0.2, "positive": "yes"}))
    answer = pyfunc_of(studio, "credit", tmp_path).predict(table)
    assert answer["prediction"].tolist() == np.where(answer["proba_yes"] >= 0.2, "yes", "no").tolist()


def test_a_bad_cutoff_is_refused_when_the_model_is_loaded(studio, tmp_path, monkeypatch):
    from core import studio_pyfunc_model as loader

    monkeypatch.setenv("STUDIO_CUTOFF", "lots")
    with pytest.raises(ValueError, match=r"STUDIO_CUTOFF must be a cut-off from 0 to 1, as JSON: .*got 'lots'.*unset STUDIO_CUTOFF"):
        pyfunc_of(studio, "kobe", tmp_path / "words")
    monkeypatch.setenv("STUDIO_CUTOFF", '{"value": 0.3, "positive": "2"}')
    with pytest.raises(ValueError, match=r"names the positive class '2', which this model does not have: its classes are 0 and 1"):
        pyfunc_of(studio, "kobe", tmp_path / "class")
    labels, columns = [0.0, 1.0], ["proba_0", "proba_1"]
    for bad in ("1.5", "-0.1", "NaN", "true", '"0.3"', '{"value": "0.3"}', '{"cutoff": 0.3}', "[0.3]", '{"value": 0.3, "positve": "1"}'):
        with pytest.raises(ValueError, match="STUDIO_CUTOFF must be a cut-off from 0 to 1"):
            loader.parse_cutoff(bad, labels, columns)
    with pytest.raises(ValueError, match=r"applies only to a model with two classes, and this one has 3 \(a, b, c\)"):
        loader.parse_cutoff("0.3", ["a", "b", "c"], ["proba_a", "proba_b", "proba_c"])
    assert loader.parse_cutoff("", labels, columns) is None and loader.parse_cutoff("  ", labels, columns) is None
    assert loader.parse_cutoff('{"value": 1, "positive": 0.0}', labels, columns) == (1.0, 0)


def test_the_first_loader_ignores_a_cutoff_and_rest_answer_says_so(studio, kobe_prod, tmp_path, monkeypatch):
    """A classifier logged before cut-offs reached REST carries the loader of then (format 1), which
    knows no STUDIO_CUTOFF: it answers with the likelier class, in its own process as in one where the
    new loader was imported first; the studio says the stored cut-off is ignored over REST."""
    from mlflow.models import Model

    folder = integrity.verified_copy(studio, "kobe-v1", 1, tmp_path / "model")
    assert Model.load(str(folder / "MLmodel")).flavors["python_function"]["studio_output"]["format"] == 1
    assert "STUDIO_CUTOFF" not in (folder / "code" / "studio_pyfunc_model.py").read_text()
    rows = pd.read_parquet(kobe_prod)[list(KOBE_FEATURES)].head(200)
    rows.to_parquet(tmp_path / "rows.parquet")
    code = ("import mlflow.pyfunc, pyarrow.parquet as pq\n"
            f"answer = mlflow.pyfunc.load_model({str(folder)!r}).predict(pq.ParquetFile({str(tmp_path / 'rows.parquet')!r}).read().to_pandas())\n"
            "print(answer.to_json(orient='split'))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    env["STUDIO_CUTOFF"] = json.dumps({"value": 0.3, "positive": "1"})
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    alone = pd.read_json(out.stdout.strip().splitlines()[-1], orient="split")
    assert alone["prediction"].tolist() == np.where(alone["proba_1"] > alone["proba_0"], 1.0, 0.0).tolist()
    assert (alone["proba_1"] >= 0.3).sum() > (alone["prediction"] == 1).sum()  # the cut-off would have changed rows
    monkeypatch.setenv("STUDIO_CUTOFF", env["STUDIO_CUTOFF"])
    pyfunc_of(studio, "kobe", tmp_path / "new")  # the new loader imported first in this process...
    here = mlflow_load(folder).predict(rows)  # ...reads a format-1 model as its own loader does
    assert here["prediction"].tolist() == alone["prediction"].tolist()

    def said(name):
        model, _ = scoring.load_model(studio, f"{name}@champion")
        return model_flavor.rest_answer(studio, model)

    try:
        registry.set_cutoff(studio, "kobe-v1", 1, 0.3, who="test")
        registry.set_cutoff(studio, "kobe", 1, 0.35, who="test")
        old, new = said("kobe-v1"), said("kobe")
        assert old.probabilities and old.cutoff is None and old.cutoff_ignored and old.attention
        assert "stored cut-off (0.3 for class 1), but its REST answer cannot apply it" in old.sentence
        assert "over REST it predicts the likelier class" in old.sentence and "retrain the model on the Train page" in old.sentence
        assert new.cutoff == {"value": 0.35, "positive": "1"} and not new.cutoff_ignored and not new.attention
        assert "predicted shot_made_flag = 1 when its probability of 1 is at least 0.35" in new.sentence
        registry.set_cutoff(studio, "kobe", 1, None, who="test")
        cleared = said("kobe")  # read fresh: the cut-off changed since the last answer
        assert cleared.cutoff is None and "likelier class (no cut-off is stored" in cleared.sentence
    finally:
        registry.set_cutoff(studio, "kobe-v1", 1, None, who="test")
        registry.set_cutoff(studio, "kobe", 1, None, who="test")
    assert not said("kobe-v1").cutoff_ignored


def mlflow_load(folder: Path):
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(folder))
