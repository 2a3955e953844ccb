"""Outcomes that arrive after scoring: a file of actual outcomes ("labels") joined onto a scored
batch by a key column, and the batch's realized performance measured from them.

The key is a column both files share: an id column carried through scoring, or ``row_number``,
which every scored output holds (each row's position in the scored input file, from 1), for a file
without any id. Keys are compared as text with whole numbers written without a decimal part, so a
key read as 7 on one side and 7.0 or "7" on the other matches.

:func:`plan` reads the outcomes file and checks everything before anything is written: the key on
both sides, keys repeated in either, the outcome column, classes the model never learned, outcomes
for rows the batch does not have, a file without any outcome, and outcomes the batch already has.
:func:`attach` then measures the matched rows exactly as scoring measures a labelled file
(:class:`core.scoring.outcomes._Outcomes`, streaming the output), and records on the batch's
scoring run, under the training metric keys, what :func:`core.monitoring.batches` and
:func:`core.scoring.load_report` read back. :func:`labelled_rows` gives the rows that have an
outcome to retraining.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from dataclasses import replace as replace_fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import datasets
from core.catalog import CLASSIFICATION
from core.errors import BadInputError, EmptyTableError, FileTooLargeError, NotFoundError, StudioError
from core.settings import Settings, redact

ROW_NUMBER = "row_number"
# Each attached file's artifacts go in a folder of its own, labels/<its digest>/ (tag studio.labels_folder):
# a replace that fails half-way leaves the outcomes in force (their tags) pointing at their own files.
LABELS_FILE = "labels.parquet"  # columns key, actual
REPORT_FILE = "labels_report.json"
LABELS_ARTIFACT = f"labels/{LABELS_FILE}"  # where outcomes attached before the folders were kept them
REPORT_ARTIFACT = f"labels/{REPORT_FILE}"
FOLDER_TAG = "studio.labels_folder"


def labels_folder(digest: str) -> str:
    """The artifact folder of the outcomes file with this content hash."""
    return f"labels/{digest[:16]}"


def artifact(tags: dict[str, str], name: str) -> str:
    """The path of ``name`` (LABELS_FILE, REPORT_FILE) of the outcomes in force on a run with these tags."""
    return f"{tags.get(FOLDER_TAG, 'labels')}/{name}"
KEY_HELP = ("Each outcome finds its scored row through a column both files share, such as an id carried through "
            "scoring; for a file without an id column, use row_number: the row's position in the scored file "
            "(1 for the first row under the header).")
TAGS = ("studio.labels", "studio.labels_digest", "studio.labels_rows", "studio.labels_at", "studio.labels_source")
_EXAMPLES = 5
_BATCH_ROWS = 250_000


class LabelsAttachedError(StudioError):
    """The batch already has outcomes (this very file attached before, other outcomes attached, or the
    scored file held the outcome): refused unless they are replaced on purpose."""

    def __init__(self, message: str, run_id: str, same_file: bool, attached_at: str | None) -> None:
        super().__init__(message)
        self.run_id, self.same_file, self.attached_at = run_id, same_file, attached_at


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelsPlan:
    """What attaching an outcomes file to a scored batch will do, known (and checked) before
    anything is written. The page shows it; :func:`attach` executes it."""

    run_id: str  # the batch's scoring run
    batch_name: str  # the scored file's name
    model_name: str
    model_version: int
    training_run_id: str
    task: str
    target: str  # the outcome's name in training
    classes: tuple[Any, ...]
    features: tuple[str, ...]
    holdout_metrics: dict[str, float]
    output: str  # the batch's scored output (parquet)
    key: str  # the column both files are matched on
    target_column: str  # the outcome's column in the file
    source_name: str
    source_path: str
    digest: str  # sha256 of the outcomes file's bytes
    batch_rows: int
    label_rows: int  # rows of the file with an outcome
    matched: int  # batch rows that receive an outcome
    unmatched_batch_rows: int  # batch rows the file has no outcome for
    existing: str | None = None  # the outcomes the batch already has, in words (None: none)
    existing_digest: str | None = None
    existing_at: str | None = None
    messages: tuple[str, ...] = ()
    _labels: pd.DataFrame | None = field(default=None, repr=False, compare=False)  # key (text), original key, actual

    @property
    def replaces(self) -> bool:
        """Whether attaching replaces outcomes the batch already has."""
        return self.existing is not None

    @property
    def same_file(self) -> bool:
        return self.existing_digest is not None and self.existing_digest == self.digest

    def refusal(self) -> LabelsAttachedError | None:
        """Why attaching without replacing is refused (None when the batch has no outcome yet)."""
        if self.existing is None:
            return None
        how = "replace them on purpose (the page's Replace button; --replace on the command line)"
        if self.same_file:
            message = (f"These outcomes ('{self.source_name}') were already attached to this batch on {self.existing_at}. "
                       f"Nothing was changed. To attach them again anyway, {how}.")
        else:
            message = (f"This batch ('{self.batch_name}') already has outcomes: {self.existing}. Nothing was changed. "
                       f"To put the outcomes of '{self.source_name}' in their place, {how}.")
        return LabelsAttachedError(message, self.run_id, self.same_file, self.existing_at)

    def summary(self) -> dict[str, Any]:
        return {"batch": self.run_id, "batch_name": self.batch_name, "model": {"name": self.model_name, "version": self.model_version},
                "key": self.key, "target_column": self.target_column, "batch_rows": self.batch_rows, "label_rows": self.label_rows,
                "matched": self.matched, "unmatched_batch_rows": self.unmatched_batch_rows, "replaces": self.replaces,
                "existing": self.existing, "messages": list(self.messages)}

    def to_dict(self) -> dict[str, Any]:
        return {name: (list(value) if isinstance(value, tuple) else value)
                for name, value in ((f, getattr(self, f)) for f in self.__dataclass_fields__ if f != "_labels")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelsPlan:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "_labels"}
        for name in ("classes", "features", "messages"):
            values[name] = tuple(values.get(name) or ())
        return cls(**values)


def plan(settings: Settings, scoring_run_id: str, path, *, key: str | None = None, target: str | None = None,
         name: str | None = None) -> LabelsPlan:
    """The plan of attaching the outcomes file at ``path`` (CSV, parquet or Excel; ``name`` is what
    people call it, e.g. the uploaded file's name) to the scored batch ``scoring_run_id``, matched
    on ``key`` (chosen here when the files share exactly one column that identifies the rows).
    ``target`` is the outcome's column in the file (default: the training target's name, else the
    only column besides the key). Raises a :class:`BadInputError` (or :class:`EmptyTableError`)
    that says what is wrong and what to do; nothing is written."""
    batch = _batch(settings, scoring_run_id)
    path = Path(path)
    shown = name or path.name
    frame, digest, notes = _read_file(settings, path, shown)
    columns = [str(c) for c in frame.columns]
    exclude = {c for c in (target, batch.target) if c}
    if key is None:
        key = _choose_key(batch, frame, shown, exclude)
    elif key not in columns:
        raise BadInputError(f"'{shown}' has no column '{key}' to match the batch's rows on. Its columns: {_listed(columns)}. "
                            f"Nothing was attached. {_suggest(batch, frame, exclude | {key})}")
    elif key not in batch.columns:
        raise BadInputError(f"The scored batch '{batch.name}' has no column '{key}', so the outcomes cannot be matched on it. "
                            f"Its columns: {_listed(batch.columns)}. Nothing was attached. {_suggest(batch, frame, exclude | {key})}")
    target_column = _choose_target(batch, columns, key, target, shown)
    labels, more = _labels_of(batch, frame, key, target_column, shown)
    notes.extend(more)
    hits, matched = _join_counts(batch, key, labels)
    _refuse_batch_duplicates(batch, key, labels, hits, shown, frame, exclude)
    _refuse_strangers(batch, key, labels, hits, shown)
    if matched < batch.rows:
        notes.append(f"{batch.rows - matched:,} of the batch's {batch.rows:,} rows have no outcome in '{shown}'; "
                     "they are left out of the realized metrics.")
    existing, existing_digest, existing_at = _existing(settings, batch)
    return LabelsPlan(
        run_id=batch.run_id, batch_name=batch.name, model_name=batch.model_name, model_version=batch.model_version,
        training_run_id=batch.training_run_id, task=batch.task, target=batch.target, classes=batch.classes,
        features=batch.features, holdout_metrics=dict(batch.holdout), output=str(batch.output), key=key,
        target_column=target_column, source_name=shown, source_path=str(path), digest=digest, batch_rows=batch.rows,
        label_rows=len(labels), matched=matched, unmatched_batch_rows=batch.rows - matched, existing=existing,
        existing_digest=existing_digest, existing_at=existing_at, messages=tuple(notes), _labels=labels,
    )


@dataclass(frozen=True)
class _Batch:
    """A scored batch and the version that scored it, as the checks need them."""

    run_id: str
    name: str
    scored_at: str
    tags: dict[str, str]
    output: Path
    columns: tuple[str, ...]
    rows: int
    model_name: str
    model_version: int
    training_run_id: str
    task: str
    target: str
    classes: tuple[Any, ...]
    features: tuple[str, ...]
    holdout: dict[str, float]

    def added(self) -> dict[str, str]:
        """The output's name of each column scoring added (prediction, proba_<class>, row_number, ...)."""
        from core.scoring.model import _label
        from core.scoring.runs import ADDED, _output_names

        proba = [f"proba_{_label(c)}" for c in self.classes] if self.task == CLASSIFICATION else []
        added = list(ADDED) if self.columns and self.columns[-1].startswith(ROW_NUMBER) else [a for a in ADDED if a != ROW_NUMBER]
        names = _output_names(self.columns[: len(self.columns) - len(added) - len(proba)], proba)
        return {k: v for k, v in names.items() if v in self.columns}

    def inputs(self) -> tuple[str, ...]:
        """The output's columns that came from the scored file."""
        added = set(self.added().values())
        return tuple(c for c in self.columns if c not in added)


