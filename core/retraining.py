"""Retraining to a challenger, and the challenger compared with the champion on the same rows.

``plan`` reads what the champion was: its algorithm, the hyperparameters it was trained with, its
features, target and task, and the split of its training job (test size, folds, seed). It pairs that
recipe with a table: a stored table, or "training+labelled" (the champion's training table plus the
rows of every labelled batch of the model except the latest one, which stays out for the comparison;
that table is stored like any upload). ``submit`` runs it as a background training job that
registers the result under the challenger alias (or the alias asked); champion does not move, and a
job that fails registers nothing. ``compare`` then scores champion and challenger in this process
on the rows of the latest labelled batch and says, metric by metric, which one is better.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core import labels, metrics
from core.catalog import CLASSIFICATION
from core.errors import BadInputError, NotFoundError
from core.settings import Settings

TRAINING_PLUS_LABELLED = "training+labelled"
DEFAULT_ALIAS = "challenger"


# --- what the champion was --------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """How a registered version was trained, as far as its runs recorded it."""

    name: str
    version: int
    run_id: str
    parent_run_id: str | None
    algorithm: str
    task: str
    target: str
    features: tuple[str, ...]
    classes: tuple[Any, ...]
    params: dict[str, Any]  # the catalogue's hyperparameters of the algorithm, as the champion got them
    test_size: float
    folds: int
    seed: int
    compared: bool  # the champion came out of a comparison (PyCaret's default settings)
    tune_iterations: int
    tune_metric: str | None
    inf_as_missing: bool
    table_name: str | None
    table_digest: str | None
    notes: tuple[str, ...] = ()


def _number(value: Any, kind, default):
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return default


def recipe(settings: Settings, reference: str) -> Recipe:
    """The recipe of ``name@alias`` / ``name/version``: what its model run and its job's parent run recorded."""
    from core import catalog, registry, tracking
    from core.training import TrainingSpec

    view = registry.resolve(settings, reference)
    if not view.run_id:
        raise NotFoundError(f"{view.name} version {view.version} has no training run, so it cannot be retrained the same way.")
    try:
        info = json.loads(tracking.run_artifact(settings, view.run_id, "model_info.json").read_text())
    except Exception as exc:  # noqa: BLE001 - said for what it is
        tracking.raise_unreachable(settings, exc)
        raise NotFoundError(f"{view.name} version {view.version} was not trained by the studio (its run keeps no "
                            "model_info.json), so its recipe is not known. Train a new model on the Train page.") from exc
    client = tracking.client(settings)
    run = client.get_run(view.run_id)
    parent_id = run.data.tags.get("mlflow.parentRunId")
    parent = client.get_run(parent_id) if parent_id else None
    pp = parent.data.params if parent is not None else {}
    task, key = info["task"], info.get("algorithm") or run.data.params.get("algorithm")
    algorithm = catalog.get(task, key)
    notes: list[str] = []
    defaults = TrainingSpec(target=info["target"])
    compared = str(pp.get("compare", "False")) == "True"
    requested = dict(info.get("requested_hyperparameters") or {})
    params: dict[str, Any] = {}
    for p in algorithm.params:  # the catalogue's settings only (fixed extras are added by the catalogue again)
        if p.name in requested:
            value = requested[p.name]
            params[p.name] = "none" if value is None and "none" in p.choices else value
    tuned = key in (pp.get("tuned") or "").split(",") and _number(pp.get("tune_iterations"), int, 0) > 0
    if tuned:
        notes.append(f"The champion's {algorithm.name} was tuned by a random search of {pp.get('tune_iterations')} iterations; "
                     "the retraining runs the same search.")
    if not parent:
        notes.append("The champion's training job kept no split settings; the retraining uses the defaults "
                     f"(test size {defaults.test_size:g}, {defaults.folds} folds, seed {defaults.seed}).")
    return Recipe(
        name=view.name, version=view.version, run_id=view.run_id, parent_run_id=parent_id, algorithm=key, task=task,
        target=info["target"], features=tuple(info["features"]), classes=tuple(info.get("classes") or ()), params=params,
        test_size=_number(pp.get("test_size"), float, defaults.test_size), folds=_number(pp.get("folds"), int, defaults.folds),
        seed=_number(pp.get("seed"), int, defaults.seed), compared=compared,
        tune_iterations=_number(pp.get("tune_iterations"), int, 0) if tuned else 0,
        tune_metric=(pp.get("tune_metric") or None) if (tuned or compared) else None,
        inf_as_missing=str(pp.get("inf_as_missing", "False")) == "True",
        table_name=view.table_name or pp.get("table_name"), table_digest=view.table_digest or pp.get("table_digest"),
        notes=tuple(notes),
    )


