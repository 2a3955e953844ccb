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

        parquet = pq.ParquetFile(source.path)
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
    X = pd.DataFrame(index=batch.index)
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
            converted = values.map(lambda v: v if pd.isna(v) else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)))
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
    return X, problems


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
) -> ScoringReport:
    """Check, score every batch, write the output atomically and record the scoring in MLflow."""
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
    try:  # hand freed batch memory back to the system at once, so a long file does not grow the process
        pa.jemalloc_set_decay_ms(0)
    except (NotImplementedError, pa.ArrowNotImplementedError):
        pass
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
    y_true: list[np.ndarray] = []
    y_pred: list[np.ndarray] = []
    y_proba: list[np.ndarray] = []
    non_null = {f: 0 for f in model.features}
    run = mlflow.start_run(experiment_id=experiment_id, run_name=f"score {source.name} with {model.name} v{model.version}"[:250], tags=tags)
    run_id = run.info.run_id
    writer = None
    rows = 0
    try:
        mlflow.log_params({"model_uri": model.uri, "model_name": model.name, "model_version": model.version,
                           "input_name": source.name[:500], "input_format": source.format, "batch_rows": batch_rows})
        proba_names = [f"proba_{_label(c)}" for c in model.classes] if model.task == CLASSIFICATION else []
        say(0, source.rows)
        for table in iter_batches(source, batch_rows):
            n = table.num_rows
            if n == 0:
                continue
            X, problems = coerce_batch(model, table.select(list(model.features)).to_pandas(), report)
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
            if labelled:
                truth = table.column(model.target).to_pandas()
                known = truth.notna().to_numpy()
                y_true.append(truth.to_numpy()[known])
                y_pred.append(prediction[known])
                if proba is not None:
                    y_proba.append(proba[known].astype(np.float32))
            out = table
            for name, array in added.items():
                out = out.append_column(name, array)
            if writer is None:
                writer = _BackgroundWriter(tmp_out, out.schema)
            writer.write(_conform(out, writer.schema, source.name))
            rows += n
            say(rows, source.rows)
        if writer is not None:
            writer.close()
            writer = None
        if rows == 0:
            raise EmptyTableError(f"'{source.name}' has column names but no rows. Nothing was scored.")
        report.empty_columns = [f for f, n in non_null.items() if n == 0]

        metrics = comparison = None
        if labelled and sum(len(a) for a in y_true):
            truth = np.concatenate(y_true)
            predicted = np.concatenate(y_pred)
            if model.task == CLASSIFICATION:
                probabilities = np.concatenate(y_proba) if y_proba else None
                truth = _same_kind(truth, model.classes)
                metrics = evaluation.classification_metrics(truth, predicted, probabilities, model.classes)
            else:
                metrics = evaluation.regression_metrics(truth, predicted)
            # the charts of this file, read back by tracking.load_figures (the Score page shows them)
            for key, figure in evaluation.batch_figures(model.task, truth, predicted, model.classes).items():
                mlflow.log_text(figure.to_json(), f"plots/{key}.json")
            mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
            comparison = compare_with_training(metrics, model.holdout_metrics)

        final = output_path(settings, run_id)
        os.replace(tmp_out, final)
        mlflow.log_metrics({"rows": rows, "rows_with_unusable_values": report.rows_with_unusable_values,
                            **{f"unseen_categories.{c}": n for c, n in report.unseen_categories.items()}})
        mlflow.log_dict({"messages": report.messages(), "report": asdict(report), "comparison": comparison}, "scoring_report.json")
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
    added = ["prediction", *proba_names, "model_name", "model_version", "scored_at", "input_problems"]
    return ScoringReport(
        run_id=run_id, experiment_id=experiment_id, model={"name": model.name, "version": model.version},
        input_name=source.name, input_digest=source.digest, rows=rows, output=str(output_path(settings, run_id)),
        columns_added=added, messages=report.messages(), metrics=metrics, holdout_metrics=model.holdout_metrics,
        comparison=comparison, seconds=time.perf_counter() - started,
    )


class _BackgroundWriter:
    """Writes parquet batches in a thread while the next batch is scored (Arrow releases the GIL
    while encoding and writing). At most one batch waits, so memory stays bounded."""

    def __init__(self, path: Path, schema) -> None:
        import queue
        import threading

        import pyarrow.parquet as pq

        self.schema = schema
        self._writer = pq.ParquetWriter(path, schema)
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
    """Write the scored output as parquet or CSV (by extension), atomically, batch by batch. In CSV,
    text that starts with = + - @ (at the start of a cell or of any line inside it) gets a leading '
    so a spreadsheet does not run it, and every cell that holds a line break is quoted (rows end in
    CRLF, as RFC 4180 says), so a carriage return cannot split a row."""
    import pyarrow.parquet as pq

    destination = Path(destination)
    fmt = fmt or ("csv" if destination.suffix.lower() in (".csv", ".txt") else "parquet")
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.part")
    try:
        if fmt == "parquet":
            shutil.copyfile(source_parquet, tmp)
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as out:
                first = True
                for batch in pq.ParquetFile(source_parquet).iter_batches(batch_size=batch_rows):
                    frame = neutralise(batch.to_pandas())
                    # The csv module quotes a cell holding a character of the line terminator: with
                    # CRLF, a bare CR is quoted too (with LF alone it was written as is).
                    frame.to_csv(out, index=False, header=first, lineterminator="\r\n")
                    first = False
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    return destination


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
