"""Stored tables: each upload is kept once in the workspace as parquet named by its content hash,
beside a small JSON record (display name, original file name, upload time, shape, reading notes,
how dates were read, numbers that look like codes for missing values, changes made since).

Files are written under a temporary name and renamed when complete, so a failed write never
leaves a table that looks stored. A record is visible only once both its files exist. An uploaded
CSV file is written to parquet block by block as it is read (memory does not grow with the file);
its content hash is known once it is all written, and only then does it get its name.

A change the user asks for after reading (missing-value codes treated as missing, dates read in the
other order) changes the content, so the new version gets a new content hash: it is stored
completely first, then the version it replaces is deleted. Until that deletion is done, the list
hides the replaced version, so nobody ever sees two versions of one table.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from core import datasets
from core.datasets import DateOrder, ReadResult, Sentinel, TableFile, format_number, table_digest
from core.errors import BadInputError, NotFoundError
from core.settings import Settings

ID_LENGTH = 16  # hex characters of the SHA-256 content digest that name a stored table
MAX_NAME_LENGTH = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class TableRecord:
    table_id: str
    digest: str
    name: str
    original_name: str
    uploaded_at: str  # ISO 8601, UTC
    rows: int
    columns: int
    format: str
    notes: tuple[str, ...] = ()
    renamed_columns: dict[str, str] = field(default_factory=dict)
    dates: tuple[DateOrder, ...] = ()  # how each day/month/year column was read
    sentinels: tuple[Sentinel, ...] = ()  # codes for missing values offered, not answered yet
    treated_as_missing: tuple[Sentinel, ...] = ()  # codes the user chose to treat as missing
    changes: tuple[str, ...] = ()  # what was changed after reading, in plain words, oldest first
    read_digest: str = ""  # content hash of the table as read from the file, before any change
    replaces: str = ""  # the table id of the version this one replaced

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        for key in ("notes", "dates", "sentinels", "treated_as_missing", "changes"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TableRecord:
        return cls(**{
            **data,
            "notes": tuple(data.get("notes", ())),
            "dates": tuple(DateOrder.from_dict(d) for d in data.get("dates", ())),
            "sentinels": tuple(Sentinel.from_dict(d) for d in data.get("sentinels", ())),
            "treated_as_missing": tuple(Sentinel.from_dict(d) for d in data.get("treated_as_missing", ())),
            "changes": tuple(data.get("changes", ())),
        })


@dataclass(frozen=True)
class IngestResult:
    record: TableRecord
    created: bool  # False when the same content was stored already

    @property
    def message(self) -> str:
        r = self.record
        if self.created:
            return f"Stored '{r.name}': {r.rows:,} rows, {r.columns} columns."
        message = f"This table is stored already, as '{r.name}' ({r.rows:,} rows, {r.columns} columns)."
        if r.changes:
            message += " That version holds the changes made after reading the file."
        return message


def safe_display_name(file_name: str) -> str:
    """A display name from an uploaded file name: no folders, no control characters, no extension.

    The name only labels the table; the stored file is always named by content hash, so
    ``../../etc/passwd.csv`` can never choose where anything is written.
    """
    base = re.split(r"[\\/]", file_name or "")[-1]
    base = _CONTROL.sub("", base).strip().lstrip(".")
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return (stem.strip() or "table")[:MAX_NAME_LENGTH]


def _safe_file_name(file_name: str) -> str:
    base = re.split(r"[\\/]", file_name or "")[-1]
    return _CONTROL.sub("", base).strip()[:200] or "upload"


def _atomic_write_bytes(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class TableStore:
    """The workspace's stored tables, in one folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # paths
    def _parquet(self, table_id: str) -> Path:
        return self.root / f"{table_id}.parquet"

    def _record(self, table_id: str) -> Path:
        return self.root / f"{table_id}.json"

    def _check_id(self, table_id: str) -> str:
        if not re.fullmatch(rf"[0-9a-f]{{{ID_LENGTH}}}", table_id or ""):
            raise NotFoundError(f"There is no stored table '{table_id}'. Pick one from the list of stored tables.")
        return table_id

    # queries
    def list(self) -> list[TableRecord]:
        """Every stored table, newest first."""
        if not self.root.is_dir():
            return []
        records = []
        for path in self.root.glob("*.json"):
            try:
                record = TableRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
                written = path.stat().st_mtime_ns
            except (OSError, ValueError, TypeError):
                continue  # a record being rewritten or damaged by hand: not listed
            if self._parquet(record.table_id).exists():
                records.append((record.uploaded_at, written, record))
        # a replaced version whose deletion was interrupted is not shown beside its successor
        replaced = {r.replaces for *_, r in records if r.replaces}
        records = [t for t in records if t[2].table_id not in replaced]
        # uploaded_at has whole seconds; within one second the record written last is the newest
        return [r for *_, r in sorted(records, key=lambda t: t[:2], reverse=True)]

    def get(self, table_id: str) -> TableRecord:
        self._check_id(table_id)
        try:
            data = json.loads(self._record(table_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFoundError(
                f"There is no stored table '{table_id}' (it may have been deleted). Pick another table."
            ) from None
        return TableRecord.from_dict(data)

    def find_by_name(self, name: str) -> TableRecord | None:
        return next((r for r in self.list() if r.name == name), None)

    def load(self, table_id: str) -> pd.DataFrame:
        record = self.get(table_id)
        return datasets.read_parquet(self._parquet(record.table_id))

    def path(self, table_id: str) -> Path:
        return self._parquet(self.get(table_id).table_id)

    # changes
    def ingest(self, data: bytes | Path, file_name: str, *, max_bytes: int | None = None,
               name: str | None = None) -> IngestResult:
        """Read an uploaded file (its bytes, or a file on disk) and store it; nothing is stored when the
        file is refused. The table is written under a temporary name as it is read, then renamed after
        its content hash (or deleted, when that content is stored already)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".ingest.{uuid.uuid4().hex}.part"
        try:
            read = datasets.read_table_to_parquet(data, _safe_file_name(file_name), tmp, max_bytes=max_bytes)
            known = self._stored(read.digest)
            if known is not None:
                return IngestResult(known, created=False)
            with self._naming():  # the name is chosen and taken at once: two uploads never share one
                record = self._new_record(read, read.digest, read.rows, read.columns, file_name, name)
                os.replace(tmp, self._parquet(record.table_id))
                self._write_record(record)
            return IngestResult(record, created=True)
        finally:
            tmp.unlink(missing_ok=True)

    def add(self, result: ReadResult, file_name: str, *, name: str | None = None) -> IngestResult:
        """Store a table already read into memory (the demo uses this)."""
        frame = result.frame
        digest = table_digest(frame)
        known = self._stored(digest)
        if known is not None:
            return IngestResult(known, created=False)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._naming():
            record = self._new_record(result, digest, int(frame.shape[0]), int(frame.shape[1]), file_name, name)
            _atomic_write_bytes(self._parquet(record.table_id), lambda tmp: frame.to_parquet(tmp, index=False))
            self._write_record(record)
        return IngestResult(record, created=True)

    def _stored(self, digest: str) -> TableRecord | None:
        """The stored table with this content, or the one changed since from a file with this content."""
        table_id = digest[:ID_LENGTH]
        if self._record(table_id).exists() and self._parquet(table_id).exists():
            return self.get(table_id)
        # the same file again, stored already and changed since: not a duplicate
        return next((r for r in self.list() if r.read_digest == digest), None)

    def _new_record(self, read: ReadResult | TableFile, digest: str, rows: int, columns: int, file_name: str,
                    name: str | None) -> TableRecord:
        return TableRecord(
            table_id=digest[:ID_LENGTH],
            digest=digest,
            name=self._unique_name(name or safe_display_name(file_name)),
            original_name=_safe_file_name(file_name),
            uploaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
            rows=rows,
            columns=columns,
            format=read.format,
            notes=read.notes,
            renamed_columns=dict(read.renamed_columns),
            dates=read.dates,
            sentinels=read.sentinels,
            read_digest=digest,
        )

    def rename(self, table_id: str, new_name: str) -> TableRecord:
        record = self.get(table_id)
        clean = _CONTROL.sub("", new_name or "").strip()
        if not clean:
            raise BadInputError("A table name cannot be empty. Type a name, then rename.")
        if len(clean) > MAX_NAME_LENGTH:
            raise BadInputError(f"A table name can have at most {MAX_NAME_LENGTH} characters; this one has {len(clean)}.")
        other = self.find_by_name(clean)
        if other is not None and other.table_id != table_id:
            raise BadInputError(f"Another table is called '{clean}' already. Choose a different name.")
        updated = TableRecord.from_dict({**record.to_dict(), "name": clean})
        self._write_record(updated)
        return updated

    def delete(self, table_id: str) -> TableRecord:
        record = self.get(table_id)
        self._record(table_id).unlink(missing_ok=True)  # record first: a half-deleted table is never listed
        self._parquet(table_id).unlink(missing_ok=True)
        return record

    def treat_as_missing(self, table_id: str, columns: list[str] | None = None) -> IngestResult:
        """Store the table with the offered missing-value codes of ``columns`` (all offered when None)
        as missing; the new version replaces this one, and its record says what was done."""
        record = self.get(table_id)
        chosen = [s for s in record.sentinels if columns is None or s.column in columns]
        if not chosen:
            raise BadInputError("Choose at least one column whose code should count as missing.")
        frame, applied = datasets.treat_as_missing(self.load(table_id), chosen)
        listed = ", ".join(f"{format_number(s.value)} in '{s.column}' ({s.rows:,} rows)" for s in applied)
        change = f"Treated as missing, as you chose: {listed}."
        return self._replace(
            record, frame,
            sentinels=tuple(s for s in record.sentinels if s not in chosen),
            treated_as_missing=record.treated_as_missing + applied,
            changes=record.changes + (change,),
        )

    def keep_values(self, table_id: str, columns: list[str] | None = None) -> TableRecord:
        """Decline the offer for ``columns`` (all when None): the numbers stay values, and the record
        says so; the table itself does not change."""
        record = self.get(table_id)
        kept = [s for s in record.sentinels if columns is None or s.column in columns]
        if not kept:
            raise BadInputError("Choose at least one column whose numbers should stay as they are.")
        listed = ", ".join(f"{format_number(s.value)} in '{s.column}'" for s in kept)
        updated = replace(
            record,
            sentinels=tuple(s for s in record.sentinels if s not in kept),
            changes=record.changes + (f"Kept as real values, as you chose: {listed}.",),
        )
        self._write_record(updated)
        return updated

    def switch_date_order(self, table_id: str, column: str) -> IngestResult:
        """Store the table with the dates of ``column`` read in the other order (day-first instead of
        month-first or back); the new version replaces this one."""
        record = self.get(table_id)
        date = next((d for d in record.dates if d.column == column), None)
        if date is None:
            raise BadInputError(f"'{column}' is not a column of dates written like 10/03/2004 in this table.")
        frame, switched = datasets.switch_date_order(self.load(table_id), date)
        change = f"The dates in '{column}' are read {switched.order}, as you chose (they had been read {date.order})."
        return self._replace(
            record, frame,
            dates=tuple(switched if d.column == column else d for d in record.dates),
            changes=record.changes + (change,),
        )

    def _replace(self, record: TableRecord, frame: pd.DataFrame, **changes: object) -> IngestResult:
        """Store a changed version of a table under its new content hash, then delete the old version.

        The new files are complete before anything is deleted; if the same content is stored already
        (as another table), that table is kept, and the old version is still deleted."""
        digest = table_digest(frame)
        table_id = digest[:ID_LENGTH]
        if table_id == record.table_id:  # nothing changed in the content: only the record
            updated = replace(record, **changes)
            self._write_record(updated)
            return IngestResult(updated, created=False)
        if self._record(table_id).exists() and self._parquet(table_id).exists():
            existing = self.get(table_id)
            self.delete(record.table_id)
            return IngestResult(existing, created=False)
        updated = replace(
            record, **changes, table_id=table_id, digest=digest, rows=int(frame.shape[0]), columns=int(frame.shape[1]),
            read_digest=record.read_digest or record.digest, replaces=record.table_id,
        )
        _atomic_write_bytes(self._parquet(table_id), lambda tmp: frame.to_parquet(tmp, index=False))
        self._write_record(updated)
        self.delete(record.table_id)
        return IngestResult(updated, created=True)

    @contextmanager
    def _naming(self):
        """Held while a new table's name is chosen and its record written, across threads and processes."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        folder = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)  # the folder itself is the lock: no file added
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            yield
        finally:
            os.close(folder)

    def _write_record(self, record: TableRecord) -> None:
        text = json.dumps(record.to_dict(), indent=2, ensure_ascii=False)
        _atomic_write_bytes(self._record(record.table_id), lambda tmp: tmp.write_text(text, encoding="utf-8"))

    def _unique_name(self, name: str) -> str:
        taken = {r.name for r in self.list()}
        if name not in taken:
            return name
        k = 2
        while f"{name} ({k})" in taken:
            k += 1
        return f"{name} ({k})"


def store(settings: Settings) -> TableStore:
    """The workspace's stored tables: the one place a :class:`TableStore` is made for the studio
    (its folder is ``settings.tables_dir``)."""
    return TableStore(settings.tables_dir)
