"""Read CSV / parquet / Excel into a frame the rest of ``core`` can trust, infer column kinds,
profile columns, and hash tables by content.

The format is sniffed from the bytes, never trusted from the file name: a PNG called ``.csv``
is refused as a PNG. Every refusal is a :class:`~core.errors.BadInputError` whose message says
what is wrong and what to do.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import (
    BadInputError,
    CorruptFileError,
    EmptyTableError,
    FileTooLargeError,
    NotATableError,
    StudioError,
)

PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .xls (and .doc)

# Content signatures of files people upload by mistake.
_NOT_TABLES = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF87a": "a GIF image",
    b"GIF89a": "a GIF image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"BZh": "a bzip2 archive",
    b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive",
    b"\x7fELF": "a program (ELF binary)",
    b"SQLite format 3\x00": "an SQLite database",
    b"RIFF": "a media file (RIFF)",
}

_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_DECIMAL_COMMA = re.compile(r"^[-+]?(\d{1,3}(\.\d{3})+|\d+),\d+$")
_GROUPED_DECIMAL_COMMA = re.compile(r"^[-+]?\d{1,3}(\.\d{3})+,\d+$")
_DECIMAL_POINT = re.compile(r"^[-+]?\d*\.\d+$")
_DATE_LIKE = re.compile(
    r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})([ T]\d{1,2}:\d{2}(:\d{2})?.*)?\s*$"
)
_ID_NAME = re.compile(r"(^id$|_id$|^id_|[a-z]Id$|^uuid$|^guid$)", re.IGNORECASE)
_TRUE_FALSE = {"true", "false", "yes", "no", "y", "n", "t", "f"}


class ColumnKind(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    ID = "id-like"
    TEXT = "text"


@dataclass(frozen=True)
class ReadResult:
    """A table read from a file, and what the reader did that the user should know about."""

    frame: pd.DataFrame
    format: str  # "csv", "parquet" or "excel"
    notes: tuple[str, ...] = ()
    renamed_columns: dict[str, str] = field(default_factory=dict)  # new name -> name in the file


def read_table(data: bytes, name: str = "file", *, max_bytes: int | None = None) -> ReadResult:
    """Read the bytes of an uploaded file into a checked frame.

    Raises a :class:`BadInputError` subclass for anything that is not a usable table; any
    unexpected failure of the underlying readers is wrapped into one with the reason.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise FileTooLargeError(
            f"'{name}' is {_size(len(data))}, over the upload limit of {_size(max_bytes)}. "
            "Put the file in the studio's data folder or split it, then try again."
        )
    if not data.strip():
        raise EmptyTableError(f"'{name}' is empty. Choose a file that holds a table with a header row.")
    try:
        fmt = sniff_format(data, name)
        if fmt == "parquet":
            frame, notes, renamed = _read_parquet(data, name)
        elif fmt == "excel":
            frame, notes, renamed = _read_excel(data, name)
        else:
            frame, notes, renamed = _read_csv(data, name)
        frame, more_notes = _normalise(frame)
    except StudioError:
        raise
    except Exception as exc:  # a reader failed in a way we did not foresee: say so, keep the cause
        raise BadInputError(
            f"'{name}' could not be read as a table ({type(exc).__name__}: {exc}). "
            "Check that it is a CSV, parquet or Excel file and try again."
        ) from exc
    if frame.shape[1] == 0:
        raise EmptyTableError(f"'{name}' has no columns. Choose a file that holds a table with a header row.")
    if len(frame) == 0:
        shown = ", ".join(map(str, frame.columns[:8])) + (", ..." if frame.shape[1] > 8 else "")
        raise EmptyTableError(
            f"'{name}' has column names ({shown}) but no rows. Choose a file with data below the header."
        )
    return ReadResult(frame=frame, format=fmt, notes=tuple(notes + more_notes), renamed_columns=renamed)