def _batch(settings: Settings, run_id: str) -> _Batch:
    import pyarrow.parquet as pq

    from core import registry, tracking
    from core.scoring import EXPERIMENT, load_report, signature

    run_id = str(run_id or "").strip()
    client = tracking.client(settings)
    try:
        if not run_id or not run_id.isalnum():
            raise ValueError(run_id)
        run = client.get_run(run_id)
    except Exception as exc:  # noqa: BLE001 - unknown run, or a store that cannot be reached
        tracking.raise_unreachable(settings, exc)
        raise NotFoundError(f"There is no scored batch with run id '{redact(run_id)[:80]}'. The Monitor page lists the batches "
                            "with their run ids; check the id and try again.") from exc
    if (run.info.experiment_id != tracking.experiment_id(settings, EXPERIMENT)
            or not {"studio.model_name", "studio.model_version"} <= set(run.data.tags)):
        raise NotFoundError(f"Run {run_id} is not a scoring of a file, so outcomes cannot be attached to it. Choose a scored "
                            "batch (the Monitor page lists them).")
    if run.info.status != "FINISHED":
        raise BadInputError(f"The scoring {run_id} did not finish ({run.info.status.lower()}), so it has no scored rows to "
                            "attach outcomes to. Score the file again and attach them to that batch.")
    tags = dict(run.data.tags)
    name, version = tags["studio.model_name"], int(tags["studio.model_version"])
    view = registry.resolve(settings, f"{name}/{version}")
    info: dict[str, Any] = {}
    if view.run_id:
        try:
            info = json.loads(tracking.run_artifact(settings, view.run_id, "model_info.json").read_text())
        except Exception as exc:  # noqa: BLE001 - a model registered from elsewhere: what the registry says
            tracking.raise_unreachable(settings, exc)
    output = Path(load_report(settings, run_id).output)
    parquet = pq.ParquetFile(output)
    columns = tuple(parquet.schema_arrow.names)
    task = info.get("task") or view.task or ("classification" if any(c.startswith("proba_") for c in columns) else "regression")
    classes = tuple(info.get("classes") or ())
    if task == CLASSIFICATION and not classes:  # from the probability columns' names
        found = [c.removeprefix("proba_") for c in columns if c.startswith("proba_")]
        classes = tuple(float(c) if _number(c) else c for c in found)
    target = info.get("target") or view.target or ""
    features = tuple(info.get("features") or signature(settings, view).features)
    scored_at = datetime.fromtimestamp(run.info.start_time / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return _Batch(run_id=run_id, name=run.data.params.get("input_name", "?"), scored_at=scored_at, tags=tags, output=output,
                  columns=columns, rows=int(parquet.metadata.num_rows), model_name=name, model_version=version,
                  training_run_id=view.run_id or "", task=task, target=target, classes=classes, features=features,
                  holdout=dict(view.metrics))


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_file(settings: Settings, path: Path, shown: str) -> tuple[pd.DataFrame, str, list[str]]:
    """The outcomes file, read as every table of the studio is (encoding, delimiter, decimal comma,
    Excel), with its digest. It is held in memory (the outcomes are joined from it), so it is kept
    within the upload limit."""
    from core import datasets
    from core.scoring.inputs import file_digest

    if not path.is_file():
        raise BadInputError(f"There is no file at '{path}'. Check the path of the outcomes file.")
    size = path.stat().st_size
    if size > settings.upload_limit_bytes:
        limit = settings.upload_limit_bytes / 2**20
        raise FileTooLargeError(f"'{shown}' is {size / 2**20:,.0f} MB, over the limit of {limit:,.0f} MB for an outcomes file (it is "
                                "held in memory while it is matched). Keep only the key and the outcome columns, or split it.")
    try:
        read = datasets._read(datasets._Source(path=path), shown, None)  # read_table_file, under the name people know
    except EmptyTableError as exc:
        raise EmptyTableError(f"{exc} Nothing was attached.") from exc
    return read.frame, file_digest(path), list(read.notes)


def _listed(columns, limit: int = 30) -> str:
    shown = [str(c) for c in columns]
    return ", ".join(shown[:limit]) + (f" and {len(shown) - limit} more" if len(shown) > limit else "")


def _shown(values, limit: int = _EXAMPLES) -> str:
    values = list(values)
    text = ", ".join(_display(v) for v in values[:limit])
    return text + (f" and {len(values) - limit:,} more" if len(values) > limit else "")


def _display(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, str):
        return repr(value)
    return str(value.item() if hasattr(value, "item") else value)


# --- keys ----------------------------------------------------------------------------------------

_WHOLE_TEXT = re.compile(r"^[+-]?\d{1,15}(\.0*)?$")


def _keys(values) -> pd.Series:
    """Each key as text (None when missing), so that both files' keys compare whatever type each was
    read as: whole numbers without a decimal part (7, 7.0 and "7" are one key), text stripped."""
    series = pd.Series(values).reset_index(drop=True)
    plain = isinstance(series.dtype, np.dtype)  # numpy's (pandas' nullable Int64 and Float64 may hold <NA>)
    if plain and series.dtype.kind in "iu":
        return series.astype(str).astype(object)
    if plain and series.dtype.kind == "f":
        numbers = series.to_numpy(dtype="float64")
        out = np.full(len(numbers), None, dtype=object)
        finite = np.isfinite(numbers)
        whole = finite & (np.floor(numbers) == numbers) & (np.abs(numbers) < 2 ** 53)
        out[whole] = numbers[whole].astype("int64").astype(str)
        rest = finite & ~whole
        out[rest] = [repr(float(v)) for v in numbers[rest]]
        return pd.Series(out, dtype=object)
    return pd.Series([_key(v) for v in series.to_numpy(dtype=object)], dtype=object)


def _key(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        return str(int(float(text))) if _WHOLE_TEXT.match(text) else text
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return str(int(number)) if number.is_integer() and abs(number) < 2 ** 53 else repr(number)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def _join_counts(batch: _Batch, key: str, labels: pd.DataFrame) -> tuple[np.ndarray, int]:
    """(batch rows per label, batch rows that have a label), streaming the batch's key column."""
    index = pd.Index(labels["key"])
    hits = np.zeros(len(index), dtype="int64")
    matched = 0
    for frame in _stream(batch.output, [key]):
        codes = index.get_indexer(_keys(frame[key]))
        found = codes[codes >= 0]
        hits += np.bincount(found, minlength=len(index))
        matched += len(found)
    return hits, matched


def _stream(output: Path, columns: list[str], batch_rows: int = _BATCH_ROWS):
    """The scored output's columns, as pandas frames of at most ``batch_rows`` rows."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(output, pre_buffer=False)
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=list(dict.fromkeys(columns))):
        yield batch.to_pandas()


def _candidates(batch: _Batch, frame: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Columns of both files that could match them: every value of the file's column present and
    unique, each found in the batch, and in one batch row only (one pass over the batch)."""
    shared = [str(c) for c in frame.columns if str(c) in batch.columns and str(c) not in exclude]
    indexes = {}
    for column in shared:
        keys = _keys(frame[column])
        if keys.notna().all() and keys.is_unique and len(keys):
            indexes[column] = pd.Index(keys)
    if not indexes:
        return []
    hits = {c: np.zeros(len(i), dtype="int64") for c, i in indexes.items()}
    for part in _stream(batch.output, list(indexes)):
        for column, index in indexes.items():
            codes = index.get_indexer(_keys(part[column]))
            hits[column] += np.bincount(codes[codes >= 0], minlength=len(index))
    return [c for c in indexes if (hits[c] == 1).all()]


def _suggest(batch: _Batch, frame: pd.DataFrame, exclude: set[str]) -> str:
    found = [c for c in _candidates(batch, frame, exclude) if c != ROW_NUMBER]
    row_number = (f"{ROW_NUMBER} (each row's position in the scored file, from 1; add it to the outcomes file)"
                  if ROW_NUMBER in batch.columns else None)
    options = [*(f"'{c}'" for c in found), *([row_number] if row_number else [])]
    if not options:
        return "Add a column that both files share and that names each row once (an id), and try again."
    if found:
        return f"Columns that match the two files row for row: {', '.join(options)}. Choose one and try again."
    return f"No column of both files names each row once; match on {', '.join(options)}."


def _choose_key(batch: _Batch, frame: pd.DataFrame, shown: str, exclude: set[str]) -> str:
    found = _candidates(batch, frame, exclude)
    if len(found) == 1:
        return found[0]
    if found:
        raise BadInputError(f"'{shown}' and the batch share several columns that could match their rows: "
                            f"{', '.join(repr(c) for c in found)}. Nothing was attached; choose the key column and try again.")
    raise BadInputError(f"'{shown}' has no column that matches the batch's rows one for one (its columns: "
                        f"{_listed(frame.columns)}). Nothing was attached. {_suggest(batch, frame, exclude)}")


def _choose_target(batch: _Batch, columns: list[str], key: str, target: str | None, shown: str) -> str:
    if target is not None:
        if target not in columns:
            raise BadInputError(f"'{shown}' has no column '{target}' for the outcome. Its columns: {_listed(columns)}. "
                                f"Nothing was attached; name the column that holds the actual outcome ('{batch.target}' in training).")
        if target == key:
            raise BadInputError(f"'{target}' cannot be both the key and the outcome. Nothing was attached; name the column "
                                "that holds the outcome.")
        return target
    if batch.target and batch.target in columns and batch.target != key:
        return batch.target
    others = [c for c in columns if c != key]
    if len(others) == 1:
        return others[0]
    if not others:
        raise BadInputError(f"'{shown}' holds only the key column '{key}', and no outcome. Nothing was attached; add the "
                            f"outcome column ('{batch.target}', as in training) and try again.")
    raise BadInputError(f"Which column of '{shown}' holds the outcome? None is named '{batch.target}' as in training, and "
                        f"there are several besides the key: {_listed(others)}. Nothing was attached; name it (--target on "
                        "the command line).")


# --- the outcomes ------------------------------------------------------------------------------


def _labels_of(batch: _Batch, frame: pd.DataFrame, key: str, column: str, shown: str) -> tuple[pd.DataFrame, list[str]]:
    """The file's outcomes, checked: (key as text, key as read, actual in the kind of the model's
    classes), one row per key; and what was left out."""
    notes = []
    outcome = frame[column].reset_index(drop=True)
    if outcome.dtype == object:
        outcome = outcome.map(lambda v: None if isinstance(v, str) and not v.strip() else v)
    present = outcome.notna().to_numpy()
    if not present.any():
        raise EmptyTableError(f"'{shown}' has no outcome: its column '{column}' is empty in all {len(frame):,} rows. "
                              "Nothing was attached; fill in the outcomes and try again.")
    if not present.all():
        notes.append(f"{int((~present).sum()):,} rows of '{shown}' have no outcome in '{column}'; they were left out.")
    original = frame[key].reset_index(drop=True)[present].reset_index(drop=True)
    outcome = outcome[present].reset_index(drop=True)
    keys = _keys(original)
    no_key = keys.isna().to_numpy()
    if no_key.any():
        raise BadInputError(f"{int(no_key.sum()):,} rows of '{shown}' have an outcome but no '{key}', so they cannot be matched to "
                            "the batch's rows. Nothing was attached; fill in their key or remove them, and try again.")
    repeated = keys.duplicated(keep=False).to_numpy()
    if repeated.any():
        distinct = pd.unique(original[repeated])
        raise BadInputError(f"'{shown}' has {len(distinct):,} {key} value{'s' if len(distinct) > 1 else ''} that appear more than once "
                            f"({int(repeated.sum()):,} rows), such as {_shown(distinct)}: each scored row takes one outcome. "
                            "Nothing was attached; keep one row per key and try again.")
    actual = _actual(batch, outcome, column, shown)
    return pd.DataFrame({"key": keys.to_numpy(dtype=object), "original": original.to_numpy(), "actual": actual}), notes


def _actual(batch: _Batch, outcome: pd.Series, column: str, shown: str) -> np.ndarray:
    """The outcomes in the kind of the model's classes (1, 1.0 and "1" are one class), or numbers for
    a regression model; values that cannot be are refused by name."""
    if batch.task != CLASSIFICATION:
        numbers = pd.to_numeric(outcome.map(lambda v: v.strip().replace(",", ".") if isinstance(v, str) else v), errors="coerce")
        values = numbers.to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            raise BadInputError(f"The outcome column '{column}' of '{shown}' holds {int(bad.sum()):,} values that are not numbers "
                                f"({_shown(pd.unique(outcome[bad]))}); '{batch.target}' is a number in training. Nothing was "
                                "attached; correct them and try again.")
        return values
    converted, unknown = as_classes(outcome, batch.classes)
    if unknown.any():
        found = pd.unique(outcome[unknown])
        raise BadInputError(f"The outcome column '{column}' of '{shown}' holds values the model never learned: {_shown(found)} "
                            f"({int(unknown.sum()):,} rows). It knows {_shown(batch.classes, 12)} ('{batch.target}' in training). "
                            "Nothing was attached; code the outcomes as in training and try again.")
    return converted


def as_classes(values: pd.Series, classes: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(values as the model's classes themselves, mask of values that are none of them): 1, 1.0 and
    "1" are one class, as :func:`core.scoring.model._same_kind` makes them while scoring."""
    from core.scoring.model import _label

    values = pd.Series(values).reset_index(drop=True)
    numeric = bool(classes) and all(isinstance(c, (int, float, np.number)) and not isinstance(c, (bool, np.bool_)) for c in classes)
    if numeric:
        text = values.map(lambda v: v.strip() if isinstance(v, str) else (float(v) if isinstance(v, (bool, np.bool_)) else v))
        numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        by_number = {float(c): c for c in classes}
        known = np.isin(numbers, np.asarray(list(by_number), dtype="float64"))
        kind = "int64" if all(isinstance(c, (int, np.integer)) for c in classes) else "float64"
        out = np.zeros(len(values), dtype=kind)
        out[known] = numbers[known]
        return out, ~known
    by_label = {_label(c): c for c in classes}
    labels = [(_label(v).strip() if not isinstance(v, str) else v.strip()) for v in values.to_numpy(dtype=object)]
    known = np.asarray([label in by_label for label in labels], dtype=bool)
    return np.asarray([by_label.get(label) for label in labels], dtype=object), ~known


def _refuse_batch_duplicates(batch: _Batch, key: str, labels: pd.DataFrame, hits: np.ndarray, shown: str,
                             frame: pd.DataFrame, exclude: set[str]) -> None:
    repeated = hits > 1
    if not repeated.any():
        return
    raise BadInputError(f"'{key}' does not name the batch's rows one for one: {int(repeated.sum()):,} of the keys in '{shown}' each "
                        f"match several scored rows ({int(hits[repeated].sum()):,} rows), such as "
                        f"{_shown(labels['original'][repeated])}. Nothing was attached. {_suggest(batch, frame, exclude | {key})}")


def _refuse_strangers(batch: _Batch, key: str, labels: pd.DataFrame, hits: np.ndarray, shown: str) -> None:
    missing = hits == 0
    if not missing.any():
        return
    raise BadInputError(f"{int(missing.sum()):,} of the {len(labels):,} outcomes in '{shown}' are for rows that are not in this batch "
                        f"('{batch.name}', scored on {batch.scored_at}): no scored row has {key} {_shown(labels['original'][missing])}. "
                        "The file may belong to another batch. Nothing was attached; check the batch, or remove those rows.")


def _existing(settings: Settings, batch: _Batch) -> tuple[str | None, str | None, str | None]:
    """(the outcomes the batch has, in words; their file's digest; when) or three None."""
    tags = batch.tags
    if tags.get("studio.labels") == "attached":
        at = tags.get("studio.labels_at", "")
        return (f"{int(tags.get('studio.labels_rows', 0) or 0):,} outcomes from '{tags.get('studio.labels_source', '?')}', "
                f"attached on {_when(at)}"), tags.get("studio.labels_digest"), _when(at)
    if _held_target(batch):
        return f"the outcome '{batch.target}' that the scored file held", None, batch.scored_at
    return None, None, None


def _when(stamp: str) -> str:
    try:
        return datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError):
        return stamp or "an earlier date"


def _held_target(batch: _Batch) -> bool:
    """Whether the scored file held the outcome (the training target's column, with a value)."""
    if not batch.target or batch.target not in batch.inputs():
        return False
    return any(part[batch.target].notna().any() for part in _stream(batch.output, [batch.target]))


# --- attaching ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelsReport:
    """What attaching outcomes to a batch did."""

    run_id: str
    matched: int
    unmatched_batch_rows: int
    label_rows: int
    metrics: dict[str, float]
    comparison: tuple  # of core.scoring.MetricComparison
    estimated: dict[str, Any] | None  # the estimate on the matched rows (method, rows, values, bands, disagreements)
    replaced: bool
    messages: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """What the CLI prints."""
        return {"run_id": self.run_id, "matched": self.matched, "unmatched": self.unmatched_batch_rows, "label_rows": self.label_rows,
                "metrics": _clean(self.metrics), "comparison": [c.to_dict() for c in self.comparison],
                "estimated": self.estimated, "replaced": self.replaced, "messages": list(self.messages)}

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "matched": self.matched, "unmatched_batch_rows": self.unmatched_batch_rows,
                "label_rows": self.label_rows, "metrics": dict(self.metrics), "comparison": [c.to_dict() for c in self.comparison],
                "estimated": self.estimated, "replaced": self.replaced, "messages": list(self.messages)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelsReport:
        from core.scoring import MetricComparison

        return cls(run_id=data["run_id"], matched=int(data["matched"]), unmatched_batch_rows=int(data["unmatched_batch_rows"]),
                   label_rows=int(data["label_rows"]),
                   metrics={k: (math.nan if v is None else float(v)) for k, v in (data.get("metrics") or {}).items()},
                   comparison=tuple(MetricComparison.from_dict(c) for c in data.get("comparison") or ()),
                   estimated=data.get("estimated"), replaced=bool(data.get("replaced")), messages=tuple(data.get("messages") or ()))


def _clean(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (round(float(v), 6) if math.isfinite(v) else None) for k, v in metrics.items()}


def attach(settings: Settings, planned: LabelsPlan, *, replace: bool = False) -> LabelsReport:
    """Attach the planned outcomes to the batch: its realized metrics on the matched rows (logged on
    the scoring run under the training metric keys, finite ones), their charts (``plots/``), the
    outcomes (``labels/<digest>/labels.parquet``), a report (``labels/<digest>/labels_report.json``), then the metrics and the tags in one call
    ``studio.labels*``. A batch that already has outcomes is refused unless ``replace``. A plan read
    back from ``to_dict`` reads its file again (it must not have changed). Nothing is logged when a
    check fails; the tags, written last, mark the outcomes attached only when all the rest is."""
    from core.locks import locked

    labels = planned._labels
    if labels is None:  # a plan that travelled (to_dict): the file read and checked again
        again = plan(settings, planned.run_id, planned.source_path, key=planned.key, target=planned.target_column,
                     name=planned.source_name)
        if again.digest != planned.digest:
            raise BadInputError(f"'{planned.source_name}' changed since it was checked. Nothing was attached; choose it again.")
        planned, labels = again, again._labels
    with locked(settings, "labelling", planned.run_id):
        batch = _batch(settings, planned.run_id)  # its tags as they are now: another attach may have come first
        existing, digest, at = _existing(settings, batch)
        refused = replace_fields(planned, existing=existing, existing_digest=digest, existing_at=at).refusal()
        if refused is not None and not replace:
            raise refused
        estimating = _Estimating(settings, batch)
        metrics, figures, matched = _measure(settings, batch, planned.key, labels, estimating)
        from core.scoring import compare_with_training

        # the holdout measured by the rule the batch was scored with (its cut-off, else the likelier class), as scoring does
        comparison = compare_with_training(metrics, _holdout_at_batch_rule(settings, batch))
        estimated, estimate_note, available = estimating.finish(metrics)
        messages = [*planned.messages, *([estimate_note] if estimate_note else [])]
        report = LabelsReport(run_id=batch.run_id, matched=matched, unmatched_batch_rows=batch.rows - matched,
                              label_rows=len(labels), metrics=metrics, comparison=comparison, estimated=estimated,
                              replaced=existing is not None, messages=tuple(messages))
        _record(settings, batch, planned, labels, report, figures, available)
    return report


def _holdout_at_batch_rule(settings: Settings, batch: _Batch) -> dict[str, float]:
    """The version's training holdout metrics to compare the batch's realized ones with, at the rule
    the batch was scored with (:func:`core.scoring.outcomes.holdout_at`, at its ``studio.cutoff``):
    the metrics that depend on the cut-off are left out when that tag is there but cannot be read."""
    from core import metrics
    from core.scoring.outcomes import holdout_at

    if batch.task != CLASSIFICATION:
        return dict(batch.holdout)
    cutoff = scored_cutoff(batch.tags)
    if _unreadable_cutoff(batch.tags):  # scored at a cut-off that cannot be read: not compared
        return {k: v for k, v in batch.holdout.items() if not metrics.depends_on_cutoff(k)}
    return holdout_at(settings, batch.training_run_id, batch.holdout, batch.classes, cutoff)


def _measure(settings: Settings, batch: _Batch, key: str, labels: pd.DataFrame, estimating: _Estimating):
    """(metrics, charts, matched rows): the batch's output streamed, each batch's matched rows counted
    as scoring counts a labelled file, and handed to ``estimating``."""
    from core.scoring import _Outcomes

    names = batch.added()
    prediction = names["prediction"]
    from core.scoring.model import _label

    proba = {names[f"proba_{_label(c)}"]: f"proba_{_label(c)}" for c in batch.classes
             if f"proba_{_label(c)}" in names} if batch.task == CLASSIFICATION else {}
    features = [f for f in batch.features if f in batch.columns]
    index = pd.Index(labels["key"])
    actual = labels["actual"].to_numpy()
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".labels-", suffix=".scores", dir=settings.tmp_dir))
    matched = 0
    try:
        outcomes = _Outcomes(batch.task, batch.classes, scratch)
        for part in _stream(batch.output, [key, prediction, *proba, *features]):
            codes = index.get_indexer(_keys(part[key]))
            hit = codes >= 0
            if not hit.any():
                continue
            matched += int(hit.sum())
            scores = part[list(proba)].to_numpy(dtype="float64")[hit] if proba else None
            outcomes.add(actual[codes[hit]], part[prediction].to_numpy()[hit], scores)
            rows = part.loc[hit, features].reset_index(drop=True)
            rows["prediction"] = part[prediction].to_numpy()[hit]
            for column, canonical in proba.items():
                rows[canonical] = part[column].to_numpy()[hit]
            estimating.add(rows)
        metrics, figures = outcomes.finish()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {k: float(v) for k, v in metrics.items()}, figures, matched


class _Estimating:
    """What the model's estimator (core.estimation) expected of the matched rows without their outcomes,
    fed part by part while the output is streamed (memory does not grow with the rows). A failure
    leaves a note; the realized metrics stand."""

    def __init__(self, settings: Settings, batch: _Batch) -> None:
        from core import estimation

        self.settings, self.frames, self.error, self.rows = settings, None, None, 0
        try:
            self.frames = estimation.start_frames(settings, batch.training_run_id)
        except Exception as exc:  # noqa: BLE001 - said in finish
            self.error = exc

    def add(self, rows: pd.DataFrame) -> None:
        if self.frames is None or self.error is not None:
            return
        try:
            self.frames.add(rows)
            self.rows += len(rows)
        except Exception as exc:  # noqa: BLE001 - said in finish
            self.error = exc

    def finish(self, realized: dict[str, float]) -> tuple[dict[str, Any] | None, str | None, bool]:
        """(the estimate as a dict, a note, whether estimation exists here)."""
        found = None
        if self.error is None and self.frames is not None:
            try:
                found = self.frames.finish()
            except Exception as exc:  # noqa: BLE001
                self.error = exc
        if isinstance(self.error, StudioError):
            return None, f"The estimate on the matched rows could not be made ({redact(self.error)}).", True
        if self.error is not None:
            from core.errors import unexpected

            return None, ("The estimate on the matched rows could not be made: "
                          f"{unexpected(self.error, 'estimating labelled rows', self.settings)}"), True
        if found is None:
            return None, "This version has no performance estimator (trained before estimates existed); retrain it to get one.", True
        return {"method": found.method, "rows": int(found.rows or self.rows), "values": _clean(dict(found.values)),
                "bands": _clean(dict(found.bands)), "disagreements": list(found.disagreements(realized))}, None, True


def _record(settings: Settings, batch: _Batch, planned: LabelsPlan, labels: pd.DataFrame, report: LabelsReport,
            figures: dict[str, Any], estimation_available: bool) -> None:
    """Log everything on the batch's scoring run, the tags last. A failure half-way is said as such."""
    from mlflow.entities import Metric, RunTag

    from core import metrics as table
    from core import tracking
    from core.scoring.runs import _REPORTS, _user

    client = tracking.client(settings)
    at = datetime.now(UTC).isoformat(timespec="seconds")
    known = set(table.for_task(batch.task))
    run = client.get_run(batch.run_id)
    earlier = [k for k in run.data.metrics if k in known]
    stamp = int(time.time() * 1000)
    for name in earlier:  # a later stamp than any earlier value, so the new value is the latest
        history = client.get_metric_history(batch.run_id, name)
        if history:
            stamp = max(stamp, max(m.timestamp for m in history) + 1)
    values = {k: v for k, v in report.metrics.items() if math.isfinite(v)}
    # an earlier value this file cannot measure (an AUC with one class only) must not stand for it
    values.update({k: math.nan for k in earlier if k not in values})
    document = {
        "batch": batch.run_id, "batch_name": batch.name, "model": {"name": batch.model_name, "version": batch.model_version},
        "source_name": planned.source_name, "digest": planned.digest, "key": planned.key, "target_column": planned.target_column,
        "target": batch.target, "who": _user(), "when": at, "batch_rows": batch.rows, "label_rows": report.label_rows,
        "matched": report.matched, "unmatched_batch_rows": report.unmatched_batch_rows, "replaced": report.replaced,
        "replaced_digest": planned.existing_digest if report.replaced else None, "metrics": _clean(report.metrics),
        "comparison": [c.to_dict() for c in report.comparison], "estimate": report.estimated,
        "estimation_available": estimation_available, "messages": list(report.messages),
    }
    folder = labels_folder(planned.digest)
    steps = ["their charts", f"the outcomes ({folder}/{LABELS_FILE})", f"the report ({folder}/{REPORT_FILE})",
             "the realized metrics and the tags that mark them attached"]
    done = 0
    try:
        for key, figure in figures.items():
            client.log_text(batch.run_id, figure.to_json(), f"plots/{key}.json")
        done += 1
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / LABELS_FILE
            stored = pd.DataFrame({"key": labels["original"].to_numpy(), "actual": labels["actual"].to_numpy()})
            _storable(stored).to_parquet(path, index=False)
            client.log_artifact(batch.run_id, str(path), folder)
        done += 1
        client.log_text(batch.run_id, json.dumps(document, indent=1, default=str), f"{folder}/{REPORT_FILE}")
        done += 1
        # the metrics and the tags in one call, last: until it lands the batch's outcomes are the earlier ones
        client.log_batch(batch.run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in values.items()],
                         tags=[RunTag(k, v) for k, v in {
                             "studio.labels": "attached", "studio.labels_digest": planned.digest,
                             "studio.labels_rows": str(report.matched), "studio.labels_at": at,
                             "studio.labels_source": planned.source_name[:250], FOLDER_TAG: folder}.items()])
        done += 1
    except Exception as exc:
        if done == 0:
            tracking.raise_unreachable(settings, exc)
            raise
        from mlflow.exceptions import MlflowException

        from core.tracking import TrackingUnavailableError

        message = (f"The outcomes of '{planned.source_name}' were only partly recorded on batch {batch.run_id}: "
                   f"{', '.join(steps[:done])} were logged, then logging {steps[done]} failed ({redact(exc)}). The batch is "
                   "not marked as having these outcomes (its metrics and tags are as they were); attach the file again"
                   f"{' with replace' if report.replaced else ''} to finish.")
        if isinstance(exc, (MlflowException, OSError, ConnectionError)):
            raise TrackingUnavailableError(message) from exc
        exc.add_note(message)
        raise
    finally:
        _REPORTS.pop((settings.tracking_uri, batch.run_id), None)  # load_report reads the new metrics


def _storable(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns parquet can write (a column that mixes kinds is written as text)."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            kind = pd.api.types.infer_dtype(out[column], skipna=True)
            if kind not in ("string", "empty", "boolean"):
                out[column] = out[column].map(lambda v: v if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v))
    return out


# --- reading back ------------------------------------------------------------------------------


def stored_report(settings: Settings, scoring_run_id: str, tags: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The ``labels/labels_report.json`` of a batch (read from the store each time: a replace
    rewrites it), or None when no outcomes were attached to it. ``tags``: the run's tags, when the
    caller has them (else they are read)."""
    from core import tracking

    if tags is None:
        tags = tracking.client(settings).get_run(scoring_run_id).data.tags
    if tags.get("studio.labels") != "attached":
        return None
    return json.loads(_read_artifact(settings, scoring_run_id, artifact(tags, REPORT_FILE)).decode())


def has_outcomes(settings: Settings, scoring_run_id: str) -> bool:
    """Whether the batch has outcomes: attached later, or held by the scored file."""
    batch = _batch(settings, scoring_run_id)
    return batch.tags.get("studio.labels") == "attached" or _held_target(batch)


def labelled_rows(settings: Settings, scoring_run_id: str) -> pd.DataFrame | None:
    """The batch's rows that have an outcome: the model's feature columns and the outcome under the
    training target's name (from the outcomes attached to it, else from the scored file when it held
    the target), in the batch's order; rows without an outcome, and for a classifier outcomes that
    are none of its classes, are left out. None when the batch has no outcome."""
    batch = _batch(settings, scoring_run_id)
    features = [f for f in batch.features if f in batch.columns]
    parts = []
    if batch.tags.get("studio.labels") == "attached":
        document = json.loads(_read_artifact(settings, batch.run_id, artifact(batch.tags, REPORT_FILE)).decode())
        stored = _artifact_frame(settings, batch.run_id, artifact(batch.tags, LABELS_FILE))
        key = document["key"]
        index = pd.Index(_keys(stored["key"]))
        if batch.task == CLASSIFICATION:
            actual, unknown = as_classes(stored["actual"], batch.classes)
            actual = pd.Series(actual, dtype=object if actual.dtype == object else actual.dtype).where(~unknown)
        else:
            actual = pd.to_numeric(stored["actual"], errors="coerce")
        actual = actual.to_numpy()
        for part in _stream(batch.output, [key, *features]):
            codes = index.get_indexer(_keys(part[key]))
            hit = codes >= 0
            rows = part.loc[hit, features].reset_index(drop=True)
            rows[batch.target] = actual[codes[hit]]
            parts.append(rows)
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*features, batch.target])
        frame = frame[frame[batch.target].notna()].reset_index(drop=True)
    elif _held_target(batch):
        for part in _stream(batch.output, [*features, batch.target]):
            outcome = part[batch.target]
            if batch.task == CLASSIFICATION:
                converted, unknown = as_classes(outcome, batch.classes)
                keep = outcome.notna().to_numpy() & ~unknown
            else:
                converted = pd.to_numeric(outcome, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
                keep = np.isfinite(converted)
            rows = part.loc[keep, features].reset_index(drop=True)
            rows[batch.target] = converted[keep]
            parts.append(rows)
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*features, batch.target])
    else:
        return None
    return frame if len(frame) else None


def _read_artifact(settings: Settings, run_id: str, artifact: str) -> bytes:
    """The bytes of a run's artifact, read from the store (not the cache of finished runs' artifacts:
    a replace rewrites these)."""
    from core import tracking

    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".labels-", dir=settings.tmp_dir) as tmp:
        return Path(tracking.client(settings).download_artifacts(run_id, artifact, tmp)).read_bytes()


def _artifact_frame(settings: Settings, run_id: str, artifact: str) -> pd.DataFrame:
    """A run's parquet artifact as a frame, read from the store (see :func:`_read_artifact`) into a
    scratch folder and through ``core.datasets.read_parquet`` (which reads paths, not open files)."""
    from core import tracking

    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".labels-", dir=settings.tmp_dir) as tmp:
        return datasets.read_parquet(tracking.client(settings).download_artifacts(run_id, artifact, tmp))


# --- gain, lift and the cut-off of a labelled batch --------------------------------------------

NO_OUTCOMES = ("This batch has no actual outcomes yet, so there is nothing for gain and lift to count: attach the "
               "outcomes below (or score a file that holds them) to see them.")


def scored_cutoff(tags: dict[str, str]):
    """The cut-off a scoring used (:class:`core.registry.Cutoff`, from the ``studio.cutoff`` tag of its
    run), or None when it predicted the likelier class."""
    from core.registry import CUTOFF_TAG, Cutoff

    return Cutoff.from_tag((tags or {}).get(CUTOFF_TAG))


def _unreadable_cutoff(tags: dict[str, str]) -> bool:
    """Whether a scoring run's ``studio.cutoff`` tag is there but cannot be read (the rule behind its
    predicted classes is then unknown, which is not the likelier class)."""
    from core.registry import CUTOFF_TAG

    return scored_cutoff(tags) is None and bool((tags or {}).get(CUTOFF_TAG))


def batch_cutoff(settings: Settings, scoring_run_id: str):
    """The cut-off a scored batch was made with (None: the likelier class), read from its run's tags;
    a ``studio.cutoff`` tag that cannot be read is refused with a sentence, never taken for "scored
    without a cut-off"."""
    from core import tracking
    from core.registry import CUTOFF_TAG

    tags = tracking.client(settings).get_run(scoring_run_id).data.tags
    if _unreadable_cutoff(tags):
        raise BadInputError(f"The cut-off this batch was scored with cannot be read (its run's tag {CUTOFF_TAG} holds "
                            f"{tags[CUTOFF_TAG][:80]!r}), so the rule behind its predicted classes is not known.")
    return scored_cutoff(tags)


