"""core.monitoring.timeline: one row per scored batch (oldest first) with the version that scored
it, its worst PSI, its realized and estimated performance, and the alias changes as marker rows."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from core import drift, monitoring, registry, scoring
from core.settings import load_settings
from core.tracking import client
from core.training import TrainingSpec, train
from tests.conftest import houses


@pytest.fixture(scope="module")
def lived(tmp_path_factory):
    """A house-price model: version 1 champion scores a drifted file without prices, version 2 is set
    as challenger and scores a file with its prices, then is promoted."""
    root = tmp_path_factory.mktemp("timeline")
    settings = load_settings({"STUDIO_WORKSPACE": str(root / "ws"), "STUDIO_DATA_DIR": str(root / "data")})
    result = train(settings, TrainingSpec(target="price", algorithms=("lr", "dt"), folds=2), houses(1_000, 0),
                   table_name="houses", table_digest="h" * 64)
    first, second = (m.run_id for m in result.models)
    registry.register(settings, first, "prices", alias="champion")
    drifted = root / "drifted.parquet"
    houses(drift.MIN_ROWS, 1, shift=300).drop(columns="price").to_parquet(drifted)
    model, pipeline = scoring.load_model(settings, "prices@champion")
    unlabelled = scoring.score(settings, model, pipeline, scoring.open_input(settings, drifted)).run_id
    registry.register(settings, second, "prices", alias="challenger")
    labelled_file = root / "labelled.parquet"
    houses(drift.MIN_ROWS, 2).to_parquet(labelled_file)
    model, pipeline = scoring.load_model(settings, "prices@challenger")
    labelled = scoring.score(settings, model, pipeline, scoring.open_input(settings, labelled_file)).run_id
    registry.promote(settings, "prices")
    return settings, unlabelled, labelled


def test_one_row_per_batch_oldest_first_with_the_version_that_scored_it(lived):
    settings, unlabelled, labelled = lived
    frame = monitoring.timeline(settings, "prices")
    scored = frame[frame["kind"] == "batch"]
    assert list(scored["run_id"]) == [unlabelled, labelled]
    assert list(scored["version"]) == [1, 2]
    assert list(scored["input_name"]) == ["drifted.parquet", "labelled.parquet"]
    assert frame["at"].is_monotonic_increasing
    assert set(scored["metric"]) == {"rmse"}  # regression: the same measure on every row

    for row in scored.itertuples():
        run = client(settings).get_run(row.run_id)
        psi = {k.removeprefix("drift.psi."): v for k, v in run.data.metrics.items() if k.startswith("drift.psi.")}
        assert row.worst_feature == max(psi, key=psi.get)
        assert row.worst_psi == pytest.approx(max(psi.values()))
        assert row.rows == drift.MIN_ROWS
        assert row.drift_status == run.data.tags["studio.drift_status"]
        estimated, band = run.data.metrics["est.rmse"], run.data.metrics["est_band.rmse"]  # every scoring estimates
        assert row.estimated == pytest.approx(estimated) and row.band == pytest.approx(band)

    drifted, fine = scored.iloc[0], scored.iloc[1]
    assert drifted["worst_feature"] == "size" and drifted["drift_status"] == "significant"
    assert fine["worst_psi"] < drifted["worst_psi"]
    assert math.isnan(drifted["realized"])  # no prices in that file
    realized = client(settings).get_run(labelled).data.metrics["rmse"]
    assert fine["realized"] == pytest.approx(realized)


def test_the_alias_changes_are_marker_rows_in_words(lived):
    settings, unlabelled, labelled = lived
    frame = monitoring.timeline(settings, "prices")
    markers = frame[frame["kind"] == "alias"]
    assert list(markers["change"]) == ["champion → v1", "challenger → v2", "champion → v2", "challenger removed (was v2)"]
    assert list(markers["from_version"].fillna(0)) == [0, 0, 1, 2]
    assert list(markers["version"].fillna(0)) == [1, 2, 2, 0]  # whole numbers, missing where the alias was removed
    history = registry.get_model(settings, "prices").history
    assert list(markers["by"]) == [h["by"] for h in history]
    # placed in time: version 1 became champion before its batch; the promotion after version 2's batch
    at = dict(zip(frame["change"].where(frame["kind"] == "alias", frame["run_id"]), frame["at"]))
    assert at["champion → v1"] <= at[unlabelled] <= at["challenger → v2"] <= at[labelled] <= at["champion → v2"]


def test_a_model_that_scored_nothing_has_only_its_alias_changes(lived):
    settings, _, _ = lived
    result = train(settings, TrainingSpec(target="price", algorithms=("lr",), folds=2), houses(300, 5),
                   table_name="houses small", table_digest="s" * 64)
    registry.register(settings, result.models[0].run_id, "quiet")
    frame = monitoring.timeline(settings, "quiet")
    assert frame.empty and list(frame.columns) == list(monitoring.TIMELINE_COLUMNS)
    registry.set_alias(settings, "quiet", 1, "champion")
    frame = monitoring.timeline(settings, "quiet")
    assert list(frame["kind"]) == ["alias"] and list(frame["change"]) == ["champion → v1"]
    assert isinstance(frame["at"].iloc[0], pd.Timestamp)
