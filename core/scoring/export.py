"""Scored outputs for people: a preview of the first rows, and the whole output written as parquet
or CSV batch by batch, with text a spreadsheet would run as a formula neutralised."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.scoring.inputs import BATCH_ROWS
from core.scoring.memory import free_at_once, release_unused

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A cell that starts a formula at its start or after any line break (what str.splitlines splits on).
_RISKY = re.compile(r"(?:^|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029])[=+\-@\t\r]")


def preview(output: Path, rows: int = 100) -> pd.DataFrame:
    """The first ``rows`` of a scored output, read without loading the rest, the prediction and
    probability columns first (what people look for)."""
    import pyarrow.parquet as pq

    head = next(pq.ParquetFile(output).iter_batches(batch_size=rows)).to_pandas()
    made = [c for c in head.columns if c == "prediction" or str(c).startswith("proba_")]
    return head[made + [c for c in head.columns if c not in made]]


def csv_copy(output: Path) -> Path:
    """The CSV twin of a scored parquet output, written next to it the first time it is asked for."""
    target = Path(output).with_suffix(".csv")
    if not target.is_file():
        export(Path(output), target, "csv")
    return target


def check_destination(destination: Path, flag: str = "--output", inputs: tuple[Path, ...] = ()) -> Path:
    """Refuse, before any work, an output path nothing can be written to (a folder, or a path
    inside a file) or one that is the same file as an input (writing it would replace the input)."""
    from core.errors import BadInputError

    destination = Path(destination)
    if destination.is_dir():
        raise BadInputError(f"{flag} '{destination}' is a folder. Give a file name inside it, ending in .parquet or .csv.")
    for parent in destination.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BadInputError(f"{flag} '{destination}' cannot be written: '{parent}' is a file, not a folder. "
                                    "Choose a path inside a folder.")
            break
    for source in inputs:
        source = Path(source)
        same = (destination.resolve() == source.resolve()
                or (destination.exists() and source.exists() and os.path.samefile(destination, source)))
        if same:
            raise BadInputError(f"{flag} '{destination}' is the input file itself; writing there would replace the input. "
                                "Choose another file name.")
    return destination


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
            free_at_once()
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
                    release_unused()
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
