"""History of scored batches per model: drift against the training reference and performance
over time. MLflow is the record: each scoring run carries its drift results (one metric per feature
and measure, and the table as an artifact) once they are computed."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import datasets, drift
from core.errors import NotFoundError
from core.settings import Settings

DRIFT_ARTIFACT = "drift/drift_report.json"


def thresholds(settings: Settings) -> drift.Thresholds:
    return drift.Thresholds.load(settings.monitoring_file)


def save_thresholds(settings: Settings, values: drift.Thresholds) -> None:
    values.save(settings.monitoring_file)


# A training run's reference profile never changes: parsed once per process, by (store, run id)
_PROFILES: dict[tuple[str, str], drift.ReferenceProfile] = {}


def reference_profile(settings: Settings, training_run_id: str) -> drift.ReferenceProfile:
    """The profile logged with the model (downloaded once into the workspace cache, parsed once per
    process); for a model logged before profiles existed, fitted now from the training sample and
    holdout scores it kept."""
    key = (settings.tracking_uri, training_run_id)
    if key in _PROFILES:
        return _PROFILES[key]
    from core import tracking

    try:
        folder = tracking.run_artifact(settings, training_run_id, "reference")
    except Exception as exc:  # noqa: BLE001 - said for what it is: missing, unreachable, or a bug
        tracking.raise_unreachable(settings, exc)
        if not tracking.missing_artifact(exc):
            raise
        raise NotFoundError(f"The training run {training_run_id} kept no reference data, so drift cannot be measured.") from exc
    if (folder / "profile.json").is_file():
        profile = drift.ReferenceProfile.load(folder)
    else:
        from core.training import drift_scores  # (core.training is a heavy import: only for old models)

        info = json.loads(tracking.run_artifact(settings, training_run_id, "model_info.json").read_text())
        train = datasets.read_parquet(folder / "train.parquet")
        scores = datasets.read_parquet(folder / "holdout_scores.parquet")
        profile = drift.fit_profile(train, info["features"], scores=drift_scores(scores))
    if len(_PROFILES) >= 32:
        _PROFILES.pop(next(iter(_PROFILES)))
    _PROFILES[key] = profile
    return profile


def score_column(columns) -> str | None:
    """The column of a scored output holding the model's score: the last class probability (the
    positive class), else the prediction; None when there is neither."""
    names = [str(c) for c in columns]
    proba = [c for c in names if c.startswith("proba_")]
    return proba[-1] if proba else ("prediction" if "prediction" in names else None)


def batch_scores(frame: pd.DataFrame) -> np.ndarray | None:
    """The model's score in a scored output (the positive class probability, or the prediction)."""
    column = score_column(frame.columns)
    return None if column is None else pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64")


@dataclass(frozen=True)
class Batch:
    run_id: str
    input_name: str
    scored_at: str
    rows: int
    model_version: int
    metrics: dict[str, float]
    psi: dict[str, float]
    drift_status: str | None
    model_name: str = ""
    estimated: dict[str, float] = field(default_factory=dict)  # est.<m>: the performance expected without labels
    bands: dict[str, float] = field(default_factory=dict)  # est_band.<m>: each estimate's half width
    estimate_status: str | None = None  # tag studio.estimate: cbpe, dle, unavailable, failed; None: never tried
    input_digest: str = ""  # the scored file's content hash (tag studio.input_digest)

    @property
    def label(self) -> str:
        return f"{self.input_name} · {self.scored_at[:16].replace('T', ' ')} · v{self.model_version} · {self.rows:,} rows"


def batches(settings: Settings, model_name: str) -> list[Batch]:
    """The last 1,000 finished scorings of ``model_name`` (any version), oldest first."""
    return _search_batches(settings, f"tags.`studio.model_name` = '{model_name}'", "DESC", 1000)[::-1]


def latest_batch(settings: Settings) -> Batch | None:
    """The most recent finished scoring, whatever the model (None if nothing was scored)."""
    found = _search_batches(settings, None, "DESC", 1)
    return found[0] if found else None


