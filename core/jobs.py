"""Long work in a child process: progress, cancel, and no orphaned RUNNING runs.

A job is a folder ``workspace/jobs/<id>/`` with ``spec.json``, ``status.json`` (rewritten
atomically at each step) and ``log.txt``. ``submit_training`` starts a *supervisor* process in its
own session, which starts the *worker* and waits for it. The worker trains and reports progress;
if it dies without reporting an end (killed, crashed, out of memory), the supervisor marks the job
failed, ends its MLflow runs as FAILED and deletes any model version the job registered. If the
supervisor itself is gone, ``status`` does the same the next time anyone looks at the job.

Cancel sends SIGTERM to the worker, which ends its runs as KILLED; a worker that does not stop
within ``CANCEL_GRACE_SECONDS`` is killed and cleaned up like a crash.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import BadInputError, EmptyTableError, JobCancelled, NotFoundError, StudioError, unexpected
from core.settings import PROJECT_ROOT, Settings, harden_process, load_settings, redact

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")
CANCEL_GRACE_SECONDS = 15
QUEUE_POLL_SECONDS = 1.0


@dataclass
class JobStatus:
    job_id: str
    kind: str
    title: str
    state: str = "queued"  # queued, running, succeeded, failed, cancelled
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    supervisor_pid: int | None = None
    worker_pid: int | None = None
    # when each process started (clock ticks since boot): a pid the system gave to another process
    # since (after a restart) is then not taken for the job's
    supervisor_started: int | None = None
    worker_started: int | None = None
    step: str = "Waiting to start"
    model: str | None = None  # algorithm key of the model being trained
    model_name: str | None = None
    done: int = 0
    total: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        return self.state in FINAL

    @property
    def elapsed(self) -> float:
        start = self.started_at or self.created_at
        return (self.finished_at or time.time()) - start

    @property
    def created(self) -> str:
        return datetime.fromtimestamp(self.created_at, UTC).isoformat(timespec="seconds")


class JobStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.jobs_dir

    def folder(self, job_id: str) -> Path:
        if not job_id or not all(c in "0123456789abcdef" for c in job_id):
            raise NotFoundError(f"There is no job '{job_id}'.")
        return self.root / job_id

    def create(self, kind: str, title: str, payload: dict[str, Any]) -> JobStatus:
        job_id = uuid.uuid4().hex[:12]
        folder = self.folder(job_id)
        folder.mkdir(parents=True)
        _write_json(folder / "spec.json", payload)
        status = JobStatus(job_id=job_id, kind=kind, title=title)
        self.write(status)
        return status

    def read(self, job_id: str) -> JobStatus:
        path = self.folder(job_id) / "status.json"
        try:
            return JobStatus(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise NotFoundError(f"There is no job '{job_id}' (it may have been removed).") from None

    def payload(self, job_id: str) -> dict[str, Any]:
        return json.loads((self.folder(job_id) / "spec.json").read_text())

    def write(self, status: JobStatus) -> None:
        if status.error:  # job files and the pages that show them never hold a password
            status.error = redact(status.error)
        _write_json(self.folder(status.job_id) / "status.json", asdict(status))

    def update(self, job_id: str, **changes: Any) -> JobStatus:
        status = self.read(job_id)
        for key, value in changes.items():
            setattr(status, key, value)
        self.write(status)
        return status

    def list(self, kind: str | None = None) -> list[JobStatus]:
        if not self.root.is_dir():
            return []
        jobs = []
        for folder in self.root.iterdir():
            try:
                job = self.read(folder.name)
            except (NotFoundError, ValueError, TypeError):
                continue
            if kind is None or job.kind == kind:
                jobs.append(job)
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)

    def log_path(self, job_id: str) -> Path:
        return self.folder(job_id) / "log.txt"


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _started(pid: int | None) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (field 22 of /proc/PID/stat)."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _started_at(pid: int | None) -> float | None:
    """When process ``pid`` started, as a Unix time."""
    ticks = _started(pid)
    if ticks is None:
        return None
    try:
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration):
        return None


def _alive(pid: int | None, started: int | None = None, near: float | None = None) -> bool:
    """Whether the process ``pid`` runs, and is the one that started at ``started`` (clock ticks,
    recorded by jobs since they keep it) or, for a job recorded before, within two minutes of
    ``near`` (the moment the job says that process began)."""
    if not pid:
        return False
    if started is not None:
        now = _started(pid)
        if now is not None and now != started:
            return False  # the pid belongs to another process now
    elif near is not None:
        began = _started_at(pid)
        if began is not None and abs(began - near) > 120:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


# --- public API (pages and CLI) ----------------------------------------------------------------


def submit_training(settings: Settings, spec, table_id: str) -> JobStatus:
    """Check the spec against the table (bad input raises here, before anything starts), then start
    the training job in the background. Returns its first status."""
    from core import tables
    from core.training import prepare

    store = tables.store(settings)
    record = store.get(table_id)
    prepared = prepare(store.load(table_id), spec)
    if spec.register_name:  # a name holding another kind of model is refused now, not after training
        from core.registry import Contract, check_registration

        check_registration(settings, spec.register_name, spec.register_alias,
                           Contract.of(prepared.task, prepared.target, prepared.classes))
    jobs = JobStore(settings)
    status = jobs.create("training", f"{spec.target} on {record.name}", {"spec": spec.to_dict(), "table_id": table_id})
    _start(settings, jobs, status.job_id)
    return jobs.read(status.job_id)


def sweep(settings: Settings) -> list[JobStatus]:
    """Every job, newest first, after ending those whose processes are gone (killed with -9, the machine
    restarted): their MLflow runs end FAILED and versions they registered are deleted. Pages that list
    jobs and the studio's start call it, so an orphan never waits for someone to open its job."""
    swept = []
    for job in JobStore(settings).list():
        if job.state in ACTIVE:
            try:
                job = status(settings, job.job_id)
            except NotFoundError:
                continue
        swept.append(job)
    return swept


