"""Read CSV / parquet / Excel into a frame the rest of ``core`` can trust, infer column kinds,
profile columns, and hash tables by content.

The format is sniffed from the bytes, never trusted from the file name: a PNG called ``.csv``
is refused as a PNG. Every refusal is a :class:`~core.errors.BadInputError` whose message says
what is wrong and what to do.

CSV is read in blocks and never held whole, neither as text nor as a pandas frame: a first pass
over the file decides each column's type (and how its dates are written), a second converts the
blocks and hands them to a sink, either a parquet file (:func:`read_table_to_parquet`, which the
table store uses) or a frame (:func:`read_table`). Excel workbooks are checked before they are
opened (how far they expand, how tightly they are packed, how many cells they span), because the
Excel reader holds the whole sheet in memory.
"""

from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import re
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

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


@dataclass(frozen=True)
class TableFile:
    """A table read from a file and written to parquet as it was read: only this description is in
    memory. ``digest`` is :func:`table_digest` of the table written (the frame :func:`read_table`
    would give for the same file)."""

    path: Path
    digest: str
    rows: int
    columns: int
    format: str
    notes: tuple[str, ...] = ()
    renamed_columns: dict[str, str] = field(default_factory=dict)
    dates: tuple[DateOrder, ...] = ()
    sentinels: tuple[Sentinel, ...] = ()
    dropped_rows: int = 0
    dropped_columns: tuple[str, ...] = ()


def read_table(data: bytes, name: str = "file", *, max_bytes: int | None = None) -> ReadResult:
    """Read the bytes of an uploaded file into a checked frame.

    Raises a :class:`BadInputError` subclass for anything that is not a usable table; any
    unexpected failure of the underlying readers is wrapped into one with the reason.
    """
    return _read(_Source(data=data), name, max_bytes)


