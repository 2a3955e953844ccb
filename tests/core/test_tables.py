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


def test_files_of_one_name_stored_at_once_get_distinct_names(store):
    """Eight different files, all named report.csv, stored at once from threads (found by the
    hardening probe: the name was chosen before the record was written, so two could share it)."""
    from concurrent.futures import ThreadPoolExecutor

    def upload(k: int):
        return store.ingest(f"a,b\n{k},{k * 2}\n".encode(), "report.csv").record.name

    with ThreadPoolExecutor(8) as pool:
        names = list(pool.map(upload, range(8)))
    assert sorted(names) == sorted(["report", *(f"report ({k})" for k in range(2, 9))])


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


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_failed_write_leaves_no_file(store, monkeypatch, kind):
    import pyarrow.parquet as pq

    data = CSV if kind == "csv" else _parquet_bytes(pd.DataFrame({"a": [1, 2]}))

    def boom(self, path_or_table, *args, **kwargs):
        if kind == "parquet":
            path_or_table.write_bytes(b"PAR1 half")
        raise OSError("disk full")

    if kind == "csv":  # written block by block as it is read
        monkeypatch.setattr(pq.ParquetWriter, "write_table", boom)
    else:
        monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        store.ingest(data, f"full.{kind}")
    assert list(store.root.iterdir()) == []
    assert store.list() == []


def test_a_file_on_disk_is_stored_like_its_bytes_and_once(store, tmp_path):
    path = tmp_path / "sales.csv"
    path.write_bytes(b"a;b\n1,5;x\n2,5;y\n")
    first = store.ingest(path, path.name)
    again = store.ingest(path.read_bytes(), "sales (1).csv")
    assert first.created and not again.created and again.record.table_id == first.record.table_id
    assert store.load(first.record.table_id)["a"].tolist() == [1.5, 2.5]
    assert _files(store) == [f"{first.record.table_id}.json", f"{first.record.table_id}.parquet"]


def test_a_csv_refused_while_read_leaves_no_file(store):
    with pytest.raises(BadInputError, match="line 3 has 3 fields but the header has 2"):
        store.ingest(b"a,b\n1,2\n3,4,5\n", "ragged.csv")
    assert list(store.root.iterdir()) == []


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


# --- changes after reading: a new version replaces the old one --------------------------------------


def _air(store):
    from tests.core.test_datasets import air_quality_csv

    return store.ingest(air_quality_csv(), "AirQualityUCI.csv").record


def _files(store) -> list[str]:
    return sorted(p.name for p in store.root.iterdir())


def test_the_record_keeps_what_the_reader_found(store):
    record = _air(store)
    assert [(d.column, d.order, d.ambiguous) for d in record.dates] == [("Date", "day-first", True)]
    assert [(s.column, s.value, s.rows) for s in record.sentinels] == [("CO(GT)", -200.0, 3), ("NMHC(GT)", -200.0, 8)]
    assert "Dropped 4 empty lines and 2 unnamed empty columns." in record.notes
    assert record.read_digest == record.digest
    assert store.get(record.table_id) == record  # the JSON record gives the same record back


def test_treat_as_missing_replaces_the_table_and_says_so(store):
    before = _air(store)
    result = store.treat_as_missing(before.table_id, ["CO(GT)"])
    after = result.record
    assert result.created and after.table_id != before.table_id
    assert (after.name, after.original_name, after.uploaded_at) == (before.name, before.original_name, before.uploaded_at)
    assert after.replaces == before.table_id and after.read_digest == before.digest
    assert [s.column for s in after.treated_as_missing] == ["CO(GT)"]
    assert [s.column for s in after.sentinels] == ["NMHC(GT)"]  # still offered
    assert after.changes == ("Treated as missing, as you chose: -200 in 'CO(GT)' (3 rows).",)
    frame = store.load(after.table_id)
    assert frame["CO(GT)"].isna().sum() == 3 and (frame["NMHC(GT)"] == -200).sum() == 8
    assert [r.table_id for r in store.list()] == [after.table_id]  # no duplicate
    assert _files(store) == [f"{after.table_id}.json", f"{after.table_id}.parquet"]
    with pytest.raises(NotFoundError):
        store.get(before.table_id)


