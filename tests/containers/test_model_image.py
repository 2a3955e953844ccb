"""The model image (``make image MODEL=kobe``): MLflow's scoring server in a real podman container,
serving a champion trained on the real Kobe shots, answers as the same model loaded in this process."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core import images
from tests.conftest import KOBE_FEATURES, KOBE_PROD
from tests.containers.conftest import podman, post, split_body

pytestmark = pytest.mark.usefixtures("podman_ready")


def parsed(model, body: str) -> pd.DataFrame:
    """The frame MLflow's scoring server makes of ``body`` (the same parser, the same schema)."""
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    return infer_and_parse_data(json.loads(body), schema=model.metadata.get_input_schema())


def test_the_image_is_labelled_with_the_model_it_serves(model_image, kobe_champion):
    from core import registry

    view = registry.resolve(kobe_champion, "kobe@champion")
    labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", model_image.tag).stdout)
    assert labels["io.studio.model.name"] == "kobe"
    assert labels["io.studio.model.version"] == str(view.version)
    assert labels["io.studio.model.run_id"] == view.run_id
    # the pins of the studio are the image's pip constraints
    env = podman("image", "inspect", "--format", "{{json .Config.Env}}", model_image.tag).stdout
    assert "PIP_CONSTRAINT=/opt/studio/constraints.txt" in env


def test_the_container_answers_as_the_model_in_process(model_server, in_process):
    rows = pd.read_parquet(KOBE_PROD, columns=list(KOBE_FEATURES))  # all 6,426 production shots in one request
    body = split_body(rows)
    status, text = post(model_server.url, body)
    assert status == 200, text
    served = pd.DataFrame(json.loads(text)["predictions"])
    expected = in_process.predict(parsed(in_process, body))
    expected = expected if isinstance(expected, pd.DataFrame) else pd.DataFrame({"prediction": np.asarray(expected)})
    assert list(served.columns) == list(expected.columns)
    assert len(served) == len(rows)
    proba = [c for c in expected.columns if str(c).startswith("proba_")]
    assert len(proba) == 2, f"the classifier's pyfunc answers one proba_<class> column per class: {list(expected.columns)}"
    assert served["prediction"].tolist() == expected["prediction"].tolist()
    for column in proba:
        np.testing.assert_allclose(served[column].to_numpy(float), expected[column].to_numpy(float), rtol=0, atol=1e-12)
    np.testing.assert_allclose(served[proba].sum(axis=1), 1.0, atol=1e-9)
    assert served[proba[-1]].std() > 0.01  # the shots get different probabilities: real values were compared


def test_bad_json_is_refused_with_the_reason(model_server):
    status, text = post(model_server.url, '{"dataframe_split": {"columns": ["lat"], "data": [[33.9,')
    assert status == 400, text
    answer = json.loads(text)
    assert answer["error_code"] == "BAD_REQUEST"
    assert "json" in answer["message"].lower()


def test_a_missing_column_is_refused_and_named(model_server):
    rows = pd.read_parquet(KOBE_PROD, columns=list(KOBE_FEATURES)).head(3).drop(columns=["shot_distance"])
    status, text = post(model_server.url, split_body(rows))
    assert status == 400, text
    answer = json.loads(text)
    assert "shot_distance" in answer["message"]
    assert "traceback" not in answer["message"].lower()


def test_no_model_means_a_clear_message_and_no_image(kobe_champion, podman_ready):
    from core.errors import NotFoundError

    with pytest.raises(NotFoundError, match="no registered model 'nobody'|nobody"):
        images.build_model_image(kobe_champion, "nobody@champion", tag="localhost/studio-never-built:1")
    assert podman("image", "exists", "localhost/studio-never-built:1", check=False).returncode == 1


def test_a_failed_build_says_so_and_tags_nothing(kobe_champion, podman_ready):
    with pytest.raises(images.ImageBuildError, match="could not be built.*nothing was tagged"):
        images.build_model_image(kobe_champion, "kobe@champion", tag="localhost/studio-never-built:2",
                                 base="localhost/studio-no-such-base:1")
    assert podman("image", "exists", "localhost/studio-never-built:2", check=False).returncode == 1


def test_a_stored_cutoff_is_baked_into_the_image_and_podman_run_e_overrides_it(kobe_champion, base_image):
    """``core image`` bakes the version's stored cut-off in (ENV STUDIO_CUTOFF, label studio.cutoff): the
    container's 'prediction' follows it as ``core score`` does; ``podman run -e STUDIO_CUTOFF=...`` moves it."""
    from core import registry, scoring
    from tests.containers.conftest import Container, wait_for

    rows = pd.read_parquet(KOBE_PROD, columns=list(KOBE_FEATURES)).head(300)
    _, pipeline = scoring.load_model(kobe_champion, "kobe@champion")
    proba_1 = pipeline.predict_proba(rows)[:, 1]
    ordered = np.sort(proba_1)
    value = float((ordered[89] + ordered[90]) / 2)  # between two rows' scores: 210 of the 300 rows predicted 1
    tag, said = "localhost/studio-model-kobe-cutoff-test:latest", []
    registry.set_cutoff(kobe_champion, "kobe", 1, value, positive="1", who="test")
    try:
        built = images.build_model_image(kobe_champion, "kobe@champion", tag=tag, base=base_image, say=said.append)
    finally:
        registry.set_cutoff(kobe_champion, "kobe", 1, None, who="test")
    try:
        baked = json.dumps({"value": value, "positive": "1"})
        labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", tag).stdout)
        assert labels["studio.cutoff"] == baked == built.labels["studio.cutoff"]
        assert f"STUDIO_CUTOFF={baked}" in json.loads(podman("image", "inspect", "--format", "{{json .Config.Env}}", tag).stdout)
        assert any("baking the stored cut-off into the image" in line and "podman run -e STUDIO_CUTOFF=" in line for line in said)
        moved = 0.7
        with Container(tag, images.MODEL_PORT) as at_stored, \
                Container(tag, images.MODEL_PORT, "-e", f'STUDIO_CUTOFF={{"value": {moved}, "positive": "1"}}') as overridden:
            for container in (at_stored, overridden):
                wait_for(f"{container.url}/ping", container.name)
            answers = [pd.DataFrame(json.loads(post(c.url, split_body(rows))[1])["predictions"]) for c in (at_stored, overridden)]
    finally:
        podman("rmi", "--force", tag, check=False)
    stored, moved_answer = answers
    assert stored["prediction"].tolist() == np.where(proba_1 >= value, 1.0, 0.0).tolist()
    assert (stored["prediction"] != np.where(proba_1 > 0.5, 1.0, 0.0)).sum() >= 30  # not the likelier class
    assert moved_answer["prediction"].tolist() == np.where(proba_1 >= moved, 1.0, 0.0).tolist()
    np.testing.assert_allclose(stored["proba_1"], proba_1, atol=1e-12)
