"""REST calls per page rerun against a real ``mlflow server``, counted by a proxy in front of it.

A rerun happens on every widget touch, so what a page asks the tracking server each time decides
how the studio feels on a team server. The Score page with a file chosen and the Monitor page on a
scored batch were measured before the registry reads were reworked (issue 15): 18 and 64 calls per
rerun with three registered versions, growing with the versions (every version's runs were read on
every rerun). The assertions ask for at least 5x fewer."""

from __future__ import annotations

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import registry, scoring
from core.settings import load_settings
from core.tables import TableStore
from core.training import TrainingSpec, train
from tests.app_pages.conftest import APP, page_text
from tests.conftest import KOBE_FEATURES
from tests.rest_counter import CountingProxy

BEFORE = {"score": 18, "monitor": 64}


@pytest.fixture(scope="module")
def team_server(mlflow_server, tmp_path_factory, kobe_dev, kobe_prod):
    """The studio on a real tracking server behind a counting proxy: kobe with three versions
    (champion v1), the production table stored, and one scoring of it (made once for both tests)."""
    root = tmp_path_factory.mktemp("team")
    with CountingProxy(mlflow_server) as proxy, pytest.MonkeyPatch.context() as env:
        env.setenv("STUDIO_WORKSPACE", str(root / "workspace"))
        env.setenv("STUDIO_DATA_DIR", str(root / "data"))
        env.setenv("MLFLOW_TRACKING_URI", proxy.url)
        settings = load_settings()
        result = train(settings, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr", "dt", "nb"),
                                              folds=2), pd.read_parquet(kobe_dev), table_name="kobe dev", table_digest="d" * 64)
        name = "kobe-team"
        for k, model in enumerate(result.models):
            registry.register(settings, model.run_id, name, alias="champion" if k == 0 else None)
        store = TableStore(settings.tables_dir)
        prod = store.ingest(kobe_prod.read_bytes(), kobe_prod.name).record
        loaded, pipeline = scoring.load_model(settings, f"{name}@champion")
        report = scoring.score(settings, loaded, pipeline, scoring.open_input(settings, store.path(prod.table_id), name=prod.name,
                                                                             digest=prod.digest))
        yield proxy, name, prod, report


def _rerun_calls(at: AppTest, proxy: CountingProxy) -> int:
    proxy.reset()
    at.run()
    assert not at.exception, at.exception
    print(f"\n{proxy.total} calls per rerun:\n{proxy.listing()}")
    return proxy.total


def test_score_page_rerun_asks_the_server_little(team_server):
    proxy, name, prod, _ = team_server
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["model"] = name
    at.run()
    at.switch_page("app_pages/score.py").run()
    at.radio(key="score.source").set_value("table").run()
    at.selectbox(key="score.table").set_value(prod.table_id).run()
    assert not at.exception, at.exception
    assert "This file was already scored with" in page_text(at)  # the plan found the earlier scoring
    calls = _rerun_calls(at, proxy)
    assert calls * 5 <= BEFORE["score"], proxy.listing()


def test_monitor_page_rerun_asks_the_server_little(team_server):
    proxy, name, _, report = team_server
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["model"] = name
    at.query_params["batch"] = report.run_id
    at.run()
    at.switch_page("app_pages/monitor.py").run()
    assert not at.exception, at.exception
    assert "Drift: :red[significant]" in page_text(at)
    calls = _rerun_calls(at, proxy)
    assert calls * 5 <= BEFORE["monitor"], proxy.listing()
