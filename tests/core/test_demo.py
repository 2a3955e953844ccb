"""core.demo: a seeded, synthetic shot generator in the Kobe schema with a planted drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.demo import DEV_FILE, PROD_FILE, TARGET, demo_tables, ensure_demo, store_demo, write_demo
from core.tables import TableStore


@pytest.fixture(scope="module")
def tables():
    return demo_tables()


def test_same_seed_same_tables_other_seed_other_tables(tables):
    dev, prod = tables
    dev2, prod2 = demo_tables()
    pd.testing.assert_frame_equal(dev, dev2)
    pd.testing.assert_frame_equal(prod, prod2)
    assert not demo_tables(seed=1)[0].equals(dev)


def test_schema_matches_the_kobe_files(tables, kobe_dev):
    kobe = pd.read_parquet(kobe_dev)
    dev, _ = tables
    assert set(dev.columns) == set(kobe.columns)
    for column in kobe.columns:
        assert dev[column].dtype.kind == kobe[column].dtype.kind, column


def test_development_is_2pt_and_production_is_3pt(tables):
    dev, prod = tables
    assert (dev["shot_type"] == "2PT Field Goal").all()
    assert (prod["shot_type"] == "3PT Field Goal").all()
    assert len(dev) > 2 * len(prod) > 1000
    assert prod["shot_distance"].median() > dev["shot_distance"].median() + 10  # the drift


def test_make_rate_falls_with_distance(tables):
    shots = pd.concat(tables)
    rate = shots.groupby(pd.cut(shots["shot_distance"], [-1, 5, 15, 22, 30]), observed=True)[TARGET].mean()
    assert list(rate) == sorted(rate, reverse=True)
    assert rate.iloc[0] - rate.iloc[-1] > 0.2


def test_a_few_targets_are_missing(tables):
    dev, prod = tables
    share = dev[TARGET].isna().mean()
    assert 0.01 < share < 0.15
    assert set(dev[TARGET].dropna().unique()) == {0.0, 1.0}


def test_coordinates_are_consistent(tables):
    dev, _ = tables
    distance = np.floor(np.hypot(dev["loc_x"], dev["loc_y"]) / 10)
    assert (distance == dev["shot_distance"]).all()
    np.testing.assert_allclose(dev["lat"], 34.0443 - dev["loc_y"] / 1000, atol=1e-4)
    assert dev["shot_id"].is_unique


def test_write_and_ensure_are_atomic_and_idempotent(tmp_path):
    paths = write_demo(tmp_path)
    assert [p.name for p in paths] == [DEV_FILE, PROD_FILE]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([DEV_FILE, PROD_FILE])
    stamp = paths[0].stat().st_mtime_ns
    assert ensure_demo(tmp_path) == paths
    assert paths[0].stat().st_mtime_ns == stamp  # not rewritten


def test_store_demo_puts_both_tables_in_the_store(tmp_path):
    store = TableStore(tmp_path / "tables")
    dev, prod = store_demo(store, tmp_path / "data")
    assert dev.created and prod.created
    assert "synthetic" in dev.record.name and "synthetic" in prod.record.name
    again = store_demo(store, tmp_path / "data")
    assert not again[0].created
    assert len(store.list()) == 2
    assert store.list()[0].table_id == dev.record.table_id  # newest: pages offer it first, to train on