def _search_batches(settings: Settings, where: str | None, order: str, limit: int) -> list[Batch]:
    from core import tracking
    from core.scoring import EXPERIMENT

    experiment_id = tracking.experiment_id(settings, EXPERIMENT)
    if experiment_id is None:
        return []
    finished = "attributes.status = 'FINISHED'"
    runs = tracking.client(settings).search_runs([experiment_id], max_results=limit, order_by=[f"attributes.start_time {order}"],
                              filter_string=f"{where} and {finished}" if where else finished)
    out = []
    for run in runs:
        metrics = run.data.metrics
        psi = {k.removeprefix("drift.psi."): v for k, v in metrics.items() if k.startswith("drift.psi.")}
        out.append(Batch(
            run_id=run.info.run_id, input_name=run.data.params.get("input_name", "?"),
            scored_at=datetime.fromtimestamp(run.info.start_time / 1000, UTC).isoformat(timespec="seconds"),
            rows=int(metrics.get("rows", 0)), model_version=int(run.data.tags.get("studio.model_version", 0)),
            metrics={k: v for k, v in metrics.items() if not k.startswith(("drift.", "unseen_categories.", "est.", "est_band."))
                     and k not in ("rows", "rows_with_unusable_values")},
            psi=psi, drift_status=run.data.tags.get("studio.drift_status"), model_name=run.data.tags.get("studio.model_name", ""),
            estimated={k.removeprefix("est."): v for k, v in metrics.items() if k.startswith("est.")},
            bands={k.removeprefix("est_band."): v for k, v in metrics.items() if k.startswith("est_band.")},
            estimate_status=run.data.tags.get("studio.estimate"), input_digest=run.data.tags.get("studio.input_digest", ""),
        ))
    return out


def _training_run(settings: Settings, model_name: str, version: int) -> str:
    from core import registry

    view = registry.resolve(settings, f"{model_name}/{version}")
    if not view.run_id:
        raise NotFoundError(f"{model_name} version {version} has no training run to compare with.")
    return view.run_id


def training_profile(settings: Settings, model_name: str, version: int) -> drift.ReferenceProfile:
    """The reference profile of a registered version's training data."""
    return reference_profile(settings, _training_run(settings, model_name, int(version)))


@dataclass(frozen=True)
class BatchDrift:
    """A scored batch as the Monitor page shows it: its drift report, the reference it was compared
    with, its output file and, when it held the outcome, its metrics against training."""

    report: drift.DriftReport
    profile: drift.ReferenceProfile
    output: Path
    comparison: tuple | None  # of core.scoring.MetricComparison


def open_batch(settings: Settings, batch: Batch) -> BatchDrift:
    """What the Monitor page needs of a batch listed by :func:`batches`: the drift report recorded
    on its run (measured now and recorded if it has none), the training profile of the version that
    scored it and its scoring report (both read once per process). Nothing reads the batch's rows."""
    from core.scoring import load_report

    profile = reference_profile(settings, _training_run(settings, batch.model_name, batch.model_version))
    scored = load_report(settings, batch.run_id)
    limits = thresholds(settings)
    result = stored_drift(settings, batch.run_id, limits) if batch.drift_status is not None else None
    if result is None:
        result = measure_output(profile, Path(scored.output), limits)
        record(settings, batch.run_id, result)
    return BatchDrift(result, profile, Path(scored.output), scored.comparison)


def batch_drift(settings: Settings, scoring_run_id: str, recompute: bool = False) -> drift.DriftReport:
    """Drift of one scored batch against the training reference of the version that scored it.
    Scoring measures it on the way and records it on the scoring run; this reads that record back
    (judged with the current thresholds). A run without one (scored before drift was measured so,
    or whose measurement failed), or ``recompute``, is measured now by streaming its output batch by
    batch, and recorded."""
    from core import tracking
    from core.scoring import load_report

    run = tracking.client(settings).get_run(scoring_run_id)
    name, version = run.data.tags["studio.model_name"], int(run.data.tags["studio.model_version"])
    profile = reference_profile(settings, _training_run(settings, name, version))
    limits = thresholds(settings)
    result = None
    if not recompute and "studio.drift_status" in run.data.tags:
        result = stored_drift(settings, scoring_run_id, limits)
    if result is None:
        result = measure_output(profile, Path(load_report(settings, scoring_run_id).output), limits)
        record(settings, scoring_run_id, result)
    return result