def read_table_file(path: str | Path, *, max_bytes: int | None = None) -> ReadResult:
    """Read a table from a file on disk (the CLI and the demo use this); a CSV file is read in
    blocks, never whole."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"There is no file at '{path}'. Check the path and try again.")
    return _read(_Source(path=path), path.name, max_bytes)


def read_table_to_parquet(source: bytes | Path, name: str, destination: Path, *,
                          max_bytes: int | None = None) -> TableFile:
    """Read a file (its bytes, or a path) and write the table to ``destination`` as parquet.

    A CSV file goes through memory one block at a time (peak memory stays a small multiple of the
    block size, whatever the file's size); parquet and Excel files are read whole first. On any
    refusal or failure ``destination`` may hold a partial file: the caller writes to a temporary
    name and deletes it (see :meth:`core.tables.TableStore.ingest`)."""
    src = _Source(path=Path(source)) if isinstance(source, Path) else _Source(data=source)
    try:
        fmt, src = _check_source(src, name, max_bytes)
        if fmt == "csv":
            sink = _ParquetSink(destination)
            meta = _read_csv(src, name, sink)
            return TableFile(path=destination, digest=meta.digest, rows=meta.rows, columns=meta.columns,
                             **meta.described())
        result = _read_whole(src, name, fmt)
        result.frame.to_parquet(destination, index=False)
    except (StudioError, OSError):  # a refusal, or the disk: not a problem of the file
        raise
    except Exception as exc:  # a reader failed in a way we did not foresee: say so, keep the cause
        raise _unexpected(name, exc) from exc
    frame = result.frame
    return TableFile(
        path=destination, digest=table_digest(frame), rows=int(frame.shape[0]), columns=int(frame.shape[1]),
        format=result.format, notes=result.notes, renamed_columns=result.renamed_columns, dates=result.dates,
        sentinels=result.sentinels, dropped_rows=result.dropped_rows, dropped_columns=result.dropped_columns,
    )


def _read(src: _Source, name: str, max_bytes: int | None) -> ReadResult:
    try:
        fmt, src = _check_source(src, name, max_bytes)
        if fmt == "csv":
            sink = _FrameSink()
            meta = _read_csv(src, name, sink)
            return ReadResult(frame=sink.frame, **meta.described())
        return _read_whole(src, name, fmt)
    except StudioError:
        raise
    except Exception as exc:  # a reader failed in a way we did not foresee: say so, keep the cause
        raise _unexpected(name, exc) from exc


def _unexpected(name: str, exc: Exception) -> BadInputError:
    return BadInputError(
        f"'{name}' could not be read as a table ({type(exc).__name__}: {exc}). "
        "Check that it is a CSV, parquet or Excel file and try again."
    )


def _check_source(src: _Source, name: str, max_bytes: int | None) -> tuple[str, _Source]:
    """The format of a file, after its size and emptiness are checked, before anything is parsed;
    parquet and Excel files on disk are read into memory here (their readers need the whole file)."""
    if max_bytes is not None and src.size > max_bytes:
        raise FileTooLargeError(
            f"'{name}' is {_size(src.size)}, over the upload limit of {_size(max_bytes)}. "
            "Put the file in the studio's data folder or split it, then try again."
        )
    head = src.head(65536)
    if not head.strip() and src.size <= len(head):
        raise EmptyTableError(f"'{name}' is empty. Choose a file that holds a table with a header row.")
    if head.startswith(PARQUET_MAGIC) or head.startswith(ZIP_MAGIC):
        if src.data is None:
            src = _Source(data=src.path.read_bytes())
        return sniff_format(src.data, name), src
    return sniff_format(head, name), src


def _read_whole(src: _Source, name: str, fmt: str) -> ReadResult:
    """Parquet and Excel: the file is read whole, then tidied as a frame."""
    raw = _read_parquet(src.data, name) if fmt == "parquet" else _read_excel(src.data, name)
    frame, renamed, notes, dropped_rows, dropped_columns = _tidy(raw, fmt)
    frame, more_notes = _normalise(frame)
    frame, dates, date_notes = _read_dates(frame, prefer_day_first=raw.day_first_hint)
    sentinels = find_sentinels(frame)
    _refuse_empty(name, list(frame.columns), len(frame))
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


def _refuse_empty(name: str, columns: list[str], rows: int) -> None:
    if not columns:
        raise EmptyTableError(f"'{name}' has no columns. Choose a file that holds a table with a header row.")
    if rows == 0:
        shown = ", ".join(map(str, columns[:8])) + (", ..." if len(columns) > 8 else "")
        raise EmptyTableError(
            f"'{name}' has column names ({shown}) but no rows. Choose a file with data below the header."
        )


def sniff_format(data: bytes, name: str = "file") -> str:
    """Tell the format from the content: ``parquet``, ``excel`` or ``csv``; refuse the rest.

    ``data`` may be only the head of a text file; parquet and Excel need the whole file."""
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
    if _bom(data) is not None or _utf16_without_bom(data[:4096]) is not None:
        return "csv"  # UTF-16 text has a zero byte in every ASCII character: it is not binary
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


class _Source:
    """The bytes of an upload or a file on disk, read as often as needed without another copy."""

    def __init__(self, data: bytes | None = None, path: Path | None = None) -> None:
        self.data, self.path = data, path
        self.size = len(data) if data is not None else path.stat().st_size

    def head(self, n: int) -> bytes:
        return self.read_at(0, n)

    def read_at(self, offset: int, n: int) -> bytes:
        if self.data is not None:
            return self.data[offset: offset + n]
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(n)

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data) if self.data is not None else open(self.path, "rb")  # noqa: SIM115

    def arrow(self):
        import pyarrow as pa

        return pa.BufferReader(self.data) if self.data is not None else pa.OSFile(str(self.path))

    def chunks(self, size: int = 2 << 20) -> Iterator[bytes]:
        with self.open() as f:
            while chunk := f.read(size):
                yield chunk


# --- text encodings ---------------------------------------------------------------------------

_BOMS = (  # the UTF-32 little-endian mark starts like UTF-16's: look for it first
    (b"\xff\xfe\x00\x00", "utf-32", "UTF-32"),
    (b"\x00\x00\xfe\xff", "utf-32", "UTF-32"),
    (b"\xef\xbb\xbf", "utf-8-sig", "UTF-8"),
    (b"\xff\xfe", "utf-16", "UTF-16"),
    (b"\xfe\xff", "utf-16", "UTF-16"),
)


@dataclass(frozen=True)
class TextEncoding:
    codec: str  # a Python codec name (pandas and pyarrow take it too)
    label: str  # for people: "UTF-16", "Shift-JIS (Japanese)"

    def note(self) -> str | None:
        if self.codec == "utf-8-sig":
            return None
        if self.label == "UTF-16":
            return "The file is UTF-16 text (as Excel saves \"Unicode text\"), not UTF-8; it was read as UTF-16."
        if self.label.startswith("UTF-"):
            return f"The file is {self.label} text, not UTF-8; it was read as {self.label}."
        return f"The file is not UTF-8; it was read as {self.label} text."


UTF8 = TextEncoding("utf-8-sig", "UTF-8")

# The encodings that non-UTF-8 CSV exports come in, most common first (the order breaks ties):
# (Python codec, name for people, family, Unicode scripts its letters belong to).
_LEGACY_ENCODINGS = (
    ("cp1252", "Windows-1252 / Latin-1", "latin", ("LATIN",)),
    ("cp1250", "Windows-1250 (Central European)", "latin", ("LATIN",)),
    ("cp1254", "Windows-1254 (Turkish)", "latin", ("LATIN",)),
    ("cp1257", "Windows-1257 (Baltic)", "latin", ("LATIN",)),
    ("cp932", "Shift-JIS (Japanese)", "japanese", ("CJK", "HIRAGANA", "KATAKANA", "HALFWIDTH", "FULLWIDTH")),
    ("euc_jp", "EUC-JP (Japanese)", "japanese", ("CJK", "HIRAGANA", "KATAKANA", "HALFWIDTH", "FULLWIDTH")),
    ("gbk", "GBK (Simplified Chinese)", "chinese-simplified", ("CJK", "FULLWIDTH")),
    ("big5", "Big5 (Traditional Chinese)", "chinese-traditional", ("CJK", "FULLWIDTH")),
    ("cp949", "EUC-KR (Korean)", "korean", ("HANGUL", "CJK", "FULLWIDTH")),
    ("cp1251", "Windows-1251 (Cyrillic)", "cyrillic", ("CYRILLIC",)),
    ("koi8_r", "KOI8-R (Cyrillic)", "cyrillic", ("CYRILLIC",)),
    ("cp1253", "Windows-1253 (Greek)", "greek", ("GREEK",)),
    ("cp1255", "Windows-1255 (Hebrew)", "hebrew", ("HEBREW",)),
    ("cp1256", "Windows-1256 (Arabic)", "arabic", ("ARABIC",)),
    ("cp874", "Windows-874 (Thai)", "thai", ("THAI",)),
    ("latin-1", "Latin-1", "latin", ("LATIN",)),  # decodes any byte: only when Windows-1252 cannot
)
_TRIED = ("UTF-8, UTF-16 and the usual Western, Central European, Turkish, Baltic, Cyrillic, Greek, Hebrew, "
          "Arabic, Thai, Japanese, Chinese and Korean encodings")
_PLAUSIBLE = 0.9  # share of the non-ASCII characters that must read as real text
_WORD = re.compile(r"[^\W\d_]+")
_FINE_SYMBOLS = set("°±×÷²³¹µ¼½¾§©®™€£¥¢¤‰¶·")


def _bom(data: bytes) -> TextEncoding | None:
    for mark, codec, label in _BOMS:
        if data.startswith(mark):
            return TextEncoding(codec, label)
    return None


def _utf16_without_bom(head: bytes) -> TextEncoding | None:
    """UTF-16 text without a byte-order mark: mostly ASCII characters, so one byte of each pair is zero."""
    pairs = len(head) // 2
    if pairs < 8 or b"\x00" not in head:
        return None
    even, odd = head[0: pairs * 2: 2].count(0), head[1: pairs * 2: 2].count(0)
    if odd >= 0.7 * pairs and even <= 0.02 * pairs:
        codec = "utf-16-le"
    elif even >= 0.7 * pairs and odd <= 0.02 * pairs:
        codec = "utf-16-be"
    else:
        return None
    # little-endian 16-bit numbers have the same pattern: only text has lines of printable characters
    text = head[: pairs * 2].decode(codec, "replace")
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return TextEncoding(codec, "UTF-16") if "\n" in text and printable >= 0.95 * len(text) else None


def _first_undecodable(src: _Source, codec: str) -> int | None:
    """The offset of the first byte the codec cannot decode (about), or None when it decodes the
    whole file; the file is decoded in chunks, never whole."""
    decoder = codecs.getincrementaldecoder(codec)("strict")
    offset = 0
    try:
        for chunk in src.chunks():
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return max(0, offset + exc.start - len(decoder.getstate()[0]))
            offset += len(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return max(0, src.size - 4)
    return None


def _detect_encoding(src: _Source, name: str = "file") -> TextEncoding:
    """How the text of a file is encoded: its byte-order mark (UTF-8, UTF-16, UTF-32), else UTF-8
    when every byte decodes as such, else the legacy encoding whose reading looks like real text
    (see :func:`_plausibility`; charset-normalizer decides between encodings of different
    alphabets that read equally well). Whatever is chosen must decode the whole file. Refused
    rather than guessed when nothing reads cleanly or two alphabets do equally well: a wrong
    guess would store mojibake."""
    head = src.head(65536)
    declared = _bom(head) or _utf16_without_bom(head[:4096])
    if declared is not None:
        bad = _first_undecodable(src, declared.codec)
        if bad is not None:
            raise BadInputError(
                f"'{name}' starts like {declared.label} text, but the bytes near position {bad:,} are not "
                f"{declared.label}: the file mixes encodings or is damaged. Save it again as CSV UTF-8 and upload that."
            )
        return declared
    bad = _first_undecodable(src, "utf-8")
    if bad is None:
        return UTF8
    sample = _lines_around(src, 0) + _lines_around(src, bad)
    first_bad = bad
    failed: set[str] = set()
    while True:
        choice = _guess_legacy(sample, failed, name)
        if choice.codec in _SINGLE_BYTE_LATIN and _holds_utf8(sample):
            raise BadInputError(
                f"'{name}' mixes encodings: its accented text is mostly UTF-8, but the bytes near position {first_bad:,} "
                "are not (a part pasted from a file saved another way, for example). Read as one encoding it would be "
                "stored garbled. Save it again as CSV UTF-8 and upload that."
            )
        bad = _first_undecodable(src, choice.codec)
        if bad is None:
            return choice
        failed.add(choice.codec)  # it read the sample but not the whole file: look again with that part too
        sample += _lines_around(src, bad)


_SINGLE_BYTE_LATIN = frozenset(codec for codec, _, family, _ in _LEGACY_ENCODINGS if family == "latin")
# a character of two to four bytes written in UTF-8
_UTF8_CHARACTER = re.compile(rb"[\xC2-\xDF][\x80-\xBF]|[\xE0-\xEF][\x80-\xBF]{2}|[\xF0-\xF4][\x80-\xBF]{3}")


def _holds_utf8(sample: bytes) -> bool:
    """Whether text that is not UTF-8 as a whole holds UTF-8 characters all the same: valid UTF-8
    sequences at least half as many as the other bytes over 127. Text in a Western single-byte
    encoding almost never does (an accented letter is one byte, followed by a plain one), so this
    tells a file pasted together from two encodings, which any single reading would garble."""
    found = _UTF8_CHARACTER.findall(sample)
    if not found:
        return False
    other = sum(1 for b in sample if b >= 0x80) - sum(len(m) for m in found)
    return 2 * len(found) >= other


def _lines_around(src: _Source, offset: int, span: int = 32768) -> bytes:
    """Whole lines of the file around ``offset`` (ASCII-compatible encodings never use byte 10
    inside a character, so cutting at line ends never splits one)."""
    start = max(0, offset - span)
    chunk = src.read_at(start, 2 * span)
    if start > 0:
        chunk = chunk[chunk.find(b"\n") + 1:]
    if start + 2 * span < src.size and b"\n" in chunk:
        chunk = chunk[: chunk.rfind(b"\n") + 1]
    return chunk


def _guess_legacy(sample: bytes, failed: set[str], name: str) -> TextEncoding:
    ascii_ = bytes(range(32, 127)) + b"\t\r\n"
    scored = []
    for position, (codec, label, family, scripts) in enumerate(_LEGACY_ENCODINGS):
        if codec in failed or ascii_.decode(codec) != ascii_.decode("ascii"):
            continue
        try:
            text = sample.decode(codec)
        except UnicodeDecodeError:
            continue
        score = _plausibility(text, codec, frozenset(scripts))
        if score >= _PLAUSIBLE:
            scored.append((-score, position, codec, label, family))
    if not scored:
        raise BadInputError(
            f"'{name}' is not UTF-8 text, and no other encoding reads it as clean text (tried {_TRIED}): "
            "it may mix encodings. Open it in the program that made it and save it as CSV UTF-8, then upload that."
        )
    scored.sort()
    best = -scored[0][0]
    leaders: dict[str, tuple] = {}
    for entry in scored:
        if -entry[0] >= best - 0.02:
            leaders.setdefault(entry[4], entry)  # the best of each family (ties: the most common encoding)
    if len(leaders) == 1:
        _, _, codec, label, _ = next(iter(leaders.values()))
        return TextEncoding(codec, label)
    import charset_normalizer

    candidates = {entry[2]: entry[3] for entry in leaders.values()}
    match = charset_normalizer.from_bytes(sample, cp_isolation=list(candidates)).best()
    if match is not None and match.encoding in candidates:
        return TextEncoding(match.encoding, candidates[match.encoding])
    shown = " and as ".join(candidates.values())
    raise BadInputError(
        f"'{name}' is not UTF-8 text, and it reads equally well as {shown}, so which one is right cannot be told. "
        "Open it in the program that made it and save it as CSV UTF-8, then upload that."
    )


@functools.lru_cache(maxsize=65536)
def _character(ch: str, codec: str, scripts: frozenset[str]) -> str:
    """What a non-ASCII character read with ``codec`` says about the guess: "letter" (of an expected
    script, and common), "mark" (punctuation, spaces, usual symbols) or "odd"."""
    category = unicodedata.category(ch)
    if category[0] == "C" or ch == "\ufffd":
        return "odd"  # control characters, unassigned or private code points: bytes read wrongly
    if category[0] == "L":
        script = unicodedata.name(ch, "?").split()[0]
        return "letter" if script in scripts and not _rare(ch, codec) else "odd"
    if category[0] in "PZ" or category == "Sc" or ch in _FINE_SYMBOLS or 0x3000 <= ord(ch) <= 0x30FF or ord(ch) >= 0xFF00:
        return "mark"
    return "odd"


def _rare(ch: str, codec: str) -> bool:
    """A character that text in this encoding hardly ever holds: CJK characters outside each
    standard's common set (JIS level 1, GB 2312, Big5's frequent characters, KS X 1001). A wrong
    guess among these encodings lands mostly on such characters."""
    name = unicodedata.name(ch, "")
    if not name.startswith(("CJK", "HANGUL")):
        return False
    if codec in ("cp932", "euc_jp"):
        b = ch.encode("cp932", "ignore")
        return len(b) != 2 or not 0x88 <= b[0] <= 0x98
    if codec == "gbk":
        return len(ch.encode("gb2312", "ignore")) != 2
    if codec == "big5":
        b = ch.encode("big5", "ignore")
        return len(b) != 2 or not 0xA4 <= b[0] <= 0xC6
    if codec == "cp949":
        return len(ch.encode("euc_kr", "ignore")) != 2  # Python writes other syllables as 8-byte sequences
    return False


def _plausibility(text: str, codec: str, scripts: frozenset[str]) -> float:
    """The share of the non-ASCII characters of ``text`` that read as real text in this encoding:
    letters of its alphabet, common punctuation. Against them: control characters, odd symbols,
    punctuation inside a word ("£ódŸ"), rare CJK characters, a non-Latin letter inside a Latin word
    ("Montrйal"), a word of 4 or more letters without one ASCII letter when read as Latin (Cyrillic
    read as Western: "Ìîñêâà"), and a lower-case letter followed by a capital in a non-Latin word."""
    positions = [i for i, ch in enumerate(text) if ord(ch) > 127]
    if not positions:
        return 1.0
    odd = set()
    for i in positions:
        kind = _character(text[i], codec, scripts)
        if kind == "odd":
            odd.add(i)
        elif kind == "mark" and 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha() \
                and not 0x3000 <= ord(text[i]) <= 0x30FF and ord(text[i]) < 0xFF00:
            odd.add(i)
    alphabetic = not scripts & {"CJK", "HANGUL"}
    latin = "LATIN" in scripts
    for match in _WORD.finditer(text):
        word = match.group()
        high = [match.start() + k for k, ch in enumerate(word) if ord(ch) > 127]
        if not high:
            continue
        if alphabetic and not latin and (len(high) < len(word) or _camel(word)):
            odd.update(high)
        elif latin and len(word) >= 4 and len(high) == len(word):
            odd.update(high)
        elif not alphabetic and len(high) < len(word):  # half-width katakana glued to Latin letters
            odd.update(p for p in high if unicodedata.name(text[p], "").startswith("HALFWIDTH"))
    return 1.0 - len(odd) / len(positions)


def _camel(word: str) -> bool:
    return any(a.islower() and b.isupper() for a, b in zip(word, word[1:], strict=False))


def _decode_head(src: _Source, encoding: TextEncoding, size: int = 262_144) -> str:
    """The first ``size`` bytes as text, cut after the last complete line (unless that is the whole file)."""
    raw = src.head(size)
    text = codecs.getincrementaldecoder(encoding.codec)("replace").decode(raw, final=len(raw) >= src.size)
    if len(raw) < src.size and "\n" in text:
        text = text[: text.rfind("\n") + 1]
    return text


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


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A parquet file the studio wrote (stored tables, model references, labels) as a frame.

    Through ``ParquetFile`` rather than ``pd.read_parquet``: pandas hands pyarrow an open Python file,
    and pyarrow's dataset reader behind ``read_table`` then leaves read-ahead threads that a process
    ending soon after kills with ``terminate called without an active exception`` (exit 134; a
    quarter of short ``python -c`` runs here, pyarrow 21 to 25). ``ParquetFile`` reads on the calling
    thread's terms and never did, over hundreds of runs."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(str(path)) as parquet:
        return parquet.read(columns=columns, use_pandas_metadata=True).to_pandas()


def _read_parquet(data: bytes, name: str) -> _Raw:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # ParquetFile, not read_table: the dataset reader behind read_table refuses two columns of one
        # name ("Multiple matches for FieldRef"), which is a naming problem, not damage
        table = pq.ParquetFile(io.BytesIO(data)).read()
    except (pa.ArrowException, OSError) as exc:
        raise CorruptFileError(
            f"'{name}' is a damaged parquet file ({exc}). Export it again and re-upload."
        ) from exc
    frame = table.to_pandas()
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()  # a named index (pandas metadata) is data: keep it as columns
    return _Raw(frame, list(frame.columns), [])


# Limits for Excel workbooks, checked before the workbook is opened: the Excel reader (openpyxl) holds
# the whole sheet in memory as Python objects and reads about 2-5 MB of sheet XML a second.
# Real workbooks pack 5 to 20 times (measured: 7 times for 100,000 rows x 10 mixed columns, a 6 MB
# file expanding to 45 MB; 16 times for a sheet of zeros); a "zip bomb" packs about 1,000 times.
XLSX_MAX_EXPANDED_BYTES = 1 << 30  # what the members expand to, all together (the upload limit)
XLSX_MAX_RATIO = 100  # five times what real workbooks reach, a tenth of what a bomb does ...
XLSX_RATIO_FROM_BYTES = 1 << 20  # ... judged for members expanding to 1 MB or more (small ones cannot hurt)
XLSX_MAX_MEMBERS = 10_000  # files inside the archive (a workbook has a few dozen)
# 100,000 rows x 10 columns (1 million cells) took 18 s and 100 MB to read here; ten times that is
# the most read in-process. Larger sheets are saved as CSV, which is read in a streaming way.
XLSX_MAX_CELLS = 10_000_000


def check_workbook(archive: zipfile.ZipFile, name: str = "file") -> None:
    """Refuse a workbook that would expand beyond the limits when opened, from the archive's directory
    alone. The sizes it declares can be trusted: Python's zipfile stops at the declared size and fails
    the checksum of a member that claims less than it holds."""
    infos = archive.infolist()
    if len(infos) > XLSX_MAX_MEMBERS:
        raise BadInputError(
            f"'{name}' holds {len(infos):,} files inside; a workbook holds a few dozen. It was not opened. "
            "Save the sheet as CSV from Excel and upload that."
        )
    total = sum(info.file_size for info in infos)
    if total > XLSX_MAX_EXPANDED_BYTES:
        raise FileTooLargeError(
            f"'{name}' expands to {_size(total)} when opened, over the {_size(XLSX_MAX_EXPANDED_BYTES)} limit for "
            "workbooks: reading it would take more memory than the studio allows. Save the sheet as CSV "
            "(CSV files are read in a streaming way) and upload that."
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= XLSX_RATIO_FROM_BYTES and ratio > XLSX_MAX_RATIO:
            raise BadInputError(
                f"'{name}' is compressed {ratio:,.0f} times ({info.filename} packs {_size(info.file_size)} into "
                f"{_size(info.compress_size)}), which real workbooks never are (they pack 5 to 20 times): it looks "
                "like a file made to exhaust memory and was not opened. If it is a real workbook, save the sheet "
                "as CSV and upload that."
            )


def _too_many_cells(name: str, sheet: str, what: str) -> FileTooLargeError:
    return FileTooLargeError(
        f"'{name}': the sheet '{sheet}' {what}, over the limit of {XLSX_MAX_CELLS:,} cells read from a workbook. "
        "Save the sheet as CSV (CSV files are read in a streaming way) and upload that, or delete the rows and "
        "columns it does not need."
    )


def _read_excel(data: bytes, name: str) -> _Raw:
    import openpyxl
    from pandas.io.parsers import TextParser

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            check_workbook(archive, name)
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    except StudioError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"'{name}' is a damaged Excel workbook ({exc}). Save it again and re-upload.") from exc
    try:
        sheets = book.worksheets
        if not sheets:
            raise EmptyTableError(f"'{name}' has no sheets.")
        sheet = sheets[0]
        rows, columns = sheet.max_row, sheet.max_column  # as the sheet declares them (cheap, may be wrong)
        if rows and columns and rows * columns > XLSX_MAX_CELLS:
            raise _too_many_cells(name, sheet.title, f"spans {rows:,} rows x {columns:,} columns ({rows * columns:,} cells)")
        sheet.reset_dimensions()  # read what the sheet holds, not what it declares (as pandas does)
        try:
            cells = _sheet_cells(sheet, name)
        except StudioError:
            raise
        except Exception as exc:  # XML the reader cannot follow (or forbidden entities: defusedxml)
            raise CorruptFileError(
                f"'{name}' is a damaged Excel workbook ({type(exc).__name__}: {exc}). Save it again and re-upload."
            ) from exc
        notes = []
        if len(sheets) > 1:
            notes.append(f"The workbook has {len(sheets)} sheets; the first one, '{sheet.title}', was read.")
    finally:
        book.close()
    if not cells:
        return _Raw(pd.DataFrame(), [], notes)
    frame = TextParser(cells, header=0, skip_blank_lines=False).read()  # the parsing pandas.read_excel does
    raw = list(cells[0])
    # cells used beyond the header row (even only formatted) make columns without a header
    raw = raw[: frame.shape[1]] + [""] * (frame.shape[1] - len(raw))
    return _Raw(frame, raw, notes)


def _sheet_cells(sheet, name: str) -> list[list[object]]:
    """The sheet's cells as pandas.read_excel takes them (its ``get_sheet_data`` for openpyxl), counting
    the cells as they come: a sheet that declares little but holds a cell in column XFD of every row
    (16,384 cells a row) is stopped after a few hundred rows, not after minutes."""
    from openpyxl.cell.cell import TYPE_ERROR, TYPE_NUMERIC

    data: list[list[object]] = []
    last = -1
    seen = width = 0
    for number, row in enumerate(sheet.rows):
        seen += len(row)
        if seen > XLSX_MAX_CELLS:
            raise _too_many_cells(name, sheet.title, f"holds more than {XLSX_MAX_CELLS:,} cells (counting formatted empty ones)")
        converted: list[object] = []
        for cell in row:
            value = cell.value
            if value is None:
                converted.append("")
            elif cell.data_type == TYPE_ERROR:
                converted.append(np.nan)
            elif cell.data_type == TYPE_NUMERIC:
                whole = int(value)
                converted.append(whole if whole == value else float(value))
            else:
                converted.append(value)
        while converted and converted[-1] == "":
            converted.pop()
        if converted:
            last = number
            width = max(width, len(converted))
            if (last + 1) * width > XLSX_MAX_CELLS:
                raise _too_many_cells(name, sheet.title, f"spans {last + 1:,} rows x {width:,} columns")
        data.append(converted)
    data = data[: last + 1]
    return [row + [""] * (width - len(row)) for row in data]


# --- CSV: dialect ---------------------------------------------------------------------------------


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

    encoding: str  # a Python codec name (pandas and pyarrow take it too)
    delimiter: str
    decimal: str
    thousands: str | None
    header: tuple[str, ...]
    encoding_label: str = "UTF-8"  # the encoding for people

    def notes(self) -> list[str]:
        notes = []
        encoding = TextEncoding(self.encoding, self.encoding_label).note()
        if encoding:
            notes.append(encoding)
        if self.delimiter != ",":
            notes.append(f"Columns are separated by {_DELIMITER_NAMES[self.delimiter]}s.")
        if self.decimal == ",":
            notes.append("Numbers use a decimal comma (1,5 means one and a half).")
        return notes


def sniff_csv(text: str, encoding: str, name: str = "file", *, label: str | None = None) -> CsvDialect:
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
    if label is None:
        label = next((entry[1] for entry in _LEGACY_ENCODINGS if entry[0] == encoding), "UTF-8")
    return CsvDialect(encoding=encoding, delimiter=delimiter, decimal=decimal, thousands=thousands,
                      header=tuple(header), encoding_label=label)


def sniff_csv_file(path: Path) -> CsvDialect:
    """The dialect of a CSV file on disk, from its first 256 KB (the encoding from the whole file)."""
    src = _Source(path=Path(path))
    if not src.head(65536).strip() and src.size <= 65536:
        raise EmptyTableError(f"'{src.path.name}' is empty. Choose a file that holds a table with a header row.")
    encoding = _detect_encoding(src, src.path.name)
    return sniff_csv(_decode_head(src, encoding), encoding.codec, src.path.name, label=encoding.label)


# --- CSV: reading in blocks -----------------------------------------------------------------------

# Sizes measured with benchmarks/ingest.py (peak memory beyond the file, whatever its size: about
# 100 MB). pyarrow parses the file _BLOCK_BYTES at a time and reads some 27 blocks ahead of the one
# handed over (150 MB ahead at 4 MB blocks, 19 MB at 512 KB), so its blocks stay small; they are
# gathered into chunks of _CHUNK_BYTES for the work done on them in Python, each step of which copies
# the chunk's cells (2 MB chunks cost 40 MB more at the peak than 512 KB ones, and saved 20% of the
# time). pyarrow parses on the calling thread: its worker threads made the peak 20-30 MB higher (each
# keeps memory it freed) and were not faster, the work in Python taking most of the time.
_BLOCK_BYTES = 256 << 10
_CHUNK_BYTES = 512 << 10
_MODULE_BLOCK_CELLS = 100_000  # cells per block when Python's csv module reads instead (a Python string each)
_ROW_GROUP_ROWS = 1 << 20  # a parquet row group is written once this many rows ...
_ROW_GROUP_BYTES = 8 << 20  # ... or this many bytes of converted blocks wait in memory
# What pandas.read_csv reads as missing (its default na_values), and as True / False.
_NA_TEXT = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
            "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
_TRUE_TEXT = ("True", "TRUE", "true")
_BOOL_TEXT = _TRUE_TEXT + ("False", "FALSE", "false")
_INT_PATTERN = r"^[+-]?\d+$"
_FLOAT_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|Inf|INF|infinity|Infinity)$"
_LISTED_LINES = 5  # line numbers quoted in a message


class _NeedsCsvModule(Exception):  # noqa: N818  (a signal, not an error)
    """pyarrow's reader cannot read this file as it must be read (rows longer or shorter than the
    header, a space before a quoted value): Python's csv module reads it instead, slower."""


