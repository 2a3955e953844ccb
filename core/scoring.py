"""Score production files in batches with a registered model, checked against its signature.

The input is streamed (parquet row groups, CSV blocks) so memory does not grow with the file. Each
batch's columns are checked and coerced to the model's signature; rows with values that cannot be
used are counted and reported (and scored the way the pipeline handles missing values), unseen
categories are counted per column. The output (input columns + prediction + class probabilities +
model name and version + scoring time) is written under a temporary name and renamed when complete,
so a failed scoring never leaves a file that looks finished. Every scoring is an MLflow run in the
``studio-scoring`` experiment, tagged with the model and the input's content hash; the output table
is its artifact, which monitoring reads later.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
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

from core import evaluation
from core.catalog import CLASSIFICATION
from core.datasets import dedupe_columns, sniff_csv_file, sniff_format
from core.errors import BadInputError, CorruptFileError, EmptyTableError, JobCancelled, NotATableError, StudioError
from core.settings import Settings, redact

EXPERIMENT = "studio-scoring"
BATCH_ROWS = 250_000
ADDED = ("prediction", "model_name", "model_version", "scored_at", "input_problems")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A cell that starts a formula at its start or after any line break (what str.splitlines splits on).
_RISKY = re.compile(r"(?:^|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029])[=+\-@\t\r]")
_ZIP_MAGIC = b"PK\x03\x04"

Progress = Callable[[int, int | None], None]  # rows done, rows in total (None when unknown)


class AlreadyScoredError(StudioError):
    """This file was scored with this model version before; ``run_id`` names that scoring."""

    def __init__(self, message: str, run_id: str, scored_at: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.scored_at = scored_at


# --- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoringModel:
    name: str
    version: int
    run_id: str
    task: str
    target: str | None
    features: tuple[str, ...]
    types: dict[str, str]  # MLflow signature type per feature: double, long, string, boolean, ...
    classes: tuple[Any, ...]
    holdout_metrics: dict[str, float]
    categories: dict[str, frozenset[str]]  # values seen in training, per text feature

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def load_model(settings: Settings, reference: str):
    """(ScoringModel, fitted pipeline) for ``name@alias``, ``name/version`` or ``name``."""
    from core import registry, tracking

    view = registry.resolve(settings, reference)
    tracking.use(settings)
    import mlflow
    import mlflow.sklearn
    from mlflow.models import Model

    from core import integrity

    folder = tempfile.TemporaryDirectory()
    try:  # the model is loaded from the very copy whose hashes were checked
        local = integrity.verified_copy(settings, view.name, view.version, Path(folder.name))
        info = Model.load(str(local / "MLmodel"))
        pipeline = mlflow.sklearn.load_model(str(local))
    finally:
        folder.cleanup()
    if info.signature is None or info.signature.inputs is None:
        raise BadInputError(
            f"{view.name} version {view.version} has no signature, so its input cannot be checked. "
            "Register a model trained by the studio (they all carry one)."
        )
    inputs = info.signature.inputs
    names = inputs.input_names()
    types = {col.name: str(col.type.name if hasattr(col.type, "name") else col.type) for col in inputs.inputs}
    meta: dict[str, Any] = {}
    categories: dict[str, frozenset[str]] = {}
    client = tracking.client(settings)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            meta = json.loads(Path(client.download_artifacts(view.run_id, "model_info.json", tmp)).read_text())
            reference_path = client.download_artifacts(view.run_id, "reference/train.parquet", tmp)
            train = pd.read_parquet(reference_path)
            for column in names:
                if column in train and not pd.api.types.is_numeric_dtype(train[column]) and not pd.api.types.is_bool_dtype(train[column]):
                    categories[column] = frozenset(train[column].dropna().astype(str).unique())
        except Exception:  # noqa: BLE001 - a model registered from elsewhere: score without these extras
            pass
    task = meta.get("task") or view.task or (CLASSIFICATION if hasattr(pipeline, "predict_proba") else "regression")
    classes = tuple(meta.get("classes") or ())
    if task == CLASSIFICATION and not classes:
        classes = tuple(getattr(pipeline, "classes_", ()))
    model = ScoringModel(
        name=view.name, version=view.version, run_id=view.run_id or "", task=task, target=meta.get("target") or view.target,
        features=tuple(names), types=types, classes=classes, holdout_metrics=dict(view.metrics), categories=categories,
    )
    return model, pipeline


# --- the input ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    path: Path
    name: str  # what people call it (the uploaded file name, the table name)
    format: str  # parquet or csv
    digest: str  # sha256 of the bytes (or the stored table's content hash)
    rows: int | None  # known up front for parquet


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_file(settings: Settings, name: str) -> Path:
    """A file inside the data folder, named by the user; anything outside it is refused, and so is a
    name no file can have (a NUL byte, a name too long for the file system)."""
    folder = settings.data_dir.resolve()
    shown = _shown_name(name)
    if "\x00" in name:
        raise BadInputError(
            f"'{shown}' holds a NUL byte (\\x00), which no file name can contain. Type the file's name again, "
            f"without pasting control characters."
        )
    try:
        candidate = Path(name).expanduser()
        path = (candidate if candidate.is_absolute() else folder / candidate).resolve()
        inside = path.is_relative_to(folder)
        found = inside and path.is_file()
    except (OSError, ValueError, RuntimeError) as exc:  # too long, a symlink loop, an unknown ~user
        raise BadInputError(f"'{shown}' cannot be a file name here ({redact(exc)}). Check the name.") from exc
    if not inside:
        raise BadInputError(
            f"'{shown}' is outside the data folder ({folder}). Only files inside it can be named; copy the file there first."
        )
    if not found:
        raise BadInputError(f"There is no file '{shown}' in the data folder ({folder}). Check the name.")
    return path


def _shown_name(name: str, limit: int = 200) -> str:
    """A name as typed, fit to quote: control characters written as escapes, long names cut."""
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in str(name))
    return redact(shown if len(shown) <= limit else shown[:limit] + "...")


def open_input(settings: Settings, path: Path, name: str | None = None, digest: str | None = None) -> InputFile:
    """Check the file's format from its content; Excel is converted to parquet first (it cannot be streamed)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"There is no file at '{path}'. Check the path.")
    if path.stat().st_size == 0:
        raise EmptyTableError(f"'{name or path.name}' is empty. Choose a file with a header row and data.")
    with open(path, "rb") as f:
        head = f.read(65_536)
        f.seek(max(0, path.stat().st_size - 4))
        tail = f.read()
    if head.startswith(b"PAR1"):
        if tail != b"PAR1":
            raise CorruptFileError(
                f"'{name or path.name}' starts like a parquet file but is cut short or damaged (its footer is missing). "
                "Copy or export the complete file again."
            )
        fmt = "parquet"
    elif head.startswith(_ZIP_MAGIC):
        fmt = _sniff_zip(path, name or path.name)  # a workbook's directory is at its end: the head cannot tell
    else:
        fmt = sniff_format(head, name or path.name)
    digest = digest or file_digest(path)
    if fmt == "excel":
        from core.datasets import read_table_file

        frame = read_table_file(path).frame
        converted = settings.workspace / "tmp" / f"{digest[:16]}.parquet"
        converted.parent.mkdir(parents=True, exist_ok=True)
        part = converted.with_name(f".{converted.name}.{uuid.uuid4().hex}.part")
        try:  # written whole, then renamed: a job reading the same workbook never sees half of it
            frame.to_parquet(part, index=False)
            os.replace(part, converted)
        finally:
            part.unlink(missing_ok=True)
        return InputFile(converted, name or path.name, "parquet", digest, len(frame))
    rows = None
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise BadInputError(f"'{name or path.name}' is a damaged parquet file ({exc}). Export it again.") from exc
    return InputFile(path, name or path.name, fmt, digest, rows)


