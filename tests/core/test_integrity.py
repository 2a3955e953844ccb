"""Nothing unverified is unpickled: a replaced model.pkl, a version whose files lie outside the store,
and a version without recorded hashes are all refused before any of their code can run."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest

from core import integrity, registry, scoring
from core.settings import PROJECT_ROOT
from core.training import TrainingSpec, train


class Payload:
    """Unpickling this writes a file: proof that the artifact's code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def registered(workspace):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x1": rng.normal(size=300), "x2": rng.normal(size=300)})
    frame["label"] = (frame["x1"] + rng.normal(0, 0.5, 300) > 0).astype(int)
    result = train(workspace, TrainingSpec(target="label", algorithms=("lr",), folds=2), frame,
                   table_name="t", table_digest="1" * 64)
    registry.register(workspace, result.models[0].run_id, "m", alias="champion")
    from core.tracking import client

    mv = client(workspace).get_model_version("m", "1")
    return workspace, mv, frame


def model_folder(mv) -> Path:
    return Path(unquote(urlparse(mv.source).path))


def test_hashes_are_recorded_at_logging_and_a_sound_model_loads(registered):
    settings, mv, _ = registered
    files = json.loads(mv.tags[integrity.MANIFEST_TAG])
    assert "model.pkl" in files and "MLmodel" in files and all(len(d) == 64 for d in files.values())
    model, pipeline = scoring.load_model(settings, "m@champion")
    assert model.features == ("x1", "x2") and hasattr(pipeline, "predict_proba")


def test_a_replaced_model_pkl_is_refused_and_its_code_never_runs(registered, tmp_path):
    settings, mv, frame = registered
    marker = tmp_path / "ran"
    (model_folder(mv) / "model.pkl").write_bytes(pickle.dumps(Payload(str(marker))))
    with pytest.raises(integrity.UntrustedModelError, match=r"m version 1 are not the ones logged at training \(model.pkl changed"):
        scoring.load_model(settings, "m@champion")
    assert not marker.exists()

    data = tmp_path / "x.csv"
    frame.drop(columns="label").to_csv(data, index=False)
    out = subprocess.run([sys.executable, "-m", "core", "score", "--model", "m@champion", "--input", str(data),
                          "--output", str(tmp_path / "o.csv")], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         env={**os.environ, "STUDIO_WORKSPACE": str(settings.workspace)}, timeout=180)
    assert out.returncode == 2 and "are not the ones logged at training" in out.stderr and "Traceback" not in out.stderr
    assert not marker.exists() and not (tmp_path / "o.csv").exists()


def test_a_model_file_linked_to_a_pickle_outside_the_store_is_refused(registered, tmp_path):
    """model.pkl replaced by a symbolic link to a pickle elsewhere (found by the hardening probe):
    refused as untrusted, by name, and the pickle never runs."""
    settings, mv, _ = registered
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Payload(str(marker))))
    target = model_folder(mv) / "model.pkl"
    target.unlink()
    target.symlink_to(evil)
    with pytest.raises(integrity.UntrustedModelError, match="points outside the artifact store"):
        scoring.load_model(settings, "m@champion")
    assert not marker.exists()


def test_a_version_whose_files_lie_outside_the_store_is_refused(registered, tmp_path):
    settings, mv, _ = registered
    outside = tmp_path / "elsewhere"
    shutil.copytree(model_folder(mv), outside)
    marker = tmp_path / "ran"
    (outside / "model.pkl").write_bytes(pickle.dumps(Payload(str(marker))))
    from core.tracking import client

    client(settings).create_model_version("m", source=str(outside), run_id=mv.run_id)  # same run, same hashes tag
    with pytest.raises(integrity.UntrustedModelError, match="points at files outside the studio's artifact folder"):
        scoring.load_model(settings, "m/2")
    assert not marker.exists()


def test_a_version_without_hashes_is_refused_until_someone_vouches_for_it(registered):
    settings, mv, _ = registered
    from core.tracking import client

    c = client(settings)
    c.delete_model_version_tag("m", "1", integrity.MANIFEST_TAG)  # as versions logged before this change
    c.delete_tag(mv.run_id, integrity.MANIFEST_TAG)
    with pytest.raises(integrity.UntrustedModelError, match=r"no file hashes recorded.*python -m core models trust m/1"):
        scoring.load_model(settings, "m/1")
    out = subprocess.run([sys.executable, "-m", "core", "models", "trust", "m/1"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, env={**os.environ, "STUDIO_WORKSPACE": str(settings.workspace)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["files_hashed"] >= 3
    model, _ = scoring.load_model(settings, "m/1")
    assert model.version == 1


def test_a_version_loaded_in_place_once_can_still_be_vouched_for_and_loaded(registered):
    """Loading a version straight from a local store (``mlflow.pyfunc.load_model("models:/m/1")``)
    writes registered_model_meta and the loader's __pycache__ into the store. Recording, vouching
    and checking share one rule that leaves them out, so a version vouched for after such a load is
    not then refused as altered."""
    import mlflow.pyfunc

    from core import tracking

    settings, mv, frame = registered
    c = tracking.client(settings)
    c.delete_model_version_tag("m", "1", integrity.MANIFEST_TAG)
    c.delete_tag(mv.run_id, integrity.MANIFEST_TAG)
    tracking.use(settings)
    env_before = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    writes = sys.dont_write_bytecode
    sys.dont_write_bytecode = False
    try:
        mlflow.pyfunc.load_model("models:/m/1").predict(frame[["x1", "x2"]].head(2))
    finally:
        sys.dont_write_bytecode = writes
        if env_before is not None:
            os.environ["PYTHONDONTWRITEBYTECODE"] = env_before
        sys.modules.pop("studio_pyfunc_model", None)
    folder = model_folder(mv)
    assert (folder / "registered_model_meta").is_file()  # what loading in place left in the store
    digests = integrity.trust(settings, "m", 1)
    assert "registered_model_meta" not in digests and not any("__pycache__" in p for p in digests)
    model, _ = scoring.load_model(settings, "m/1")
    assert model.version == 1
