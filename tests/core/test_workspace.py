"""The home page's overview: what exists at each step and which step comes next."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core import registry, scoring, workspace
from core.tables import TableStore
from core.training import TrainingSpec, train
from core.workspace import Step
from tests.conftest import KOBE_FEATURES


def test_fresh_workspace(workspace):
    overview = workspace_overview(workspace)
    assert overview.tables == [] and overview.models == [] and overview.last_scoring is None
    assert overview.next_step() is Step.DATA
    assert not workspace.mlflow_db.exists()  # reading the overview never creates an MLflow store


def workspace_overview(settings):
    return workspace.complete(settings, workspace.local(settings))


def test_each_step_done_moves_the_next_step_on(workspace, kobe_dev, kobe_prod):
    TableStore(workspace.tables_dir).ingest(Path(kobe_dev).read_bytes(), "kobe.parquet")
    assert workspace_overview(workspace).next_step() is Step.TRAIN

    result = train(workspace, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=2),
                   pd.read_parquet(kobe_dev), table_name="kobe", table_digest="d" * 64)
    registry.register(workspace, result.models[0].run_id, "kobe")
    overview = workspace_overview(workspace)
    assert [(m.name, m.versions, m.champion) for m in overview.models] == [("kobe", 1, None)]
    assert overview.next_step() is Step.MODELS

    registry.set_alias(workspace, "kobe", 1, "champion")
    assert workspace_overview(workspace).next_step() is Step.SCORE

    model, pipeline = scoring.load_model(workspace, "kobe@champion")
    scoring.score(workspace, model, pipeline, scoring.open_input(workspace, Path(kobe_prod)))
    overview = workspace_overview(workspace)
    assert overview.champions[0].champion == 1
    batch = overview.last_scoring
    assert batch.model_name == "kobe" and batch.input_name == "dataset_kobe_prod.parquet" and batch.rows == 6426
    assert overview.next_step() is Step.MONITOR