def cutoff_words(cutoff, target: str | None = None) -> str:
    """Where a batch's predicted classes came from, said beside the measures that depend on them."""
    if cutoff is None:
        return "at the likelier class (this batch was scored without a stored cut-off)"
    rule = cutoff.rule(target)
    return f"at the cut-off this batch was scored with: {cutoff.shown} ({rule[:1].lower()}{rule[1:]})"


def batch_decisions(settings: Settings, scoring_run_id: str, positive: str | None = None, cost_fp: float = 0.0,
                    cost_fn: float = 0.0):
    """:func:`core.decisions.decisions` (threshold chart, cost, cumulative gain, lift per decile) on
    the rows of a scored batch that have an actual outcome: attached later (matched on the key they
    were attached with), else held by the scored file. The positive class is ``positive``, else the
    one of the cut-off the batch was scored with, else the last class. When the batch was scored at a
    cut-off for that class, the threshold chart draws it and ``at_cutoff`` measures the batch's
    decisions at it (``stored``); else at the likelier class.

    Only the key (or outcome) column and the ``proba_<class>`` columns of the scored output are read,
    in parts of 250,000 rows. Held in memory: the outcomes file (as :func:`labelled_rows` holds it) and,
    per matched row, one float64 per class and a one-byte class code (17 bytes for two classes); while
    the charts are made (ranking, cumulative counts, the gain curve) the peak is about 160 bytes per
    labelled row with two classes: ~160 MB and ~3 s for a million rows (measured with tracemalloc).

    A batch of a model without probabilities, or without outcomes, gives a
    :class:`core.decisions.Decisions` whose ``unavailable`` says why nothing is drawn; a regression
    batch is refused (:class:`BadInputError`)."""
    from core import decisions as decide
    from core.scoring.model import _label

    batch = _batch(settings, scoring_run_id)
    if batch.task != CLASSIFICATION:
        raise BadInputError("Gain, lift and a cut-off are for classification models; this batch was scored by a model "
                            "that predicts a number.")
    names = batch.added()
    labels_of = [_label(c) for c in batch.classes]
    proba = {names[f"proba_{c}"]: f"proba_{c}" for c in labels_of if f"proba_{c}" in names}
    empty = decide.Decisions(positive="", classes=labels_of, rows=0, positives=0, note="")
    if not proba:
        return replace_fields(empty, unavailable=decide.NO_PROBABILITIES)
    cutoff = scored_cutoff(batch.tags)
    if positive is None and cutoff is not None and cutoff.positive in labels_of:
        positive = cutoff.positive
    # the batch's rule, marked on the chart and measured, when its class is the one charted
    rule = cutoff.value if cutoff is not None and len(labels_of) == 2 and cutoff.positive == (
        labels_of[-1] if positive is None else str(positive)) else None
    codes_of = {c: k for k, c in enumerate(labels_of)}
    parts_codes, parts_scores = [], []

    def keep(codes: np.ndarray, part: pd.DataFrame, hit: np.ndarray) -> None:
        parts_codes.append(codes.astype("int8" if len(labels_of) < 127 else "int32"))
        parts_scores.append(part.loc[hit, list(proba)].to_numpy(dtype="float64"))

    if batch.tags.get("studio.labels") == "attached":
        document = json.loads(_read_artifact(settings, batch.run_id, artifact(batch.tags, REPORT_FILE)).decode())
        stored = _artifact_frame(settings, batch.run_id, artifact(batch.tags, LABELS_FILE))
        key = document["key"]
        actual, unknown = as_classes(stored["actual"], batch.classes)
        outcome = np.asarray([-1 if bad else codes_of[_label(a)] for a, bad in zip(actual, unknown)], dtype="int64")
        index = pd.Index(_keys(stored["key"]))
        del stored, actual
        for part in _stream(batch.output, [key, *proba]):
            found = index.get_indexer(_keys(part[key]))
            found = np.where(found >= 0, outcome[np.maximum(found, 0)], -1)
            hit = found >= 0
            if hit.any():
                keep(found[hit], part, hit)
    elif _held_target(batch):
        for part in _stream(batch.output, [batch.target, *proba]):
            converted, unknown = as_classes(part[batch.target], batch.classes)
            hit = part[batch.target].notna().to_numpy() & ~unknown
            if hit.any():
                keep(np.asarray([codes_of[_label(a)] for a in converted[hit]]), part, hit)
    else:
        return replace_fields(empty, unavailable=NO_OUTCOMES)
    if not parts_codes:
        return replace_fields(empty, unavailable="None of this batch's outcomes is one of the model's classes, so gain and "
                                                 "lift have no row to count.")
    codes = np.concatenate(parts_codes)
    scores = np.concatenate(parts_scores)
    parts_codes.clear()
    parts_scores.clear()
    frame = pd.DataFrame({"actual": pd.Categorical.from_codes(codes, categories=labels_of)})
    for k, column in enumerate(proba.values()):
        frame[column] = scores[:, k]
    del scores
    shown = batch.name if batch.name != "?" else "this batch"
    return decide.decisions(frame, positive, cost_fp, cost_fn, rows_label=f"labelled rows of {shown}", target=batch.target or None,
                            stored=rule)
