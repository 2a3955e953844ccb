"""Is the model still good? The health of a registered model from its last scored batches.

``check`` reads the model's last batches (scored by any of its versions) and judges the latest one by
two rules: the drift rule (a feature's PSI at or above the significant threshold) and the performance
rule (``core.drift.Thresholds.performance_drop``: how far the rule's metric, :func:`rule_metric`, realized
from labels or estimated without them, may fall from the holdout value of the version that scored the
batch). The
exit code is what a scheduler acts on: 0 healthy (or nothing scored yet: nothing to act on), 3
significant drift, 4 performance breaks its rule (4 wins over 3). When a rule breaks, ``proposal`` says how to retrain to a challenger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core import metrics
from core.catalog import CLASSIFICATION
from core.errors import NotFoundError
from core.settings import Settings

HEALTHY, DRIFT, PERFORMANCE, UNSCORED = "healthy", "drift", "performance", "unscored"
# unscored: nothing to judge yet, and nothing for a scheduler to act on (a retraining would not help)
EXIT_CODES = {HEALTHY: 0, DRIFT: 3, PERFORMANCE: 4, UNSCORED: 0}


@dataclass(frozen=True)
class BatchHealth:
    """One scored batch as the health check sees it."""

    run_id: str
    input_name: str
    scored_at: str
    rows: int
    version: int
    worst_feature: str | None
    worst_psi: float | None
    drift_status: str | None
    realized: dict[str, float]  # metric key -> value on the batch's labelled rows
    estimated: dict[str, float]  # metric key -> expected value without labels
    bands: dict[str, float]  # metric key -> half width of the estimate's band
    holdout: dict[str, float]  # the scoring version's holdout metrics
    breaks: tuple[str, ...] = ()  # the rules this batch breaks, in words
    disagreements: tuple[str, ...] = ()  # metrics whose realized value lies outside the estimate's band

    @property
    def status(self) -> str:
        if any(b.startswith("performance") for b in self.breaks):
            return PERFORMANCE
        return DRIFT if self.drift_status == "significant" else HEALTHY

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "input_name": self.input_name, "scored_at": self.scored_at, "rows": self.rows,
            "version": self.version, "worst_feature": self.worst_feature, "worst_psi": metrics.finite(self.worst_psi),
            "drift_status": self.drift_status, "realized": _json(self.realized), "estimated": _json(self.estimated),
            "bands": _json(self.bands), "status": self.status, "disagreements": list(self.disagreements),
        }


@dataclass(frozen=True)
class Health:
    name: str
    reference: str
    version: int  # the version the reference points to
    task: str
    status: str  # healthy, drift or performance: the latest batch's
    exit_code: int
    reasons: tuple[str, ...]
    proposal: str | None
    batches: tuple[BatchHealth, ...]  # oldest first; the last one is judged
    rule: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    judged: int | None = None  # the position in ``batches`` of the batch judged: the reference version's latest

    @property
    def latest(self) -> BatchHealth | None:
        """The batch the verdict is about (the reference version's latest); else the last one listed."""
        if self.judged is not None:
            return self.batches[self.judged]
        return self.batches[-1] if self.batches else None

    def summary(self) -> str:
        """A few lines for a person: the verdict, its reasons, the proposal and the batches."""
        lines = [f"{self.name} ({self.reference}, version {self.version}): {self.status} (exit {self.exit_code})"]
        lines += [f"- {r}" for r in self.reasons]
        if self.proposal:
            lines.append(f"Proposal: {self.proposal}")
        lines += [f"note: {n}" for n in self.notes]
        lines.append("")
        key = rule_metric(self.task)
        for b in self.batches:
            psi = "-" if b.worst_psi is None else f"{b.worst_psi:.3f} ({b.worst_feature})"
            realized, estimated = metrics.fmt(key, b.realized.get(key), "-"), metrics.fmt(key, b.estimated.get(key), "-")
            lines.append(f"{b.scored_at[:16].replace('T', ' ')}  v{b.version}  {b.input_name}  {b.rows:,} rows  worst PSI {psi}  "
                         f"{metrics.label(key)} {realized} (estimated {estimated})  [{b.status}]")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "reference": self.reference, "version": self.version, "task": self.task,
            "status": self.status, "exit_code": self.exit_code, "reasons": list(self.reasons), "proposal": self.proposal,
            "rule": dict(self.rule), "notes": list(self.notes), "batches": [b.to_dict() for b in self.batches],
        }


def _json(values: dict[str, float]) -> dict[str, float | None]:
    return {k: metrics.finite(v) for k, v in values.items()}


def rule_metric(task: str) -> str:
    """The metric the performance rule judges, realized and estimated alike: RMSE for regression (the
    primary metric), AUC for classification. Not log loss, the classification primary: the expected
    confusion matrix gives no log loss, and raw log loss is not comparable between batches whose class
    balance differs (Kobe's 3-point shots have a lower log loss than the 2-point ones the model learned
    from, while it no longer tells makes from misses)."""
    return metrics.default_tune(task) if task == CLASSIFICATION else metrics.primary(task)