@dataclass
class _Shape:
    """How the rows of a CSV file fit its header (rows are counted by the csv module's reading)."""

    separator_lines: int = 0  # lines holding only separators and spaces, of another length than the header
    short: Counter = field(default_factory=Counter)  # number of fields -> rows with that many (fewer than the header)
    short_lines: list[tuple[int, int]] = field(default_factory=list)  # (line, fields) of the first short rows
    trailing: int = 0  # rows with empty fields beyond the header's, left out
    long: int = 0  # rows with values beyond the header's
    long_lines: list[tuple[int, int]] = field(default_factory=list)

    def add_short(self, line: int, fields: int) -> None:
        self.short[fields] += 1
        if len(self.short_lines) < 1000:
            self.short_lines.append((line, fields))

    def add_long(self, line: int, fields: int) -> None:
        self.long += 1
        if len(self.long_lines) < _LISTED_LINES + 1:
            self.long_lines.append((line, fields))


def _blank_line(text: str, delimiter: str) -> bool:
    return not text.replace(delimiter, "").strip(" \t\r\n\"")


def _arrow_rows(src: _Source, dialect: CsvDialect, shape: _Shape, name: str) -> Iterator[list]:
    """The header (a list of names), then the file in blocks: lists of one pyarrow string array per
    column, cells as written (no missing values yet). Lines of separators only are left out and
    counted; any other row of another length than the header raises :class:`_NeedsCsvModule`."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    def on_invalid(row) -> str:
        if _blank_line(row.text or "", dialect.delimiter):
            shape.separator_lines += 1
            return "skip"
        return "error"

    fields = len(dialect.header)
    chunk_bytes = min(16 * _CHUNK_BYTES, max(_CHUNK_BYTES, fields * 4096))  # wide files: fewer calls per cell
    codec = "utf8" if dialect.encoding in ("utf-8-sig", "utf-8") else dialect.encoding
    try:
        reader = pcsv.open_csv(
            src.arrow(),
            read_options=pcsv.ReadOptions(encoding=codec, block_size=_BLOCK_BYTES, autogenerate_column_names=True,
                                        use_threads=False),
            parse_options=pcsv.ParseOptions(delimiter=dialect.delimiter, quote_char='"', double_quote=True,
                                            newlines_in_values=True, ignore_empty_lines=True,
                                            invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(column_types={f"f{i}": pa.string() for i in range(fields + 8)},
                                                strings_can_be_null=False, quoted_strings_can_be_null=False,
                                                null_values=[], check_utf8=True),
        )
        first = True
        gathered, size = [], 0
        for batch in reader:
            columns = list(batch.columns)
            if first:
                if len(columns) != fields or not len(batch):
                    raise _NeedsCsvModule
                yield [column[0].as_py() for column in columns]
                columns = [column.slice(1) for column in columns]
                first = False
            gathered.append(columns)
            size += batch.nbytes
            if size >= chunk_bytes:
                yield _concat_columns(gathered)
                gathered, size = [], 0
        if gathered:
            yield _concat_columns(gathered)
    except pa.ArrowInvalid as exc:  # a ragged row, or text the parser cannot follow: the csv module says where
        raise _NeedsCsvModule from exc
    except UnicodeDecodeError as exc:
        raise BadInputError(
            f"'{name}' is not {dialect.encoding_label} text throughout ({exc.reason}). "
            "Save it as CSV UTF-8 and upload that."
        ) from exc


def _concat_columns(blocks: list[list]) -> list:
    import pyarrow as pa

    if len(blocks) == 1:
        return blocks[0]
    return [pa.concat_arrays(list(parts)) for parts in zip(*blocks, strict=True)]


def _module_rows(src: _Source, dialect: CsvDialect, shape: _Shape, name: str) -> Iterator[list]:
    """As :func:`_arrow_rows`, read by Python's csv module, which knows the line of every row: short
    rows are padded with empty cells and recorded, empty fields beyond the header's left out, and rows
    with values beyond the header's recorded (the caller refuses the file)."""
    import pyarrow as pa

    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # a long text cell is no error
    fields = None
    rows: list[list[str]] = []
    with io.TextIOWrapper(src.open(), encoding=dialect.encoding, newline="") as text:
        reader = csv.reader(text, delimiter=dialect.delimiter, quotechar='"', doublequote=True,
                            skipinitialspace=True, strict=False)
        try:
            for row in reader:
                if not row:
                    continue
                if fields is None:
                    fields = len(row)
                    yield row
                    continue
                count = len(row)
                if count != fields:
                    if not any(cell.strip() for cell in row):
                        shape.separator_lines += 1
                        continue
                    if count < fields:
                        shape.add_short(reader.line_num, count)
                        row += [""] * (fields - count)
                    elif not any(cell.strip() for cell in row[fields:]):
                        shape.trailing += 1
                        del row[fields:]
                    else:
                        shape.add_long(reader.line_num, count)
                        continue
                rows.append(row)
                if len(rows) * fields >= _MODULE_BLOCK_CELLS:
                    yield [pa.array(column, type=pa.string()) for column in zip(*rows, strict=True)]
                    rows = []
        except csv.Error as exc:
            raise BadInputError(
                f"'{name}' is not a regular table: line {reader.line_num:,}: {exc}. Fix that line and try again."
            ) from exc
        except UnicodeDecodeError as exc:
            raise BadInputError(
                f"'{name}' is not {dialect.encoding_label} text throughout ({exc.reason}). "
                "Save it as CSV UTF-8 and upload that."
            ) from exc
    if rows:
        yield [pa.array(column, type=pa.string()) for column in zip(*rows, strict=True)]