def running(settings: Settings, kind: str) -> list[JobStatus]:
    """The jobs of ``kind`` still queued or running (dead ones are cleaned up on the way), newest first."""
    return [j for j in sweep(settings) if j.kind == kind and j.state in ACTIVE]


def running_like(settings: Settings, spec, table_id: str) -> JobStatus | None:
    """A training job still running on the same table with the same spec (a second click on Start)."""
    jobs = JobStore(settings)
    wanted = {"spec": spec.to_dict(), "table_id": table_id}
    for job in running(settings, "training"):
        try:
            if jobs.payload(job.job_id) == json.loads(json.dumps(wanted, default=str)):
                return job
        except (OSError, ValueError):
            continue
    return None


def table_of(settings: Settings, job_id: str) -> str | None:
    """The stored table a training job trains on."""
    try:
        return JobStore(settings).payload(job_id).get("table_id")
    except (OSError, ValueError, NotFoundError):
        return None


def submit_scoring(settings: Settings, planned, *, force: bool = False) -> JobStatus:
    """Score in the background what a :class:`core.scoring.ScoringPlan` says. A plan the file cannot
    satisfy (a missing column, no rows) or a file this version scored before (unless ``force``) is
    refused here, before any job. Two submissions of the same file and version at once (two
    clicks, two people) start one job: the second gets the first's job back."""
    from core import scoring
    from core.locks import locked

    if planned.problem:
        raise (BadInputError if planned.missing else EmptyTableError)(planned.problem)
    jobs = JobStore(settings)
    with locked(settings, "scoring", f"{planned.reference}:{planned.source.digest}"):
        for job in running(settings, "scoring"):
            try:
                payload = jobs.payload(job.job_id)
            except (OSError, ValueError):
                continue
            other = payload.get("plan") or {}
            if (f"{other.get('model_name')}/{other.get('model_version')}" == planned.reference
                    and (other.get("source") or {}).get("digest") == planned.source.digest):
                return job
        if not force:  # asked again under the lock: a scoring that finished meanwhile counts
            earlier = scoring.find_previous(settings, planned.model_name, planned.model_version, planned.source.digest)
            if earlier is not None:
                from dataclasses import replace

                raise replace(planned, earlier=earlier).already_scored()
        status = jobs.create("scoring", f"{planned.source.name} with {planned.model_name} v{planned.model_version}",
                             {"plan": planned.to_dict()})
        _start(settings, jobs, status.job_id)
    return jobs.read(status.job_id)