def relative(key: str) -> bool:
    """Whether the rule's drop is a share of the holdout value for ``key``: yes for an error measured in the
    target's own unit (RMSE, MAE, ...: lower is better, no fixed scale); no for a score from 0 to 1 (AUC),
    where it is absolute."""
    return not metrics.higher_is_better(key)


def allowance(key: str, drop: float) -> str:
    """The rule in words: "0.05" (absolute) or "5%" (of the holdout value)."""
    return f"{drop:.0%}" if relative(key) else f"{drop:g}"


def _breaks(kind: str, key: str, value: float | None, holdout: float | None, drop: float) -> str | None:
    if value is None or holdout is None:
        return None
    fall = holdout - value if metrics.higher_is_better(key) else value - holdout  # how much worse (negative: better)
    limit = drop * abs(holdout) if relative(key) else drop
    if fall <= limit:
        return None
    word = "fell" if metrics.higher_is_better(key) else "rose"
    by = (f"{fall / abs(holdout):.0%}" if holdout else f"{fall:.3g}") if relative(key) else f"{fall:.3f}"
    return (f"performance ({kind}): {metrics.label(key)} {word} to {metrics.fmt(key, value)} from {metrics.fmt(key, holdout)} on the "
            f"holdout rows, by {by}, more than the {allowance(key, drop)} the rule allows")


def _disagreements(realized: dict[str, float], estimated: dict[str, float], bands: dict[str, float]) -> list[str]:
    """The metrics whose realized value lies outside the estimate's band (core.estimation's rule)."""
    from core.estimation import Estimate

    return Estimate("", 0, dict(estimated), dict(bands)).disagreements(realized) if estimated else []


def _beyond_band(key: str, value: float | None, band: float | None, holdout: float | None, drop: float) -> bool:
    """Whether the whole range of an estimate lies beyond the rule (its favourable end too): an estimate
    alone breaks the rule only then, or the rule would fire on the estimate's own noise."""
    if value is None or holdout is None:
        return False
    best = value + (band or 0.0) if metrics.higher_is_better(key) else value - (band or 0.0)
    return _breaks("estimated", key, best, holdout, drop) is not None


def _batch(b, holdout: dict[str, float], task: str, drop: float, limits=None) -> BatchHealth:
    from core import drift

    psi = {k: v for k, v in b.psi.items() if metrics.finite(v) is not None}
    worst = max(psi, key=psi.get) if psi else None
    status = b.drift_status
    if limits is not None and worst is not None and status in ("stable", "moderate", "significant"):
        status = limits.status(psi[worst])  # judged with the rules as they are now, not as when it was scored
    too_few = b.rows < drift.MIN_ROWS
    keys = set(metrics.for_task(task))
    realized = {k: v for k, v in b.metrics.items() if k in keys}
    estimated, bands = dict(b.estimated), dict(b.bands)
    key = rule_metric(task)
    breaks = []
    found = _breaks("realized", key, metrics.finite(realized.get(key)), metrics.finite(holdout.get(key)), drop)
    if found:
        breaks.append(found)
    value, band = metrics.finite(estimated.get(key)), metrics.finite(bands.get(key))
    # the estimate judges only where there are no outcomes, on enough rows, and when its whole range is beyond the rule
    if metrics.finite(realized.get(key)) is None and not too_few and _beyond_band(key, value, band, metrics.finite(holdout.get(key)), drop):
        found = _breaks("estimated", key, value, metrics.finite(holdout.get(key)), drop)
        breaks.append(found + (f" (its whole range, ±{band:.3f}, lies beyond the rule)" if band is not None else ""))
    if status == "significant":
        breaks.append(f"drift: {worst} has a PSI of {psi[worst]:.3f}" if worst else "drift: significant")
    return BatchHealth(
        run_id=b.run_id, input_name=b.input_name, scored_at=b.scored_at, rows=b.rows, version=b.model_version,
        worst_feature=worst, worst_psi=psi[worst] if worst else None, drift_status=status, realized=realized,
        estimated=estimated, bands=bands, holdout=holdout, breaks=tuple(breaks),
        disagreements=tuple(_disagreements(realized, estimated, bands)),
    )