@dataclass
class _Cells:
    """One column of a block: the text as pandas would see it (spaces after the separator skipped),
    trimmed text (for numbers) and where a cell is missing (empty, spaces, or a pandas NA word)."""

    text: object  # pa.Array
    trimmed: object
    missing: object


def _block_cells(columns: list) -> tuple[list[_Cells], int]:
    """The cells of a block without its empty rows, and how many rows were empty."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cells = []
    for column in columns:
        text = pc.utf8_ltrim(column, characters=" ")
        trimmed = pc.utf8_trim_whitespace(text)
        missing = pc.or_(pc.equal(pc.utf8_length(trimmed), 0), pc.is_in(text, value_set=pa.array(_NA_TEXT)))
        cells.append(_Cells(text, trimmed, missing))
    if not cells:
        return cells, 0
    empty = functools.reduce(pc.and_, [c.missing for c in cells])
    dropped = pc.sum(empty).as_py() or 0
    if dropped:
        keep = pc.invert(empty)
        cells = [_Cells(pc.filter(c.text, keep), pc.filter(c.trimmed, keep), pc.filter(c.missing, keep)) for c in cells]
    return cells, dropped


def _number_text(trimmed, dialect: CsvDialect):
    import pyarrow.compute as pc

    if dialect.thousands:
        trimmed = pc.replace_substring(trimmed, dialect.thousands, "")
    if dialect.decimal != ".":
        trimmed = pc.replace_substring(trimmed, dialect.decimal, ".")
    return trimmed


class _ColumnScan:
    """What the first pass learns about one column (on the rows that are not empty): how many cells
    have a value, whether every value is a whole number, a number, True/False, or a date written
    10/03/2004, and how often each code for "missing" (-200, 9999, ...) appears."""

    def __init__(self) -> None:
        self.values = 0
        self.missing = 0
        self.integer = self.number = self.boolean = True
        self.codes: Counter = Counter()
        self.dates = _DateScan()

    def add(self, cells: _Cells, dialect: CsvDialect) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        present = pc.invert(cells.missing)
        values = pc.filter(cells.trimmed, present)
        count = len(values)
        self.values += count
        self.missing += len(cells.missing) - count
        if not count:
            return
        if self.number:
            number = _number_text(values, dialect)
            if self.integer:
                if not pc.all(pc.match_substring_regex(number, _INT_PATTERN)).as_py():
                    self.integer = False
                else:
                    try:
                        pc.cast(pc.utf8_ltrim(number, characters="+"), pa.int64())
                    except pa.ArrowInvalid:  # beyond 64 bits: text, as pandas reads it
                        self.integer = self.number = False
            if self.number and pc.all(pc.match_substring_regex(number, _FLOAT_PATTERN)).as_py():
                floats = pc.cast(number, pa.float64())
                hits = pc.filter(floats, pc.is_in(floats, value_set=pa.array(SENTINEL_CODES)))
                if len(hits):
                    self.codes.update(hits.to_pylist())
            else:
                self.number = self.integer = False
        if self.boolean and not pc.all(pc.is_in(values, value_set=pa.array(_BOOL_TEXT))).as_py():
            self.boolean = False
        if self.dates.possible:
            text = pc.filter(cells.text, present)
            if pc.all(pc.match_substring_regex(text.slice(0, 200), _DMY_PATTERN)).as_py():
                self.dates.add(pd.Series(text.to_numpy(zero_copy_only=False), dtype=object))
            else:
                self.dates.possible = False


@dataclass(frozen=True)
class _CsvColumn:
    """A column kept from the file and how its text becomes values."""

    position: int  # in the file
    name: str
    kind: str  # int, float, bool, bool-missing, datetime, text, empty
    order: str | None = None  # for datetime: DAY_FIRST or MONTH_FIRST

    @property
    def arrow_type(self):
        import pyarrow as pa

        return {"int": pa.int64(), "float": pa.float64(), "empty": pa.float64(), "bool": pa.bool_(),
                "bool-missing": pa.bool_(), "datetime": pa.timestamp("ns"), "text": pa.string()}[self.kind]

    @property
    def dtype(self) -> str:
        """The pandas dtype, as read_csv gives it (the content hash includes it)."""
        return {"int": "int64", "float": "float64", "empty": "float64", "bool": "bool", "bool-missing": "object",
                "datetime": "datetime64[ns]", "text": "object"}[self.kind]

    def convert(self, cells: _Cells, dialect: CsvDialect):
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.kind == "empty":
            return pa.nulls(len(cells.text), pa.float64())
        if self.kind == "int":
            return pc.cast(pc.utf8_ltrim(_number_text(cells.trimmed, dialect), characters="+"), pa.int64())
        if self.kind == "float":
            number = pc.if_else(cells.missing, pa.scalar(None, pa.string()), _number_text(cells.trimmed, dialect))
            return pc.cast(number, pa.float64())
        if self.kind in ("bool", "bool-missing"):
            return pc.if_else(cells.missing, pa.scalar(None, pa.bool_()),
                              pc.is_in(cells.trimmed, value_set=pa.array(_TRUE_TEXT)))
        text = pc.if_else(cells.missing, pa.scalar(None, pa.string()), cells.text)
        if self.kind == "text":
            return text
        values = pd.Series(text.to_numpy(zero_copy_only=False), dtype=object, name=self.name)
        parts = _date_parts(values)
        if parts is None:  # no date in this block
            return pa.nulls(len(values), pa.timestamp("ns"))
        return pa.array(_parse(values, parts, self.order).to_numpy(), type=pa.timestamp("ns"), from_pandas=True)


@dataclass
class _CsvRead:
    """What reading a CSV file found, apart from the rows themselves."""

    format: str
    rows: int
    columns: int
    digest: str
    notes: tuple[str, ...]
    renamed_columns: dict[str, str]
    dates: tuple[DateOrder, ...]
    sentinels: tuple[Sentinel, ...]
    dropped_rows: int
    dropped_columns: tuple[str, ...]

    def described(self) -> dict[str, object]:
        return {"format": self.format, "notes": self.notes, "renamed_columns": self.renamed_columns,
                "dates": self.dates, "sentinels": self.sentinels, "dropped_rows": self.dropped_rows,
                "dropped_columns": self.dropped_columns}


class _Digest:
    """:func:`table_digest`, block by block: the row hashes of pandas are computed row by row, so the
    hashes of the blocks, one after the other, are those of the whole table."""

    def __init__(self, columns: list[_CsvColumn]) -> None:
        self.columns = columns
        self.sha = hashlib.sha256()
        for column in columns:
            self.sha.update(f"{column.name}\x1f{column.dtype}\x1e".encode())

    def update(self, arrays: list) -> None:
        import pyarrow as pa

        if not len(arrays[0]):
            return
        # text as categories: the same hashes as an object column (pandas factorizes those first), without
        # a Python string per cell
        shown = [a.dictionary_encode() if c.kind == "text" else a for c, a in zip(self.columns, arrays, strict=True)]
        frame = pa.Table.from_arrays(shown, names=[str(i) for i in range(len(shown))]).to_pandas(split_blocks=True)
        for i, column in enumerate(self.columns):
            if column.kind == "bool-missing":  # object in the whole table, even where a block has no gap
                frame[str(i)] = frame[str(i)].astype(object)
        self.sha.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


class _FrameSink:
    """Collects the converted blocks into one pandas frame (for :func:`read_table`)."""

    def __init__(self) -> None:
        self.tables: list = []
        self.frame: pd.DataFrame | None = None

    def open(self, schema) -> None:
        self.schema = schema

    def write(self, table) -> None:
        self.tables.append(table)

    def close(self) -> None:
        import pyarrow as pa

        table = pa.concat_tables(self.tables) if self.tables else self.schema.empty_table()
        self.tables = []
        frame = table.to_pandas()
        for column in frame.columns:
            if frame[column].dtype == object:  # missing as NaN, as read_csv gives them (not None)
                values = frame[column].to_numpy(dtype=object)
                values[pd.isna(values)] = np.nan
                frame[column] = values
        self.frame = frame

    def abort(self) -> None:
        self.tables = []


class _ParquetSink:
    """Writes the converted blocks to a parquet file, a row group at a time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.writer = None
        self.pending: list = []
        self.rows = self.bytes = 0

    def open(self, schema) -> None:
        import pyarrow.parquet as pq

        self.writer = pq.ParquetWriter(self.path, schema)

    def write(self, table) -> None:
        self.pending.append(table)
        self.rows += table.num_rows
        self.bytes += table.nbytes
        if self.rows >= _ROW_GROUP_ROWS or self.bytes >= _ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending))
        self.pending, self.rows, self.bytes = [], 0, 0

    def close(self) -> None:
        self._flush()
        self.writer.close()

    def abort(self) -> None:
        self.pending = []
        if self.writer is not None:
            self.writer.close()


