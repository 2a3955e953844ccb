"""core.jobs: training in a child process; progress, cancel, and clean ends after a kill."""

from __future__ import annotations

import os
import signal
import time

import pytest

from core import jobs
from core.errors import BadInputError
from core.tables import TableStore
from core.training import EXPERIMENT, TrainingSpec
from tests.conftest import KOBE_FEATURES


@pytest.fixture
def kobe_table(workspace, kobe_dev) -> str:
    return TableStore(workspace.tables_dir).ingest(kobe_dev.read_bytes(), kobe_dev.name).record.table_id


def runs_of(settings, job_id: str):
    from core.tracking import client

    c = client(settings)
    experiment = c.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return []
    return c.search_runs([experiment.experiment_id], filter_string=f"tags.`studio.job_id` = '{job_id}'")


def versions(settings, name: str):
    from core.tracking import client

    try:
        return client(settings).search_model_versions(f"name='{name}'")
    except Exception:  # noqa: BLE001
        return []


def wait_until(settings, job_id, predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.status(settings, job_id)
        if predicate(job):
            return job
        if job.finished:
            pytest.fail(f"the job ended before the moment the test waits for: {job.state} {job.error}")
        time.sleep(0.1)
    pytest.fail("timed out waiting for the job")


def test_a_job_trains_in_the_background_and_registers(workspace, kobe_table):
    spec = TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, register_name="kobe", register_alias="champion")
    job = jobs.submit_training(workspace, spec, kobe_table)
    assert job.state in ("queued", "running") and job.title.startswith("shot_made_flag on dataset_kobe_dev")
    assert job.supervisor_pid and job.supervisor_pid != os.getpid()
    done = jobs.wait(workspace, job.job_id, timeout=240)
    assert done.state == "succeeded", done.error
    assert [m["algorithm"] for m in done.result["models"]] == ["lr", "dt"]
    assert done.result["registered"]["version"] == 1 and done.result["registered"]["alias"] == "champion"
    assert all(r.info.status == "FINISHED" for r in runs_of(workspace, job.job_id))
    assert jobs.JobStore(workspace).list("training")[0].job_id == job.job_id


def test_bad_input_is_refused_before_a_job_exists(workspace, kobe_table):
    with pytest.raises(BadInputError, match="out of range"):
        jobs.submit_training(workspace, TrainingSpec(target="shot_made_flag", params={"dt": {"max_depth": 0}}), kobe_table)
    assert jobs.JobStore(workspace).list() == []


def test_killing_the_training_process_leaves_no_running_run_and_no_version(workspace, kobe_table):
    spec = TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr", "rf"),
                        params={"rf": {"n_estimators": 400, "max_depth": 20}}, register_name="kobe-killed", register_alias="champion")
    job = jobs.submit_training(workspace, spec, kobe_table)
    job = wait_until(workspace, job.job_id, lambda j: j.model == "rf" and j.step == "Cross-validating")
    assert any(r.info.status == "RUNNING" for r in runs_of(workspace, job.job_id))  # mid-run for real
    os.kill(job.worker_pid, signal.SIGKILL)
    ended = jobs.wait(workspace, job.job_id, timeout=60)
    assert ended.state == "failed"
    assert "stopped unexpectedly (killed by signal 9)" in ended.error
    runs = runs_of(workspace, job.job_id)
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    # lr had finished; rf (mid cross-validation) and the parent run were ended FAILED by the supervisor
    by_model = {r.data.tags.get("studio.algorithm", "parent"): r for r in runs}
    assert {k: r.info.status for k, r in by_model.items()} == {"parent": "FAILED", "lr": "FINISHED", "rf": "FAILED"}
    assert "stopped unexpectedly (killed by signal 9)" in by_model["rf"].data.tags["studio.error"]
    assert versions(workspace, "kobe-killed") == []


def test_when_every_process_is_gone_looking_at_the_job_cleans_up(workspace, kobe_table):
    spec = TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("rf",), params={"rf": {"n_estimators": 400, "max_depth": 20}})
    job = jobs.submit_training(workspace, spec, kobe_table)
    job = wait_until(workspace, job.job_id, lambda j: j.model == "rf" and j.step == "Cross-validating")
    os.killpg(job.supervisor_pid, signal.SIGKILL)  # supervisor and worker at once: nobody left to clean
    time.sleep(0.5)
    ended = jobs.status(workspace, job.job_id)
    assert ended.state == "failed" and "stopped unexpectedly" in ended.error
    assert not [r for r in runs_of(workspace, job.job_id) if r.info.status == "RUNNING"]


