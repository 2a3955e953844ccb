"""The files a model scores: their format found from their content (parquet, CSV, Excel), read
batch by batch as Arrow tables (memory holds one batch), their columns checked against the model's
signature, and each batch's values converted to the types the pipeline expects, with what could
not be used counted and reported."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.datasets import dedupe_columns, sniff_csv_file, sniff_format
from core.errors import BadInputError, CorruptFileError, EmptyTableError, NotATableError
from core.scoring.model import ScoringModel
from core.settings import Settings, redact

BATCH_ROWS = 250_000
_ZIP_MAGIC = b"PK\x03\x04"


# --- the input ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    path: Path
    name: str  # what people call it (the uploaded file name, the table name)
    format: str  # parquet or csv
    digest: str  # sha256 of the bytes (or the stored table's content hash)
    rows: int | None  # known up front for parquet


# (path, size, modification time) -> sha256: a large file in the data folder is hashed once per
# process, not on every rerun of the page that names it
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        if len(_DIGESTS) > 256:
            _DIGESTS.clear()
        _DIGESTS[key] = _hash_file(path)
    return _DIGESTS[key]


def _hash_file(path: Path) -> str:
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
        import pyarrow.parquet as pq

        from core.datasets import read_table_file

        converted = settings.tmp_dir / f"{digest}.parquet"  # named by the workbook's content: converted once
        if not converted.is_file():
            frame = read_table_file(path).frame
            converted.parent.mkdir(parents=True, exist_ok=True)
            part = converted.with_name(f".{converted.name}.{uuid.uuid4().hex}.part")
            try:  # written whole, then renamed: a job reading the same workbook never sees half of it
                frame.to_parquet(part, index=False)
                os.replace(part, converted)
            finally:
                part.unlink(missing_ok=True)
        return InputFile(converted, name or path.name, "parquet", digest, pq.ParquetFile(converted).metadata.num_rows)
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
    # round_trip: pandas' default fast float parser misreads the last digit of many values (all 442 of
    # sklearn's diabetes 'sex' column written by to_csv), which moves values across the reference's
    # bin edges and makes drift measured while scoring differ from the training reader's
    reader = pd.read_csv(source.path, sep=dialect.delimiter, decimal=dialect.decimal, thousands=dialect.thousands,
                         encoding=dialect.encoding, header=0, names=names, index_col=False, skipinitialspace=True,
                         chunksize=batch_rows, low_memory=False, float_precision="round_trip")
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


def missing_columns(features, columns) -> list[str]:
    """The features a file lacks, in the model's order."""
    present = set(columns)
    return [f for f in features if f not in present]


def missing_message(name: str, missing: list[str] | tuple[str, ...]) -> str:
    """What to say about a file that lacks features: every missing one, and what to do."""
    many = len(missing) > 1
    return (f"'{name}' lacks {len(missing)} column{'s' if many else ''} the model needs: {', '.join(missing)}. "
            f"Nothing was scored. Add {'them' if many else 'it'} (same names as in training) and try again.")


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
            bad = None  # numbers already: only an infinite value cannot be used
            if pd.api.types.is_bool_dtype(values):
                converted = values.astype(float)
            elif pd.api.types.is_numeric_dtype(values):
                if values.dtype != np.float64 and (kind in ("double", "float") or values.isna().any()):
                    converted = values.astype("float64")
                else:
                    converted = values  # as read (never changed in place)
                if values.dtype.kind in "iu" and kind in ("double", "float"):
                    report.coerced.setdefault(column, "whole numbers read as decimals")
            else:
                converted = pd.to_numeric(values.astype(str).str.strip().str.replace(",", ".", regex=False).where(values.notna()),
                                          errors="coerce")
                report.coerced.setdefault(column, "numbers written as text were converted")
                bad = values.notna().to_numpy() & np.isnan(converted.to_numpy(dtype="float64", na_value=np.nan))
            if converted.dtype.kind == "f":
                infinite = np.isinf(converted.to_numpy())
                if infinite.any():  # no pipeline can use ±inf: it would fail the whole file
                    converted = converted.mask(infinite)
                    bad = infinite if bad is None else bad | infinite
            missing = int(np.isnan(converted.to_numpy()).sum()) if converted.dtype.kind == "f" else int(converted.isna().sum())
        elif kind == "boolean":
            converted = values.map(lambda v: v if isinstance(v, bool) or pd.isna(v) else str(v).strip().lower() in ("true", "1", "yes"))
            bad = None
            missing = int(converted.isna().sum())
        else:  # string and anything else: text as in training
            # a missing cell is NaN, whatever marked it (parquet gives None): the pipeline's imputer
            # looks for NaN only, and a None reached the model and failed the whole file
            converted = values.map(lambda v: np.nan if pd.isna(v) else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)))
            if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
                report.coerced.setdefault(column, f"{values.dtype} values read as text")
            bad = None
            missing = int(converted.isna().sum())
            seen = model.categories.get(column)
            if seen is not None:
                unseen = converted.notna() & ~converted.isin(seen)
                if unseen.any():
                    report.unseen_categories[column] = report.unseen_categories.get(column, 0) + int(unseen.sum())
                    examples = report.unseen_examples.setdefault(column, [])
                    for value in converted[unseen].unique()[:3]:
                        if len(examples) < 3 and value not in examples:
                            examples.append(str(value))
        if bad is not None and bad.any():
            report.unusable_values[column] = report.unusable_values.get(column, 0) + int(bad.sum())
            if problems is None:
                problems = pd.Series(None, index=batch.index, dtype=object)
            note = f"{column} not usable"
            problems = problems.where(~bad, problems.map(lambda p, n=note: f"{p}; {n}" if isinstance(p, str) else n))
        report.missing_values[column] = report.missing_values.get(column, 0) + missing
        X[column] = converted
    if problems is not None:
        report.rows_with_unusable_values += int(problems.notna().sum())
    # built at once, so columns of one type share one block: the pipeline reads them as one array
    # (added one by one, each column was a block of its own and every step of the pipeline
    # gathered them again)
    return pd.DataFrame(X, index=batch.index), problems



def save_upload(settings: Settings, data: bytes, file_name: str) -> tuple[Path, str]:
    """Keep an uploaded production file in the workspace (named by its content hash) so a
    background job can stream it. Returns (path, digest)."""
    from core.tables import _atomic_write_bytes, _safe_file_name

    digest = hashlib.sha256(data).hexdigest()
    folder = settings.uploads_dir
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(_safe_file_name(file_name)).suffix.lower()[:10]
    path = folder / f"{digest[:16]}{suffix}"
    if not path.exists():
        _atomic_write_bytes(path, lambda tmp: tmp.write_bytes(data))
    return path, digest