# --- labelled batches -------------------------------------------------------------------------


def labelled_batches(settings: Settings, name: str) -> list:
    """The model's scored batches (any version) that have outcomes (attached later, or held by the
    scored file), oldest first."""
    from core import monitoring

    return [b for b in monitoring.batches(settings, name) if labels.has_outcomes(settings, b.run_id)]


# --- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainPlan:
    name: str  # the registered model
    champion_version: int
    champion_run_id: str
    alias: str
    algorithm: str
    algorithm_name: str
    task: str
    target: str
    features: tuple[str, ...]
    params: dict[str, Any]
    source: str  # "table" or "training+labelled"
    table_id: str
    table_name: str
    rows: int  # rows of the table the job trains on
    training_rows: int  # of them, rows from the source / training table
    labelled_batches: tuple[str, ...] = ()  # scoring run ids whose labelled rows were added
    labelled_rows: int = 0
    held_out_batch: str | None = None  # the latest labelled batch, kept out for the comparison
    held_out_name: str | None = None
    held_out_rows: int = 0
    spec: Any = None  # the core.training.TrainingSpec the job runs
    created_table: bool = False  # the table was stored by plan() for this retraining (removed if the job is refused)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def description(self) -> str:
        """What will be trained on what, in words."""
        base = (f"Retrain {self.name} version {self.champion_version} ({self.algorithm_name}, the same hyperparameters and "
                f"{len(self.features)} features, target '{self.target}') on '{self.table_name}': {self.rows:,} rows")
        if self.source == TRAINING_PLUS_LABELLED:
            batches = len(self.labelled_batches)
            base += (f" ({self.training_rows:,} rows with an outcome from the training table, {self.labelled_rows:,} labelled rows "
                     f"from {batches} batch{'es' if batches != 1 else ''})")
        base += f". The new version is registered as {self.alias}; champion stays where it is."
        if self.held_out_batch:
            base += (f" The latest labelled batch ('{self.held_out_name}', {self.held_out_rows:,} rows) is held out, so "
                     "champion and challenger can be compared on rows neither was trained on.")
        return base

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "champion_version": self.champion_version, "champion_run_id": self.champion_run_id,
            "alias": self.alias, "algorithm": self.algorithm, "algorithm_name": self.algorithm_name, "task": self.task,
            "target": self.target, "features": list(self.features), "params": dict(self.params), "source": self.source,
            "table_id": self.table_id, "table_name": self.table_name, "rows": self.rows, "training_rows": self.training_rows,
            "labelled_batches": list(self.labelled_batches), "labelled_rows": self.labelled_rows,
            "held_out_batch": self.held_out_batch, "held_out_name": self.held_out_name, "held_out_rows": self.held_out_rows,
            "spec": self.spec.to_dict() if self.spec is not None else None, "notes": list(self.notes),
            "description": self.description,
        }