def read_table_file(path: str | Path, *, max_bytes: int | None = None) -> ReadResult:
    """Read a table from a file on disk (the CLI and the demo use this)."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"There is no file at '{path}'. Check the path and try again.")
    return read_table(path.read_bytes(), path.name, max_bytes=max_bytes)


def sniff_format(data: bytes, name: str = "file") -> str:
    """Tell the format from the content: ``parquet``, ``excel`` or ``csv``; refuse the rest."""
    head = data[:16]
    if head.startswith(PARQUET_MAGIC):
        if len(data) < 12 or not data.endswith(PARQUET_MAGIC):
            raise CorruptFileError(
                f"'{name}' starts like a parquet file but is cut short or damaged (its footer is missing). "
                "Export or copy the file again and upload the complete file."
            )
        return "parquet"
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
        except zipfile.BadZipFile as exc:
            raise CorruptFileError(
                f"'{name}' looks like an Excel workbook but is damaged ({exc}). Save it again and re-upload."
            ) from exc
        if "xl/workbook.xml" in names:
            return "excel"
        raise NotATableError(
            f"'{name}' is a ZIP archive, not a table. Unpack it and upload the CSV, parquet or Excel file inside."
        )
    if head.startswith(OLE_MAGIC):
        raise NotATableError(
            f"'{name}' is an old-style Excel (.xls) or Office file, which the studio does not read. "
            "Save it as .xlsx or CSV and upload that."
        )
    for signature, what in _NOT_TABLES.items():
        if head.startswith(signature):
            raise NotATableError(
                f"'{name}' is {what}, not a table, whatever its name says. "
                "Upload a CSV, parquet or Excel (.xlsx) file."
            )
    if b"\x00" in data[:65536]:
        raise NotATableError(
            f"'{name}' holds binary data, not text or a known table format. "
            "Upload a CSV, parquet or Excel (.xlsx) file."
        )
    return "csv"


# --- readers ----------------------------------------------------------------------------------


def _read_parquet(data: bytes, name: str) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise CorruptFileError(
            f"'{name}' is a damaged parquet file ({exc}). Export it again and re-upload."
        ) from exc
    frame = table.to_pandas()
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()  # a named index (pandas metadata) is data: keep it as columns
    names, renamed, notes = dedupe_columns(list(frame.columns))
    frame.columns = names
    return frame, notes, renamed


def _read_excel(data: bytes, name: str) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    import openpyxl  # noqa: F401  (fails early and clearly if the optional engine is missing)

    try:
        sheets = pd.ExcelFile(io.BytesIO(data), engine="openpyxl")
    except Exception as exc:
        raise CorruptFileError(f"'{name}' is a damaged Excel workbook ({exc}). Save it again and re-upload.") from exc
    with sheets:
        if not sheets.sheet_names:
            raise EmptyTableError(f"'{name}' has no sheets.")
        sheet = sheets.sheet_names[0]
        frame = sheets.parse(sheet, header=0)
        header = sheets.parse(sheet, header=None, nrows=1)
    notes = []
    if len(sheets.sheet_names) > 1:
        notes.append(f"The workbook has {len(sheets.sheet_names)} sheets; the first one, '{sheet}', was read.")
    raw = header.iloc[0].tolist() if len(header) else list(frame.columns)
    names, renamed, rename_notes = dedupe_columns(raw[: frame.shape[1]])
    frame.columns = names
    return frame, notes + rename_notes, renamed


def _decode(data: bytes) -> tuple[str, str]:
    """Decode text as UTF-8 (with or without BOM), else Windows-1252, else Latin-1."""
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte string")  # pragma: no cover


def _sniff_delimiter(lines: list[str]) -> str:
    """The delimiter that splits the sample's lines into the same number (> 1) of fields most often."""
    best, best_score = ",", (0.0, 0)
    for delimiter in _DELIMITERS:
        counts = [len(row) for row in csv.reader(lines, delimiter=delimiter)]
        if not counts:
            continue
        mode = max(set(counts), key=counts.count)
        if mode < 2:
            continue
        score = (counts.count(mode) / len(counts), mode)
        if score > best_score:
            best, best_score = delimiter, score
    return best


@dataclass(frozen=True)
class CsvDialect:
    """How a delimited text file is written, told from a sample of it."""

    encoding: str  # a Python codec name
    delimiter: str
    decimal: str
    thousands: str | None
    header: tuple[str, ...]

    def notes(self) -> list[str]:
        notes = []
        if self.encoding != "utf-8-sig":
            label = "Windows-1252 / Latin-1" if self.encoding == "cp1252" else "Latin-1"
            notes.append(f"The file is not UTF-8; it was read as {label} text.")
        if self.delimiter != ",":
            notes.append(f"Columns are separated by {_DELIMITER_NAMES[self.delimiter]}s.")
        if self.decimal == ",":
            notes.append("Numbers use a decimal comma (1,5 means one and a half).")
        return notes