def _sniff_zip(path: Path, name: str) -> str:
    """``excel`` for an .xlsx workbook of any size (its directory is read from the file itself, not
    from its first block); any other ZIP archive, or a damaged one, is refused."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptFileError(
            f"'{name}' looks like an Excel workbook but is damaged ({exc}). Save it again from Excel and score the new file."
        ) from exc
    if "xl/workbook.xml" in names:
        return "excel"
    raise NotATableError(f"'{name}' is a ZIP archive, not a table. Unpack it and choose the CSV, parquet or Excel file inside.")


def input_columns(source: InputFile) -> list[str]:
    if source.format == "parquet":
        import pyarrow.parquet as pq

        names, _, _ = dedupe_columns(pq.ParquetFile(source.path).schema_arrow.names)
        return [n for n in names if not n.startswith("__index_level_")]
    names, _, _ = dedupe_columns(list(sniff_csv_file(source.path).header))
    return names


def iter_batches(source: InputFile, batch_rows: int = BATCH_ROWS):
    """The file as Arrow tables of at most ``batch_rows`` rows, columns named as
    :func:`input_columns` says; memory holds one batch at a time."""
    import pyarrow as pa

    names = input_columns(source)
    if source.format == "parquet":
        import pyarrow.parquet as pq

        # pre_buffer (pyarrow's default) keeps every row group read until the reader ends: the
        # whole file, by the last batch (the 8M-row benchmark file: 94 MB more at the end)
        parquet = pq.ParquetFile(source.path, pre_buffer=False)
        wanted = [c for c in parquet.schema_arrow.names if not c.startswith("__index_level_")]
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=wanted):
            yield pa.Table.from_batches([batch]).rename_columns(names)
        return
    dialect = sniff_csv_file(source.path)
    reader = pd.read_csv(source.path, sep=dialect.delimiter, decimal=dialect.decimal, thousands=dialect.thousands,
                         encoding=dialect.encoding, header=0, names=names, index_col=False, skipinitialspace=True,
                         chunksize=batch_rows, low_memory=False)
    try:
        for chunk in reader:
            yield pa.Table.from_pandas(chunk, preserve_index=False)
    except pd.errors.ParserError as exc:
        raise BadInputError(f"'{source.name}' is not a regular table: {exc}. Fix that line and try again.") from exc
    finally:
        reader.close()


# --- checks and coercion -----------------------------------------------------------------------


@dataclass
class InputReport:
    """What the check found, accumulated over every batch."""

    extra_columns: list[str] = field(default_factory=list)
    target: str | None = None  # the outcome column, when the file holds it (used for the metrics)
    coerced: dict[str, str] = field(default_factory=dict)  # column -> what was done
    unusable_values: dict[str, int] = field(default_factory=dict)  # column -> values that could not be used
    rows_with_unusable_values: int = 0
    missing_values: dict[str, int] = field(default_factory=dict)  # column -> empty cells (imputed by the pipeline)
    unseen_categories: dict[str, int] = field(default_factory=dict)  # column -> values never seen in training
    unseen_examples: dict[str, list[str]] = field(default_factory=dict)
    empty_columns: list[str] = field(default_factory=list)  # features without any value in the whole file

    def messages(self) -> list[str]:
        out = []
        if self.target and self.target in self.extra_columns:
            out.append(f"The file holds the outcome '{self.target}', so the predictions are compared with it below; "
                       "it is kept in the output.")
        others = [c for c in self.extra_columns if c != self.target]
        if others:
            out.append(f"{len(others)} column{' the model does not use was' if len(others) == 1 else 's the model does not use were'} "
                       f"carried through untouched: {', '.join(others[:12])}{' ...' if len(others) > 12 else ''}.")
        for column, what in self.coerced.items():
            out.append(f"'{column}': {what}.")
        if self.rows_with_unusable_values:
            detail = ", ".join(f"'{c}' {n:,}" for c, n in self.unusable_values.items())
            out.append(f"{self.rows_with_unusable_values:,} rows had values that could not be used ({detail}); "
                       "those values were treated as missing and the rows are marked in the input_problems column.")
        for column in self.empty_columns:
            out.append(f"'{column}' has no value in any row: the model filled it in as it learned to, so predictions "
                       "may be poor. Check the export of that column.")
        for column, n in self.unseen_categories.items():
            examples = ", ".join(repr(e) for e in self.unseen_examples.get(column, [])[:3])
            out.append(f"'{column}': {n:,} values never seen in training ({examples}); the model scores them as an unknown category.")
        return out


def check_columns(model: ScoringModel, columns: list[str], name: str) -> list[str]:
    """Refuse a file that lacks a feature (listing every missing one); return the extra columns."""
    missing = [f for f in model.features if f not in columns]
    if missing:
        raise BadInputError(
            f"'{name}' lacks {len(missing)} column{'s' if len(missing) > 1 else ''} the model needs: {', '.join(missing)}. "
            f"Nothing was scored. Add {'them' if len(missing) > 1 else 'it'} (same names as in training) and try again."
        )
    return [c for c in columns if c not in model.features]


_NUMERIC = {"double", "float", "long", "integer"}


def coerce_batch(model: ScoringModel, batch: pd.DataFrame, report: InputReport) -> tuple[pd.DataFrame, pd.Series | None]:
    """The features as the pipeline expects them, and per row a note of what could not be used
    (None when every value of the batch could be used)."""
    X: dict[str, pd.Series] = {}
    problems: pd.Series | None = None  # built only when a value cannot be used
    for column in model.features:
        values = batch[column]
        kind = model.types.get(column, "")
        if kind in _NUMERIC:
            if pd.api.types.is_bool_dtype(values):
                converted = values.astype(float)
            elif pd.api.types.is_numeric_dtype(values):
                converted = values.astype("float64") if kind in ("double", "float") or values.isna().any() else values
                if values.dtype.kind in "iu" and kind in ("double", "float"):
                    report.coerced.setdefault(column, "whole numbers read as decimals")
            else:
                converted = pd.to_numeric(values.astype(str).str.strip().str.replace(",", ".", regex=False).where(values.notna()),
                                          errors="coerce")
                report.coerced.setdefault(column, "numbers written as text were converted")
            bad = values.notna() & converted.isna()
        elif kind == "boolean":
            converted = values.map(lambda v: v if isinstance(v, bool) or pd.isna(v) else str(v).strip().lower() in ("true", "1", "yes"))
            bad = pd.Series(False, index=batch.index)
        else:  # string and anything else: text as in training
            # a missing cell is NaN, whatever marked it (parquet gives None): the pipeline's imputer
            # looks for NaN only, and a None reached the model and failed the whole file
            converted = values.map(lambda v: np.nan if pd.isna(v) else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)))
            if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
                report.coerced.setdefault(column, f"{values.dtype} values read as text")
            bad = pd.Series(False, index=batch.index)
            seen = model.categories.get(column)
            if seen is not None:
                unseen = converted.notna() & ~converted.isin(seen)
                if unseen.any():
                    report.unseen_categories[column] = report.unseen_categories.get(column, 0) + int(unseen.sum())
                    examples = report.unseen_examples.setdefault(column, [])
                    for value in converted[unseen].unique()[:3]:
                        if len(examples) < 3 and value not in examples:
                            examples.append(str(value))
        if bad.any():
            report.unusable_values[column] = report.unusable_values.get(column, 0) + int(bad.sum())
            if problems is None:
                problems = pd.Series(None, index=batch.index, dtype=object)
            note = f"{column} not usable"
            problems = problems.where(~bad, problems.map(lambda p, n=note: f"{p}; {n}" if isinstance(p, str) else n))
        report.missing_values[column] = report.missing_values.get(column, 0) + int(converted.isna().sum())
        X[column] = converted
    if problems is not None:
        report.rows_with_unusable_values += int(problems.notna().sum())
    # built at once, so columns of one type share one block: the pipeline reads them as one array
    # (added one by one, each column was a block of its own and every step of the pipeline
    # gathered them again)
    return pd.DataFrame(X, index=batch.index), problems


# --- scoring -----------------------------------------------------------------------------------


@dataclass
class ScoringReport:
    run_id: str
    experiment_id: str
    model: dict[str, Any]
    input_name: str
    input_digest: str
    rows: int
    output: str  # the canonical parquet output in the workspace
    columns_added: list[str]
    messages: list[str]
    metrics: dict[str, float] | None
    holdout_metrics: dict[str, float]
    comparison: list[dict[str, Any]] | None
    seconds: float
    exported: str | None = None
    drift: dict[str, Any] | None = None  # the drift summary logged on the run (None when not measured)

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "model": self.model, "rows": self.rows, "output": self.exported or self.output,
            "columns_added": self.columns_added, "metrics": _clean(self.metrics) if self.metrics is not None else None,
            "messages": self.messages, "comparison": self.comparison,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_previous(settings: Settings, model: ScoringModel, digest: str):
    """The finished scoring run of this input with this model version, if any."""
    from core import tracking

    client = tracking.client(settings)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=(f"tags.`studio.input_digest` = '{digest}' and tags.`studio.model_name` = '{model.name}' "
                       f"and tags.`studio.model_version` = '{model.version}' and attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return runs[0] if runs else None


def output_path(settings: Settings, run_id: str) -> Path:
    return settings.workspace / "scorings" / f"{run_id}.parquet"


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
    """Check, score every batch, write the output atomically and record the scoring in MLflow.

    Nothing grows with the file: the batches are scored, written and counted one at a time. Drift
    (``measure_drift``) is measured on the way against the version's reference profile, loaded once,
    and logged on the run (what :func:`core.monitoring.batch_drift` reads back); the labelled
    metrics are computed from per-batch sums and counts (see :class:`_Outcomes`)."""
    columns = input_columns(source)
    extra = check_columns(model, columns, source.name)  # missing columns: refused before any run
    if source.rows == 0:
        raise EmptyTableError(f"'{source.name}' has column names but no rows. Nothing was scored.")
    if not force:
        previous = find_previous(settings, model, source.digest)
        if previous is not None:
            when = datetime.fromtimestamp(previous.info.start_time / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
            raise AlreadyScoredError(
                f"'{source.name}' was already scored with {model.name} version {model.version} on {when} "
                f"(run {previous.info.run_id}). Open that result, or score it again on purpose.",
                previous.info.run_id, when,
            )
    from core import tracking

    tracking.use(settings)
    import mlflow
    import pyarrow as pa

    experiment_id = tracking.ensure_experiment(settings, EXPERIMENT)
    _free_at_once()
    labelled = bool(model.target) and model.target in columns
    report = InputReport(extra_columns=extra, target=model.target if labelled else None)
    say = progress or (lambda done, total: None)
    scored_at = datetime.now(UTC).isoformat(timespec="seconds")
    tags = {"studio.kind": "scoring", "studio.model_name": model.name, "studio.model_version": str(model.version),
            "studio.input_digest": source.digest, "studio.input_name": source.name[:250]}
    if job_id:
        tags["studio.job_id"] = job_id
    started = time.perf_counter()
    out_dir = settings.workspace / "scorings"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_out = out_dir / f".{job_id or 'cli'}-{uuid.uuid4().hex}.parquet.part"  # the job's reaper finds it by id
    # the labelled rows' scores for the exact AUC wait here (private, removed when the scoring ends)
    scratch = Path(tempfile.mkdtemp(prefix=f".{job_id or 'cli'}-", suffix=".scores", dir=out_dir)) if labelled else None
    outcomes = _Outcomes(model.task, model.classes, scratch) if labelled else None
    non_null = {f: 0 for f in model.features}
    run = mlflow.start_run(experiment_id=experiment_id, run_name=f"score {source.name} with {model.name} v{model.version}"[:250], tags=tags)
    run_id = run.info.run_id
    writer = None
    rows = 0
    drift_notes: list[str] = []
    try:
        mlflow.log_params({"model_uri": model.uri, "model_name": model.name, "model_version": model.version,
                           "input_name": source.name[:500], "input_format": source.format, "batch_rows": batch_rows})
        proba_names = [f"proba_{_label(c)}" for c in model.classes] if model.task == CLASSIFICATION else []
        drifting = _DriftOnTheWay(settings, model, drift_notes) if measure_drift else None
        say(0, source.rows)
        for table in iter_batches(source, batch_rows):
            n = table.num_rows
            if n == 0:
                continue
            features = table.select(list(model.features)).to_pandas()
            X, problems = coerce_batch(model, features, report)
            for f in model.features:
                non_null[f] += int(X[f].notna().sum())
            names = _output_names(table.column_names, proba_names)
            added: dict[str, Any] = {}
            if model.task == CLASSIFICATION and hasattr(pipeline, "predict_proba"):
                proba = np.asarray(pipeline.predict_proba(X), dtype=float)
                labels = np.asarray(model.classes, dtype=object)[proba.argmax(axis=1)] if model.classes else pipeline.predict(X)
                prediction = _same_kind(labels, model.classes)
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
            if outcomes is not None:
                truth = table.column(model.target).to_pandas()
                known = truth.notna().to_numpy()
                outcomes.add(truth.to_numpy()[known], prediction[known], None if proba is None else proba[known])
            out = table
            for name, array in added.items():
                out = out.append_column(name, array)
            if writer is None:
                writer = _BackgroundWriter(tmp_out, out.schema)
            written = _conform(out, writer.schema, source.name)
            writer.write(written)
            if drifting is not None:
                # the columns as written (and as reading the output back would give them)
                drifting.add(written, features if written is out else None)
            del table, out, written, features, X, added
            _release_unused()
            rows += n
            say(rows, source.rows)
        if writer is not None:
            writer.close()
            writer = None
        if rows == 0:
            raise EmptyTableError(f"'{source.name}' has column names but no rows. Nothing was scored.")
        report.empty_columns = [f for f, n in non_null.items() if n == 0]

        metrics = comparison = None
        if outcomes is not None and outcomes.rows:
            metrics, figures = outcomes.finish()
            # the charts of this file, read back by tracking.load_figures (the Score page shows them)
            for key, figure in figures.items():
                mlflow.log_text(figure.to_json(), f"plots/{key}.json")
            mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
            comparison = compare_with_training(metrics, model.holdout_metrics)

        final = output_path(settings, run_id)
        os.replace(tmp_out, final)
        mlflow.log_metrics({"rows": rows, "rows_with_unusable_values": report.rows_with_unusable_values,
                            **{f"unseen_categories.{c}": n for c, n in report.unseen_categories.items()}})
        mlflow.log_dict({"messages": report.messages(), "report": asdict(report), "comparison": comparison}, "scoring_report.json")
        drift_summary = drifting.finish(run_id) if drifting is not None else None
        if log_output:
            mlflow.log_artifact(str(final), "output")
        mlflow.end_run("FINISHED")
    except BaseException as exc:
        if writer is not None:
            writer.abort()
        tmp_out.unlink(missing_ok=True)
        output_path(settings, run_id).unlink(missing_ok=True)
        killed = isinstance(exc, (JobCancelled, KeyboardInterrupt))
        mlflow.set_tag("studio.error", "stopped by the user" if killed else redact(f"{type(exc).__name__}: {str(exc)[:4000]}"))
        mlflow.end_run("KILLED" if killed else "FAILED")
        if isinstance(exc, (StudioError, JobCancelled, KeyboardInterrupt)) or not isinstance(exc, Exception):
            raise
        raise BadInputError(f"Scoring '{source.name}' failed: {type(exc).__name__}: {redact(str(exc)[:500])}. Nothing was kept.") from exc
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    added = ["prediction", *proba_names, "model_name", "model_version", "scored_at", "input_problems"]
    return ScoringReport(
        run_id=run_id, experiment_id=experiment_id, model={"name": model.name, "version": model.version},
        input_name=source.name, input_digest=source.digest, rows=rows, output=str(output_path(settings, run_id)),
        columns_added=added, messages=[*report.messages(), *drift_notes], metrics=metrics, holdout_metrics=model.holdout_metrics,
        comparison=comparison, seconds=time.perf_counter() - started, drift=drift_summary,
    )


def _free_at_once() -> None:
    """Hand freed Arrow memory back to the system at once, so a long file does not grow the process
    (when Arrow allocates with jemalloc; with mimalloc, the default of this pyarrow build, see
    :func:`_release_unused`)."""
    import pyarrow as pa

    try:
        pa.jemalloc_set_decay_ms(0)
    except (NotImplementedError, pa.ArrowNotImplementedError):
        pass


def _release_unused() -> None:
    """Return the memory Arrow's allocator keeps for reuse (mimalloc keeps freed pages per thread).
    Called after each batch, by the thread that scored it and by the one that wrote it. Measured on
    the scoring benchmark's files: without it the peak is about 50 MB higher (1M rows 600 MB, 8M
    616 MB; with it 553 and 550 MB), for about 5% more time."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