def test_cancel_ends_runs_as_killed(workspace, kobe_table):
    spec = TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("rf",), params={"rf": {"n_estimators": 400, "max_depth": 20}})
    job = jobs.submit_training(workspace, spec, kobe_table)
    wait_until(workspace, job.job_id, lambda j: j.model == "rf" and j.step == "Cross-validating")
    jobs.cancel(workspace, job.job_id)
    ended = jobs.wait(workspace, job.job_id, timeout=60)
    assert ended.state == "cancelled"
    statuses = {r.info.status for r in runs_of(workspace, job.job_id)}
    assert statuses == {"KILLED"}


def test_a_worker_that_ignores_the_cancel_is_killed_after_the_grace(workspace, kobe_table):
    """A worker that cannot answer SIGTERM (here stopped with SIGSTOP, as one stuck in a long native
    call; found by the hardening probe) is killed CANCEL_GRACE_SECONDS after the cancel, and the job
    ends cancelled with no run left RUNNING."""
    import os
    import signal
    import time

    spec = TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("rf",), params={"rf": {"n_estimators": 400, "max_depth": 20}})
    job = jobs.submit_training(workspace, spec, kobe_table)
    running = wait_until(workspace, job.job_id, lambda j: j.model == "rf" and j.step == "Cross-validating")
    os.kill(running.worker_pid, signal.SIGSTOP)
    asked = time.monotonic()
    jobs.cancel(workspace, job.job_id)
    ended = jobs.wait(workspace, job.job_id, timeout=jobs.CANCEL_GRACE_SECONDS + 45)
    assert ended.state == "cancelled", (ended.state, ended.step)
    assert time.monotonic() - asked >= jobs.CANCEL_GRACE_SECONDS - 1  # it was given its grace first
    assert "RUNNING" not in {r.info.status for r in runs_of(workspace, job.job_id)}


def test_a_job_whose_process_ids_now_belong_to_another_process_is_ended_and_that_process_spared(workspace):
    """After a restart the system may give a job's recorded pids to other processes (found by the
    hardening probe: the job stayed "running" for ever and cancel signalled the other process). A
    process is the job's only if it started when the job recorded."""
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store = jobs.JobStore(workspace)
        job = store.create("training", "from before a restart", {})
        started = jobs._started(other.pid)
        assert started is not None
        store.update(job.job_id, state="running", supervisor_pid=other.pid, supervisor_started=started - 1,
                     worker_pid=other.pid, worker_started=started - 1)
        assert jobs.cancel(workspace, job.job_id).state == "running"  # asked, but nothing signalled
        ended = jobs.status(workspace, job.job_id)
        assert ended.state == "failed" and "stopped unexpectedly" in ended.error
        assert other.poll() is None  # the other process was not touched
        # the same pid with its own start time is alive: the check is not always "dead"
        assert jobs._alive(other.pid, started) and not jobs._alive(other.pid, started - 1)
        # a job file written before start times were kept: the moments the job recorded decide
        old = store.create("training", "recorded before start times were kept", {})
        store.update(old.job_id, state="running", supervisor_pid=other.pid, worker_pid=other.pid,
                     created_at=time.time() - 86400, started_at=time.time() - 86400)
        assert jobs.status(workspace, old.job_id).state == "failed" and other.poll() is None
        assert jobs._alive(other.pid, near=time.time()) and not jobs._alive(other.pid, near=time.time() - 86400)
    finally:
        other.kill()
        other.wait()


def test_two_jobs_at_once_both_finish(workspace, kobe_table):
    spec = TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, folds=3)
    first = jobs.submit_training(workspace, spec, kobe_table)
    second = jobs.submit_training(workspace, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES[:3], folds=3), kobe_table)
    a = jobs.wait(workspace, first.job_id, timeout=300)
    b = jobs.wait(workspace, second.job_id, timeout=300)
    assert (a.state, b.state) == ("succeeded", "succeeded"), (a.error, b.error)
    assert a.result["parent_run_id"] != b.result["parent_run_id"]


def test_unknown_job_is_not_found(workspace):
    from core.errors import NotFoundError

    with pytest.raises(NotFoundError):
        jobs.status(workspace, "0123456789ab")
    with pytest.raises(NotFoundError):
        jobs.status(workspace, "../etc")


def test_job_log_and_files_stay_in_the_workspace(workspace, kobe_table, monkeypatch):
    monkeypatch.delenv("PYCARET_CUSTOM_LOGGING_PATH", raising=False)  # a value of the user's own would win
    job = jobs.submit_training(workspace, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES[:2], algorithms=("nb",), folds=2), kobe_table)
    assert jobs.wait(workspace, job.job_id, timeout=240).state == "succeeded"
    folder = jobs.JobStore(workspace).folder(job.job_id)
    assert {p.name for p in folder.iterdir()} >= {"spec.json", "status.json", "log.txt"}
    assert not (folder / "logs.log").exists() and not (folder / "mlruns").exists()
    assert workspace.pycaret_log.is_file()  # PyCaret's log: given to the job's processes, not set in this one
    assert "PYCARET_CUSTOM_LOGGING_PATH" not in os.environ
    assert folder.is_relative_to(workspace.workspace)
    # what the job logged to MLflow (its runs' models and charts) is in the workspace's artifact store too
    runs = runs_of(workspace, job.job_id)
    assert len(runs) == 2  # the parent run and the one model's child run
    assert all(r.info.artifact_uri.startswith(workspace.artifacts_dir.as_uri() + "/") for r in runs), [r.info.artifact_uri for r in runs]
    assert list(workspace.artifacts_dir.rglob("MLmodel"))  # the logged model's files are on disk there


