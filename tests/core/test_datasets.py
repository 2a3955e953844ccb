"""core.datasets: reading any file people upload, kinds, profiles, content hash."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from core.datasets import (
    ColumnKind,
    dedupe_columns,
    format_number,
    infer_kind,
    profile_summary,
    profile_table,
    read_table,
    read_table_file,
    sniff_format,
    table_digest,
    target_balance,
)
from core.errors import BadInputError, CorruptFileError, EmptyTableError, FileTooLargeError, NotATableError

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def xlsx_bytes(frame: pd.DataFrame, **kwargs) -> bytes:
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False, engine="openpyxl", **kwargs)
    return buffer.getvalue()


# --- formats -----------------------------------------------------------------------------------


def test_plain_csv_reads_with_types():
    result = read_table(b"a,b,c\n1,2.5,x\n2,3.5,y\n", "t.csv")
    assert result.format == "csv"
    assert list(result.frame.columns) == ["a", "b", "c"]
    assert result.frame["a"].dtype.kind == "i"
    assert result.frame["b"].tolist() == [2.5, 3.5]
    assert result.notes == ()


def test_latin1_csv_loads_accents_correctly():
    text = "ville,prix\nMontréal,12\nQuébec,13\nSão Paulo,14\n"
    result = read_table(text.encode("latin-1"), "villes.csv")
    assert result.frame["ville"].tolist() == ["Montréal", "Québec", "São Paulo"]
    assert any("not UTF-8" in note for note in result.notes)


def test_utf8_bom_is_not_part_of_the_first_column_name():
    result = read_table("\ufeffname,n\nÉlodie,1\n".encode(), "bom.csv")
    assert list(result.frame.columns) == ["name", "n"]
    assert result.frame["name"].iloc[0] == "Élodie"


def test_semicolon_csv_with_decimal_commas():
    data = b"lieu;montant;quantite\nParis;1.234,50;3\nLyon;12,75;4\nNice;-0,5;5\n"
    result = read_table(data, "ventes.csv")
    assert result.frame["montant"].tolist() == [1234.5, 12.75, -0.5]
    assert result.frame["quantite"].tolist() == [3, 4, 5]
    assert any("semicolon" in n for n in result.notes)
    assert any("decimal comma" in n for n in result.notes)


def test_semicolon_csv_with_decimal_points_keeps_points():
    result = read_table(b"a;b\n1.5;x\n2.25;y\n", "points.csv")
    assert result.frame["a"].tolist() == [1.5, 2.25]


def test_tab_separated_file():
    result = read_table(b"a\tb\n1\t2\n3\t4\n", "t.tsv")
    assert result.frame.shape == (2, 2)


def test_duplicate_column_names_are_renamed_explicitly():
    result = read_table(b"x,y,x,x\n1,2,3,4\n", "dups.csv")
    assert list(result.frame.columns) == ["x", "y", "x (2)", "x (3)"]
    assert result.renamed_columns == {"x (2)": "x", "x (3)": "x"}
    assert result.frame["x (3)"].iloc[0] == 4
    assert any("column 3 is now 'x (2)'" in n for n in result.notes)


def test_dedupe_does_not_collide_with_an_existing_name():
    names, renamed, _ = dedupe_columns(["a", "a", "a (2)", None, ""])
    assert names == ["a", "a (3)", "a (2)", "column_4", "column_5"]
    assert len(set(names)) == len(names)
    assert renamed["a (3)"] == "a"


def test_html_in_column_names_is_kept_as_plain_text():
    result = read_table(b'"<b>bold</b>","<script>alert(1)</script>"\n1,2\n', "html.csv")
    assert list(result.frame.columns) == ["<b>bold</b>", "<script>alert(1)</script>"]


def test_parquet_round_trip(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    result = read_table(parquet_bytes(frame), "t.parquet")
    assert result.format == "parquet"
    pd.testing.assert_frame_equal(result.frame, frame)


def test_parquet_named_csv_is_read_as_parquet():
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    assert read_table(parquet_bytes(frame), "lying.csv").format == "parquet"


def test_excel_first_sheet_with_duplicate_headers():
    frame = pd.DataFrame([[1, 2, 3], [4, 5, 6]], columns=["k", "v", "k"])
    result = read_table(xlsx_bytes(frame), "book.xlsx")
    assert result.format == "excel"
    assert list(result.frame.columns) == ["k", "v", "k (2)"]
    assert result.frame["k (2)"].tolist() == [3, 6]


def test_excel_with_mixed_column_becomes_text():
    frame = pd.DataFrame({"code": [1, "A7", 3], "n": [1, 2, 3]})
    result = read_table(xlsx_bytes(frame), "mixed.xlsx")
    assert result.frame["code"].tolist() == ["1", "A7", "3"]
    assert any("mixes numbers and text" in n for n in result.notes)


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"   \n\n  "])
def test_empty_file_is_refused(data):
    with pytest.raises(EmptyTableError, match="is empty"):
        read_table(data, "empty.csv")


def test_header_only_csv_names_its_columns():
    with pytest.raises(EmptyTableError, match=r"column names \(a, b, c\) but no rows"):
        read_table(b"a,b,c\n", "header.csv")


def test_png_named_csv_is_refused_by_content():
    with pytest.raises(NotATableError, match="is a PNG image, not a table"):
        read_table(PNG_BYTES, "photo.csv")


def test_binary_garbage_is_refused():
    with pytest.raises(NotATableError, match="binary data"):
        read_table(b"abc\x00\x01\x02" * 100, "blob.csv")


def test_truncated_parquet_is_refused():
    data = parquet_bytes(pd.DataFrame({"a": range(1000)}))
    with pytest.raises(CorruptFileError, match="cut short or damaged"):
        read_table(data[: len(data) // 2], "cut.parquet")


def test_corrupt_parquet_body_is_refused():
    data = bytearray(parquet_bytes(pd.DataFrame({"a": range(1000), "b": ["x"] * 1000})))
    data[8:200] = b"\xff" * 192
    with pytest.raises(BadInputError, match="cut.parquet"):
        read_table(bytes(data), "cut.parquet")


def test_zip_that_is_not_a_workbook_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.csv", "a,b\n1,2\n")
    with pytest.raises(NotATableError, match="ZIP archive"):
        read_table(buffer.getvalue(), "data.xlsx")


def test_legacy_xls_is_refused_with_advice():
    with pytest.raises(NotATableError, match=r"Save it as \.xlsx or CSV"):
        read_table(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "old.xls")


def test_file_over_the_limit_is_refused_before_reading():
    with pytest.raises(FileTooLargeError, match="over the upload limit of 1.0 KB"):
        read_table(b"a\n" + b"1\n" * 2000, "big.csv", max_bytes=1024)


def test_ragged_csv_says_what_to_fix():
    with pytest.raises(BadInputError, match="as many values as the header"):
        read_table(b"a,b\n1,2\n3,4,5,6\n", "ragged.csv")


def test_missing_file_path_is_a_clear_error(tmp_path):
    with pytest.raises(BadInputError, match="There is no file at"):
        read_table_file(tmp_path / "nope.csv")


def test_refusals_are_value_errors_for_callers_that_expect_them():
    assert issubclass(NotATableError, ValueError)


@pytest.mark.parametrize(
    ("head", "expected"),
    [(b"PAR1....PAR1", "parquet"), (b"a,b\n1,2\n", "csv")],
)
def test_sniff_format(head, expected):
    assert sniff_format(head) == expected


# --- the real Kobe files -----------------------------------------------------------------------


def test_kobe_dev_reads_and_profiles(kobe_dev):
    result = read_table_file(kobe_dev)
    frame = result.frame
    assert frame.shape == (24271, 25)
    assert frame["shot_made_flag"].notna().sum() == 20285
    kinds = {p.name: p.kind for p in profile_table(frame)}
    assert kinds["shot_distance"] is ColumnKind.NUMERIC
    assert kinds["lat"] is ColumnKind.NUMERIC
    assert kinds["shot_made_flag"] is ColumnKind.BOOLEAN
    assert kinds["playoffs"] is ColumnKind.BOOLEAN
    assert kinds["shot_id"] is ColumnKind.ID
    assert kinds["game_id"] is ColumnKind.ID
    assert kinds["combined_shot_type"] is ColumnKind.CATEGORICAL
    assert kinds["game_date"] is ColumnKind.DATETIME
    target = next(p for p in profile_table(frame[["shot_made_flag"]]))
    assert target.missing == 24271 - 20285
    assert target.missing_pct == pytest.approx(100 * 3986 / 24271)


def test_kobe_prod_reads_as_csv_too(kobe_prod, tmp_path):
    frame = pd.read_parquet(kobe_prod)
    csv_bytes = frame.to_csv(index=False, sep=";", decimal=",").encode("latin-1")
    result = read_table(csv_bytes, "kobe_prod.csv")
    assert result.frame.shape == frame.shape
    np.testing.assert_allclose(result.frame["lat"], frame["lat"])
    assert (result.frame["shot_type"] == "3PT Field Goal").all()


# --- kinds -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "name", "kind"),
    [
        ([1.5, 2.5, 3.25, 4.0] * 10, "x", ColumnKind.NUMERIC),
        ([0, 1, 1, 0] * 10, "flag", ColumnKind.BOOLEAN),
        ([True, False] * 20, "b", ColumnKind.BOOLEAN),
        (["yes", "no", "Yes"] * 10, "answer", ColumnKind.BOOLEAN),
        (list(range(100)), "row", ColumnKind.ID),
        ([7, 7, 8, 9] * 10, "customer_id", ColumnKind.ID),
        ([f"u{i:05d}" for i in range(100)], "user", ColumnKind.ID),
        (["red", "green", "blue"] * 30, "colour", ColumnKind.CATEGORICAL),
        (["2021-01-01", "2021-02-15", "2022-12-31"] * 10, "when", ColumnKind.DATETIME),
        ([f"this is comment number {i} about the product" for i in range(100)], "comment", ColumnKind.TEXT),
        ([np.nan] * 10, "empty", ColumnKind.NUMERIC),
    ],
)
def test_infer_kind(values, name, kind):
    assert infer_kind(pd.Series(values, name=name)) is kind


def test_profile_flags_constant_and_all_missing_columns():
    frame = pd.DataFrame({"c": ["same"] * 5, "m": [None] * 5, "n": [1.0, 2.0, 3.0, 4.0, None]})
    by_name = {p.name: p for p in profile_table(frame)}
    assert by_name["c"].constant and not by_name["c"].all_missing
    assert by_name["m"].all_missing
    assert by_name["n"].missing_pct == 20.0
    assert by_name["n"].stats["median"] == 2.5
    summary = profile_summary(list(by_name.values()))
    assert summary.loc[summary["column"] == "n", "max"].item() == "4"
    assert summary.loc[summary["column"] == "c", "most common"].item() == "same"


@pytest.mark.parametrize(
    ("value", "text"),
    [(20010115.0, "20,010,115"), (0.060634, "0.0606"), (33.9876, "33.99"), (-118.2698, "-118.3"), (float("nan"), "")],
)
def test_format_number_for_people(value, text):
    assert format_number(value) == text


# --- target balance and digest -----------------------------------------------------------------


def test_target_balance_counts_classes_and_missing():
    table = target_balance(pd.Series([1.0, 0.0, 1.0, np.nan, 1.0], name="y"))
    assert table.to_dict("list") == {"value": ["1", "0", "(missing)"], "rows": [3, 1, 1], "share %": [60.0, 20.0, 20.0]}


def test_target_balance_bins_a_continuous_target():
    table = target_balance(pd.Series(np.linspace(0, 100, 500), name="price"))
    assert len(table) == 10
    assert table["rows"].sum() == 500


def test_digest_is_pinned():
    # Pinned: a change of the digest would break the lineage of every table stored before.
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None], "c": [0.5, np.nan, 2.0]})
    assert table_digest(frame) == "fcd7c46ee57a83a5c7ba28a61b1b09eb4837d6a131a9556d0be47dac46f7f302"


def test_digest_follows_content_not_format():
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    from_csv = read_table(frame.to_csv(index=False).encode(), "t.csv").frame
    from_parquet = read_table(parquet_bytes(frame), "t.parquet").frame
    assert table_digest(from_csv) == table_digest(from_parquet)
    changed = frame.assign(a=[1, 2, 4])
    assert table_digest(changed) != table_digest(frame)
