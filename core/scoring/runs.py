"""Score a file with a registered version: a *plan* (the version resolved once, its signature read
once, the file's columns checked once, an earlier scoring of the same file found) and a *run* that
the background job worker and the CLI both call with that plan.

The run streams the file (parquet row groups, CSV blocks) so memory does not grow with it. Each
batch's columns are coerced to the signature (:mod:`core.scoring.inputs`), scored, written under a
temporary name (renamed when complete, so a failed scoring never leaves a file that looks
finished), counted for the labelled metrics (:mod:`core.scoring.outcomes`) and for drift against
the version's reference profile, loaded once. Every scoring is an MLflow run in the
``studio-scoring`` experiment, tagged with the model and the input's content hash; the output table
is its artifact, which monitoring reads later.

Threads share the work so that little of it waits on the prediction: one reads the next batch
while this one is scored (:class:`_ReadAhead`), one writes (:class:`_BackgroundWriter`), one counts
(:func:`_count_batch`; it also loads what counting needs while the first batch is scored, and
makes the results while the last one is written). The run's record is six writes to the store
whatever the file's length (the run, its parameters, its metrics with the estimate's tag, the
drift's metrics and tag, the end).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.catalog import CLASSIFICATION
from core.errors import BadInputError, EmptyTableError, JobCancelled, NotFoundError, StudioError
from core.scoring.inputs import (
    BATCH_ROWS,
    InputFile,
    InputReport,
    coerce_batch,
    input_columns,
    iter_batches,
    missing_columns,
    missing_message,
    open_input,
)
from core.scoring.memory import free_at_once, release_unused
from core.scoring.model import ScoringModel, _label, decide, load_model, signature, with_current_cutoff
from core.scoring.outcomes import _Outcomes, holdout_at_cutoff
from core.settings import Settings, redact

EXPERIMENT = "studio-scoring"
# row_number: the row's position in the input file (from 1), the key that outcomes added later can be joined
# on when the file has no id column of its own (core.labels)
ADDED = ("prediction", "model_name", "model_version", "scored_at", "input_problems", "row_number")

Progress = Callable[[int, int | None], None]  # rows done, rows in total (None when unknown)


class AlreadyScoredError(StudioError):
    """This file was scored with this model version before; ``run_id`` names that scoring."""

    def __init__(self, message: str, run_id: str, scored_at: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.scored_at = scored_at


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EarlierScoring:
    """A finished scoring of the same file with the same version."""

    run_id: str
    scored_at: str  # "2026-12-02 10:15 UTC"


@dataclass(frozen=True)
class ScoringPlan:
    """What scoring a file with a version will do, known before anything runs. The page shows it,
    the job carries it (``to_dict`` / ``from_dict``), the run executes it."""

    model_name: str
    model_version: int
    training_run_id: str
    task: str | None
    target: str | None
    features: tuple[str, ...]
    holdout_metrics: dict[str, float]
    source: InputFile
    columns: tuple[str, ...]
    missing: tuple[str, ...]  # features the file lacks: nothing can be scored
    extra: tuple[str, ...]  # columns carried through untouched (the outcome among them, if there)
    earlier: EarlierScoring | None = None

    @property
    def reference(self) -> str:
        return f"{self.model_name}/{self.model_version}"

    @property
    def problem(self) -> str | None:
        """Why this file cannot be scored (None when it can)."""
        if self.missing:
            return missing_message(self.source.name, self.missing)
        if self.source.rows == 0:
            return f"'{self.source.name}' has column names but no rows. Nothing was scored."
        return None

    def already_scored(self) -> AlreadyScoredError | None:
        if self.earlier is None:
            return None
        return AlreadyScoredError(
            f"'{self.source.name}' was already scored with {self.model_name} version {self.model_version} on "
            f"{self.earlier.scored_at} (run {self.earlier.run_id}). Open that result, or score it again on purpose.",
            self.earlier.run_id, self.earlier.scored_at,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["source"]["path"] = str(self.source.path)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoringPlan:
        values = dict(data)
        source = dict(values["source"])
        values["source"] = InputFile(**{**source, "path": Path(source["path"])})
        values["earlier"] = EarlierScoring(**values["earlier"]) if values.get("earlier") else None
        for key in ("features", "columns", "missing", "extra"):
            values[key] = tuple(values[key])
        return cls(**values)


_READ = object()  # find_previous: read the version's cut-off from the store


def plan(settings: Settings, version, path: Path, *, name: str | None = None, digest: str | None = None) -> ScoringPlan:
    """The plan of scoring the file at ``path`` with ``version``: ``name@alias``, ``name/version``
    or ``name`` (resolved here, once), or a :class:`core.registry.VersionView` the caller resolved.
    The model is not loaded; its signature is read from its MLmodel file (once per process)."""
    from core import registry

    view = registry.resolve(settings, version) if isinstance(version, str) else version
    source = open_input(settings, Path(path), name=name, digest=digest)
    return _checked(settings, view.name, int(view.version), view.run_id or "", view.task, view.target,
                    signature(settings, view).features, view.metrics, source, find_earlier=True, cutoff=view.cutoff)


def plan_for_model(settings: Settings, model: ScoringModel, source: InputFile, *, find_earlier: bool = True) -> ScoringPlan:
    """The plan for a model already loaded (:func:`core.scoring.model.load_model`) and a file already
    opened: what :func:`score` executes (an earlier scoring is looked for unless ``find_earlier`` is
    False: a scoring forced again does not need it)."""
    return _checked(settings, model.name, model.version, model.run_id, model.task, model.target, model.features,
                    model.holdout_metrics, source, find_earlier=find_earlier)


def _checked(settings: Settings, name: str, version: int, run_id: str, task: str | None, target: str | None,
             features: tuple[str, ...], holdout: dict[str, float], source: InputFile, *, find_earlier: bool,
             cutoff=_READ) -> ScoringPlan:
    """The file's columns checked against the features, once, and the earlier scoring looked for."""
    columns = tuple(input_columns(source))
    return ScoringPlan(
        model_name=name, model_version=version, training_run_id=run_id, task=task, target=target, features=tuple(features),
        holdout_metrics=dict(holdout), source=source, columns=columns, missing=tuple(missing_columns(features, columns)),
        extra=tuple(c for c in columns if c not in features),
        earlier=find_previous(settings, name, version, source.digest, cutoff) if find_earlier else None,
    )


