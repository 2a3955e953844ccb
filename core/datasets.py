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
from dataclasses import asdict, dataclass, field
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
    dates: tuple[DateOrder, ...] = ()  # how each day/month/year column was read
    sentinels: tuple[Sentinel, ...] = ()  # numbers that look like codes for "missing" (not applied)
    dropped_rows: int = 0  # lines / rows with no value at all
    dropped_columns: tuple[str, ...] = ()  # unnamed columns with no value at all


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
            raw = _read_parquet(data, name)
        elif fmt == "excel":
            raw = _read_excel(data, name)
        else:
            raw = _read_csv(data, name)
        frame, renamed, notes, dropped_rows, dropped_columns = _tidy(raw, fmt)
        frame, more_notes = _normalise(frame)
        frame, dates, date_notes = _read_dates(frame, prefer_day_first=raw.day_first_hint)
        sentinels = find_sentinels(frame)
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
    return ReadResult(
        frame=frame,
        format=fmt,
        notes=tuple(notes + more_notes + date_notes),
        renamed_columns=renamed,
        dates=dates,
        sentinels=sentinels,
        dropped_rows=dropped_rows,
        dropped_columns=dropped_columns,
    )


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


@dataclass(frozen=True)
class _Raw:
    """What a reader got from the file, before the shared clean-up: the frame, the column names as
    written in the file (one per column, ``""`` where the file has none), and reading notes."""

    frame: pd.DataFrame
    names: list[object]
    notes: list[str]
    dropped_lines: int = 0  # separator-only lines left out before parsing (CSV)
    day_first_hint: bool = False  # the file is written the continental-European way (";" or decimal comma)


def _read_parquet(data: bytes, name: str) -> _Raw:
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
    return _Raw(frame, list(frame.columns), [])


def _read_excel(data: bytes, name: str) -> _Raw:
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
    # cells used beyond the header row (even only formatted) make columns without a header
    raw = raw[: frame.shape[1]] + [""] * (frame.shape[1] - len(raw))
    return _Raw(frame, raw, notes)


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


def _read_csv(data: bytes, name: str) -> _Raw:
    text, encoding = _decode(data)
    dialect = sniff_csv(text, encoding, name)
    delimiter, decimal, thousands, header = dialect.delimiter, dialect.decimal, dialect.thousands, list(dialect.header)
    notes = dialect.notes()
    text, dropped_lines = _drop_separator_lines(text, delimiter)
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
    names = header[: frame.shape[1]] + [""] * (frame.shape[1] - len(header))
    hint = delimiter == ";" or decimal == ","
    return _Raw(frame, names, notes, dropped_lines=dropped_lines, day_first_hint=hint)


def _drop_separator_lines(text: str, delimiter: str) -> tuple[str, int]:
    """Leave out the lines that hold only separators (``;;;;``) before parsing, so they neither become
    rows nor turn whole-number columns into decimals. Skipped when a quoted value could span lines
    (any ``"`` in the text): the empty rows are then dropped after parsing instead."""
    if '"' in text:
        return text, 0
    d = re.escape(delimiter)
    pattern = re.compile(rf"^[ \t]*{d}[ \t{d}]*(?:\r?\n|\r|\Z)", re.MULTILINE)
    header_end = text.find("\n") + 1 if "\n" in text else len(text)
    body, count = pattern.subn("", text[header_end:])
    if not count:
        return text, 0
    return text[:header_end] + body, count


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


_UNNAMED = re.compile(r"^Unnamed: \d+(_level_\d+)?$")


def _is_unnamed(raw: object) -> bool:
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return True
    text = str(raw).strip()
    return not text or bool(_UNNAMED.match(text))


def _blank(series: pd.Series) -> np.ndarray:
    """True where a cell holds nothing: missing, or text made only of spaces."""
    missing = series.isna().to_numpy()
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        text = series.to_numpy(dtype=object)
        missing = missing | np.fromiter((isinstance(v, str) and not v.strip() for v in text), bool, len(text))
    return missing