def feature_values(output: Path, feature: str, limit: int = 200_000, batch_rows: int = 250_000) -> tuple[pd.Series, int]:
    """(values, rows): one column of a scored output for its charts, read batch by batch; on a batch
    of more than ``limit`` rows, every k-th row (evenly spread over the file), so memory and time do
    not grow with the batch."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(output, pre_buffer=False)
    rows = parquet.metadata.num_rows
    step = max(1, math.ceil(rows / limit))
    parts, seen = [], 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=[feature]):
        column = batch.column(0).to_pandas()
        if step > 1:
            first = (-seen) % step  # the rows whose position in the file is a multiple of step
            column = column.iloc[first::step]
        parts.append(column.reset_index(drop=True))
        seen += batch.num_rows
    values = pd.concat(parts, ignore_index=True) if parts else pd.Series(dtype="float64")
    return values.rename(feature), rows


def batch_head(output: Path, columns: list[str], rows: int) -> pd.DataFrame:
    """The first ``rows`` rows of the given columns of a scored output (a small batch shown whole)."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(output)
    wanted = [c for c in columns if c in parquet.schema_arrow.names]
    return next(parquet.iter_batches(batch_size=max(1, rows), columns=wanted)).to_pandas() if parquet.metadata.num_rows else pd.DataFrame(columns=wanted)


def stored_drift(settings: Settings, scoring_run_id: str, limits: drift.Thresholds | None = None) -> drift.DriftReport | None:
    """The drift report recorded on a scoring run (``drift/drift_report.json``), judged with
    ``limits`` (the current thresholds by default); None when the run has none."""
    from core import tracking

    key = (settings.tracking_uri, scoring_run_id)
    data = _STORED.get(key)
    try:
        if data is None:
            with tempfile.TemporaryDirectory() as tmp:
                data = json.loads(Path(tracking.client(settings).download_artifacts(scoring_run_id, DRIFT_ARTIFACT, tmp)).read_text())
        report = drift.DriftReport.from_dict(data, limits or thresholds(settings))
    except Exception:  # noqa: BLE001 - missing or unreadable: measured again
        return None
    if len(_STORED) >= 256:
        _STORED.pop(next(iter(_STORED)))
    _STORED[key] = data
    return report


# The drift report recorded on a scoring run, as stored, by (store, run id): read once per process
# and dropped when :func:`record` writes a new one.
_STORED: dict[tuple[str, str], dict[str, Any]] = {}