def find_previous(settings: Settings, model_name: str, model_version: int, digest: str, cutoff=_READ) -> EarlierScoring | None:
    """The latest finished scoring run of this input with this model version at the cut-off stored on
    the version now (``cutoff``: that cut-off when the caller has just read it with the version, else
    it is read here), if any: a scoring made before the cut-off moved predicted other labels, so it does
    not count."""
    from core import registry, tracking

    experiment_id = tracking.experiment_id(settings, EXPERIMENT)
    if experiment_id is None:
        return None
    runs = tracking.client(settings).search_runs(
        [experiment_id],
        filter_string=(f"tags.`studio.input_digest` = '{digest}' and tags.`studio.model_name` = '{model_name}' "
                       f"and tags.`studio.model_version` = '{model_version}' and attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time DESC"], max_results=20,
    )
    if not runs:
        return None
    now = registry.cutoff(settings, model_name, model_version) if cutoff is _READ else cutoff
    for run in runs:
        if registry.Cutoff.same_rule(now, registry.Cutoff.from_tag(run.data.tags.get(registry.CUTOFF_TAG))):
            when = datetime.fromtimestamp(run.info.start_time / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
            return EarlierScoring(run.info.run_id, when)
    return None


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricComparison:
    """One measure on a labelled file against the model's holdout rows at training."""

    metric: str
    value: float  # on this file
    at_training: float
    change: float
    worse: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricComparison:
        if "this file" in data:  # stored by scorings before this type existed
            data = {"metric": data["metric"], "value": data["this file"], "at_training": data["at training"],
                    "change": data["change"], "worse": data["worse"]}
        return cls(str(data["metric"]), float(data["value"]), float(data["at_training"]), float(data["change"]), bool(data["worse"]))


@dataclass(frozen=True)
class ScoringReport:
    run_id: str
    experiment_id: str
    model_name: str
    model_version: int
    input_name: str
    input_digest: str
    rows: int
    output: str  # the canonical parquet output in the workspace
    columns_added: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    metrics: dict[str, float] | None = None
    holdout_metrics: dict[str, float] = field(default_factory=dict)
    comparison: tuple[MetricComparison, ...] | None = None
    seconds: float = 0.0
    exported: str | None = None
    drift: dict[str, Any] | None = None  # the drift summary logged on the run (None when not measured)
    estimate: dict[str, Any] | None = None  # the performance expected without labels (core.estimation.Estimate.to_dict)
    # the cut-off the labels were decided at (core.registry.Cutoff.to_dict: value, positive, by, at),
    # as tagged on the run (CUTOFF_TAG); None: the likelier class
    cutoff: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """What the CLI prints."""
        return {
            "run_id": self.run_id, "model": {"name": self.model_name, "version": self.model_version}, "rows": self.rows,
            "output": self.exported or self.output, "columns_added": list(self.columns_added),
            "metrics": _clean(self.metrics) if self.metrics is not None else None, "messages": list(self.messages),
            "comparison": [c.to_dict() for c in self.comparison] if self.comparison is not None else None,
            "drift": self.drift, "estimate": self.estimate, "cutoff": self.cutoff,
        }

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["columns_added"], data["messages"] = list(self.columns_added), list(self.messages)
        data["comparison"] = [c.to_dict() for c in self.comparison] if self.comparison is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoringReport:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "model" in data and "model_name" not in data:  # a job result written before this type
            values["model_name"], values["model_version"] = data["model"]["name"], int(data["model"]["version"])
        values["columns_added"] = tuple(values.get("columns_added") or ())
        values["messages"] = tuple(values.get("messages") or ())
        if values.get("comparison") is not None:
            values["comparison"] = tuple(MetricComparison.from_dict(c) for c in values["comparison"])
        return cls(**values)


def output_path(settings: Settings, run_id: str) -> Path:
    return settings.scorings_dir / f"{run_id}.parquet"


# --- the run -----------------------------------------------------------------------------------


def run(
    settings: Settings,
    planned: ScoringPlan,
    *,
    force: bool = False,
    progress: Progress | None = None,
    job_id: str | None = None,
    batch_rows: int = BATCH_ROWS,
    log_output: bool = True,
    measure_drift: bool = True,
) -> ScoringReport:
    """Execute a plan: refused at once if the file cannot be scored, or was scored before with this
    version (unless ``force``); else the version is loaded (from the copy whose hashes were checked)
    and the file scored. What the job worker and the CLI call."""
    _refuse(planned, force)
    if not planned.source.path.is_file():
        raise NotFoundError(f"The file to score, '{planned.source.name}', is gone from {planned.source.path.parent} (removed "
                            "after the scoring was asked for). Nothing was scored; choose the file again.")
    from core import registry

    model, pipeline = load_model(settings, registry.resolve(settings, planned.reference))
    return _execute(settings, planned, model, pipeline, batch_rows=batch_rows, progress=progress, job_id=job_id,
                    log_output=log_output, measure_drift=measure_drift)


def score(
    settings: Settings,
    model: ScoringModel,
    pipeline,
    source: InputFile,
    *,
    batch_rows: int = BATCH_ROWS,
    progress: Progress | None = None,
    force: bool = False,
    job_id: str | None = None,
    log_output: bool = True,
    measure_drift: bool = True,
) -> ScoringReport:
    """Score ``source`` with a model already loaded: the plan of that pair, then the same run as
    :func:`run` (for callers that hold the model, such as the benchmarks)."""
    planned = plan_for_model(settings, model, source, find_earlier=not force)
    _refuse(planned, force)
    return _execute(settings, planned, model, pipeline, batch_rows=batch_rows, progress=progress, job_id=job_id,
                    log_output=log_output, measure_drift=measure_drift)


def _keep_output(client, run_id: str, artifact_uri: str, output: Path) -> None:
    """The output as an artifact of its run (what monitoring fetches on another machine). In a store
    on this file system it is a second name of the same file (a hard link: instant, no space; the
    output is never changed in place), else an upload."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(artifact_uri or "")
    if parts.scheme in ("", "file"):
        folder = Path(unquote(parts.path)) / "output"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.link(output, folder / output.name)
            return
        except OSError:  # another file system, or no hard links here: copied as usual
            pass
    client.log_artifact(run_id, str(output), "output")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"


def _refuse(planned: ScoringPlan, force: bool) -> None:
    if planned.missing:
        raise BadInputError(planned.problem)
    if planned.source.rows == 0:
        raise EmptyTableError(planned.problem)
    earlier = planned.already_scored()
    if earlier is not None and not force:
        raise earlier


def _execute(
    settings: Settings,
    planned: ScoringPlan,
    model: ScoringModel,
    pipeline,
    *,
    batch_rows: int,
    progress: Progress | None,
    job_id: str | None,
    log_output: bool,
    measure_drift: bool,
) -> ScoringReport:
    """Score every batch, write the output atomically and record the scoring in MLflow.

    Nothing grows with the file: the batches are scored, written and counted one at a time. Drift
    (``measure_drift``) is measured on the way against the version's reference profile, loaded once,
    and logged on the run (what :func:`core.monitoring.stored_drift` reads back); the labelled
    metrics are computed from per-batch sums and counts (see :class:`_Outcomes`)."""
    source, columns = planned.source, list(planned.columns)
    import pyarrow as pa
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_USER

    from core import tracking

    tracking.use(settings)
    client = tracking.client(settings)
    experiment_id = tracking.ensure_experiment(settings, EXPERIMENT)
    # the cut-off stored on the version now (a loaded model may be cached while it moves)
    model = with_current_cutoff(settings, model)
    if model.cutoff is not None and model.classes:  # one that does not fit the classes is refused before any run
        decide(np.full((1, len(model.classes)), 1 / len(model.classes)), model.classes, model.cutoff)
    free_at_once()
    labelled = bool(model.target) and model.target in columns
    report = InputReport(extra_columns=list(planned.extra), target=model.target if labelled else None)
    say = progress or (lambda done, total: None)
    scored_at = datetime.now(UTC).isoformat(timespec="seconds")
    tags = {"studio.kind": "scoring", "studio.model_name": model.name, "studio.model_version": str(model.version),
            "studio.input_digest": source.digest, "studio.input_name": source.name[:250],
            MLFLOW_RUN_NAME: f"score {source.name} with {model.name} v{model.version}"[:250], MLFLOW_USER: _user()}
    if job_id:
        tags["studio.job_id"] = job_id
    if model.cutoff is not None:
        from core.registry import CUTOFF_TAG

        tags[CUTOFF_TAG] = json.dumps(model.cutoff.to_dict())
    started = time.perf_counter()
    out_dir = settings.scorings_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_out = out_dir / f".{job_id or 'cli'}-{uuid.uuid4().hex}.parquet.part"  # the job's reaper finds it by id
    # the labelled rows' scores for the exact AUC wait here (private, removed when the scoring ends)
    scratch = Path(tempfile.mkdtemp(prefix=f".{job_id or 'cli'}-", suffix=".scores", dir=out_dir)) if labelled else None
    outcomes = _Outcomes(model.task, model.classes, scratch) if labelled else None
    # The client's create_run, not the fluent start_run: that one also looks for a git checkout and a
    # Databricks notebook to tag the run with (importing GitPython and IPython: 0.3 s per scoring)
    reader = _ReadAhead(source, batch_rows, model.features)  # the first batch is read while the run is created
    try:
        created = client.create_run(experiment_id, tags=tags)
    except BaseException:
        reader.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    run_id = created.info.run_id

    writer = None
    # The labelled metrics and the drift of a batch are counted in a thread of their own while the
    # next batch is read and scored (sorting and counting in numpy release the GIL): on two cores
    # that hides most of their time.
    counter = _InOrder("scoring-counter")
    rows = 0
    notes: list[str] = []  # said beside the input report: drift not measured, outcomes not measurable
    try:
        client.log_batch(run_id, params=[Param(k, str(v)) for k, v in {
            "model_uri": model.uri, "model_name": model.name, "model_version": model.version, "input_name": source.name[:500],
            "input_format": source.format, "batch_rows": batch_rows}.items()])
        proba_names = [f"proba_{_label(c)}" for c in model.classes] if model.task == CLASSIFICATION else []
        # the labels as the model's classes (decided from the probabilities: the likelier class, or the
        # stored cut-off's rule); a model without its classes recorded says its own
        labelled_classes = bool(model.classes)
        drifting = _DriftOnTheWay(settings, model, notes) if measure_drift else None
        estimating = _EstimateOnTheWay(settings, model, notes)
        # What the counting needs before its first batch (the reference profile, the estimator, the
        # chart's frame and the modules they import) is prepared in the counting thread while the
        # first batch is read and scored: until then that thread and the second core are idle.
        counter.submit(_prepare, drifting, estimating, outcomes)
        say(0, source.rows)
        for table, features in reader:
            n = table.num_rows
            X, problems = coerce_batch(model, features, report)
            names = _output_names(table.column_names, proba_names)
            added: dict[str, Any] = {}
            if model.task == CLASSIFICATION and hasattr(pipeline, "predict_proba"):
                proba = np.asarray(pipeline.predict_proba(X), dtype=float)
                prediction = decide(proba, model.classes, model.cutoff) if labelled_classes else pipeline.predict(X)
                added[names["prediction"]] = pa.array(prediction)
                for k, column in enumerate(proba_names):
                    added[names[column]] = pa.array(proba[:, k])
            else:
                proba = None
                prediction = np.asarray(pipeline.predict(X))
                added[names["prediction"]] = pa.array(prediction)
            added[names["model_name"]] = pa.repeat(pa.scalar(model.name), n)
            added[names["model_version"]] = pa.repeat(pa.scalar(model.version, pa.int64()), n)
            added[names["scored_at"]] = pa.repeat(pa.scalar(scored_at), n)
            added[names["input_problems"]] = pa.nulls(n, pa.string()) if problems is None else pa.array(problems.to_numpy(), pa.string(), from_pandas=True)
            added[names["row_number"]] = pa.array(np.arange(rows + 1, rows + n + 1, dtype="int64"))
            out = table
            for name, array in added.items():
                out = out.append_column(name, array)
            if writer is None:
                writer = _BackgroundWriter(tmp_out, out.schema, distinct=[names["row_number"]])
            written = _conform(out, writer.schema, source.name)
            writer.write(written)
            # one call per batch: the counting thread may be a batch behind without holding the scoring up
            counter.submit(_count_batch, outcomes, estimating, drifting, table.column(model.target) if outcomes is not None else None,
                           prediction, proba, X, written, features if written is out else None)
            del table, out, written, features, X, added, prediction, proba
            release_unused()
            rows += n
            say(rows, source.rows)
        # The counts are finished (metrics, AUC, drift statistics, estimate) in the counting thread
        # while the last batch is still being written.
        counted: dict[str, Any] = {}
        counter.submit(_finish_counting, counted, outcomes, drifting, estimating)
        if writer is not None:
            writer.close()
            writer = None
        counter.close()
        if rows == 0:
            raise EmptyTableError(f"'{source.name}' has column names but no rows. Nothing was scored.")
        report.empty_columns = [f for f in model.features if report.missing_values.get(f, 0) >= rows]

        metrics = comparison = None
        holdout = dict(model.holdout_metrics)
        unknown = counted.get("unknown") or []
        if unknown:  # the scores stand; the model cannot be measured against outcomes it never learned
            shown = ", ".join(repr(v) for v in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            notes.append(f"The outcome column '{model.target}' holds values the model never learned ({shown}; it knows "
                               f"{', '.join(repr(c) for c in model.classes)}), so its performance on this file is not measured. "
                               "Check that the column holds the same outcome, coded the same way as in training.")
        elif "outcomes" in counted:
            metrics, figures = counted["outcomes"]
            # the charts of this file, read back by tracking.load_figures (the Score page shows them)
            for key, figure in figures.items():
                client.log_text(run_id, figure.to_json(), f"plots/{key}.json")
            # the holdout measured by the same rule as this file (at the stored cut-off, if any)
            holdout = holdout_at_cutoff(settings, model)
            comparison = compare_with_training(metrics, holdout)

        final = output_path(settings, run_id)
        os.replace(tmp_out, final)
        client.log_dict(run_id, {"messages": report.messages(), "report": asdict(report),
                         "comparison": None if comparison is None else [c.to_dict() for c in comparison]}, "scoring_report.json")
        estimate, estimate_metrics, estimate_tags = estimating.result()
        # the run's metrics and the estimate's tag in one write (the drift's are logged by monitoring.record)
        values = {**({k: v for k, v in metrics.items() if math.isfinite(v)} if metrics is not None else {}),
                  "rows": rows, "rows_with_unusable_values": report.rows_with_unusable_values,
                  **{f"unseen_categories.{c}": n for c, n in report.unseen_categories.items()}, **estimate_metrics}
        stamp = int(time.time() * 1000)
        items: list[Any] = [Metric(k, float(v), stamp, 0) for k, v in values.items()]
        items += [RunTag(k, v) for k, v in estimate_tags.items()]
        for start in range(0, len(items), 900):  # MLflow takes at most 1,000 values per batch
            part = items[start:start + 900]
            client.log_batch(run_id, metrics=[m for m in part if isinstance(m, Metric)], tags=[t for t in part if isinstance(t, RunTag)])
        drift_summary = drifting.finish(run_id) if drifting is not None else None
        if log_output:
            _keep_output(client, run_id, created.info.artifact_uri, final)
        client.set_terminated(run_id, "FINISHED")
    except BaseException as exc:
        counter.abort()
        if writer is not None:
            writer.abort()
        tmp_out.unlink(missing_ok=True)
        output_path(settings, run_id).unlink(missing_ok=True)
        killed = isinstance(exc, (JobCancelled, KeyboardInterrupt))
        client.set_tag(run_id, "studio.error", "stopped by the user" if killed else redact(f"{type(exc).__name__}: {str(exc)[:4000]}"))
        client.set_terminated(run_id, "KILLED" if killed else "FAILED")
        raise  # a bug stays a bug: the caller records it as unexpected (core.errors)
    finally:
        reader.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    added = ["prediction", *proba_names, "model_name", "model_version", "scored_at", "input_problems", "row_number"]
    return ScoringReport(
        run_id=run_id, experiment_id=experiment_id, model_name=model.name, model_version=model.version,
        input_name=source.name, input_digest=source.digest, rows=rows, output=str(output_path(settings, run_id)),
        columns_added=tuple(added), messages=(*report.messages(), *notes), metrics=metrics,
        holdout_metrics=holdout, comparison=comparison, seconds=time.perf_counter() - started,
        drift=drift_summary, estimate=estimate, cutoff=model.cutoff.to_dict() if model.cutoff is not None else None,
    )



def _prepare(drifting: _DriftOnTheWay | None, estimating: _EstimateOnTheWay, outcomes: _Outcomes | None) -> None:
    """What counting needs before its first batch (run in the counting thread, see :func:`_execute`)."""
    if drifting is not None:
        drifting.start()
    estimating.start()
    if outcomes is not None:
        outcomes.prepare()


def _count_batch(outcomes: _Outcomes | None, estimating: _EstimateOnTheWay, drifting: _DriftOnTheWay | None, truth,
                 prediction: np.ndarray, proba: np.ndarray | None, X: pd.DataFrame, written, features: pd.DataFrame | None) -> None:
    """Count one scored batch (in the counting thread): its labelled rows (``truth``, the outcome
    column as read, when the file holds it), its estimate, and its drift (``written``: the batch as
    written, its columns as reading the output back would give them; ``features``: its model
    columns already in pandas, None when the batch was cast to the output's types)."""
    if outcomes is not None:
        truth = truth.to_pandas()
        known = truth.notna().to_numpy()
        if known.all():  # every row labelled: the arrays as they are (a mask would copy them)
            outcomes.add(truth.to_numpy(), prediction, proba)
        else:
            outcomes.add(truth.to_numpy()[known], prediction[known], None if proba is None else proba[known])
    estimating.add(prediction, proba, X)  # (nothing to do without an estimator)
    if drifting is not None:
        drifting.add(written, features)


def _finish_counting(into: dict[str, Any], outcomes: _Outcomes | None, drifting: _DriftOnTheWay | None,
                     estimating: _EstimateOnTheWay) -> None:
    """The counts made into results once every batch is counted (in the counting thread): the
    labelled metrics and charts (``into["outcomes"]``, unless the file holds outcomes the model never
    learned: ``into["unknown"]``), the drift report and the estimate."""
    if outcomes is not None:
        into["unknown"] = outcomes.unknown_labels()
        if not into["unknown"] and outcomes.rows:
            into["outcomes"] = outcomes.finish()
    if drifting is not None:
        drifting.measure()
    estimating.measure()


class _EstimateOnTheWay:
    """The performance expected without labels (:mod:`core.estimation`), accumulated batch by batch
    with the version's estimator (loaded once, by :meth:`start`) and logged on the scoring run
    (``est.<m>``, ``est_band.<m>``, tag ``studio.estimate``). A version trained before estimators
    existed is tagged ``unavailable``; a failure leaves a note (tag ``failed``) and the scores stand."""

    def __init__(self, settings: Settings, model: ScoringModel, notes: list[str]) -> None:
        self.settings, self.model, self.notes = settings, model, notes
        self.batch = None
        self.status = "unavailable"
        self.estimate = None

    def start(self) -> None:
        from core import estimation

        try:
            estimator = estimation.load(self.settings, self.model.run_id) if self.model.run_id else None
            if estimator is not None:
                self.batch = estimator.start()
                self.status = estimator.method
        except Exception as exc:  # noqa: BLE001 - the scores stand without an estimate
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self.batch, self.status = None, "failed"
        if isinstance(exc, StudioError):
            self.notes.append(f"Performance could not be estimated ({redact(exc)}); the scores stand.")
        else:
            from core.errors import unexpected

            self.notes.append(f"Performance could not be estimated: {unexpected(exc, 'estimating performance while scoring', self.settings)} "
                              "The scores stand; score the file again to estimate it.")

    def add(self, prediction: np.ndarray, proba: np.ndarray | None, features: pd.DataFrame) -> None:
        if self.batch is None:
            return
        try:
            self.batch.add(prediction, proba, features)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def measure(self) -> None:
        """The estimate of every batch added (None when there is none)."""
        if self.batch is None:
            return
        try:
            self.estimate = self.batch.finish()
            if self.estimate is None:
                self.status = "unavailable"
        except Exception as exc:  # noqa: BLE001
            self.estimate = None
            self._failed(exc)

    def result(self) -> tuple[dict[str, Any] | None, dict[str, float], dict[str, str]]:
        """(the estimate as a dict or None, its metrics, its tag) for the scoring run."""
        from core import estimation

        if self.estimate is None:
            return None, {}, {estimation.TAG: self.status}
        return self.estimate.to_dict(), self.estimate.to_metrics(), {estimation.TAG: self.status}


class _DriftOnTheWay:
    """Drift of the file being scored, measured batch by batch against the reference profile of the
    version (loaded once, by :meth:`start`): :class:`core.drift.BatchComparison` over the output's
    columns as they are written, the model's score included. A profile that cannot be read, or a
    failure while counting, leaves a note and the scores stand; the Monitor page measures the drift
    later."""

    def __init__(self, settings: Settings, model: ScoringModel, notes: list[str]) -> None:
        self.settings, self.model, self.notes = settings, model, notes
        self.comparison = None
        self.score_column: str | None = None
        self.result = None

    def start(self) -> None:
        from core import drift, monitoring

        model = self.model
        try:
            if not model.run_id:
                raise NotFoundError(f"{model.name} version {model.version} has no training run to compare with")
            self.comparison = drift.BatchComparison(monitoring.reference_profile(self.settings, model.run_id))
        except Exception as exc:  # noqa: BLE001 - the scores stand without drift
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self.comparison = None
        if isinstance(exc, StudioError):
            self.notes.append(f"Drift could not be measured yet ({redact(exc)}); the Monitor page will try again.")
        else:  # a bug: recorded with its traceback, and the scores stand
            from core.errors import unexpected

            self.notes.append(f"Drift could not be measured yet: {unexpected(exc, 'measuring drift while scoring', self.settings)} "
                              "The scores stand; the Monitor page will try again.")

    def add(self, table, features: pd.DataFrame | None) -> None:
        """One batch as written; ``features`` is its model columns already read into pandas (None
        when the batch was cast to the output's types: its columns are read again)."""
        if self.comparison is None:
            return
        from core import monitoring

        try:
            if self.comparison.columns is None:
                self.comparison.columns = list(table.column_names)
                self.score_column = monitoring.score_column(table.column_names)
            profiled = [c for c in self.comparison.profile.features if c in table.column_names]
            if features is None or any(c not in features.columns for c in profiled):
                features = table.select(profiled).to_pandas()
            scores = None
            if self.score_column is not None:
                scores = pd.to_numeric(table.column(self.score_column).to_pandas(), errors="coerce").to_numpy(dtype="float64")
            self.comparison.add(features, scores)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def measure(self) -> None:
        """The drift report of every batch added (kept for :meth:`finish`)."""
        if self.comparison is None:
            return
        from core import monitoring

        try:
            self.result = self.comparison.report(monitoring.thresholds(self.settings))
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)

    def finish(self, run_id: str) -> dict[str, Any] | None:
        """Log the drift report on the scoring run; its summary (None when drift was not measured)."""
        if self.comparison is None or self.result is None:
            return None
        from core import monitoring

        try:
            monitoring.record(self.settings, run_id, self.result)
            return self.result.summary
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            return None



class _InOrder:
    """Runs the calls it is given one after the other, in a thread, while the caller goes on; at most
    one call waits (so memory holds at most one more batch). An error is raised to the caller at its
    next ``submit`` or at ``close``."""

    def __init__(self, name: str) -> None:
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    item[0](*item[1])
                except BaseException as exc:  # noqa: BLE001 - handed to the scoring thread
                    self._error = exc
            del item
            release_unused()

    def submit(self, call, *args) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((call, args))

    def close(self) -> None:
        """Wait for every call; raise the first error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        self._error = self._error or RuntimeError("aborted")
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class _ReadAhead:
    """The file's batches (:func:`core.scoring.inputs.iter_batches`), each with its model columns
    in pandas, read in a thread one batch ahead of the scoring: Arrow decodes parquet without the
    GIL, so the next batch is read while this one is scored. The next batch is read only once the
    scoring took the previous one, so memory holds one input batch more than reading in turn, no
    more. Empty batches are left out. An error reading the file is raised to the scoring as it
    reaches that batch."""

    _END = object()

    def __init__(self, source: InputFile, batch_rows: int, features) -> None:
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue()  # never more than one item: see _turn
        self._turns = threading.Semaphore(1)  # released by the scoring as it takes a batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source, batch_rows, list(features)), name="scoring-reader",
                                        daemon=True)
        self._thread.start()

    def _turn(self) -> bool:
        """Wait until the batch handed over last is taken; False once the scoring stopped reading."""
        while not self._stop.is_set():
            if self._turns.acquire(timeout=0.05):
                return True
        return False

    def _run(self, source: InputFile, batch_rows: int, features: list[str]) -> None:
        batches = iter_batches(source, batch_rows)
        try:
            while self._turn():
                table = next(batches, None)
                if table is None:
                    self._queue.put(self._END)
                    return
                if table.num_rows:
                    self._queue.put((table, table.select(features).to_pandas()))
                else:
                    self._turns.release()  # nothing handed over: the turn is kept
                del table
                release_unused()
        except BaseException as exc:  # noqa: BLE001 - handed to the scoring thread
            self._queue.put(exc)
        finally:
            batches.close()

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            self._turns.release()  # the next batch may be read
            yield item
            del item

    def close(self) -> None:
        """Stop reading (at once, if the scoring stopped early) and wait for the thread."""
        import queue

        self._stop.set()
        self._thread.join()
        try:
            self._queue.get_nowait()  # a batch read but not taken
        except queue.Empty:
            pass


class _BackgroundWriter:
    """Writes parquet batches in a thread while the next batch is scored (Arrow releases the GIL
    while encoding and writing). At most one batch waits, so memory stays bounded."""

    def __init__(self, path: Path, schema, distinct: list[str] = ()) -> None:

        import pyarrow as pa
        import pyarrow.parquet as pq

        self.schema = schema
        # Dictionary encoding pays for text and whole numbers (few distinct values); on decimals
        # such as the probabilities (all distinct) Arrow tries it and gives up on each page, which
        # took half the writing time. ``distinct`` names whole-number columns known to hold a
        # different value on every row (the row number): there it fails the same way (measured on
        # 250,000 rows: a quarter of a batch's writing time).
        coded = [f.name for f in schema if not (pa.types.is_floating(f.type) or pa.types.is_nested(f.type)) and f.name not in distinct]
        self._writer = pq.ParquetWriter(path, schema, use_dictionary=coded)
        self._thread = _InOrder("scoring-writer")

    def write(self, table) -> None:
        self._thread.submit(self._writer.write_table, table)

    def close(self) -> None:
        try:
            self._thread.close()
        finally:
            self._writer.close()

    def abort(self) -> None:
        self._thread.abort()
        self._writer.close()


def _conform(table, schema, name: str):
    """A batch in the first batch's column types (a CSV block may read a column as whole numbers
    where the first read decimals); a column that turns from numbers to text is refused by name."""
    import pyarrow as pa

    if table.schema.equals(schema):
        return table
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        changed = [f.name for f, g in zip(schema, table.schema, strict=False) if f.type != g.type]
        raise BadInputError(
            f"In '{name}', column {', '.join(repr(c) for c in changed[:5])} changes kind further down the file "
            f"(for example numbers, then text). Make each column hold one kind of value and try again."
        ) from exc


def compare_with_training(metrics: dict[str, float], holdout: dict[str, float]) -> tuple[MetricComparison, ...]:
    """Each metric on this file against the model's holdout value, and whether it is worse."""
    from core import metrics as table

    rows = []
    for name, value in metrics.items():
        before = holdout.get(name)
        if before is None or not math.isfinite(value) or not math.isfinite(before):
            continue
        worse = table.is_worse(name, value, before)
        rows.append(MetricComparison(name, float(value), float(before), float(value - before), bool(worse)))
    return tuple(rows)