def _check_columns(frame: pd.DataFrame, columns: list[str], table_name: str, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(f"'{c}'" for c in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise BadInputError(f"The table '{table_name}' lacks {shown}, which {what} needs. Pick a table that holds the target "
                            "and every feature of the champion.")


def _check_features(settings: Settings, r: Recipe, frame: pd.DataFrame, table_name: str) -> None:
    """Every feature of the champion must be usable in the table, and of the same kind (numbers where
    the champion learned numbers): training would otherwise leave it out, or read it as categories, and
    the "same features" would not be the same."""
    from core.training import unusable_reason

    problems = []
    for feature in r.features:
        reason = unusable_reason(frame[feature], explicit=True)
        if reason:
            problems.append(f"'{feature}': {reason}")
    try:
        from core import monitoring

        profile = monitoring.reference_profile(settings, r.run_id)
        for feature in r.features:
            known = profile.features.get(feature)
            if known is not None and known.kind == "numeric" and not pd.api.types.is_numeric_dtype(frame[feature]):
                sample = frame[feature].dropna().astype(str).head(1).tolist()
                shown = f" (for example '{sample[0][:30]}')" if sample else ""
                problems.append(f"'{feature}' holds text here{shown} but numbers for the champion")
    except NotFoundError:  # a champion without a reference profile: the usability check alone
        pass
    if problems:
        raise BadInputError(f"The table '{table_name}' cannot retrain {r.name} version {r.version} with the same features: "
                            + "; ".join(problems[:6]) + (" ..." if len(problems) > 6 else "")
                            + ". Nothing was trained; fix those columns, or pick another table.")


def stored_training_table(settings: Settings, r: Recipe):
    """The table store's record of the table ``r`` was trained on, or None when it is no longer stored."""
    from core import tables

    return next((t for t in tables.store(settings).list() if r.table_digest and r.table_digest in (t.digest, t.read_digest)), None)


def _training_table(settings: Settings, r: Recipe):
    record = stored_training_table(settings, r)
    if record is None:
        raise NotFoundError(f"The table {r.name} version {r.version} was trained on ('{r.table_name or 'unknown'}') is no longer "
                            "stored in this workspace, so it cannot be combined with the labelled batches. Store a table "
                            "to retrain on (Data page, or python -m core tables add FILE) and pick it instead.")
    return record


def plan(settings: Settings, reference: str, source: str, *, alias: str = DEFAULT_ALIAS,
         with_labelled: bool = False) -> RetrainPlan:
    """The retraining of ``reference`` (e.g. "kobe@champion") on ``source``: a stored table id, or
    "training+labelled". ``with_labelled`` adds the labelled batches to a stored table as well. The
    latest labelled batch is held out in both cases."""
    from core import catalog, registry, tables
    from core.datasets import ReadResult
    from core.training import TrainingSpec

    registry.check_alias(alias)
    if alias == "champion":
        raise BadInputError("A retrained version is registered as a challenger first; compare it with the champion, then "
                            "promote it. Pick another alias than champion (challenger is usual).")
    r = recipe(settings, reference)
    store = tables.store(settings)
    combine = with_labelled or source == TRAINING_PLUS_LABELLED
    record = _training_table(settings, r) if source == TRAINING_PLUS_LABELLED else store.get(source)
    frame = store.load(record.table_id)
    columns = [*r.features, r.target]
    _check_columns(frame, columns, record.name, f"{r.name} version {r.version}")
    held = held_name = None
    held_rows = labelled = 0
    created = False  # a table stored here for this retraining
    used: list[str] = []
    notes = list(r.notes)
    table_id, table_name, training_rows = record.table_id, record.name, len(frame)
    if combine:
        batches = labelled_batches(settings, r.name)
        if not batches:
            raise BadInputError(f"No scored batch of {r.name} has outcomes yet, so there are no labelled rows to add. Add the "
                                "actual outcomes of a batch first (Monitor page, or python -m core labels), or retrain on a "
                                "stored table.")
        *earlier, latest = batches
        held, held_name = latest.run_id, latest.input_name
        held_frame = labels.labelled_rows(settings, latest.run_id)
        held_rows = 0 if held_frame is None else len(held_frame)
        base = frame.loc[frame[r.target].notna(), columns]
        parts = [base]
        # a file scored more than once counts once, and never when it is the held-out file itself (its
        # rows would be in the challenger's training and in the comparison)
        seen = {latest.input_digest} if latest.input_digest else set()
        repeated = [b for b in earlier if b.input_digest and b.input_digest in seen]
        kept = []
        for b in earlier:
            if not b.input_digest or b.input_digest not in seen:
                kept.append(b)
                seen.add(b.input_digest)
            elif b not in repeated:
                repeated.append(b)
        if repeated:
            notes.append(f"{len(repeated)} labelled batch{'es' if len(repeated) != 1 else ''} scored a file already counted "
                         f"(the same content as '{latest.input_name}', held out, or as an earlier batch) and "
                         f"{'were' if len(repeated) != 1 else 'was'} left out, so no row is counted twice.")
        earlier = kept
        for b in earlier:
            rows = labels.labelled_rows(settings, b.run_id)
            if rows is None or not len(rows):
                continue
            _check_columns(rows, columns, f"labelled rows of {b.input_name}", f"{r.name} version {r.version}")
            parts.append(rows[columns])
            used.append(b.run_id)
            labelled += len(rows)
        training_rows = len(base)
        if not used:
            notes.append(f"Only one batch has outcomes ('{latest.input_name}') and it is held out for the comparison, so the "
                         "retraining uses the training table's rows alone.")
        combined = pd.concat(parts, ignore_index=True)
        what = "training" if source == TRAINING_PLUS_LABELLED else record.name
        name = f"{r.name} retraining: {what} + {len(used)} labelled batch{'es' if len(used) != 1 else ''}"
        stored = store.add(ReadResult(frame=combined, format="parquet"), f"{name}.parquet", name=name[:100])
        table_id, table_name, created = stored.record.table_id, stored.record.name, stored.created
        frame = combined
    try:
        _check_features(settings, r, frame, table_name)  # on the rows the job would train on
    except BadInputError:
        if created:
            store.delete(table_id)
        raise
    algorithm = catalog.get(r.task, r.algorithm)
    spec = TrainingSpec(
        target=r.target, task=r.task, features=r.features, algorithms=(r.algorithm,),
        params={} if r.compared else {r.algorithm: dict(r.params)}, test_size=r.test_size, folds=r.folds, seed=r.seed,
        tune_iterations=r.tune_iterations, tune_metric=r.tune_metric, tuned=(r.algorithm,) if r.tune_iterations else None,
        compare=r.compared, register_name=r.name, register_alias=alias, inf_as_missing=r.inf_as_missing,
    )
    if r.compared:
        notes.append(f"The champion came out of a comparison, with {algorithm.name}'s default settings; the retraining uses "
                     "those defaults again.")
    return RetrainPlan(
        name=r.name, champion_version=r.version, champion_run_id=r.run_id, alias=alias, algorithm=r.algorithm,
        algorithm_name=algorithm.name, task=r.task, target=r.target, features=r.features, params=dict(r.params),
        source=TRAINING_PLUS_LABELLED if source == TRAINING_PLUS_LABELLED else "table", table_id=table_id,
        table_name=table_name, rows=len(frame), training_rows=training_rows, labelled_batches=tuple(used),
        labelled_rows=labelled, held_out_batch=held, held_out_name=held_name, held_out_rows=held_rows, spec=spec,
        notes=tuple(notes), created_table=created,
    )


def submit(settings: Settings, planned: RetrainPlan):
    """Start the retraining as a background training job (``core.jobs.submit_training``); returns its first
    status. Bad input (a table the recipe cannot train on) is refused here, before any job exists."""
    from core import jobs, tables

    try:
        return jobs.submit_training(settings, planned.spec, planned.table_id)
    except BaseException:
        if planned.created_table:
            tables.store(settings).delete(planned.table_id)
        raise


# --- champion against challenger --------------------------------------------------------------


@dataclass(frozen=True)
class MetricRow:
    metric: str
    label: str
    champion: float | None
    challenger: float | None
    better: str | None  # "champion", "challenger", or None (a tie, or a figure missing)
    direction: str  # "higher is better" / "lower is better"

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "label": self.label, "champion": self.champion, "challenger": self.challenger,
                "better": self.better, "direction": self.direction}


@dataclass(frozen=True)
class ChallengerComparison:
    name: str
    champion_version: int
    challenger_version: int
    task: str
    batch_run_id: str  # the labelled batch whose rows both models scored
    batch_name: str
    rows: int
    champion_metrics: dict[str, float]
    challenger_metrics: dict[str, float]
    rows_by_metric: tuple[MetricRow, ...]
    primary: str
    winner: str | None  # by the primary metric: "champion", "challenger" or None (a tie)
    source: str  # where the rows come from, in words
    # the cut-off each version decided its classes at, as it scores (Cutoff.to_dict(); None: the likelier class)
    champion_cutoff: dict[str, Any] | None = None
    challenger_cutoff: dict[str, Any] | None = None

    @property
    def rules(self) -> str | None:
        """Which rule each version's classes were decided by, in words (None for a regression)."""
        if self.task != CLASSIFICATION:
            return None
        return _rules(self.champion_version, self.challenger_version, self.champion_cutoff, self.challenger_cutoff)

    @property
    def sentence(self) -> str:
        label = metrics.label(self.primary)
        if self.winner is None:
            verdict = f"Champion and challenger are level on {label}."
        else:
            verdict = f"The {self.winner} is better on {label} ({metrics.direction(self.primary)})."
        return f"{self.source} {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "champion_version": self.champion_version, "challenger_version": self.challenger_version,
            "task": self.task, "batch_run_id": self.batch_run_id, "batch_name": self.batch_name, "rows": self.rows,
            "champion_metrics": _json(self.champion_metrics), "challenger_metrics": _json(self.challenger_metrics),
            "metrics": [m.to_dict() for m in self.rows_by_metric], "primary": self.primary, "winner": self.winner,
            "source": self.source, "sentence": self.sentence,
            "champion_cutoff": self.champion_cutoff, "challenger_cutoff": self.challenger_cutoff, "rules": self.rules,
        }