def check(settings: Settings, reference: str, last: int = 5) -> Health:
    """The health of ``reference`` ("name@alias", "name/version" or "name") from its model's last ``last``
    scored batches; the latest batch decides the status and the exit code."""
    from core import monitoring, registry

    view = registry.resolve(settings, reference)
    name = view.name
    last = max(1, int(last))
    found = monitoring.batches(settings, name)
    limits = monitoring.thresholds(settings)
    task = view.task or CLASSIFICATION
    rule = {"psi_significant": limits.psi_significant, "performance_drop": limits.performance_drop, "metric": rule_metric(task)}
    if not found:
        return Health(
            name=name, reference=reference, version=view.version, task=task, status=UNSCORED, exit_code=EXIT_CODES[UNSCORED],
            reasons=(f"No batch has been scored with {name} yet, so there is nothing to judge. Score a file first (Score page, "
                     f"or python -m core score --model {reference} --input FILE --output OUT).",),
            proposal=None, batches=(), rule=rule,
        )
    found = monitoring.complete_history(settings, name, last=last, found=found)[-last:]
    holdouts: dict[int, dict[str, float]] = {view.version: dict(view.metrics)}
    rows = []
    notes: list[str] = []
    for b in found:
        if b.model_version not in holdouts:
            try:
                holdouts[b.model_version] = dict(registry.resolve(settings, f"{name}/{b.model_version}").metrics)
            except NotFoundError:  # a version deleted since it scored: judged by drift alone
                holdouts[b.model_version] = {}
        rows.append(_batch(b, holdouts[b.model_version], task, limits.performance_drop, limits))
    own = [k for k, r in enumerate(rows) if r.version == view.version]
    if not own:  # the version asked about has scored nothing of late: nothing of its own to judge
        last_one = rows[-1]
        reasons = [f"{reference} (version {view.version}) has not scored a file yet among the last {len(rows)}, so there is "
                   f"nothing of its own to judge. Score the next file with it."]
        if last_one.breaks:
            reasons.append(f"The last file, '{last_one.input_name}', scored by version {last_one.version}, broke: "
                           + "; ".join(last_one.breaks) + ".")
        return Health(name=name, reference=reference, version=view.version, task=task, status=UNSCORED,
                      exit_code=EXIT_CODES[UNSCORED], reasons=tuple(reasons), proposal=None, batches=tuple(rows), rule=rule,
                      notes=tuple(notes))
    # the version's latest file, unless it is too small to judge and an earlier one is not
    from core import drift

    judged = own[-1]
    if rows[judged].rows < drift.MIN_ROWS:
        enough = [k for k in own if rows[k].rows >= drift.MIN_ROWS]
        if enough:
            notes.append(f"The latest file '{rows[judged].input_name}' has too few rows ({rows[judged].rows:,}) to judge; the "
                         f"verdict is about the latest one with {drift.MIN_ROWS} rows or more.")
            judged = enough[-1]
    latest = rows[judged]
    status = latest.status
    # outcomes arrive late: the latest file of this version that has them judges the realized performance
    key = rule_metric(task)
    labelled = [k for k in own if metrics.finite(rows[k].realized.get(key)) is not None]
    realized_break = None
    if labelled and labelled[-1] != judged:
        other = rows[labelled[-1]]
        realized_break = next((b for b in other.breaks if b.startswith("performance (realized)")), None)
        if realized_break:
            status = PERFORMANCE
    when = latest.scored_at[:16].replace("T", " ")
    batch = f"The latest batch, '{latest.input_name}' (scored {when} by version {latest.version}, {latest.rows:,} rows)"
    count = len(latest.breaks)
    reasons = [f"{batch}, breaks {count} rule{'s' if count != 1 else ''}:"] if count else []
    reasons += [f"{b[0].upper()}{b[1:]}." for b in latest.breaks]
    if realized_break:
        reasons.append(f"The latest file with its actual outcomes, '{other.input_name}' (scored "
                       f"{other.scored_at[:16].replace('T', ' ')}), breaks the performance rule: {realized_break}.")
    if latest.disagreements:
        shown = ", ".join(metrics.label(k) for k in latest.disagreements)
        reasons.append(f"Realized and estimated {shown} disagree beyond the estimate's band on the latest batch: the relationship "
                       "between the inputs and the outcome has probably changed (concept drift), which the estimate cannot see.")
    if status == HEALTHY:
        if latest.drift_status not in ("stable", "moderate"):
            notes.append(f"The latest batch's drift could not be judged ({latest.drift_status or 'not measured'}).")
        reasons.insert(0, f"{batch}, breaks no rule: "
                          f"no feature drifted significantly and {metrics.label(rule_metric(task))} stays within "
                          f"{allowance(rule_metric(task), limits.performance_drop)} of the holdout.")
    if not latest.realized and not latest.estimated:
        notes.append("The latest batch has neither outcomes nor an estimate, so only drift was judged. Add its actual outcomes "
                     "(python -m core labels), or retrain a version that estimates performance.")
    if judged != len(rows) - 1:
        notes.append(f"Judged on the latest file {reference} (version {view.version}) scored; later files were scored by "
                     f"other versions.")
    proposal = None
    if status != HEALTHY:
        from core import retraining

        try:  # a batch of a deleted version, or whose output is gone, does not stop the verdict
            combined = bool(retraining.labelled_batches(settings, name)) and retraining.stored_training_table(
                settings, retraining.recipe(settings, reference)) is not None
        except Exception:  # noqa: BLE001 - then the proposal names a file
            combined = False
        data = retraining.TRAINING_PLUS_LABELLED if combined else "FILE"
        proposal = (f"Retrain to a challenger: python -m core retrain --model {name}@champion --data {data}"
                    + ("" if combined else " (a table that holds recent rows with their outcome)")
                    + "; then compare it with the champion on the Models page and promote it if it is better.")
    return Health(
        name=name, reference=reference, version=view.version, task=task, status=status, exit_code=EXIT_CODES[status],
        reasons=tuple(reasons), proposal=proposal, batches=tuple(rows),
        rule=rule, notes=tuple(notes), judged=judged,
    )