def test_after_kill_9_the_first_page_ends_the_job_and_deletes_what_it_registered(workspace, kobe_table):
    """Supervisor and worker killed with -9 (nobody left to clean): the home page's overview, not
    opening the job, ends its runs and deletes the version it had registered."""
    from core import registry
    from core import workspace as overview
    from core.training import train

    earlier = train(workspace, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES[:2], algorithms=("nb",), folds=2),
                    TableStore(workspace.tables_dir).load(kobe_table), table_name="kobe", table_digest="a" * 64)
    spec = TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("rf",), params={"rf": {"n_estimators": 400, "max_depth": 20}})
    job = jobs.submit_training(workspace, spec, kobe_table)
    job = wait_until(workspace, job.job_id, lambda j: j.model == "rf" and j.state == "running" and j.worker_pid)
    # what the job would have registered before dying: a version tagged with its id
    registry.register(workspace, earlier.models[0].run_id, "orphan", alias="champion", job_id=job.job_id)
    os.killpg(job.supervisor_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (jobs._alive(job.worker_pid) or jobs._alive(job.supervisor_pid)):
        time.sleep(0.1)
    assert jobs.JobStore(workspace).read(job.job_id).state == "running"  # as the dead processes left it

    seen = overview.local(workspace)
    listed = {j.job_id: j for j in seen.training_jobs}
    assert listed[job.job_id].state == "failed" and "stopped unexpectedly" in listed[job.job_id].error
    assert not [r for r in runs_of(workspace, job.job_id) if r.info.status == "RUNNING"]
    assert versions(workspace, "orphan") == []


def test_a_second_job_waits_in_the_queue_with_its_place_shown(tmp_path, kobe_dev, monkeypatch):
    from core.settings import load_settings

    monkeypatch.setenv("STUDIO_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("STUDIO_MAX_JOBS", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = load_settings()
    assert settings.max_jobs == 1
    table = TableStore(settings.tables_dir).ingest(kobe_dev.read_bytes(), kobe_dev.name).record.table_id
    spec = TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES[:3], algorithms=("lr",), folds=2)
    first = jobs.submit_training(settings, spec, table)
    wait_until(settings, first.job_id, lambda j: j.state == "running")
    second = jobs.submit_training(settings, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES[:2], algorithms=("nb",), folds=2), table)
    third = jobs.submit_training(settings, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES[:2], algorithms=("lr",), folds=2), table)
    waiting = wait_until(settings, third.job_id, lambda j: "place 2" in j.step, timeout=30)
    assert waiting.state == "queued" and "1 job run at once" in waiting.step
    assert jobs.status(settings, second.job_id).state == "queued"
    jobs.cancel(settings, third.job_id)  # a queued job can be cancelled, and frees its place
    assert jobs.wait(settings, third.job_id, timeout=30).state == "cancelled"
    a = jobs.wait(settings, first.job_id, timeout=240)
    b = jobs.wait(settings, second.job_id, timeout=240)
    assert (a.state, b.state) == ("succeeded", "succeeded"), (a.error, b.error)
    assert b.started_at >= a.finished_at - 0.5  # one at a time: the second started when the first ended


def test_the_same_file_scored_twice_at_once_runs_once(workspace, kobe_table, kobe_prod):
    from concurrent.futures import ThreadPoolExecutor

    from core import registry, scoring
    from core.training import train

    trained = train(workspace, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=2),
                    TableStore(workspace.tables_dir).load(kobe_table), table_name="kobe", table_digest="b" * 64)
    registry.register(workspace, trained.models[0].run_id, "kobe", alias="champion")
    path, digest = scoring.save_upload(workspace, kobe_prod.read_bytes(), kobe_prod.name)
    with ThreadPoolExecutor(4) as pool:
        planned = scoring.plan(workspace, "kobe@champion", path, name=kobe_prod.name, digest=digest)
        submitted = list(pool.map(lambda _: jobs.submit_scoring(workspace, planned), range(4)))
    assert len({j.job_id for j in submitted}) == 1
    assert jobs.wait(workspace, submitted[0].job_id, timeout=240).state == "succeeded"
    assert len(jobs.JobStore(workspace).list("scoring")) == 1