def sniff_csv(text: str, encoding: str, name: str = "file") -> CsvDialect:
    """Delimiter, decimal mark and header of delimited text (the first 200 non-empty lines)."""
    sample_lines = [line for line in text[:200_000].splitlines()[:200] if line.strip()]
    if not sample_lines:
        raise EmptyTableError(f"'{name}' is empty. Choose a file that holds a table with a header row.")
    delimiter = _sniff_delimiter(sample_lines)
    rows = list(csv.reader(sample_lines, delimiter=delimiter))
    header, body = rows[0], rows[1:]
    decimal, thousands = ".", None
    if delimiter != ",":
        cells = [cell.strip() for row in body for cell in row]
        if any(_DECIMAL_COMMA.match(c) for c in cells) and not any(_DECIMAL_POINT.match(c) for c in cells):
            decimal = ","
            if any(_GROUPED_DECIMAL_COMMA.match(c) for c in cells):
                thousands = "."
    return CsvDialect(encoding=encoding, delimiter=delimiter, decimal=decimal, thousands=thousands, header=tuple(header))


def sniff_csv_file(path: Path) -> CsvDialect:
    """The dialect of a CSV file on disk, from its first 256 KB."""
    with open(path, "rb") as f:
        head = f.read(262_144)
    if not head.strip():
        raise EmptyTableError(f"'{path.name}' is empty. Choose a file that holds a table with a header row.")
    cut = head.rfind(b"\n")
    text, encoding = _decode(head[: cut + 1] if cut > 0 else head)
    return sniff_csv(text, encoding, path.name)


def _read_csv(data: bytes, name: str) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    text, encoding = _decode(data)
    dialect = sniff_csv(text, encoding, name)
    delimiter, decimal, thousands, header = dialect.delimiter, dialect.decimal, dialect.thousands, list(dialect.header)
    notes = dialect.notes()
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            decimal=decimal,
            thousands=thousands,
            header=0,
            index_col=False,
            skipinitialspace=True,
            low_memory=False,
        )
    except pd.errors.EmptyDataError as exc:
        raise EmptyTableError(f"'{name}' is empty. Choose a file that holds a table with a header row.") from exc
    except pd.errors.ParserError as exc:
        raise BadInputError(
            f"'{name}' is not a regular table: {exc}. Make every row have as many values as the header "
            "has column names, then try again."
        ) from exc
    names, renamed, rename_notes = dedupe_columns(header[: frame.shape[1]] + [""] * (frame.shape[1] - len(header)))
    frame.columns = names
    return frame, notes + rename_notes, renamed


# --- normalisation ----------------------------------------------------------------------------


def dedupe_columns(raw: list[object]) -> tuple[list[str], dict[str, str], list[str]]:
    """Make column names unique, non-blank strings.

    Returns the new names, a map new name -> original name for every renamed column, and
    one note per rename for the user ("Two columns were called 'x'; the second is now 'x (2)'").
    """
    names: list[str] = []
    renamed: dict[str, str] = {}
    notes: list[str] = []
    taken: set[str] = set()
    originals = [("" if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v)).strip() for v in raw]
    reserved = set(originals)
    for position, original in enumerate(originals, start=1):
        candidate = original or f"column_{position}"
        if candidate in taken or (not original and candidate in reserved):
            base, k = candidate, 2
            while f"{base} ({k})" in taken or f"{base} ({k})" in reserved:
                k += 1
            candidate = f"{base} ({k})"
        if candidate != original:
            renamed[candidate] = original
            if original:
                notes.append(f"More than one column was called '{original}'; column {position} is now '{candidate}'.")
            else:
                notes.append(f"Column {position} had no name; it is now '{candidate}'.")
        taken.add(candidate)
        names.append(candidate)
    return names, renamed, notes


