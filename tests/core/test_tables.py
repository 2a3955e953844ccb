"""core.tables: each upload stored once, by content hash, atomically; rename and delete."""

from __future__ import annotations

import pandas as pd
import pytest

from core.errors import BadInputError, NotATableError, NotFoundError
from core.tables import TableStore, safe_display_name

CSV = b"a,b\n1,x\n2,y\n3,z\n"


@pytest.fixture
def store(tmp_path) -> TableStore:
    return TableStore(tmp_path / "tables")


def test_ingest_stores_parquet_named_by_hash_with_a_record(store):
    result = store.ingest(CSV, "sales.csv")
    record = result.record
    assert result.created
    assert record.name == "sales" and record.original_name == "sales.csv"
    assert (record.rows, record.columns, record.format) == (3, 2, "csv")
    assert record.digest.startswith(record.table_id) and len(record.digest) == 64
    assert sorted(p.name for p in store.root.iterdir()) == [f"{record.table_id}.json", f"{record.table_id}.parquet"]
    pd.testing.assert_frame_equal(store.load(record.table_id), pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}))
    assert "Stored 'sales': 3 rows, 2 columns." == result.message


def test_same_content_is_stored_once(store):
    first = store.ingest(CSV, "sales.csv")
    again = store.ingest(CSV, "copy of sales.csv")
    assert not again.created
    assert again.record.table_id == first.record.table_id
    assert "stored already, as 'sales'" in again.message
    assert len(store.list()) == 1


def test_refused_file_stores_nothing(store):
    with pytest.raises(NotATableError):
        store.ingest(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "photo.csv")
    assert store.list() == []
    assert not store.root.exists() or not any(store.root.iterdir())


@pytest.mark.parametrize(
    ("file_name", "display"),
    [
        ("../../etc/passwd.csv", "passwd"),
        ("C:\\Users\\me\\Desktop\\q3 sales.xlsx", "q3 sales"),
        ("..\\..\\boot.ini", "boot"),
        ("/abs/path/.hidden.csv", "hidden"),
        ("bad\x00name\n.csv", "badname"),
        ("", "table"),
    ],
)
def test_path_characters_never_choose_where_files_go(store, file_name, display):
    record = store.ingest(CSV, file_name).record
    assert record.name == display
    assert "/" not in record.original_name and "\\" not in record.original_name
    assert {p.parent for p in store.root.parent.rglob("*") if p.is_file()} == {store.root}
    assert safe_display_name(file_name) == display


def test_names_are_made_unique(store):
    store.ingest(CSV, "t.csv")
    second = store.ingest(b"a\n9\n", "t.csv").record
    assert second.name == "t (2)"


def test_rename_and_its_refusals(store):
    one = store.ingest(CSV, "one.csv").record
    two = store.ingest(b"a\n1\n", "two.csv").record
    assert store.rename(one.table_id, "  Q3 sales  ").name == "Q3 sales"
    assert store.get(one.table_id).name == "Q3 sales"
    with pytest.raises(BadInputError, match="cannot be empty"):
        store.rename(one.table_id, "   ")
    with pytest.raises(BadInputError, match="Another table is called 'Q3 sales'"):
        store.rename(two.table_id, "Q3 sales")
    with pytest.raises(BadInputError, match="at most 100 characters"):
        store.rename(two.table_id, "x" * 101)


def test_delete_removes_both_files(store):
    record = store.ingest(CSV, "gone.csv").record
    store.delete(record.table_id)
    assert store.list() == []
    assert list(store.root.iterdir()) == []
    with pytest.raises(NotFoundError, match="no stored table"):
        store.load(record.table_id)


@pytest.mark.parametrize("table_id", ["../../etc", "ABC", "0" * 15, ""])
def test_unknown_or_malformed_ids_are_not_found(store, table_id):
    with pytest.raises(NotFoundError):
        store.get(table_id)


def test_a_record_without_its_parquet_is_not_listed(store):
    record = store.ingest(CSV, "half.csv").record
    (store.root / f"{record.table_id}.parquet").unlink()
    assert store.list() == []


def test_failed_write_leaves_no_file(store, monkeypatch):
    def boom(self, path, **kwargs):
        path.write_bytes(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        store.ingest(CSV, "full.csv")
    assert list(store.root.iterdir()) == []
    assert store.list() == []


def test_list_is_newest_first(store):
    store.ingest(CSV, "old.csv")
    newer = store.ingest(b"z\n1\n", "new.csv").record
    import json

    path = store.root / f"{newer.table_id}.json"
    data = json.loads(path.read_text())
    data["uploaded_at"] = "2999-01-01T00:00:00+00:00"
    path.write_text(json.dumps(data))
    assert [r.name for r in store.list()] == ["new", "old"]


def test_kobe_dev_stores_once(store, kobe_dev):
    first = store.ingest(kobe_dev.read_bytes(), kobe_dev.name)
    assert (first.record.rows, first.record.columns) == (24271, 25)
    assert not store.ingest(kobe_dev.read_bytes(), "again.parquet").created