def _empty_rows(frame: pd.DataFrame) -> np.ndarray:
    """True for the rows without a single value; text columns are only looked at on the rows that
    are still candidates, so a large table costs little."""
    empty = np.ones(len(frame), dtype=bool)
    positions = sorted(range(frame.shape[1]), key=lambda i: frame.iloc[:, i].dtype == object)
    for i in positions:
        if not empty.any():
            break
        series = frame.iloc[:, i]
        empty[empty] = _blank(series[empty])
    return empty


def _tidy(raw: _Raw, fmt: str) -> tuple[pd.DataFrame, dict[str, str], list[str], int, tuple[str, ...]]:
    """The clean-up every format shares: unique column names, no row without a single value, no
    unnamed column without a single value. Returns the frame, the renames (new name -> name in the
    file), the notes, the number of rows dropped and the names of the columns dropped."""
    frame = raw.frame.reset_index(drop=True)
    frame.columns = range(frame.shape[1])
    names, renamed, rename_notes = dedupe_columns(list(raw.names))
    notes = list(raw.notes)
    drop_columns = [i for i in range(frame.shape[1]) if _is_unnamed(raw.names[i]) and bool(_blank(frame.iloc[:, i]).all())]
    dropped_names = tuple(names[i] for i in drop_columns)
    # the renames of dropped columns ("Column 16 had no name") no longer concern anyone
    pairs = [(new, note) for (new, _), note in zip(renamed.items(), rename_notes, strict=True) if new not in dropped_names]
    renamed = {new: renamed[new] for new, _ in pairs}
    if drop_columns:
        frame = frame.drop(columns=drop_columns)
    frame.columns = [n for i, n in enumerate(names) if i not in set(drop_columns)]
    empty_rows = _empty_rows(frame)
    dropped_rows = int(empty_rows.sum())
    if dropped_rows:
        had_missing = frame.isna().any()
        frame = frame.loc[~empty_rows].reset_index(drop=True)
        if fmt != "parquet":  # the empty rows alone made whole-number columns decimal: undo that
            for column in frame.columns:
                series = frame[column]
                if had_missing[column] and pd.api.types.is_float_dtype(series) and len(series) and _all_integral(series):
                    frame[column] = series.astype("int64")
    lines = raw.dropped_lines + dropped_rows
    if lines or drop_columns:
        unit = "line" if fmt == "csv" else "row"
        parts = []
        if lines:
            parts.append(f"{lines:,} empty {unit}{'' if lines == 1 else 's'}")
        if drop_columns:
            k = len(drop_columns)
            parts.append(f"{k} unnamed empty column{'' if k == 1 else 's'}")
        notes.append(f"Dropped {' and '.join(parts)}.")
    return frame, renamed, notes + [note for _, note in pairs], lines, dropped_names


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


# --- dates written day/month/year ---------------------------------------------------------------

DAY_FIRST = "day-first"
MONTH_FIRST = "month-first"
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
# 10/03/2004, 10-03-04, 10.03.2004 18.00.00, 3/10/2004 6:30 PM is not read (kept as text)
_DMY_PATTERN = (
    r"^\s*(?P<a>\d{1,2})(?P<s1>[/.-])(?P<b>\d{1,2})(?P<s2>[/.-])(?P<y>\d{4}|\d{2})"
    r"(?:(?:[ T]+|,\s*)(?P<H>\d{1,2})[:.](?P<M>\d{2})(?:[:.](?P<S>\d{2})(?:[.,](?P<f>\d{1,6}))?)?)?\s*$"
)
_DMY = re.compile(_DMY_PATTERN)
_TIME_NAME = re.compile(r"time|hour|hora|heure|zeit|uhr|ora\b", re.IGNORECASE)
_DATE_NAME = re.compile(r"date|day|data|fecha|datum|jour|dia", re.IGNORECASE)