class _DriftOnTheWay:
    """Drift of the file being scored, measured batch by batch against the reference profile of the
    version (loaded once): :class:`core.drift.BatchComparison` over the output's columns as they are
    written, the model's score included. A profile that cannot be read, or a failure while
    counting, leaves a note and the scores stand; the Monitor page measures the drift later."""

    def __init__(self, settings: Settings, model: ScoringModel, notes: list[str]) -> None:
        from core import drift, monitoring

        self.settings, self.notes = settings, notes
        self.comparison = None
        self.score_column: str | None = None
        try:
            if not model.run_id:
                raise StudioError(f"{model.name} version {model.version} has no training run to compare with")
            self.comparison = drift.BatchComparison(monitoring.reference_profile(settings, model.run_id))
        except Exception as exc:  # noqa: BLE001 - the scores stand without drift
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self.comparison = None
        self.notes.append(f"Drift could not be measured yet ({redact(exc)}); the Monitor page will try again.")

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

    def finish(self, run_id: str) -> dict[str, Any] | None:
        """Log the drift report on the scoring run; its summary (None when drift was not measured)."""
        if self.comparison is None:
            return None
        from core import monitoring

        try:
            result = self.comparison.report(monitoring.thresholds(self.settings))
            monitoring.record(self.settings, run_id, result)
            return result.summary
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            return None


