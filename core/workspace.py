"""What the workspace holds, step by step, for the home page: tables, training jobs, registered
models and their champions, the last scoring and its drift status.

Reading the registry means importing MLflow (about 2 s once per server). A fresh embedded workspace
has no MLflow store yet, so nothing can be registered or scored there: the overview then says so
without importing MLflow at all, and the first page a newcomer sees stays fast."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from core import tables
from core.jobs import JobStatus
from core.settings import Settings
from core.tables import TableRecord


class Step(enum.StrEnum):
    """The studio's steps, in order. Which page shows a step is the pages' business (app_pages/home.py)."""

    DATA = "data"
    TRAIN = "train"
    MODELS = "models"
    SCORE = "score"
    MONITOR = "monitor"


@dataclass(frozen=True)
class ModelSummary:
    name: str
    versions: int
    champion: int | None


@dataclass
class Overview:
    tables: list[TableRecord]
    training_jobs: list[JobStatus]
    models: list[ModelSummary] = field(default_factory=list)
    last_scoring: object | None = None  # a monitoring.Batch

    @property
    def champions(self) -> list[ModelSummary]:
        return [m for m in self.models if m.champion is not None]

    def next_step(self) -> Step:
        """The first step not done yet: Data, Train, Models, Score, then Monitor."""
        if not self.tables:
            return Step.DATA
        if not self.models:
            return Step.TRAIN
        if not self.champions:
            return Step.MODELS
        if self.last_scoring is None:
            return Step.SCORE
        return Step.MONITOR


def tables_fitting(settings: Settings, features: list[str] | tuple[str, ...],
                   training_digest: str | None = None) -> tuple[list[TableRecord], list[tuple[TableRecord, list[str]]]]:
    """The stored tables a model can score, and the others with the columns they lack. Only each
    table's parquet schema is read (no rows). The model's own training table comes last among those
    that fit: what one scores is new data."""
    import pyarrow.parquet as pq

    store = tables.store(settings)
    fit, lacking = [], []
    for record in store.list():
        try:
            columns = set(pq.read_schema(store.path(record.table_id)).names)
        except (OSError, ValueError):
            continue  # a table whose file went missing is not offered
        missing = [f for f in features if f not in columns]
        if missing:
            lacking.append((record, missing))
        else:
            fit.append(record)
    fit.sort(key=lambda r: r.digest == training_digest)
    return fit, lacking


def local(settings: Settings) -> Overview:
    """The part read from the workspace folder alone (fast; no MLflow)."""
    from core.jobs import sweep

    jobs = sweep(settings)  # the studio's first page: jobs whose processes died are ended here
    return Overview(tables=tables.store(settings).list(), training_jobs=[j for j in jobs if j.kind == "training"])


def has_store(settings: Settings) -> bool:
    """Whether there is an MLflow store to read (a team server always counts)."""
    return settings.is_remote or settings.mlflow_db.exists()


def complete(settings: Settings, overview: Overview) -> Overview:
    """``overview`` with the registry and the last scoring filled in (from MLflow, when a store exists)."""
    if not has_store(settings):
        return overview
    from core import monitoring, registry

    overview.models = [ModelSummary(m.name, len(m.versions), m.aliases.get("champion"))
                       for m in registry.list_models(settings) if m.versions]
    overview.last_scoring = monitoring.latest_batch(settings)
    return overview