def _json(values: dict[str, float]) -> dict[str, float | None]:
    return {k: metrics.finite(v) for k, v in values.items()}


def evaluate(model, pipeline, rows: pd.DataFrame) -> dict[str, float]:
    """A loaded model's metrics on labelled rows (features and the target under the training name), as
    scoring computes them: the features checked and converted to the signature first, the classes
    decided as scoring decides them (:func:`core.scoring.decide`: at ``model.cutoff``, the cut-off
    stored on the version, else the likelier class)."""
    from core import evaluation
    from core.scoring import InputReport, coerce_batch, decide
    from core.scoring.model import _same_kind

    missing = [c for c in [*model.features, model.target] if c not in rows.columns]
    if missing:
        raise BadInputError(f"The labelled rows lack {', '.join(map(repr, missing))}, which {model.name} version {model.version} "
                            "needs, so it cannot be measured on them.")
    X, _ = coerce_batch(model, rows[list(model.features)], InputReport())
    truth = _same_kind(rows[model.target].to_numpy(), model.classes)
    if model.task == CLASSIFICATION:
        proba = np.asarray(pipeline.predict_proba(X), dtype=float) if hasattr(pipeline, "predict_proba") else None
        if proba is not None and model.classes:
            prediction = decide(proba, model.classes, model.cutoff)
        else:
            prediction = np.asarray(pipeline.predict(X))
        return evaluation.classification_metrics(truth, prediction, proba, model.classes)
    return evaluation.regression_metrics(truth, np.asarray(pipeline.predict(X), dtype=float))