def test_keep_values_only_answers_the_offer(store):
    before = _air(store)
    kept = store.keep_values(before.table_id)
    assert kept.table_id == before.table_id and kept.sentinels == ()
    assert kept.changes == ("Kept as real values, as you chose: -200 in 'CO(GT)', -200 in 'NMHC(GT)'.",)
    assert (store.load(before.table_id)["CO(GT)"] == -200).sum() == 3
    with pytest.raises(BadInputError, match="Choose at least one column"):
        store.treat_as_missing(before.table_id)


def test_switch_date_order_replaces_the_table_and_can_switch_back(store):
    before = _air(store)
    switched = store.switch_date_order(before.table_id, "Date").record
    assert switched.dates[0].order == "month-first"
    assert store.load(switched.table_id)["Date"].iloc[0] == pd.Timestamp("2004-10-03")
    assert "read month-first, as you chose (they had been read day-first)" in switched.changes[0]
    assert [r.table_id for r in store.list()] == [switched.table_id]
    back = store.switch_date_order(switched.table_id, "Date").record
    assert back.digest == before.digest  # the same content as first read
    assert store.load(back.table_id)["Date"].iloc[0] == pd.Timestamp("2004-03-10")
    assert len(store.list()) == 1


def test_switching_dates_that_only_read_one_way_is_refused(store):
    record = store.ingest(b"when;n\n13/03/2004;1\n01/04/2004;2\n", "d.csv").record
    with pytest.raises(BadInputError, match="can only be read day-first"):
        store.switch_date_order(record.table_id, "when")
    with pytest.raises(BadInputError, match="not a column of dates"):
        store.switch_date_order(record.table_id, "n")
    assert [r.table_id for r in store.list()] == [record.table_id]


def test_uploading_the_file_again_after_a_change_is_no_duplicate(store):
    from tests.core.test_datasets import air_quality_csv

    changed = store.treat_as_missing(_air(store).table_id).record
    again = store.ingest(air_quality_csv(), "AirQualityUCI (1).csv")
    assert not again.created and again.record.table_id == changed.table_id
    assert "holds the changes made after reading" in again.message
    assert len(store.list()) == 1


def test_a_failed_replacement_leaves_the_old_version_whole(store, monkeypatch):
    before = _air(store)

    def boom(self, path, **kwargs):
        path.write_bytes(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        store.treat_as_missing(before.table_id)
    assert _files(store) == [f"{before.table_id}.json", f"{before.table_id}.parquet"]
    assert store.get(before.table_id).sentinels == before.sentinels


def test_an_interrupted_replacement_never_shows_two_versions(store, monkeypatch):
    before = _air(store)
    monkeypatch.setattr(TableStore, "delete", lambda self, table_id: (_ for _ in ()).throw(OSError("gone")))
    with pytest.raises(OSError, match="gone"):
        store.treat_as_missing(before.table_id)
    assert len(_files(store)) == 4  # both versions on disk...
    (shown,) = store.list()  # ...but only the new one listed
    assert shown.replaces == before.table_id and shown.treated_as_missing


def test_records_written_before_these_fields_still_load(store):
    import json

    record = store.ingest(CSV, "old.csv").record
    path = store.root / f"{record.table_id}.json"
    data = json.loads(path.read_text())
    for key in ("dates", "sentinels", "treated_as_missing", "changes", "read_digest", "replaces"):
        data.pop(key)
    path.write_text(json.dumps(data))
    loaded = store.get(record.table_id)
    assert (loaded.dates, loaded.sentinels, loaded.changes, loaded.read_digest) == ((), (), (), "")