def measure_output(profile: drift.ReferenceProfile, output: Path, limits: drift.Thresholds | None = None,
                   batch_rows: int = 250_000) -> drift.DriftReport:
    """Drift of a scored output file, read batch by batch (the profiled columns and the score only):
    what :func:`core.drift.compare` gives on the whole file, in memory that does not grow with it."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(output, pre_buffer=False)  # pyarrow's pre-buffering would keep the file read so far
    names = parquet.schema_arrow.names
    comparison = drift.BatchComparison(profile, columns=names)
    wanted = [c for c in profile.features if c in names]
    score = score_column(names)
    read = list(dict.fromkeys([*wanted, *([score] if score else [])]))
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=read):
        frame = batch.to_pandas()
        scores = pd.to_numeric(frame[score], errors="coerce").to_numpy(dtype="float64") if score else None
        comparison.add(frame, scores)
    return comparison.report(limits)


def record(settings: Settings, run_id: str, report: drift.DriftReport) -> None:
    """Log drift results on a scoring run: one metric per judged feature and measure, the table as an
    artifact. A feature with too few values to judge gets no metric, so it draws no point in the PSI
    history (its numbers stay in the artifact). The metrics follow :data:`core.drift.STATISTICS`:
    ``drift.<key>.<feature>`` for a value, ``drift.<key>_pvalue.<feature>`` for a p-value, and
    ``drift.prediction_<key>`` for the statistics recorded on the prediction score."""
    from core import tracking

    _STORED.pop((settings.tracking_uri, run_id), None)
    client = tracking.client(settings)
    metrics = {}
    for f in report.features:
        if f.status == drift.TOO_FEW:
            continue
        for row in f.statistic_rows(report.thresholds):
            for piece, value in drift.STATISTICS[row.statistic].metrics(row.value, row.p_value):
                if value is not None and math.isfinite(value):
                    metrics[f"drift.{piece}.{_metric_name(f.feature)}"] = float(value)
    if report.prediction is not None and report.prediction.status != drift.TOO_FEW:
        for row in report.prediction.statistic_rows(report.thresholds):
            statistic = drift.STATISTICS[row.statistic]
            if statistic.prediction and statistic.attr and math.isfinite(row.value):
                metrics[f"drift.prediction_{statistic.key}"] = float(row.value)
    if report.summary.get("drifted_share") is not None:
        metrics["drift.drifted_share"] = float(report.summary["drifted_share"])
    from mlflow.entities import Metric

    stamp = int(datetime.now(UTC).timestamp() * 1000)
    items = [Metric(k, v, stamp, 0) for k, v in metrics.items()]
    for start in range(0, len(items), 900):  # MLflow takes at most 1,000 metrics per batch
        client.log_batch(run_id, metrics=items[start:start + 900])
    client.log_text(run_id, json.dumps(report.to_dict(), indent=1), DRIFT_ARTIFACT)
    client.set_tag(run_id, "studio.drift_status", report.summary["status"])


def _metric_name(feature: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces; anything else becomes _."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in feature)[:200]


def file_drift(settings: Settings, reference: str, frame: pd.DataFrame) -> drift.DriftReport:
    """Drift of any table against the training reference of ``name@alias`` / ``name/version`` (not recorded)."""
    from core import registry

    view = registry.resolve(settings, reference)
    if not view.run_id:
        raise NotFoundError(f"{view.name} version {view.version} has no training run to compare with.")
    profile = reference_profile(settings, view.run_id)
    return drift.compare(profile, frame, thresholds(settings), scores=batch_scores(frame))


def complete_history(settings: Settings, model_name: str, last: int = 20, found: list[Batch] | None = None) -> list[Batch]:
    """The model's batches (``found``, when the caller listed them already), after measuring (once,
    recorded) the drift of the last ``last`` batches that do not have it yet (scored before drift
    existed, or whose measurement failed) and their estimated performance (scored before estimates
    existed)."""
    found = batches(settings, model_name) if found is None else found
    missing = [b for b in found[-last:] if b.drift_status is None]
    for b in missing:
        try:
            batch_drift(settings, b.run_id)
        except Exception:  # noqa: BLE001 - a batch whose output is gone stays out of the history
            continue
    # batches scored before estimates existed: estimated once from their output and recorded (a
    # version without an estimator is tagged unavailable then, and not tried again)
    unestimated = [b for b in found[-last:] if b.estimate_status is None and not b.estimated]
    for b in unestimated:
        from core import estimation

        try:
            estimation.complete(settings, b.run_id)
        except Exception:  # noqa: BLE001 - the batch keeps its drift; tagged so that it is not tried on every rerun
            try:
                estimation.record(settings, b.run_id, None, "failed")
            except Exception:  # noqa: BLE001 - the store is down: tried again next time
                pass
    return batches(settings, model_name) if missing or unestimated else found


def history(batches_: list[Batch]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(PSI per feature over time, performance metrics over time), one row per batch."""
    psi = pd.DataFrame([{"scored_at": b.scored_at, "batch": b.label, **b.psi} for b in batches_ if b.psi])
    perf = pd.DataFrame([{"scored_at": b.scored_at, "batch": b.label, **b.metrics} for b in batches_ if b.metrics])
    return psi, perf


def summary_text(report: drift.DriftReport) -> dict[str, Any]:
    s = report.summary
    return {"status": s["status"], "drifted": f"{s['drifted']} of {s['features']}",
            "worst": s["worst_feature"], "worst_psi": s["worst_psi"]}


# --- one timeline per model -------------------------------------------------------------------

# The performance measure a timeline draws, the one core.health judges an estimate by: the primary
# metric when it is estimated (RMSE), else AUC (the expected confusion matrix gives no log loss); the
# next ones when a model's batches have none of it. Estimated and realized figures are the same measure.
TIMELINE_METRICS = {"classification": ("auc", "f1", "accuracy"), "regression": ("rmse", "mae")}
TIMELINE_COLUMNS = ("kind", "at", "scored_at", "batch", "run_id", "input_name", "version", "rows", "worst_psi",
                    "worst_feature", "drift_status", "metric", "realized", "estimated", "band", "alias",
                    "from_version", "change", "by")