def _read_csv(src: _Source, name: str, sink) -> _CsvRead:
    """Read delimited text in two passes over the file, a block at a time: the first decides each
    column's type (as pandas.read_csv would: whole numbers, numbers, True/False, text; whole numbers
    with gaps are decimals), which dates are written 10/03/2004 and in which order, which rows and
    unnamed columns are empty and which codes for "missing" appear; the second converts each block and
    gives it to ``sink``. Memory holds a few blocks, never the file."""
    import pyarrow as pa

    encoding = _detect_encoding(src, name)
    head = _decode_head(src, encoding)
    dialect = sniff_csv(head, encoding.codec, name, label=encoding.label)
    # a space between a separator and a quoted value: pyarrow would split the quoted value
    spaced_quotes = re.search(re.escape(dialect.delimiter) + r"[ \t]+\"", head)
    rows_of = _module_rows if spaced_quotes else _arrow_rows
    while True:
        shape = _Shape()
        try:
            blocks = rows_of(src, dialect, shape, name)
            header = next(blocks, None)
            if header is None:
                raise EmptyTableError(f"'{name}' is empty. Choose a file that holds a table with a header row.")
            scans = [_ColumnScan() for _ in header]
            empty_rows = rows = 0
            for columns in blocks:
                cells, dropped = _block_cells(columns)
                empty_rows += dropped
                rows += len(cells[0].text) if cells else 0
                for scan, column in zip(scans, cells, strict=True):
                    scan.add(column, dialect)
        except _NeedsCsvModule:
            if rows_of is _module_rows:  # pragma: no cover  (the csv module never signals)
                raise
            rows_of = _module_rows
            continue
        break
    if shape.long:
        raise _long_rows(name, shape, len(header))

    hint = dialect.delimiter == ";" or dialect.decimal == ","
    drop = {i for i, scan in enumerate(scans) if _is_unnamed(header[i]) and scan.values == 0}
    names, renamed, rename_notes, dropped_names = _column_names(header, drop)
    plan, dates, date_notes = [], [], []
    for i, scan in enumerate(scans):
        if i in drop:
            continue
        kind, order = _kind(scan), None
        if kind == "text" and scan.dates.possible and scan.values:
            found, unreadable = scan.dates.decide(names[len(plan)], prefer_day_first=hint)
            if found is not None:
                kind, order = "datetime", found.order
                dates.append(found)
            elif unreadable:
                date_notes.append(_unreadable_dates_note(names[len(plan)]))
        plan.append(_CsvColumn(i, names[len(plan)], kind, order))
    _refuse_empty(name, names, rows)

    notes = dialect.notes()
    lines = shape.separator_lines + empty_rows
    if note := _dropped_note(lines, len(drop), "line"):
        notes.append(note)
    notes += rename_notes
    last = max(column.position for column in plan)
    short = sum(n for fields, n in shape.short.items() if fields <= last)
    if short:
        listed = [line for line, fields in shape.short_lines if fields <= last]
        notes.append(
            f"{short:,} row{'s' if short > 1 else ''} ({_lines(listed, short)}) "
            f"{'have' if short > 1 else 'has'} fewer fields than the header; "
            f"{'their' if short > 1 else 'its'} missing cells are empty."
        )
    if shape.trailing:
        notes.append(
            f"{shape.trailing:,} row{'s end' if shape.trailing > 1 else ' ends'} with more separators than the header "
            "has; the empty fields there were left out."
        )
    notes += date_notes

    watched = {column.position: _SentinelScan() for column in plan if column.kind in ("int", "float")
               and any(n >= SENTINEL_MIN_ROWS for n in scans[column.position].codes.values())}
    digest = _Digest(plan)
    schema = pa.schema([(column.name, column.arrow_type) for column in plan])
    sink.open(schema)
    try:
        blocks = rows_of(src, dialect, _Shape(), name)
        next(blocks)
        for columns in blocks:
            cells, _ = _block_cells(columns)
            arrays = [column.convert(cells[column.position], dialect) for column in plan]
            if not len(arrays[0]):
                continue
            digest.update(arrays)
            for column, array in zip(plan, arrays, strict=True):
                if column.position in watched:
                    watched[column.position].add(array.to_numpy(zero_copy_only=False).astype("float64"))
            sink.write(pa.Table.from_arrays(arrays, schema=schema))
        sink.close()
    except BaseException:
        sink.abort()
        raise
    sentinels = tuple(s for column in plan if column.position in watched
                      for s in watched[column.position].decide(column.name))
    return _CsvRead(
        format="csv", rows=rows, columns=len(plan), digest=digest.hexdigest(), notes=tuple(notes),
        renamed_columns=renamed, dates=tuple(dates), sentinels=sentinels, dropped_rows=lines,
        dropped_columns=dropped_names,
    )


