"""core.tracking: the embedded sqlite store keeps runs and artifacts inside the workspace."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from core.settings import load_settings
from core.tracking import TrackingUnavailableError, client, ensure_experiment, mlflow_ui_command


def test_embedded_store_keeps_everything_in_the_workspace(workspace, tmp_path):
    experiment_id = ensure_experiment(workspace, "studio-test")
    assert ensure_experiment(workspace, "studio-test") == experiment_id  # idempotent
    mlflow_client = client(workspace)
    run = mlflow_client.create_run(experiment_id)
    note = tmp_path / "note.txt"
    note.write_text("hello")
    mlflow_client.log_artifact(run.info.run_id, str(note))
    mlflow_client.set_terminated(run.info.run_id)

    assert workspace.mlflow_db.is_file()
    artifact_dir = urlparse(mlflow_client.get_run(run.info.run_id).info.artifact_uri).path
    assert artifact_dir.startswith(str(workspace.artifacts_dir))
    assert (workspace.artifacts_dir / "studio-test" / run.info.run_id / "artifacts" / "note.txt").read_text() == "hello"


def test_unreachable_server_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    settings = load_settings({"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    with pytest.raises(TrackingUnavailableError, match=r"http://127\.0\.0\.1:9"):
        ensure_experiment(settings, "x")


def test_mlflow_ui_command_points_at_the_workspace(workspace):
    command = mlflow_ui_command(workspace, port=5055)
    assert command[1:4] == ["-m", "mlflow", "ui"]
    assert workspace.tracking_uri in command and "5055" in command
    assert workspace.artifacts_dir.as_uri() in command


def test_pointing_mlflow_at_the_store_does_not_change_the_users_environment(workspace):
    """mlflow.set_tracking_uri writes MLFLOW_TRACKING_URI into os.environ; the studio would then take
    its own embedded store for a team server (and child jobs would inherit it)."""
    import os

    import mlflow

    from core.tracking import use

    use(workspace)
    assert mlflow.get_tracking_uri() == workspace.tracking_uri
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert not load_settings().is_remote


def test_figures_are_read_in_order_and_a_run_without_plots_has_none(workspace):
    """A scoring of a file without the outcome (or a failed model) logs no plots folder: reading its
    figures gives none, not an error. An unknown run is still an error."""
    import plotly.graph_objects as go

    from core.tracking import load_figures

    experiment_id = ensure_experiment(workspace, "studio-test")
    mlflow_client = client(workspace)
    bare = mlflow_client.create_run(experiment_id).info.run_id
    mlflow_client.log_text(bare, "{}", "scoring_report.json")  # artifacts, but no plots folder
    assert load_figures(workspace, bare) == {}

    charted = mlflow_client.create_run(experiment_id).info.run_id
    for key in ("residuals", "zz_extra", "predicted_vs_actual"):
        mlflow_client.log_text(charted, go.Figure(layout={"title": {"text": f"chart {key}"}}).to_json(), f"plots/{key}.json")
    mlflow_client.log_text(charted, "not a chart", "plots/notes.txt")
    figures = load_figures(workspace, charted)
    assert list(figures) == ["predicted_vs_actual", "residuals", "zz_extra"]  # FIGURE_ORDER, then by name
    assert figures["residuals"].layout.title.text == "chart residuals"

    with pytest.raises(TrackingUnavailableError, match="could not be read"):
        load_figures(workspace, "0" * 32)


def test_an_unreachable_server_is_named_without_its_password(monkeypatch):
    """The message named the URI as given, password and all; it showed on every page and in the CLI."""
    import socket

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the socket is
    settings = load_settings({"MLFLOW_TRACKING_URI": f"http://alice:Sup3rSecretPw@127.0.0.1:{port}"})
    with pytest.raises(TrackingUnavailableError) as caught:
        ensure_experiment(settings, "x")
    assert "Sup3rSecretPw" not in str(caught.value)
    assert f"The MLflow store at http://alice:***@127.0.0.1:{port} could not be used" in str(caught.value)
    assert "unset MLFLOW_TRACKING_URI" in str(caught.value)


def test_links_to_the_mlflow_ui_carry_no_credentials(monkeypatch):
    from core.tracking import mlflow_ui_url, run_url

    monkeypatch.delenv("STUDIO_MLFLOW_UI_URL", raising=False)
    settings = load_settings({"MLFLOW_TRACKING_URI": "https://alice:Sup3rSecretPw@mlflow.example:8443/"})
    assert mlflow_ui_url(settings) == "https://mlflow.example:8443"
    assert run_url(settings, "1", "abc") == "https://mlflow.example:8443/#/experiments/1/runs/abc"
    overridden = load_settings({"MLFLOW_TRACKING_URI": "https://alice:Sup3rSecretPw@mlflow.example:8443/",
                                "STUDIO_MLFLOW_UI_URL": "http://bob:pw@ui.example/"})
    assert mlflow_ui_url(overridden) == "http://ui.example"


def test_a_file_fetched_alone_is_not_taken_later_for_its_whole_folder(workspace):
    """run_artifact caches each path asked for apart: once one file of a folder was fetched alone,
    asking for the folder still gives every file of it (the Monitor page once found a training run's
    ``reference/`` without its ``train.parquet`` after a chart had fetched one file of it)."""
    from core.tracking import run_artifact

    experiment_id = ensure_experiment(workspace, "studio-test")
    mlflow_client = client(workspace)
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    mlflow_client.log_text(run_id, "scores", "reference/holdout_scores.parquet")
    mlflow_client.log_text(run_id, "rows", "reference/train.parquet")
    mlflow_client.set_terminated(run_id)

    alone = run_artifact(workspace, run_id, "reference/holdout_scores.parquet")
    assert alone.read_text() == "scores"
    folder = run_artifact(workspace, run_id, "reference")
    assert sorted(p.name for p in folder.iterdir()) == ["holdout_scores.parquet", "train.parquet"]
    assert (folder / "train.parquet").read_text() == "rows"
    assert run_artifact(workspace, run_id, "reference/holdout_scores.parquet") == alone  # read from the cache again
