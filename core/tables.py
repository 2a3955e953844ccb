"""Stored tables: each upload is kept once in the workspace as parquet named by its content hash,
beside a small JSON record (display name, original file name, upload time, shape, reading notes).

Files are written under a temporary name and renamed when complete, so a failed write never
leaves a table that looks stored. A record is visible only once both its files exist.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from core.datasets import ReadResult, read_table, table_digest
from core.errors import BadInputError, NotFoundError

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

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TableRecord:
        return cls(**{**data, "notes": tuple(data.get("notes", ()))})


@dataclass(frozen=True)
class IngestResult:
    record: TableRecord
    created: bool  # False when the same content was stored already

    @property
    def message(self) -> str:
        r = self.record
        if self.created:
            return f"Stored '{r.name}': {r.rows:,} rows, {r.columns} columns."
        return f"This table is stored already, as '{r.name}' ({r.rows:,} rows, {r.columns} columns)."


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
        return pd.read_parquet(self._parquet(record.table_id))

    def path(self, table_id: str) -> Path:
        return self._parquet(self.get(table_id).table_id)

    # changes
    def ingest(self, data: bytes, file_name: str, *, max_bytes: int | None = None, name: str | None = None) -> IngestResult:
        """Read an uploaded file and store it; nothing is stored when the file is refused."""
        result = read_table(data, _safe_file_name(file_name), max_bytes=max_bytes)
        return self.add(result, file_name, name=name)

    def add(self, result: ReadResult, file_name: str, *, name: str | None = None) -> IngestResult:
        frame = result.frame
        digest = table_digest(frame)
        table_id = digest[:ID_LENGTH]
        if self._record(table_id).exists() and self._parquet(table_id).exists():
            return IngestResult(self.get(table_id), created=False)
        self.root.mkdir(parents=True, exist_ok=True)
        record = TableRecord(
            table_id=table_id,
            digest=digest,
            name=self._unique_name(name or safe_display_name(file_name)),
            original_name=_safe_file_name(file_name),
            uploaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
            rows=int(frame.shape[0]),
            columns=int(frame.shape[1]),
            format=result.format,
            notes=result.notes,
            renamed_columns=dict(result.renamed_columns),
        )
        _atomic_write_bytes(self._parquet(table_id), lambda tmp: frame.to_parquet(tmp, index=False))
        self._write_record(record)
        return IngestResult(record, created=True)

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