def _kind(scan: _ColumnScan) -> str:
    """The column's type as pandas.read_csv would choose it from its values."""
    if scan.values == 0:
        return "empty"
    if scan.integer:
        return "int" if scan.missing == 0 else "float"
    if scan.number:
        return "float"
    if scan.boolean:
        return "bool" if scan.missing == 0 else "bool-missing"
    return "text"


def _lines(listed: list[int], count: int) -> str:
    shown = ", ".join(f"{line:,}" for line in listed[:_LISTED_LINES])
    more = ", ..." if count > min(len(listed), _LISTED_LINES) else ""
    return f"line{'s' if count > 1 else ''} {shown}{more}"


def _long_rows(name: str, shape: _Shape, fields: int) -> BadInputError:
    line, count = shape.long_lines[0]
    more = ""
    if shape.long > 1:
        more = f" (and {shape.long - 1:,} more: {_lines([ln for ln, _ in shape.long_lines[1:]], shape.long - 1)})"
    return BadInputError(
        f"'{name}' is not a regular table: line {line:,} has {count} fields but the header has {fields}{more}. "
        "A value beyond the last column name has no column to go to, so the file was not read. If the first "
        "column holds row labels, the header may lack a name for it. Make every row have as many values as "
        "the header has column names (or add the missing names to the header), then try again."
    )


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