def _timeline_metric(task: str | None, found: list[Batch]) -> str | None:
    """The measure the timeline draws for a model of ``task`` (None when not known: read from the batches)."""
    if task not in TIMELINE_METRICS:
        seen = {k for b in found for k in (*b.metrics, *b.estimated)}
        task = next((t for t, keys in TIMELINE_METRICS.items() if seen & set(keys)), None)
        if task is None:
            return None
    keys = TIMELINE_METRICS[task]
    for b in found:
        for key in keys:
            if key in b.estimated:
                return key
    return next((k for k in keys if any(k in b.metrics for b in found)), keys[0])


def _alias_change(entry: dict[str, Any]) -> str:
    """An alias history entry in a few words: ``champion → v2``, ``challenger removed (was v3)``."""
    alias, version, before = entry.get("alias", "?"), entry.get("version"), entry.get("from_version")
    if version is None:
        return f"{alias} removed (was v{before})" if before is not None else f"{alias} removed"
    return f"{alias} → v{version}"


def timeline(settings: Settings, model_name: str, *, found: list[Batch] | None = None, model=None) -> pd.DataFrame:
    """The life of a registered model, oldest first, in one frame with a ``kind`` column:

    - ``kind == "batch"``: one row per scored batch: when (``at``, a UTC timestamp, and ``scored_at``
      as written on the run), its label, the ``version`` that scored it, ``rows``, the worst PSI and
      its feature, the drift status, and for the timeline's measure (``metric``, the same on every
      row: AUC for classification, RMSE for regression, see :data:`TIMELINE_METRICS`) the ``realized``
      value (when the batch has its outcomes), the ``estimated`` value and its ``band`` (half width);
      missing values are NaN;
    - ``kind == "alias"``: one row per change in the model's alias history (``alias``, ``version``,
      ``from_version``, ``change`` in words such as "champion → v2", who did it in ``by``).

    Nothing is measured or read beyond the scoring runs' records and the registry's history; a caller
    that listed them already passes the model's batches (``found``, from :func:`batches`) and its
    :class:`core.registry.ModelView` (``model``), and nothing is read."""
    from core import registry

    found = batches(settings, model_name) if found is None else found
    model = registry.get_model(settings, model_name) if model is None else model
    task = next((v.task for v in model.versions if v.task), None)
    metric = _timeline_metric(task, found)
    rows: list[dict[str, Any]] = []
    for b in found:
        psi = {k: v for k, v in b.psi.items() if v is not None and math.isfinite(v)}
        worst = max(psi, key=psi.get) if psi else None
        estimated, bands, realized = b.estimated, b.bands, b.metrics
        rows.append({
            "kind": "batch", "at": pd.Timestamp(b.scored_at), "scored_at": b.scored_at, "batch": b.label, "run_id": b.run_id,
            "input_name": b.input_name, "version": b.model_version, "rows": b.rows,
            "worst_psi": psi[worst] if worst else math.nan, "worst_feature": worst, "drift_status": b.drift_status,
            "metric": metric, "realized": realized.get(metric, math.nan) if metric else math.nan,
            "estimated": estimated.get(metric, math.nan) if metric else math.nan,
            "band": bands.get(metric, math.nan) if metric else math.nan,
        })
    for entry in model.history:
        try:
            at = pd.Timestamp(entry["at"])
        except (KeyError, ValueError, TypeError):
            continue  # an entry without a readable moment cannot be placed
        rows.append({"kind": "alias", "at": at if at.tzinfo else at.tz_localize("UTC"), "alias": entry.get("alias"),
                     "version": entry.get("version"), "from_version": entry.get("from_version"),
                     "change": _alias_change(entry), "by": entry.get("by")})
    frame = pd.DataFrame(rows, columns=list(TIMELINE_COLUMNS))
    if frame.empty:
        return frame
    for column in ("worst_psi", "realized", "estimated", "band"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in ("version", "from_version", "rows"):  # whole numbers, missing where they do not apply
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    # moments are kept to the second: an alias change in the same second as a batch comes first (a
    # version is usually made champion, then scores)
    order = frame.assign(_alias_first=(frame["kind"] != "alias").astype(int))
    return order.sort_values(["at", "_alias_first"], kind="stable").drop(columns="_alias_first").reset_index(drop=True)