def _start(settings: Settings, jobs: JobStore, job_id: str) -> None:
    # PyCaret (imported by a training worker) opens its log where PYCARET_CUSTOM_LOGGING_PATH says when
    # first imported, else ./logs.log; there is no API for it. So the job's processes are started with
    # it (the worker inherits the supervisor's environment) and no studio process writes its own
    # environment. A value the user set wins.
    env = {"PYCARET_CUSTOM_LOGGING_PATH": str(settings.pycaret_log), "PYCARET_CUSTOM_LOGGING_LEVEL": "WARNING",
           **os.environ, "STUDIO_WORKSPACE": str(settings.workspace), "STUDIO_DATA_DIR": str(settings.data_dir),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    if settings.remote_tracking_uri:
        env["MLFLOW_TRACKING_URI"] = settings.remote_tracking_uri
    with open(jobs.log_path(job_id), "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "core.jobs", "supervise", job_id],
            cwd=jobs.folder(job_id), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the page's rerun; its own process group for cancel
        )
    jobs.update(job_id, supervisor_pid=process.pid, supervisor_started=_started(process.pid))


def status(settings: Settings, job_id: str) -> JobStatus:
    """The job's status; a job whose processes are all gone without an end is failed and cleaned up."""
    jobs = JobStore(settings)
    job = jobs.read(job_id)
    if job.state in ACTIVE and not _alive(job.supervisor_pid, job.supervisor_started, job.created_at) \
            and not _alive(job.worker_pid, job.worker_started, job.started_at):
        # Give a just-started supervisor a moment to record itself.
        if time.time() - job.created_at > 5 or job.supervisor_pid:
            job = _reap(settings, jobs, job_id, "its process stopped unexpectedly")
    return job


def cancel(settings: Settings, job_id: str) -> JobStatus:
    jobs = JobStore(settings)
    job = jobs.update(job_id, cancel_requested=True)
    if job.finished:
        return job
    if job.worker_pid and _alive(job.worker_pid, job.worker_started, job.started_at):
        os.kill(job.worker_pid, signal.SIGTERM)
    elif job.state == "queued" and job.supervisor_pid and _alive(job.supervisor_pid, job.supervisor_started, job.created_at):
        os.killpg(job.supervisor_pid, signal.SIGKILL)
        return _reap(settings, jobs, job_id, "cancelled before it started", state="cancelled")
    return jobs.read(job_id)


def wait(settings: Settings, job_id: str, timeout: float | None = None, poll: float = 0.25) -> JobStatus:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = status(settings, job_id)
        if job.finished or (deadline is not None and time.monotonic() > deadline):
            return job
        time.sleep(poll)


def _reap(settings: Settings, jobs: JobStore, job_id: str, reason: str, state: str = "failed") -> JobStatus:
    """End the job's RUNNING MLflow runs as FAILED, delete versions it registered, record the end."""
    job = jobs.read(job_id)
    if job.finished:
        return job
    for part in settings.scorings_dir.glob(f".{job_id}-*.part"):  # a scoring's unfinished output
        part.unlink(missing_ok=True)
    for scores in settings.scorings_dir.glob(f".{job_id}-*.scores"):  # its sorted scores (exact AUC)
        shutil.rmtree(scores, ignore_errors=True)
    try:
        cleanup_mlflow(settings, job_id, reason)
    except Exception as exc:  # noqa: BLE001 - the store may be down; still record the end
        reason = f"{reason}; its MLflow runs could not be closed ({redact(exc)})"
    return jobs.update(job_id, state=state, error=None if state == "cancelled" else f"The job failed: {reason}.",
                       step="Stopped", finished_at=time.time())


def cleanup_mlflow(settings: Settings, job_id: str, reason: str) -> None:
    from core import tracking

    client = tracking.client(settings)
    from core.scoring import EXPERIMENT as SCORING
    from core.training import EXPERIMENT

    experiments = [e for e in (client.get_experiment_by_name(EXPERIMENT), client.get_experiment_by_name(SCORING)) if e]
    if experiments:
        runs = client.search_runs([e.experiment_id for e in experiments], filter_string=f"tags.`studio.job_id` = '{job_id}'")
        for run in runs:
            if run.info.status in ("RUNNING", "SCHEDULED"):
                client.set_tag(run.info.run_id, "studio.error", reason[:5000])
                client.set_terminated(run.info.run_id, "FAILED")
    for version in client.search_model_versions(f"tags.`studio.job_id` = '{job_id}'"):
        client.delete_model_version(version.name, version.version)


# --- the processes -----------------------------------------------------------------------------


def _take_slot(settings: Settings, jobs: JobStore, job_id: str) -> int | None:
    """Wait for one of the ``settings.max_jobs`` slots (a lock file each) and return its open file;
    while waiting, the job's step says its place in the queue. A slot is held by an open file lock, so
    a process that dies frees it (no stale counter). None when the job was cancelled while queued."""
    import fcntl

    folder = jobs.root / ".slots"
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for k in range(max(1, settings.max_jobs)):
            fd = os.open(folder / f"slot-{k}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        me = jobs.read(job_id)
        if me.cancel_requested:
            return None
        ahead = sum(1 for j in jobs.list() if j.state == "queued" and j.created_at < me.created_at and j.job_id != job_id)
        jobs.update(job_id, step=f"Waiting for a free slot: {settings.max_jobs} job{'s' if settings.max_jobs != 1 else ''} run at "
                                 f"once and {'1 job is' if ahead == 1 else f'{ahead} jobs are'} ahead of this one in the queue "
                                 f"(place {ahead + 1})")
        time.sleep(QUEUE_POLL_SECONDS)


def _supervise(job_id: str) -> int:
    settings = load_settings()
    jobs = JobStore(settings)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the worker decides how a cancel ends
    jobs.update(job_id, supervisor_pid=os.getpid(), supervisor_started=_started(os.getpid()))
    slot = _take_slot(settings, jobs, job_id)
    if slot is None:
        _reap(settings, jobs, job_id, "cancelled before it started", state="cancelled")
        return 0
    # The worker inherits the slot's lock too: the slot stays taken until both processes are gone.
    worker = subprocess.Popen([sys.executable, "-m", "core.jobs", "work", job_id], cwd=os.getcwd(), pass_fds=(slot,))
    jobs.update(job_id, worker_pid=worker.pid, worker_started=_started(worker.pid))
    code = _wait_for(worker, jobs, job_id)
    job = jobs.read(job_id)
    if not job.finished:
        if job.cancel_requested:
            _reap(settings, jobs, job_id, "cancelled by the user", state="cancelled")
        else:
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            _reap(settings, jobs, job_id, f"its process stopped unexpectedly ({how})")
    return 0


def _wait_for(worker: subprocess.Popen, jobs: JobStore, job_id: str) -> int:
    """The worker's exit code. A worker still alive ``CANCEL_GRACE_SECONDS`` after a cancel was asked
    (stuck in a long native call, or stopped) is killed, and the job ends cancelled all the same."""
    asked = None
    while True:
        try:
            return worker.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        if asked is None:
            try:
                if jobs.read(job_id).cancel_requested:
                    asked = time.monotonic()
            except (OSError, ValueError, StudioError):
                continue
        elif time.monotonic() - asked > CANCEL_GRACE_SECONDS:
            worker.kill()  # SIGKILL ends a stopped process too


def _work(job_id: str) -> int:
    settings = load_settings()
    jobs = JobStore(settings)

    def on_term(signum, frame):
        raise JobCancelled()

    signal.signal(signal.SIGTERM, on_term)
    kind = jobs.read(job_id).kind
    jobs.update(job_id, state="running", started_at=time.time(), worker_pid=os.getpid(), worker_started=_started(os.getpid()),
                step="Loading the table" if kind == "training" else "Loading the model")
    return _train_job(settings, jobs, job_id) if kind == "training" else _score_job(settings, jobs, job_id)


def _score_job(settings: Settings, jobs: JobStore, job_id: str) -> int:
    from core import scoring

    try:
        payload = jobs.payload(job_id)
        if "plan" in payload:
            planned = scoring.ScoringPlan.from_dict(payload["plan"])
        else:  # queued by a studio before plans existed
            planned = scoring.plan(settings, payload["reference"], Path(payload["path"]), name=payload["name"], digest=payload["digest"])
        jobs.update(job_id, step="Scoring", total=planned.source.rows or 0)

        def progress(done: int, total: int | None) -> None:
            jobs.update(job_id, done=done, total=total or 0, step=f"Scoring ({done:,} rows done)")

        # drift is measured batch by batch while scoring and recorded on the run (a failure to
        # measure it is among report.messages; the scores stand and the Monitor page tries again)
        report = scoring.run(settings, planned, force=True, progress=progress, job_id=job_id)
        jobs.update(job_id, state="succeeded", result=report.to_dict(), finished_at=time.time(), step="Done", done=report.rows)
        return 0
    except JobCancelled:
        jobs.update(job_id, state="cancelled", finished_at=time.time(), step="Cancelled")
        return 0
    except StudioError as exc:
        jobs.update(job_id, state="failed", error=str(exc), finished_at=time.time(), step="Failed")
        return 1
    except Exception as exc:  # a bug: its traceback in the workspace's error log, its id on the page
        jobs.update(job_id, state="failed", error=unexpected(exc, f"scoring job {job_id}", settings), finished_at=time.time(),
                    step="Failed")
        return 1


def _train_job(settings: Settings, jobs: JobStore, job_id: str) -> int:
    from core import catalog, tables
    from core.training import TrainingSpec, train

    payload = jobs.payload(job_id)
    try:
        spec = TrainingSpec.from_dict(payload["spec"])
        store = tables.store(settings)
        record = store.get(payload["table_id"])
        frame = store.load(record.table_id)
        task = spec.task
        if task is None and spec.target in frame.columns:
            from core.training import infer_task

            try:
                task = infer_task(frame[spec.target])  # what train() infers, so the model's name can be shown
            except Exception:  # noqa: BLE001 - train() says what is wrong with the target
                task = None
        last = {"total": 0}

        def progress(step: str, model: str | None, done: int, total: int) -> None:
            # done/total are units of work (in compare mode: every CV fold too); the step names the
            # algorithm, fold and model number itself when model is None.
            name = None
            if model and task:
                try:
                    name = catalog.get(task, model).name
                except StudioError:
                    name = None
            last["total"] = total
            jobs.update(job_id, step=step, model=model, model_name=name, done=done, total=total)

        result = train(settings, spec, frame, table_name=record.name, table_digest=record.digest,
                       progress=progress, job_id=job_id)
        summary = result.to_summary()  # what crosses the job boundary: readers take TrainingSummary.from_dict
        if not summary.finished:
            errors = "; ".join(m.error or m.name for m in summary.models) or "no model was trained"
            cleanup_mlflow(settings, job_id, "every model failed")
            jobs.update(job_id, state="failed", result=summary.to_dict(), error=f"Every model failed: {errors}",
                        finished_at=time.time(), step="Failed")
            return 1
        jobs.update(job_id, state="succeeded", result=summary.to_dict(), finished_at=time.time(), step="Done",
                    done=last["total"] or len(summary.models))
        return 0
    except JobCancelled:
        cleanup_mlflow(settings, job_id, "cancelled by the user")
        jobs.update(job_id, state="cancelled", finished_at=time.time(), step="Cancelled")
        return 0
    except StudioError as exc:
        _cleanup_quietly(settings, job_id, str(exc))  # the store may be what failed: the real error still shows
        jobs.update(job_id, state="failed", error=str(exc), finished_at=time.time(), step="Failed")
        return 1
    except Exception as exc:  # a bug: its traceback in the workspace's error log, its id on the page
        message = unexpected(exc, f"training job {job_id}", settings)
        _cleanup_quietly(settings, job_id, message)
        jobs.update(job_id, state="failed", error=message, finished_at=time.time(), step="Failed")
        return 1


def _cleanup_quietly(settings: Settings, job_id: str, reason: str) -> None:
    try:
        cleanup_mlflow(settings, job_id, reason)
    except Exception:  # noqa: BLE001 - an unreachable store; its runs are closed when it is back (sweep)
        print(redact(traceback.format_exc()), file=sys.stderr, end="")


def main(argv: list[str]) -> int:
    harden_process()
    role, job_id = argv[0], argv[1]
    return _supervise(job_id) if role == "supervise" else _work(job_id)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