def _column_names(raw: list[object], drop: set[int]) -> tuple[list[str], dict[str, str], list[str], tuple[str, ...]]:
    """The unique names of the columns kept (those not in ``drop``), their renames (new name -> name in
    the file) with one note each, and the names the dropped columns would have had."""
    names, renamed, rename_notes = dedupe_columns(list(raw))
    dropped_names = tuple(names[i] for i in sorted(drop))
    # the renames of dropped columns ("Column 16 had no name") no longer concern anyone
    pairs = [(new, note) for (new, _), note in zip(renamed.items(), rename_notes, strict=True) if new not in dropped_names]
    kept = [n for i, n in enumerate(names) if i not in drop]
    return kept, {new: renamed[new] for new, _ in pairs}, [note for _, note in pairs], dropped_names


def _dropped_note(lines: int, columns: int, unit: str) -> str | None:
    parts = []
    if lines:
        parts.append(f"{lines:,} empty {unit}{'' if lines == 1 else 's'}")
    if columns:
        parts.append(f"{columns} unnamed empty column{'' if columns == 1 else 's'}")
    return f"Dropped {' and '.join(parts)}." if parts else None


def _tidy(raw: _Raw, fmt: str) -> tuple[pd.DataFrame, dict[str, str], list[str], int, tuple[str, ...]]:
    """The clean-up every format read whole shares: unique column names, no row without a single value,
    no unnamed column without a single value. Returns the frame, the renames (new name -> name in the
    file), the notes, the number of rows dropped and the names of the columns dropped."""
    frame = raw.frame.reset_index(drop=True)
    frame.columns = range(frame.shape[1])
    notes = list(raw.notes)
    drop = {i for i in range(frame.shape[1]) if _is_unnamed(raw.names[i]) and bool(_blank(frame.iloc[:, i]).all())}
    names, renamed, rename_notes, dropped_names = _column_names(raw.names, drop)
    if drop:
        frame = frame.drop(columns=sorted(drop))
    frame.columns = names
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
    if note := _dropped_note(lines, len(drop), "line" if fmt == "csv" else "row"):
        notes.append(note)
    return frame, renamed, notes + rename_notes, lines, dropped_names


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
    scan = _DateScan()
    scan.add(values)
    return scan.decide(str(values.name or ""), prefer_day_first=prefer_day_first)[0]