@dataclass(frozen=True)
class DateOrder:
    """How a column of dates written with two small numbers and a year (``10/03/2004``) was read."""

    column: str
    order: str  # DAY_FIRST or MONTH_FIRST
    ambiguous: bool  # every value reads both ways: the order was chosen, not seen in the values
    reason: str  # why this order, in plain words
    example: str  # one value as the file writes it
    example_read: str  # that value as read, e.g. "10 March 2004"
    count: int  # dates read
    first: str  # the earliest and the latest date as read, e.g. "10 March 2004"
    last: str

    @property
    def other_order(self) -> str:
        return MONTH_FIRST if self.order == DAY_FIRST else DAY_FIRST

    @property
    def can_switch(self) -> bool:
        """Only when every date reads both ways can the other order be chosen."""
        return self.ambiguous

    def describe(self) -> str:
        """One paragraph for the Data page."""
        return (
            f"Dates in '{self.column}' were read {self.order}: {self.example} is {self.example_read}. "
            f"They run from {self.first} to {self.last} ({self.count:,} row{'' if self.count == 1 else 's'}). {self.reason}"
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DateOrder:
        return cls(**data)


def _human_date(stamp: pd.Timestamp) -> str:
    text = f"{stamp.day} {_MONTHS[stamp.month - 1]} {stamp.year}"
    if stamp != stamp.normalize():
        text += f" {stamp:%H:%M}" + (f":{stamp:%S}" if stamp.second else "")
    return text


@dataclass(frozen=True)
class _DateParts:
    """The numbers in the distinct values of a text column of dates like ``10/03/2004``; ``codes``
    maps each row with a value (``index``) to its distinct value, so each is read only once."""

    index: pd.Index
    codes: np.ndarray
    raw: np.ndarray  # the distinct values as written, trimmed
    a: np.ndarray  # first number
    b: np.ndarray  # second number
    year: np.ndarray  # with two-digit years completed as strptime's %y does (69-99 -> 19xx)
    year_written: np.ndarray
    hour: np.ndarray
    minute: np.ndarray
    second: np.ndarray
    micro: np.ndarray
    dotted_short: bool  # every value written 10.03.04 (like a time of day)

    def valid(self, order: str) -> np.ndarray:
        day, month = (self.a, self.b) if order == DAY_FIRST else (self.b, self.a)
        leap = (self.year % 4 == 0) & ((self.year % 100 != 0) | (self.year % 400 == 0))
        limit = _DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + ((month == 2) & leap)
        return (month >= 1) & (month <= 12) & (day >= 1) & (day <= limit)

    def stamps(self, order: str) -> np.ndarray:
        """The distinct values as datetime64[ns] read in ``order`` (only meaningful where valid)."""
        day, month = (self.a, self.b) if order == DAY_FIRST else (self.b, self.a)
        months = (self.year - 1970) * 12 + np.clip(month, 1, 12) - 1
        days = months.astype("datetime64[M]").astype("datetime64[D]") + (np.maximum(day, 1) - 1).astype("timedelta64[D]")
        micros = ((self.hour * 60 + self.minute) * 60 + self.second) * 1_000_000 + self.micro
        return days.astype("datetime64[ns]") + micros.astype("timedelta64[us]")

    def row_stamps(self, order: str) -> np.ndarray:
        return self.stamps(order)[self.codes]


def _date_parts(values: pd.Series) -> _DateParts | None:
    """The numbers of every non-missing value written like ``10/03/2004`` (optionally with a time),
    or None when some value is not written so (the column is then not this kind of date)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = values.dropna()
    if text.empty or pd.api.types.infer_dtype(text, skipna=True) != "string":
        return None
    if not text.iloc[:200].str.match(_DMY).all():  # a cheap look before reading the whole column
        return None
    codes, uniques = pd.factorize(text)
    found = pc.extract_regex(pa.array(np.asarray(uniques, dtype=object), type=pa.string()), _DMY_PATTERN)
    if found.null_count:
        return None
    if not pc.all(pc.equal(found.field("s1"), found.field("s2"))).as_py():
        return None  # 10/03-2004 is not a date

    def number(name: str, width: int = 0) -> np.ndarray:
        column = found.field(name)
        if width:
            column = pc.utf8_rpad(column, width=width, padding="0")  # .5 seconds = 500000 microseconds
        column = pc.if_else(pc.equal(pc.utf8_length(column), 0), "0", column)
        return pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)

    written = number("y")
    short = pc.equal(pc.utf8_length(found.field("y")), 2).to_numpy(zero_copy_only=False)
    year = np.where(short, np.where(written < 69, 2000 + written, 1900 + written), written)
    dotted = pc.equal(found.field("s1"), ".").to_numpy(zero_copy_only=False)
    return _DateParts(
        index=text.index, codes=codes, raw=np.array([str(u).strip() for u in uniques], dtype=object),
        a=number("a"), b=number("b"), year=year, year_written=written, hour=number("H"), minute=number("M"),
        second=number("S"), micro=number("f", 6), dotted_short=bool((dotted & short).all()),
    )


def detect_date_order(values: pd.Series, *, prefer_day_first: bool = False) -> DateOrder | None:
    """How to read a column of dates like ``10/03/2004``, told from the whole column, never value by
    value: a value whose first number is over 12 makes the column day-first, one whose second number
    is over 12 month-first. When every value reads both ways, the order that puts the rows in date
    order (or else keeps neighbouring rows closer in time) is chosen, and failing that day-first for
    files written the continental-European way (``prefer_day_first``) and month-first otherwise; the
    result then says it is ambiguous. None when the column is not such dates (times of day such as
    ``18.00.00`` are not), or when no single order reads every value (the column is then kept as text)."""
    return _detect_dates(values, prefer_day_first)[0]


def _detect_dates(values: pd.Series, prefer_day_first: bool) -> tuple[DateOrder | None, bool, _DateParts | None]:
    """(the order or None; whether the column looks like dates that no single order reads; the parts)."""
    parts = _date_parts(values)
    if parts is None:
        return None, False, None
    name = str(values.name or "")
    if not ((parts.hour <= 23) & (parts.minute <= 59) & (parts.second <= 59)).all():
        return None, True, None
    time_of_day = parts.dotted_short and bool(((parts.a <= 23) & (parts.b <= 59) & (parts.year_written <= 59)).all())
    if time_of_day and _TIME_NAME.search(name) and not _DATE_NAME.search(name):
        return None, False, None  # 10.03.04 in a column called Time is a time of day, not 10 March 2004
    ok = {DAY_FIRST: parts.valid(DAY_FIRST), MONTH_FIRST: parts.valid(MONTH_FIRST) & (not parts.dotted_short)}
    fits = {order: bool(valid.all()) for order, valid in ok.items()}  # nobody writes 10.30.15 month-first
    if not any(fits.values()):
        return None, not time_of_day, None  # 18.00.00 is a time of day: no need to say it is not a date
    if fits[DAY_FIRST] != fits[MONTH_FIRST]:
        order = DAY_FIRST if fits[DAY_FIRST] else MONTH_FIRST
        other = MONTH_FIRST if order == DAY_FIRST else DAY_FIRST
        witness = int(np.flatnonzero(~ok[other])[0])  # distinct values come in the order of the rows
        number = int(parts.a[witness] if order == DAY_FIRST else parts.b[witness])
        example = parts.raw[witness]
        reason = f"Some dates, such as {example}, can only be read {order} ({number} cannot be a month)."
        return _date_order(values, parts, order, ambiguous=False, reason=reason, example=witness), False, parts
    rows = {order: parts.row_stamps(order) for order in ok}
    steps = {order: np.diff(stamps.astype("int64")) for order, stamps in rows.items()}
    monotone = {order: bool(len(d) and ((d >= 0).all() or (d <= 0).all())) for order, d in steps.items()}
    either = "Every date in this column could be read either way"
    if monotone[DAY_FIRST] != monotone[MONTH_FIRST]:
        order = DAY_FIRST if monotone[DAY_FIRST] else MONTH_FIRST
        other = MONTH_FIRST if order == DAY_FIRST else DAY_FIRST
        reason = f"{either}; read {order}, the rows are in date order (read {other}, they would jump back and forth)."
    else:
        travel = {order: float(np.abs(d.astype("float64")).sum()) for order, d in steps.items()}
        low, high = sorted(travel.values())
        if high > 0 and low <= 0.5 * high:
            order = min(travel, key=travel.get)
            reason = f"{either}; read {order}, neighbouring rows are closer in time."
        elif prefer_day_first:
            order = DAY_FIRST
            reason = (f"{either} and nothing in the file tells which; day-first was chosen because the file "
                      "uses semicolons or decimal commas, as where the day is written first. Check the dates.")
        else:
            order = MONTH_FIRST
            reason = f"{either} and nothing in the file tells which; month-first (as in the US) was chosen. Check the dates."
    return _date_order(values, parts, order, ambiguous=True, reason=reason, example=0), False, parts


def _date_order(values: pd.Series, parts: _DateParts, order: str, *, ambiguous: bool, reason: str, example: int) -> DateOrder:
    stamps = parts.stamps(order)
    return DateOrder(
        column=str(values.name), order=order, ambiguous=ambiguous, reason=reason, example=parts.raw[example],
        example_read=_human_date(pd.Timestamp(stamps[example])), count=len(parts.codes),
        first=_human_date(pd.Timestamp(stamps.min())), last=_human_date(pd.Timestamp(stamps.max())),
    )


def parse_dates(values: pd.Series, order: str) -> pd.Series:
    """The column as datetimes, every value read in the same ``order``; missing values stay missing.
    Raises a :class:`BadInputError` when a value is not a date in that order."""
    parts = _date_parts(values)
    if parts is None:
        raise BadInputError(f"Column '{values.name}' does not hold dates written like 10/03/2004.")
    return _parse(values, parts, order)


def _parse(values: pd.Series, parts: _DateParts, order: str) -> pd.Series:
    bad = ~parts.valid(order)
    if bad.any():
        raise BadInputError(
            f"Column '{values.name}' cannot be read {order}: {parts.raw[np.flatnonzero(bad)[0]]} is not a date that way."
        )
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]", name=values.name)
    out.loc[parts.index] = parts.row_stamps(order)
    return out


def switch_date_order(frame: pd.DataFrame, date: DateOrder) -> tuple[pd.DataFrame, DateOrder]:
    """The table with the column ``date`` describes read in the other order (day and month swapped,
    times kept), and the new description. Only possible when every date reads both ways."""
    column = date.column
    if column not in frame.columns or not pd.api.types.is_datetime64_any_dtype(frame[column]):
        raise BadInputError(f"The table has no date column '{column}' to read the other way.")
    stamps = frame[column]
    known = stamps.dropna()
    if not date.can_switch or (known.dt.day > 12).any():
        raise BadInputError(
            f"The dates in '{column}' can only be read {date.order}: some of them have a day over 12."
        )
    swapped = pd.to_datetime(pd.DataFrame({"year": known.dt.year, "month": known.dt.day, "day": known.dt.month}))
    swapped = swapped + (known - known.dt.normalize())
    out = frame.copy()
    new = pd.Series(pd.NaT, index=frame.index, dtype=stamps.dtype, name=column)
    new.loc[known.index] = swapped.to_numpy()
    out[column] = new
    other = date.other_order
    example = _date_parts(pd.Series([date.example]))
    described = DateOrder(
        column=column, order=other, ambiguous=True,
        reason=f"Every date in this column could be read either way; you chose {other}.",
        example=date.example,
        example_read=_human_date(pd.Timestamp(example.stamps(other)[0])) if example is not None else "",
        count=int(known.size), first=_human_date(swapped.min()), last=_human_date(swapped.max()),
    )
    return out, described


def _read_dates(frame: pd.DataFrame, *, prefer_day_first: bool) -> tuple[pd.DataFrame, tuple[DateOrder, ...], list[str]]:
    """Text columns of dates like ``10/03/2004`` become datetimes, each column read in one order.
    ISO dates (2004-03-10) are unambiguous and stay as they are."""
    orders: list[DateOrder] = []
    notes: list[str] = []
    for column in frame.columns:
        series = frame[column]
        if series.dtype != object and not pd.api.types.is_string_dtype(series):
            continue
        order, unreadable, parts = _detect_dates(series, prefer_day_first)
        if order is None:
            if unreadable:
                notes.append(
                    f"Column '{column}' looks like dates, but no single reading (day-first or month-first) fits "
                    "them all: some are written the other way round or are not real dates. It is kept as text."
                )
            continue
        frame[column] = _parse(series, parts, order.order)
        orders.append(order)
    return frame, tuple(orders), notes


def _text_dates(values: pd.Series) -> pd.Series:
    """Text dates as datetimes for the profile: a day/month column in its one order, anything else
    as pandas reads it."""
    order = detect_date_order(values)
    if order is not None:
        return parse_dates(values, order.order)
    return pd.to_datetime(values, errors="coerce", format="mixed")


# --- codes for missing values -------------------------------------------------------------------

# Numbers that files use for "no measurement" when they have no way to leave a cell empty.
SENTINEL_CODES = (-99999.0, -9999.0, -999.0, -200.0, -99.0, 999.0, 9999.0, 99999.0, 999999.0)
SENTINEL_MIN_ROWS = 3  # a code repeats; a single -999 may be a real value
_SENTINEL_MIN_OTHERS = 5  # enough other values to say what the column's range is
_SENTINEL_IQRS = 3.0  # how far beyond the other values' range, in interquartile ranges of those values


@dataclass(frozen=True)
class Sentinel:
    """A number that looks like a code for a missing value in one column, not a measurement."""

    column: str
    value: float
    rows: int  # rows holding the value
    others_min: float  # the range of the column's other values
    others_max: float
    side: str  # "below" or "above" the other values

    def describe(self) -> str:
        return (
            f"{format_number(self.value)} appears in {self.rows:,} row{'' if self.rows == 1 else 's'} of "
            f"'{self.column}', far {self.side} its other values ({format_number(self.others_min)} to "
            f"{format_number(self.others_max)})."
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Sentinel:
        return cls(**data)


def find_sentinels(frame: pd.DataFrame) -> tuple[Sentinel, ...]:
    """Numeric columns where a common code for "missing" (-200, -999, 9999, ...) repeats (at least
    ``SENTINEL_MIN_ROWS`` rows) and lies outside the range of the column's other values, far from them:
    more than 3 of their interquartile ranges away, or a negative code in a column whose other values
    are never negative. A value among its neighbours (999 in a column running from 900 to 1,100) or a
    0/1 column is never flagged. Nothing is changed; :func:`treat_as_missing` applies the findings."""
    found: list[Sentinel] = []
    for column in frame.columns:
        series = frame[column]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        values = values[np.isfinite(values)]
        if len(values) < SENTINEL_MIN_ROWS + _SENTINEL_MIN_OTHERS:
            continue
        counts = {code: int((values == code).sum()) for code in SENTINEL_CODES}
        codes = [code for code, n in counts.items() if n >= SENTINEL_MIN_ROWS]
        if not codes:
            continue
        others = values[~np.isin(values, codes)]
        if len(others) < _SENTINEL_MIN_OTHERS:
            continue
        low, q1, median, q3, high = np.quantile(others, [0.0, 0.25, 0.5, 0.75, 1.0])
        spread = q3 - q1 or high - low or max(abs(median), 1.0)
        for code in codes:
            if code < low:
                far = low - code >= _SENTINEL_IQRS * spread or code < 0 <= low
                side = "below"
            elif code > high:
                far = code - high >= _SENTINEL_IQRS * spread
                side = "above"
            else:
                continue
            if far:
                found.append(Sentinel(str(column), float(code), counts[code], float(low), float(high), side))
    return tuple(found)


def treat_as_missing(frame: pd.DataFrame, sentinels: tuple[Sentinel, ...] | list[Sentinel]) -> tuple[pd.DataFrame, tuple[Sentinel, ...]]:
    """A copy of the table where each sentinel's value is missing in its column, and the sentinels
    with the number of rows actually changed."""
    out = frame.copy()
    applied = []
    for sentinel in sentinels:
        if sentinel.column not in out.columns:
            raise BadInputError(f"The table has no column '{sentinel.column}'.")
        series = out[sentinel.column]
        hit = (series == sentinel.value).fillna(False).to_numpy(dtype=bool)
        if pd.api.types.is_integer_dtype(series):
            series = series.astype("float64")  # whole numbers with gaps are kept as decimals
        out[sentinel.column] = series.mask(hit)
        applied.append(Sentinel(sentinel.column, sentinel.value, int(hit.sum()), sentinel.others_min,
                                sentinel.others_max, sentinel.side))
    return out, tuple(applied)


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
        parsed = values if pd.api.types.is_datetime64_any_dtype(values) else _text_dates(values)
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