def _version(settings: Settings, name: str, alias: str, advice: str):
    from core import registry

    try:
        return registry.resolve(settings, f"{name}@{alias}")
    except NotFoundError as exc:
        raise NotFoundError(f"{exc} {advice}") from exc


def compare(settings: Settings, name: str) -> ChallengerComparison:
    """Champion and challenger of ``name``, both scored here on the rows of the latest labelled batch."""
    from core.scoring import load_model

    champion = _version(settings, name, "champion", "Set the champion alias on a version first (Models page).")
    challenger = _version(settings, name, "challenger", f"Retrain first: python -m core retrain --model {name}@champion "
                                                        "--data training+labelled (or a stored table).")
    task = champion.task or challenger.task or CLASSIFICATION
    batches = labelled_batches(settings, name)
    if not batches:
        raise NotFoundError(f"No scored batch of {name} has outcomes yet, so champion and challenger cannot be compared on "
                            "the same rows. Add the actual outcomes of a batch (Monitor page, or python -m core labels).")
    latest = batches[-1]
    rows = labels.labelled_rows(settings, latest.run_id)
    if rows is None or not len(rows):
        raise NotFoundError(f"The batch '{latest.input_name}' has no rows with an outcome. Add its outcomes first.")
    found, cutoffs = {}, {}
    for role, view in (("champion", champion), ("challenger", challenger)):
        model, pipeline = load_model(settings, view)  # with the cut-off stored on the version now
        found[role] = evaluate(model, pipeline, rows)
        cutoffs[role] = model.cutoff if model.task == CLASSIFICATION else None
    primary = metrics.primary(task)
    table = []
    for key in metrics.ranked(task):
        a, b = metrics.finite(found["champion"].get(key)), metrics.finite(found["challenger"].get(key))
        better = None
        if a is not None and b is not None and a != b:
            better = "challenger" if metrics.better(key, b, a) else "champion"
        table.append(MetricRow(key, metrics.label(key), a, b, better, metrics.direction(key)))
    winner = next(m.better for m in table if m.metric == primary)
    source = (f"Both versions scored the same {len(rows):,} labelled rows of the latest labelled batch '{latest.input_name}' "
              f"(scored {latest.scored_at[:16].replace('T', ' ')}).")
    return ChallengerComparison(
        name=name, champion_version=champion.version, challenger_version=challenger.version, task=task,
        batch_run_id=latest.run_id, batch_name=latest.input_name, rows=len(rows), champion_metrics=found["champion"],
        challenger_metrics=found["challenger"], rows_by_metric=tuple(table), primary=primary, winner=winner, source=source,
        champion_cutoff=None if cutoffs["champion"] is None else cutoffs["champion"].to_dict(),
        challenger_cutoff=None if cutoffs["challenger"] is None else cutoffs["challenger"].to_dict(),
    )


def _rules(champion_version: int, challenger_version: int, champion: dict | None, challenger: dict | None) -> str:
    """Which rule each version's classes were decided by (``Cutoff.to_dict()`` or None), in words: the
    measures of the predicted classes depend on it. "Each version decided the classes as it scores: the
    champion (version 1) at its cut-off 0.35 for class 1, the challenger (version 2) by the likelier class."."""
    from core.decisions import cutoff_text

    def rule(cutoff: dict | None) -> str:
        if cutoff is None:
            return "by the likelier class"
        return f"at its cut-off {cutoff_text(cutoff['value'])} for class {cutoff['positive']}"

    return (f"Each version decided the classes as it scores: the champion (version {champion_version}) {rule(champion)}, "
            f"the challenger (version {challenger_version}) {rule(challenger)}.")