class _Outcomes:
    """The metrics of a labelled file, accumulated batch by batch, as
    :func:`core.evaluation.classification_metrics` / ``regression_metrics`` give them on the whole
    file, without holding its rows:

    - classification: the rows per (actual, predicted) pair give accuracy, F1, precision, recall
      (sklearn on those pairs, weighted by their counts: the same figures) and the confusion matrix;
      log loss is the sum of sklearn's per-row losses (clipped and renormalised as sklearn does),
      and the log loss of guessing the class shares follows from the counts per class. AUC is
      exact (the Mann-Whitney count of (positive, negative) pairs in order, ties counted half, which
      is the ROC area without the rounding of the curve): it needs every score, so each batch's
      scores go to a private temporary folder, sorted, and are counted back one score range at a
      time (see :class:`_RankedScores`); one-vs-rest, class by class, for more than two classes.
    - regression: sums of absolute and squared errors and of relative errors, the mean and sum of
      squared deviations of the outcome (merged per batch), and for the charts a uniform sample of
      at most 5,000 rows (every row when the file has no more, as the charts already sample).

    Sums are added per batch and then exactly (``math.fsum``), so a metric differs from the
    whole-file computation only by the rounding of numpy's own summation (well under 1e-12)."""

    SAMPLE = 5_000

    def __init__(self, task: str, classes: tuple[Any, ...], folder: Path) -> None:
        self.task, self.classes = task, tuple(classes)
        self.rows = 0
        if task == CLASSIFICATION:
            self.pairs: dict[tuple[Any, Any], int] = {}
            self.truth_kind: Any = None
            self.log_loss_parts: list[float] = []
            self.with_proba: bool | None = None
            self.finite = True
            self.binary = len(self.classes) == 2
            try:
                self.sorted_classes = sorted(self.classes)  # the column order sklearn's log_loss assumes
            except TypeError:
                self.sorted_classes = list(self.classes)
            # the scores AUC ranks: the last class's column for two classes; else each class's column
            # against the other classes (one-vs-rest, columns in sorted class order, as sklearn)
            self.ranked = [_RankedScores(folder, f"class{k}") for k in range(1 if self.binary else len(self.classes))]
            self.ranks_defined = True  # sklearn's one-vs-rest AUC is undefined for labels outside the classes
        else:
            self.errors = {"abs": [], "sq": [], "rel": []}
            self.relative_rows = 0
            self.mean = 0.0
            self.m2 = 0.0
            self.rng = np.random.default_rng(0)
            self.sample = (np.empty(0), np.empty(0, dtype="int64"), np.empty(0), np.empty(0))  # key, row, actual, predicted

    def add(self, truth: np.ndarray, predicted: np.ndarray, proba: np.ndarray | None) -> None:
        """The labelled rows of one batch (missing outcomes already left out)."""
        if not len(truth):
            return
        if self.task == CLASSIFICATION:
            self._add_classification(_same_kind(truth, self.classes), predicted, proba)
        else:
            self._add_regression(np.asarray(truth, dtype=float), np.asarray(predicted, dtype=float))
        self.rows += len(truth)

    def _add_classification(self, truth: np.ndarray, predicted: np.ndarray, proba: np.ndarray | None) -> None:
        if self.truth_kind is None:
            self.truth_kind = truth.dtype
        column = _codes(truth, self.sorted_classes)  # position in the sorted classes, -1 for another label
        self._count_pairs(truth, column, predicted)
        self.with_proba = proba is not None
        if proba is None:
            return
        from scipy.special import xlogy

        if not np.isfinite(proba).all():
            self.finite = False
        # sklearn's log_loss: clip to [eps, 1 - eps], divide each row by its sum, the -log of the
        # actual class's column (columns in sorted class order; for two classes, another label
        # counts as the first class, for more it adds nothing): the same divisions, on the
        # actual class's column only
        eps = np.finfo(np.float64).eps
        clipped = np.clip(proba, eps, 1 - eps)
        sums = clipped.sum(axis=1)
        if self.binary:
            actual = np.where(column == 1, clipped[:, 1], clipped[:, 0]) / sums
        else:
            rows = np.flatnonzero(column >= 0)
            actual = clipped[rows, column[rows]] / sums[rows]
        self.log_loss_parts.append(float(np.sum(-xlogy(1, actual))))
        if self.binary:
            self.ranked[0].add(proba[:, 1], truth == self.classes[-1])
            return
        if (column < 0).any() or not np.allclose(1, proba.sum(axis=1)):  # what sklearn refuses
            self.ranks_defined = False
        if self.ranks_defined:
            for k, ranked in enumerate(self.ranked):
                ranked.add(proba[:, k], column == k)

    def _count_pairs(self, truth: np.ndarray, truth_codes: np.ndarray, predicted: np.ndarray) -> None:
        """Rows per (actual, predicted) pair: by class positions, labels outside the classes apart."""
        k = len(self.sorted_classes)
        predicted_codes = _codes(predicted, self.sorted_classes)
        counts = np.bincount((truth_codes + 1) * (k + 1) + predicted_codes + 1, minlength=(k + 1) ** 2)
        labels = [None, *self.sorted_classes]
        for cell in np.flatnonzero(counts[k + 2:]) + k + 2:  # both labels among the classes
            a, b = divmod(int(cell), k + 1)
            if a and b:
                key = (labels[a], labels[b])
                self.pairs[key] = self.pairs.get(key, 0) + int(counts[cell])
        other = (truth_codes < 0) | (predicted_codes < 0)
        if other.any():  # rare: the other labels as they are
            t_codes, t_values = pd.factorize(truth[other])
            p_codes, p_values = pd.factorize(predicted[other])
            width = len(p_values)
            cells = np.bincount(t_codes * width + p_codes, minlength=len(t_values) * width)
            t_list, p_list = t_values.tolist(), p_values.tolist()
            for cell in np.flatnonzero(cells):
                key = (t_list[cell // width], p_list[cell % width])
                self.pairs[key] = self.pairs.get(key, 0) + int(cells[cell])

    def _add_regression(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        error = truth - predicted
        self.errors["abs"].append(float(np.sum(np.abs(error))))
        self.errors["sq"].append(float(np.sum(error ** 2)))
        nonzero = truth != 0
        self.errors["rel"].append(float(np.sum(np.abs(error[nonzero] / truth[nonzero]))))
        self.relative_rows += int(nonzero.sum())
        n, m = self.rows, len(truth)
        mean = float(np.mean(truth))
        m2 = float(np.sum((truth - mean) ** 2))
        if n == 0:
            self.mean, self.m2 = mean, m2
        else:  # Chan et al.'s merge of two groups' means and squared deviations
            delta = mean - self.mean
            self.mean += delta * m / (n + m)
            self.m2 += m2 + delta * delta * n * m / (n + m)
        key, row, actual, guess = self.sample
        key = np.concatenate([key, self.rng.random(m)])
        row = np.concatenate([row, np.arange(n, n + m)])
        actual, guess = np.concatenate([actual, truth]), np.concatenate([guess, predicted])
        if len(key) > self.SAMPLE:  # the rows with the smallest random keys: a uniform sample
            keep = np.argpartition(key, self.SAMPLE)[: self.SAMPLE]
            key, row, actual, guess = key[keep], row[keep], actual[keep], guess[keep]
        self.sample = (key, row, actual, guess)

    def finish(self) -> tuple[dict[str, float], dict[str, Any]]:
        """(metrics, charts by name) of every row added."""
        if self.task == CLASSIFICATION:
            return self._classification()
        n = self.rows
        _, row, actual, guess = self.sample
        order = np.argsort(row)
        figures = evaluation.batch_figures(self.task, actual[order], guess[order], self.classes)
        numerator = math.fsum(self.errors["sq"])
        if n < 2:
            r2 = math.nan  # sklearn: not well-defined with less than two samples
        elif numerator == 0:
            r2 = 1.0
        elif self.m2 == 0:
            r2 = 0.0
        else:
            r2 = 1 - numerator / self.m2
        metrics = {
            "mae": math.fsum(self.errors["abs"]) / n,
            "rmse": math.sqrt(numerator / n),
            "r2": float(r2),
            "mape": math.fsum(self.errors["rel"]) / self.relative_rows if self.relative_rows else math.nan,
        }
        return metrics, figures

    def _classification(self) -> tuple[dict[str, float], dict[str, Any]]:
        from sklearn import metrics as skm

        classes = list(self.classes)
        keys = list(self.pairs)
        kind = self.truth_kind if self.truth_kind is not None and self.truth_kind.kind in "biuf" else object
        truth = np.asarray([k[0] for k in keys], dtype=kind)
        predicted = np.asarray([k[1] for k in keys], dtype=kind)
        weight = np.asarray([self.pairs[k] for k in keys], dtype="int64")
        binary = len(classes) == 2
        average = "binary" if binary else "macro"
        kwargs = {"pos_label": classes[-1]} if binary else {}
        result = {
            "accuracy": skm.accuracy_score(truth, predicted, sample_weight=weight),
            "f1": skm.f1_score(truth, predicted, average=average, zero_division=0, sample_weight=weight, **kwargs),
            "precision": skm.precision_score(truth, predicted, average=average, zero_division=0, sample_weight=weight, **kwargs),
            "recall": skm.recall_score(truth, predicted, average=average, zero_division=0, sample_weight=weight, **kwargs),
            "log_loss": math.nan,
            "auc": math.nan,
        }
        result["log_loss_ratio"] = math.nan
        n = self.rows
        if self.with_proba and self.finite:
            result["log_loss"] = math.fsum(self.log_loss_parts) / n
            per_class: dict[Any, int] = {}
            for (actual, _), count in self.pairs.items():
                per_class[actual] = per_class.get(actual, 0) + count
            # guessing every row's class shares: sklearn's log_loss of that constant guess
            eps = np.finfo(np.float64).eps
            guess = np.clip(np.clip([per_class.get(c, 0) / n for c in classes], 1e-15, 1), eps, 1 - eps)
            guess = guess / guess.sum()
            losses = []
            for actual, count in per_class.items():
                j = self.sorted_classes.index(actual) if actual in self.sorted_classes else (0 if binary else -1)
                if j >= 0:
                    losses.append(count * -math.log(guess[j]))
            guess_loss = math.fsum(losses) / n
            if guess_loss > 0:
                result["log_loss_ratio"] = result["log_loss"] / guess_loss
            if binary or self.ranks_defined:
                # macro average of the one-vs-rest AUCs; undefined (NaN) when a class has no row,
                # or every row, in the file (sklearn raises, the metric is left out)
                result["auc"] = float(np.mean([ranked.auc() for ranked in self.ranked]))
        matrix = np.zeros((len(classes), len(classes)), dtype="int64")
        position = {c: i for i, c in enumerate(classes)}
        for (actual, guessed), count in self.pairs.items():
            if actual in position and guessed in position:
                matrix[position[actual], position[guessed]] += count
        return {k: float(v) for k, v in result.items()}, {"confusion_matrix": _confusion_chart(matrix, classes)}


def _confusion_chart(matrix: np.ndarray, classes: list[Any]):
    """evaluation's confusion-matrix chart of this file, drawn from the counts (the chart takes rows;
    one row per cell draws it, and the counts replace the ones)."""
    pairs = [(a, b) for a in classes for b in classes]
    figure = evaluation.confusion_figure([a for a, _ in pairs], [b for _, b in pairs], classes, evaluation.BATCH_ROWS_LABEL)
    figure.data[0].update(z=matrix, text=matrix)
    return figure


class _RankedScores:
    """Exact AUC of one score against a yes/no outcome, in memory that does not grow with the rows.

    Each batch's scores of the yes rows and of the no rows are sorted and written, as distinct
    values with their counts, to the scoring's private temporary folder (``.npy`` files: 16 bytes
    per distinct score at most). At the end the values are read back one score range at a time
    (ranges cut at quantiles of a sample of the values, about ``RANGE`` values each; equal scores
    always fall in one range, so a score shared by millions of rows is one entry per batch), and
    the pairs are counted range by range: within a range from the merged counts, and every yes row
    of a range above every no row of the ranges below."""

    RANGE = 1 << 20

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self.runs: list[tuple[Path, Path]] = []
        self.positives = self.negatives = 0
        self.finite = True
        self.entries = 0

    def add(self, scores: np.ndarray, positive: np.ndarray) -> None:
        scores = np.asarray(scores, dtype="float64")
        if not np.isfinite(scores).all():  # sklearn refuses NaN and infinity: AUC undefined
            self.finite = False
            return
        paths = []
        for label, part in (("yes", scores[positive]), ("no", scores[~positive])):
            part.sort()
            values, counts = _distinct(part)
            path = self.folder / f"{self.name}-{len(self.runs)}-{label}.npy"
            np.save(path, np.vstack([values, counts.astype("float64")]))  # counts exact in float64 (< 2**53)
            paths.append(path)
            self.entries += len(values)
        self.runs.append((paths[0], paths[1]))
        self.positives += int(positive.sum())
        self.negatives += len(scores) - int(positive.sum())

    def auc(self) -> float:
        if not self.finite or not self.positives or not self.negatives:
            return math.nan
        edges = self._edges()
        below = ties = 0  # pairs with the no row's score below the yes row's, and equal
        negatives_under = 0  # no rows in the ranges done
        for low, high in zip([-math.inf, *edges], [*edges, math.inf], strict=True):
            yes_values, yes_counts = self._range(0, low, high)
            no_values, no_counts = self._range(1, low, high)
            order = np.argsort(no_values)
            no_values = no_values[order]
            no_under = np.concatenate([[0], np.cumsum(no_counts[order].astype("int64"))])  # no rows under each position
            order = np.argsort(yes_values)  # sorted needles: numpy's fast path
            yes_values, yes_counts = yes_values[order], yes_counts[order].astype("int64")
            left = no_under[np.searchsorted(no_values, yes_values, side="left")]
            right = no_under[np.searchsorted(no_values, yes_values, side="right")]
            below += int(np.dot(yes_counts, left)) + int(yes_counts.sum()) * negatives_under
            ties += int(np.dot(yes_counts, right - left))
            negatives_under += int(no_under[-1])
        return (2 * below + ties) / (2 * self.positives * self.negatives)

    def _edges(self) -> list[float]:
        """Inner range bounds: none when everything fits in one range."""
        ranges = -(-self.entries // self.RANGE)
        if ranges <= 1:
            return []
        sample = []
        step = max(1, self.entries // (ranges * 64))
        for pair in self.runs:
            for path in pair:
                values = np.load(path, mmap_mode="r")[0]
                sample.append(np.array(values[::step]))
                del values
        pooled = np.sort(np.concatenate(sample))
        return list(np.unique(np.quantile(pooled, np.arange(1, ranges) / ranges)))

    def _range(self, side: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
        """The values in [low, high) and their counts, from every batch (side 0: yes, 1: no)."""
        values, counts = [], []
        for pair in self.runs:
            run = np.load(pair[side], mmap_mode="r")
            start, stop = np.searchsorted(run[0], [low, high], side="left") if high < math.inf else (
                int(np.searchsorted(run[0], low, side="left")), run.shape[1])
            part = np.array(run[:, start:stop])
            del run
            values.append(part[0])
            counts.append(part[1])
        return np.concatenate(values), np.concatenate(counts)


def _codes(values: np.ndarray, sorted_classes: list[Any]) -> np.ndarray:
    """Each value's position among the (sorted) classes, -1 when it is none of them."""
    if len(sorted_classes) <= 8 and values.dtype.kind in "biufUO":  # a few classes: one comparison each
        codes = np.full(len(values), -1, dtype=np.intp)
        for position, label in enumerate(sorted_classes):
            hit = np.asarray(values == label)
            if hit.shape == codes.shape:  # (text compared with a number is no match at all)
                codes[hit] = position
        return codes
    if values.dtype.kind in "biuf" and all(isinstance(c, (int, float, np.number)) and not isinstance(c, bool) for c in sorted_classes):
        grid = np.asarray(sorted_classes, dtype="float64")
        found = np.minimum(np.searchsorted(grid, values), len(grid) - 1)
        return np.where(grid[found] == values, found, -1)
    return pd.Index(sorted_classes).get_indexer(values)


def _distinct(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of a sorted array and how often each occurs."""
    if not len(sorted_values):
        return sorted_values, np.zeros(0, dtype="int64")
    first = np.empty(len(sorted_values), dtype=bool)
    first[0] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return sorted_values[starts], np.diff(np.append(starts, len(sorted_values)))


class _BackgroundWriter:
    """Writes parquet batches in a thread while the next batch is scored (Arrow releases the GIL
    while encoding and writing). At most one batch waits, so memory stays bounded."""

    def __init__(self, path: Path, schema) -> None:
        import queue
        import threading

        import pyarrow as pa
        import pyarrow.parquet as pq

        self.schema = schema
        # Dictionary encoding pays for text and whole numbers (few distinct values); on decimals
        # such as the probabilities (all distinct) Arrow tries it and gives up on each page, which
        # took half the writing time.
        coded = [f.name for f in schema if not (pa.types.is_floating(f.type) or pa.types.is_nested(f.type))]
        self._writer = pq.ParquetWriter(path, schema, use_dictionary=coded)
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="scoring-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            table = self._queue.get()
            if table is None:
                return
            if self._error is None:
                try:
                    self._writer.write_table(table)
                except BaseException as exc:  # noqa: BLE001 - handed to the scoring thread
                    self._error = exc
            del table
            _release_unused()

    def write(self, table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._writer.close()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        self._error = self._error or RuntimeError("aborted")
        self._queue.put(None)
        self._thread.join()
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


def compare_with_training(metrics: dict[str, float], holdout: dict[str, float]) -> list[dict[str, Any]]:
    """Each metric on this file against the model's holdout value, and whether it is worse."""
    from core.registry import LOWER_IS_BETTER

    rows = []
    for name, value in metrics.items():
        before = holdout.get(name)
        if before is None or not math.isfinite(value) or not math.isfinite(before):
            continue
        worse = value > before if name in LOWER_IS_BETTER else value < before
        rows.append({"metric": name, "this file": value, "at training": before, "change": value - before, "worse": bool(worse)})
    return rows


def preview(output: Path, rows: int = 100) -> pd.DataFrame:
    """The first ``rows`` of a scored output, read without loading the rest, the prediction and
    probability columns first (what people look for)."""
    import pyarrow.parquet as pq

    head = next(pq.ParquetFile(output).iter_batches(batch_size=rows)).to_pandas()
    made = [c for c in head.columns if c == "prediction" or str(c).startswith("proba_")]
    return head[made + [c for c in head.columns if c not in made]]


def export(source_parquet: Path, destination: Path, fmt: str | None = None, batch_rows: int = BATCH_ROWS) -> Path:
    """Write the scored output as parquet or CSV (by extension), atomically, batch by batch: memory
    holds one batch. In CSV, text that starts with = + - @ (at the start of a cell or of any line
    inside it) gets a leading ' so a spreadsheet does not run it, and every cell that holds a line
    break, a comma or a quote is quoted (rows end in CRLF, as RFC 4180 says), so a carriage return
    cannot split a row. Cells are rendered by Arrow, a column at a time: numbers as the shortest
    text that reads back as the same number (2.0, 0.25, 1e+20; 0.00001 written out where Python
    writes 1e-05), missing values empty, True and False, dates and times as pandas prints them."""
    import pyarrow.parquet as pq

    destination = Path(destination)
    fmt = fmt or ("csv" if destination.suffix.lower() in (".csv", ".txt") else "parquet")
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.part")
    try:
        if fmt == "parquet":
            shutil.copyfile(source_parquet, tmp)
        else:
            _free_at_once()
            import pyarrow as pa

            schema = pq.ParquetFile(source_parquet).schema_arrow
            text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
            # text read as dictionaries: each distinct value is neutralised and quoted once
            parquet = pq.ParquetFile(source_parquet, read_dictionary=text, pre_buffer=False)  # see iter_batches
            with open(tmp, "wb") as out:
                out.write(_csv_line([_csv_cell_text(neutral_text(n)) for n in parquet.schema_arrow.names]))
                for batch in parquet.iter_batches(batch_size=batch_rows):
                    if batch.num_rows:
                        out.write(_csv_rows(batch))
                    del batch
                    _release_unused()
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    return destination


# What makes the csv module quote a cell (with a CRLF line terminator): the delimiter, the quote
# character, CR or LF. The RE2 spelling of _RISKY, for Arrow's regular expressions.
_QUOTE_NEEDED = r'[",\r\n]'
_RISKY_RE2 = r"(?:^|[\n\r\x{0b}\x{0c}\x{1c}\x{1d}\x{1e}\x{85}\x{2028}\x{2029}])[=+\-@\t\r]"


def _csv_cell_text(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if re.search(_QUOTE_NEEDED, text) else text


def _csv_line(cells: list[str]) -> bytes:
    return (",".join(cells) + "\r\n").encode("utf-8")


def _csv_rows(batch):
    """One batch as CSV lines (a buffer of UTF-8 bytes): each column rendered as text by Arrow
    (vectorised), the cells joined with commas and each line ended with CRLF."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cells = [_csv_column(batch.column(i)) for i in range(batch.num_columns)]
    lines = pc.binary_join_element_wise(*cells, ",") if len(cells) > 1 else cells[0]
    lines = pc.binary_join_element_wise(lines, pa.scalar(""), "\r\n")  # each line, then CRLF
    # the lines lie end to end in the array's data buffer: that is the CSV text
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64 if pa.types.is_large_string(lines.type) else np.int32)
    first, last = int(bounds[lines.offset]), int(bounds[lines.offset + len(lines)])
    return data.slice(first, last - first)


def _csv_column(column):
    """A column's cells as CSV text: no nulls (a missing value is empty), text neutralised and
    quoted where needed, numbers and the rest as Arrow writes them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):
        if pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type):
            values = _csv_column(column.dictionary.cast(pa.string()))
            return pc.fill_null(pc.take(values, column.indices), "")
        column = column.dictionary_decode()
        kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        column = _neutralised(column)
        return _quoted(column)
    if pa.types.is_boolean(kind):
        text = pc.if_else(column, "True", "False")
    elif pa.types.is_floating(kind):
        text = _float_text(column)
    elif pa.types.is_integer(kind) or pa.types.is_decimal(kind):
        text = pc.cast(column, pa.string())
    else:  # dates, times, binary, nested values: as pandas writes them (rare in scored files)
        values = column.to_pandas()
        text = pa.array([None if _missing_value(v) else str(v) for v in values], pa.string())
        return _quoted(text)
    return pc.fill_null(text, "")


def _float_text(column):
    """Decimals as Arrow writes them (the shortest text that reads back as the same number), with
    whole numbers keeping their ".0" as Python writes them (2.0, not 2); NaN is missing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.cast(column, pa.string())
    whole = pc.fill_null(pc.equal(column, pc.floor(column)), False)
    if pc.any(whole).as_py():
        digits = pc.filter(text, whole)
        suffixed = pc.if_else(pc.match_substring_regex(digits, "[en]"), digits, pc.binary_join_element_wise(digits, ".0", ""))
        text = pc.replace_with_mask(text, whole, suffixed)
    return pc.if_else(pc.is_nan(column), pa.scalar(None, pa.string()), text)


def _missing_value(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _neutralised(column):
    """Text cells that a spreadsheet would run as a formula, with neutral_text applied (found by
    Arrow, changed in Python: they are few)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    risky = pc.fill_null(pc.match_substring_regex(column, _RISKY_RE2), False)
    if not pc.any(risky).as_py():
        return column
    values = pc.filter(column, risky).to_pylist()
    return pc.replace_with_mask(column, risky, pa.array([neutral_text(v) for v in values], column.type))


def _quoted(column):
    import pyarrow.compute as pc

    column = pc.fill_null(column, "")
    needed = pc.match_substring_regex(column, _QUOTE_NEEDED)
    if not pc.any(needed).as_py():
        return column
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(column, '"', '""'), '"', "")
    return pc.if_else(needed, quoted, column)


def neutralise(frame: pd.DataFrame) -> pd.DataFrame:
    """Text that a spreadsheet would run as a formula gets a leading apostrophe: at the start of a
    cell and at the start of every line inside it (after CR, LF or any other line break), in text
    and categorical columns and in the column names."""
    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(object)
        elif not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        risky = values.map(lambda v: isinstance(v, str) and _RISKY.search(v) is not None).astype(bool)
        if risky.any():
            frame[column] = values.where(~risky, values[risky].map(neutral_text))
    frame.columns = [neutral_text(c) if isinstance(c, str) else c for c in frame.columns]
    return frame


def neutral_text(text: str) -> str:
    """``text`` with a ' before every line (the first, and each one after a line break) that starts
    like a formula: ``a\\r=1+1`` becomes ``a\\r'=1+1``."""
    return "".join("'" + line if line.startswith(_FORMULA_START) else line for line in text.splitlines(keepends=True))


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


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _same_kind(values: np.ndarray, classes: tuple[Any, ...]) -> np.ndarray:
    """Labels in the type of the model's classes (a CSV may hold 1 where training had 1.0)."""
    if not classes:
        return values
    sample = classes[0]
    try:
        if isinstance(sample, (int, float, np.number)) and not isinstance(sample, bool):
            return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        pass
    return np.asarray([_label(v) if not isinstance(v, str) else v for v in values], dtype=object)


def _clean(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (round(v, 6) if math.isfinite(v) else None) for k, v in metrics.items()}


def save_upload(settings: Settings, data: bytes, file_name: str) -> tuple[Path, str]:
    """Keep an uploaded production file in the workspace (named by its content hash) so a
    background job can stream it. Returns (path, digest)."""
    from core.tables import _atomic_write_bytes, _safe_file_name

    digest = hashlib.sha256(data).hexdigest()
    folder = settings.workspace / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(_safe_file_name(file_name)).suffix.lower()[:10]
    path = folder / f"{digest[:16]}{suffix}"
    if not path.exists():
        _atomic_write_bytes(path, lambda tmp: tmp.write_bytes(data))
    return path, digest


def load_report(settings: Settings, run_id: str) -> ScoringReport:
    """A finished scoring, read back from its MLflow run (to show an earlier result)."""
    from core import tracking

    client = tracking.client(settings)
    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory() as tmp:
        saved = json.loads(Path(client.download_artifacts(run_id, "scoring_report.json", tmp)).read_text())
    params, metrics = run.data.params, run.data.metrics
    labelled = {k: v for k, v in metrics.items() if k in evaluation.CLASSIFICATION_METRICS + evaluation.REGRESSION_METRICS}
    local = output_path(settings, run_id)
    if not local.is_file():  # scored on another machine: fetch the output artifact
        local.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            fetched = client.download_artifacts(run_id, f"output/{run_id}.parquet", tmp)
            shutil.copyfile(fetched, local)
    return ScoringReport(
        run_id=run_id, experiment_id=run.info.experiment_id,
        model={"name": params.get("model_name"), "version": int(params.get("model_version", 0))},
        input_name=params.get("input_name", ""), input_digest=run.data.tags.get("studio.input_digest", ""),
        rows=int(metrics.get("rows", 0)), output=str(local), columns_added=[], messages=saved.get("messages", []),
        metrics=labelled or None, holdout_metrics={}, comparison=saved.get("comparison"), seconds=0.0,
    )