def _normalise(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Make every column storable as parquet: mixed-type object columns become text."""
    notes = []
    frame = frame.reset_index(drop=True)
    for column in frame.columns:
        series = frame[column]
        if series.dtype == object:
            inferred = pd.api.types.infer_dtype(series, skipna=True)
            if inferred in ("mixed", "mixed-integer", "bytes"):
                frame[column] = series.map(lambda v: v if pd.isna(v) else str(v), na_action="ignore")
                notes.append(f"Column '{column}' mixes numbers and text; it is kept as text.")
            elif inferred == "mixed-integer-float":
                frame[column] = pd.to_numeric(series)
    return frame, notes


# --- content hash -----------------------------------------------------------------------------


def table_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a table's content: column names, dtypes and every cell (row order counts).

    Two uploads of the same table (even as CSV and parquet) with the same dtypes share a digest,
    which names the stored file and pins the lineage of models trained on it.
    """
    h = hashlib.sha256()
    for column in frame.columns:
        h.update(f"{column}\x1f{frame[column].dtype}\x1e".encode())
    if len(frame):
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


# --- kinds and profile ------------------------------------------------------------------------


def infer_kind(series: pd.Series) -> ColumnKind:
    """What a column is for a person: numeric, categorical, boolean, datetime, id-like or text."""
    values = series.dropna()
    n = len(values)
    name = str(series.name or "")
    if pd.api.types.is_bool_dtype(series):
        return ColumnKind.BOOLEAN
    if pd.api.types.is_datetime64_any_dtype(series):
        return ColumnKind.DATETIME
    if isinstance(series.dtype, pd.CategoricalDtype):
        return ColumnKind.CATEGORICAL
    if n == 0:
        return ColumnKind.NUMERIC if pd.api.types.is_numeric_dtype(series) else ColumnKind.CATEGORICAL
    distinct = values.nunique()
    if pd.api.types.is_numeric_dtype(series):
        if distinct == 2 and set(np.unique(values.to_numpy())) <= {0, 1}:
            return ColumnKind.BOOLEAN
        if pd.api.types.is_integer_dtype(series) or _all_integral(values):
            if _ID_NAME.search(name):
                return ColumnKind.ID
            if n >= 20 and distinct == n and (values.is_monotonic_increasing or values.is_monotonic_decreasing):
                return ColumnKind.ID
        return ColumnKind.NUMERIC
    text = values.astype(str)
    sample = text.sample(min(n, 500), random_state=0) if n > 500 else text
    if distinct <= 6:
        lowered = set(text.str.lower().str.strip().unique())
        if len(lowered) == 2 and lowered <= _TRUE_FALSE:
            return ColumnKind.BOOLEAN
    if sample.str.match(_DATE_LIKE).mean() >= 0.9:
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
        if parsed.notna().mean() >= 0.9:
            return ColumnKind.DATETIME
    mean_length = sample.str.len().mean()
    if n >= 20 and distinct / n >= 0.95:
        if mean_length <= 40 and not sample.str.contains(r"\s").mean() > 0.5:
            return ColumnKind.ID
        return ColumnKind.TEXT
    if _ID_NAME.search(name) and distinct / n > 0.5:
        return ColumnKind.ID
    if mean_length > 50 or (distinct > 100 and distinct / n > 0.5):
        return ColumnKind.TEXT
    return ColumnKind.CATEGORICAL


def _all_integral(values: pd.Series) -> bool:
    if not pd.api.types.is_float_dtype(values):
        return False
    array = values.to_numpy()
    return bool(np.all(np.isfinite(array)) and np.all(array == np.round(array)))


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    dtype: str
    kind: ColumnKind
    missing: int
    missing_pct: float
    distinct: int
    stats: dict[str, object] = field(default_factory=dict)

    @property
    def all_missing(self) -> bool:
        return self.missing_pct >= 100.0

    @property
    def constant(self) -> bool:
        return self.distinct <= 1

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "kind": self.kind.value,
            "missing": self.missing,
            "missing_pct": self.missing_pct,
            "distinct": self.distinct,
            "stats": dict(self.stats),
        }