class _DateScan:
    """What :func:`detect_date_order` looks at in a column, gathered block by block (the rows in
    order), so that a column read in blocks is judged as a whole, exactly as if it were read at once."""

    _ORDERS = (DAY_FIRST, MONTH_FIRST)

    def __init__(self) -> None:
        self.possible = True  # every value so far is written like 10/03/2004
        self.count = 0
        self.clock_ok = True  # every time of day written has hours <= 23, minutes and seconds <= 59
        self.dotted_short = True  # every value written 10.03.04
        self.time_like = True  # every value could be a time of day (18.00.00)
        self.valid = dict.fromkeys(self._ORDERS, True)
        self.first: tuple | None = None  # the first value: (as written, first number, second number, stamps)
        self.witness: dict[str, tuple | None] = dict.fromkeys(self._ORDERS)  # the first value not valid that way
        self.last: dict[str, int | None] = dict.fromkeys(self._ORDERS)  # the last row's stamp, to step across blocks
        self.steps = 0
        self.rising = dict.fromkeys(self._ORDERS, True)
        self.falling = dict.fromkeys(self._ORDERS, True)
        self.travel = dict.fromkeys(self._ORDERS, 0.0)
        self.low: dict[str, np.datetime64 | None] = dict.fromkeys(self._ORDERS)
        self.high: dict[str, np.datetime64 | None] = dict.fromkeys(self._ORDERS)

    def add(self, values: pd.Series) -> None:
        if not self.possible or values.dropna().empty:
            return
        parts = _date_parts(values)
        if parts is None:
            self.possible = False
            return
        stamps = {order: parts.stamps(order) for order in self._ORDERS}

        def value(i: int) -> tuple:
            return parts.raw[i], int(parts.a[i]), int(parts.b[i]), {o: stamps[o][i] for o in self._ORDERS}

        self.count += len(parts.codes)
        self.clock_ok &= bool(((parts.hour <= 23) & (parts.minute <= 59) & (parts.second <= 59)).all())
        self.dotted_short &= parts.dotted_short
        self.time_like &= bool(((parts.a <= 23) & (parts.b <= 59) & (parts.year_written <= 59)).all())
        if self.first is None:
            self.first = value(0)
        for order in self._ORDERS:
            ok = parts.valid(order)
            if self.witness[order] is None and not ok.all():
                self.witness[order] = value(int(np.flatnonzero(~ok)[0]))  # distinct values come in row order
            self.valid[order] &= bool(ok.all())
            low, high = stamps[order].min(), stamps[order].max()
            self.low[order] = low if self.low[order] is None else min(self.low[order], low)
            self.high[order] = high if self.high[order] is None else max(self.high[order], high)
            rows = stamps[order][parts.codes].astype("int64")
            if self.last[order] is not None:
                rows = np.concatenate([[self.last[order]], rows])
            steps = np.diff(rows)
            self.rising[order] &= bool((steps >= 0).all())
            self.falling[order] &= bool((steps <= 0).all())
            self.travel[order] += float(np.abs(steps.astype("float64")).sum())
            self.last[order] = int(rows[-1])
        self.steps = self.count - 1

    def decide(self, name: str, *, prefer_day_first: bool) -> tuple[DateOrder | None, bool]:
        """(the order, or None; whether the column looks like dates that no single order reads)."""
        if not self.possible or not self.count:
            return None, False
        if not self.clock_ok:
            return None, True
        time_of_day = self.dotted_short and self.time_like
        if time_of_day and _TIME_NAME.search(name) and not _DATE_NAME.search(name):
            return None, False  # 10.03.04 in a column called Time is a time of day, not 10 March 2004
        # nobody writes 10.30.15 month-first
        fits = {DAY_FIRST: self.valid[DAY_FIRST], MONTH_FIRST: self.valid[MONTH_FIRST] and not self.dotted_short}
        if not any(fits.values()):
            return None, not time_of_day  # 18.00.00 is a time of day: no need to say it is not a date
        if fits[DAY_FIRST] != fits[MONTH_FIRST]:
            order = DAY_FIRST if fits[DAY_FIRST] else MONTH_FIRST
            other = MONTH_FIRST if order == DAY_FIRST else DAY_FIRST
            witness = self.first if other == MONTH_FIRST and self.dotted_short else self.witness[other]
            number = witness[1] if order == DAY_FIRST else witness[2]
            reason = f"Some dates, such as {witness[0]}, can only be read {order} ({number} cannot be a month)."
            return self._order(name, order, ambiguous=False, reason=reason, example=witness), False
        monotone = {order: self.steps > 0 and (self.rising[order] or self.falling[order]) for order in self._ORDERS}
        either = "Every date in this column could be read either way"
        if monotone[DAY_FIRST] != monotone[MONTH_FIRST]:
            order = DAY_FIRST if monotone[DAY_FIRST] else MONTH_FIRST
            other = MONTH_FIRST if order == DAY_FIRST else DAY_FIRST
            reason = f"{either}; read {order}, the rows are in date order (read {other}, they would jump back and forth)."
        else:
            low, high = sorted(self.travel.values())
            if high > 0 and low <= 0.5 * high:
                order = min(self.travel, key=self.travel.get)
                reason = f"{either}; read {order}, neighbouring rows are closer in time."
            elif prefer_day_first:
                order = DAY_FIRST
                reason = (f"{either} and nothing in the file tells which; day-first was chosen because the file "
                          "uses semicolons or decimal commas, as where the day is written first. Check the dates.")
            else:
                order = MONTH_FIRST
                reason = f"{either} and nothing in the file tells which; month-first (as in the US) was chosen. Check the dates."
        return self._order(name, order, ambiguous=True, reason=reason, example=self.first), False

    def _order(self, name: str, order: str, *, ambiguous: bool, reason: str, example: tuple) -> DateOrder:
        return DateOrder(
            column=name, order=order, ambiguous=ambiguous, reason=reason, example=example[0],
            example_read=_human_date(pd.Timestamp(example[3][order])), count=self.count,
            first=_human_date(pd.Timestamp(self.low[order])), last=_human_date(pd.Timestamp(self.high[order])),
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
        scan = _DateScan()
        scan.add(series)
        order, unreadable = scan.decide(str(column), prefer_day_first=prefer_day_first)
        if order is None:
            if unreadable:
                notes.append(_unreadable_dates_note(column))
            continue
        frame[column] = parse_dates(series, order.order)
        orders.append(order)
    return frame, tuple(orders), notes


def _unreadable_dates_note(column: object) -> str:
    return (
        f"Column '{column}' looks like dates, but no single reading (day-first or month-first) fits "
        "them all: some are written the other way round or are not real dates. It is kept as text."
    )


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
        scan = _SentinelScan()
        scan.add(series.to_numpy(dtype="float64", na_value=np.nan))
        found.extend(scan.decide(str(column)))
    return tuple(found)


class _SentinelScan:
    """What :func:`find_sentinels` looks at in a numeric column, gathered block by block: how often each
    code appears, the exact range of the other values, and for their quartiles the values themselves,
    up to ``SAMPLE`` of them (beyond that a uniform random sample of that many, a few MB whatever the
    file: the quartiles only measure how far a code lies from the other values, in interquartile
    ranges, and a sample of 100,000 puts them within a fraction of a percent)."""

    SAMPLE = 100_000

    def __init__(self) -> None:
        self.counts = dict.fromkeys(SENTINEL_CODES, 0)
        self.finite = 0
        self.low, self.high = np.inf, -np.inf
        self.values: list[np.ndarray] = []
        self.keys: list[np.ndarray] = []
        self.held = 0
        self.random = np.random.default_rng(0)

    def add(self, values: np.ndarray) -> None:
        values = values[np.isfinite(values)]
        self.finite += len(values)
        is_code = np.isin(values, SENTINEL_CODES)
        if is_code.any():
            codes, counts = np.unique(values[is_code], return_counts=True)
            for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
                self.counts[code] += count
        others = values[~is_code]
        if not len(others):
            return
        self.low, self.high = min(self.low, float(others.min())), max(self.high, float(others.max()))
        self.values.append(others)
        self.keys.append(self.random.random(len(others)))  # a uniform sample: the values with the smallest keys
        self.held += len(others)
        if self.held > 2 * self.SAMPLE:
            self._shrink()  # at most a few MB held

    def _shrink(self) -> None:
        values, keys = np.concatenate(self.values), np.concatenate(self.keys)
        if len(values) > self.SAMPLE:
            keep = np.argpartition(keys, self.SAMPLE)[: self.SAMPLE]
            values, keys = values[keep], keys[keep]
        self.values, self.keys, self.held = [values], [keys], len(values)

    def decide(self, column: str) -> list[Sentinel]:
        if self.finite < SENTINEL_MIN_ROWS + _SENTINEL_MIN_OTHERS:
            return []
        codes = [code for code, n in self.counts.items() if n >= SENTINEL_MIN_ROWS]
        if not codes or self.finite - sum(self.counts[c] for c in codes) < _SENTINEL_MIN_OTHERS:
            return []
        # a code seen once or twice is an ordinary value, one of the others
        rare = np.array([code for code, n in self.counts.items() if 0 < n < SENTINEL_MIN_ROWS for _ in range(n)])
        self._shrink()
        others = np.concatenate([*self.values, rare])
        low, high = min([self.low, *rare.tolist()]), max([self.high, *rare.tolist()])
        q1, median, q3 = np.quantile(others, [0.25, 0.5, 0.75])
        spread = q3 - q1 or high - low or max(abs(median), 1.0)
        found = []
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
                found.append(Sentinel(column, float(code), self.counts[code], float(low), float(high), side))
        return found


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