def _output_names(existing, proba_names: list[str]) -> dict[str, str]:
    """Names of the added columns; one that clashes with an input column gets a '_scored' suffix."""
    taken = set(map(str, existing))
    names = {}
    for name in (*ADDED, *proba_names):
        candidate = name
        while candidate in taken:
            candidate += "_scored"
        names[name] = candidate
        taken.add(candidate)
    return names


def _clean(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (round(v, 6) if math.isfinite(v) else None) for k, v in metrics.items()}



# A finished scoring's report, by (store, run id): read once per process.
_REPORTS: dict[tuple[str, str], ScoringReport] = {}


def load_report(settings: Settings, run_id: str) -> ScoringReport:
    """A finished scoring, read back from its MLflow run (to show an earlier result); its output is
    fetched from the run's artifacts when this workspace does not have it (scored elsewhere)."""
    key = (settings.tracking_uri, run_id)
    local = output_path(settings, run_id)
    if key in _REPORTS and local.is_file():
        return _REPORTS[key]
    from core import registry, tracking

    client = tracking.client(settings)
    found = client.get_run(run_id)
    saved = json.loads(tracking.run_artifact(settings, run_id, "scoring_report.json").read_text())
    params, metrics = found.data.params, found.data.metrics
    from core import metrics as table

    known = {*table.for_task(CLASSIFICATION), *table.for_task("regression")}
    labelled = {k: v for k, v in metrics.items() if k in known}
    if not local.is_file():  # scored on another machine: fetch the output artifact
        local.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            fetched = client.download_artifacts(run_id, f"output/{run_id}.parquet", tmp)
            shutil.copyfile(fetched, local)
    comparison = saved.get("comparison")
    if found.data.tags.get("studio.labels") == "attached":  # outcomes added later: their comparison with training
        from core import labels

        attached = labels.stored_report(settings, run_id, found.data.tags)
        if attached is not None:
            comparison = attached.get("comparison")
    from core.estimation import Estimate

    estimate = Estimate.from_metrics(metrics)
    report = ScoringReport(
        run_id=run_id, experiment_id=found.info.experiment_id, model_name=params.get("model_name", ""),
        model_version=int(params.get("model_version", 0)), input_name=params.get("input_name", ""),
        input_digest=found.data.tags.get("studio.input_digest", ""), rows=int(metrics.get("rows", 0)), output=str(local),
        messages=tuple(saved.get("messages", [])), metrics=labelled or None,
        comparison=None if comparison is None else tuple(MetricComparison.from_dict(c) for c in comparison),
        estimate=None if estimate is None else estimate.to_dict(),
        cutoff=None if (used := registry.Cutoff.from_tag(found.data.tags.get(registry.CUTOFF_TAG))) is None else used.to_dict(),
    )
    if found.info.status == "FINISHED":
        if len(_REPORTS) > 256:
            _REPORTS.clear()
        _REPORTS[key] = report
    return report