def profile_column(series: pd.Series) -> ColumnProfile:
    n = len(series)
    missing = int(series.isna().sum())
    kind = infer_kind(series)
    values = series.dropna()
    distinct = int(values.nunique())
    stats: dict[str, object] = {}
    if len(values) and kind in (ColumnKind.NUMERIC, ColumnKind.ID, ColumnKind.BOOLEAN) and pd.api.types.is_numeric_dtype(series):
        as_float = values.astype("float64")
        q = np.quantile(as_float.to_numpy(), [0.0, 0.25, 0.5, 0.75, 1.0])
        stats = {
            "mean": float(as_float.mean()),
            "std": float(as_float.std()) if len(as_float) > 1 else 0.0,
            "min": float(q[0]),
            "p25": float(q[1]),
            "median": float(q[2]),
            "p75": float(q[3]),
            "max": float(q[4]),
        }
    elif len(values) and kind is ColumnKind.DATETIME:
        parsed = values if pd.api.types.is_datetime64_any_dtype(values) else pd.to_datetime(values, errors="coerce", format="mixed")
        stats = {"first": str(parsed.min()), "last": str(parsed.max())}
    elif len(values):
        counts = values.astype(str).value_counts()
        stats = {"top": str(counts.index[0]), "top_share_pct": 100.0 * counts.iloc[0] / len(values)}
    return ColumnProfile(
        name=str(series.name),
        dtype=str(series.dtype),
        kind=kind,
        missing=missing,
        missing_pct=100.0 * missing / n if n else 0.0,
        distinct=distinct,
        stats=stats,
    )


def profile_table(frame: pd.DataFrame) -> list[ColumnProfile]:
    """One profile per column, in the table's order."""
    return [profile_column(frame[column]) for column in frame.columns]


def profile_summary(profiles: list[ColumnProfile]) -> pd.DataFrame:
    """The profiles as one table for people: one row per column, statistics rounded and
    written out ("" where a statistic does not apply), missing % and distinct count sortable."""
    rows = []
    for p in profiles:
        row: dict[str, object] = {
            "column": p.name,
            "kind": p.kind.value,
            "missing %": round(p.missing_pct, 1),
            "distinct": p.distinct,
        }
        for key in ("mean", "std", "min", "median", "max"):
            value = p.stats.get(key)
            row[key] = format_number(value) if isinstance(value, float) else ""
        row["most common"] = str(p.stats.get("top", ""))
        rows.append(row)
    return pd.DataFrame(rows)


def format_number(value: float) -> str:
    """A number as people read it: thousands separators, 4 significant digits."""
    if value is None or not np.isfinite(value):
        return ""
    rounded = _round(float(value))
    if float(rounded).is_integer():
        return f"{int(rounded):,}"
    return f"{rounded:,}"


def target_balance(series: pd.Series, *, max_classes: int = 30) -> pd.DataFrame:
    """Rows per value of a target column (with a row for missing values), shares in %.

    A numeric target with many values (a regression target) is summarised in 10 equal-width bins.
    """
    n = len(series)
    values = series.dropna()
    if pd.api.types.is_numeric_dtype(series) and values.nunique() > max_classes:
        binned = pd.cut(values, bins=10)
        counts = binned.value_counts(sort=False)
        labels = [f"{_round(iv.left)} to {_round(iv.right)}" for iv in counts.index]
        table = pd.DataFrame({"value": labels, "rows": counts.to_numpy()})
    else:
        counts = values.value_counts()
        if len(counts) > max_classes:
            other = counts.iloc[max_classes:].sum()
            counts = counts.iloc[:max_classes]
            counts.loc["(other values)"] = other
        table = pd.DataFrame({"value": [_label(v) for v in counts.index], "rows": counts.to_numpy()})
    missing = n - len(values)
    if missing:
        table = pd.concat([table, pd.DataFrame({"value": ["(missing)"], "rows": [missing]})], ignore_index=True)
    table["share %"] = (100.0 * table["rows"] / n).round(1) if n else 0.0
    return table


def _label(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _round(value: float) -> float:
    """Round for people: 4 significant digits, at most 4 decimals."""
    if value is None or not np.isfinite(value) or value == 0:
        return value
    digits = max(0, min(4, 3 - int(np.floor(np.log10(abs(value))))))
    return round(float(value), digits)


def _size(n_bytes: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes} bytes"  # pragma: no cover
