"""core.datasets: reading any file people upload, kinds, profiles, content hash; how dates are read,
codes for missing values, empty lines and columns."""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pandas as pd
import pytest

from core import datasets
from core.datasets import (
    ColumnKind,
    dedupe_columns,
    detect_date_order,
    find_sentinels,
    format_number,
    infer_kind,
    profile_summary,
    profile_table,
    read_table,
    read_table_file,
    sniff_format,
    switch_date_order,
    table_digest,
    target_balance,
    treat_as_missing,
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
    with pytest.raises(BadInputError, match="line 3 has 4 fields but the header has 2.*as many values as the header"):
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


# --- the UCI Air Quality style: day-first dates, -200 for missing, separator-only lines ------------

AIR_HEADER = "Date;Time;CO(GT);PT08.S1(CO);NMHC(GT);C6H6(GT);T;RH;AH;;"
# Every date reads both ways (no day over 12); read day-first the rows are in date order.
AIR_DATES = [f"{d}/2004" for d in ("10/03", "11/03", "12/03", "01/04", "02/04", "03/04") for _ in range(4)]


def _comma(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}".replace(".", ",")


def air_quality_csv(dates: list[str] | None = None, *, co_missing=(2, 5, 9), empty_lines: int = 4) -> bytes:
    """A small file in the style of the UCI Air Quality CSV: ';' separated, decimal commas, dates
    written day/month/year, times written 18.00.00, -200 where a sensor gave nothing, every line
    ending in ';;' and lines of separators only at the end."""
    dates = AIR_DATES if dates is None else dates
    lines = [AIR_HEADER]
    for i, date in enumerate(dates):
        co = "-200" if i in co_missing else _comma(1 + (i % 10) * 0.7)  # 1,0 to 7,3
        nmhc = "-200" if i % 3 == 0 else str(100 + 9 * i)
        row = [date, f"{18 + i % 4:02d}.00.00", co, str(1000 + 17 * i), nmhc, _comma(5 + i * 0.3),
               _comma(10 + (i % 7) * 1.5), _comma(40 + i % 9), _comma(0.7 + i * 0.01, 4)]
        lines.append(";".join(row) + ";;")
    lines += [";" * (AIR_HEADER.count(";"))] * empty_lines
    return ("\r\n".join(lines) + "\r\n").encode()


def test_air_quality_file_reads_dates_day_first_for_the_whole_column():
    result = read_table(air_quality_csv(), "AirQualityUCI.csv")
    dates = result.frame["Date"]
    assert pd.api.types.is_datetime64_any_dtype(dates)
    assert dates.iloc[0] == pd.Timestamp("2004-03-10")  # not 3 October
    assert dates.iloc[-1] == pd.Timestamp("2004-04-03")  # the data ends in April, not in December
    assert dates.is_monotonic_increasing
    (order,) = result.dates
    assert (order.column, order.order, order.ambiguous) == ("Date", "day-first", True)
    assert (order.first, order.last, order.count) == ("10 March 2004", "3 April 2004", 24)
    assert "could be read either way" in order.reason and "in date order" in order.reason
    assert "10/03/2004 is 10 March 2004" in order.describe()
    assert result.frame["Time"].iloc[0] == "18.00.00"  # a time of day, not a date


def test_a_day_over_12_anywhere_makes_the_whole_column_day_first():
    dates = ["10/03/2004", "11/03/2004", "12/03/2004", "13/03/2004", "01/04/2004"]
    result = read_table(air_quality_csv(dates, co_missing=()), "aq.csv")
    assert result.frame["Date"].tolist() == [pd.Timestamp(f"2004-{m}") for m in ("03-10", "03-11", "03-12", "03-13", "04-01")]
    (order,) = result.dates
    assert order.order == "day-first" and not order.ambiguous and not order.can_switch
    assert "such as 13/03/2004, can only be read day-first (13 cannot be a month)" in order.reason


def test_a_second_number_over_12_makes_the_column_month_first():
    result = read_table(b"when,n\n03/10/2004,1\n03/13/2004,2\n04/01/2004,3\n", "us.csv")
    assert result.frame["when"].tolist() == [pd.Timestamp("2004-03-10"), pd.Timestamp("2004-03-13"), pd.Timestamp("2004-04-01")]
    assert result.dates[0].order == "month-first" and not result.dates[0].ambiguous


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("10.03.2004", "13.03.2004", "2004-03-10"),
        ("10-03-2004", "13-03-2004", "2004-03-10"),
        ("10/03/04", "13/03/04", "2004-03-10"),
        ("10.03.04", "13.03.04", "2004-03-10"),
        ("10/03/2004 18:30", "13/03/2004 09:05:07", "2004-03-10 18:30"),
        ("10/03/2004 18.00.00", "13/03/2004 19.00.00", "2004-03-10 18:00"),
    ],
)
def test_day_first_dates_with_any_separator(first, second, expected):
    result = read_table(f"when;n\n{first};1\n{second};2\n".encode(), "d.csv")
    assert result.frame["when"].iloc[0] == pd.Timestamp(expected)
    assert result.frame["when"].iloc[1].day == 13
    assert result.dates[0].order == "day-first"


def test_iso_dates_are_unambiguous_and_left_as_they_are():
    result = read_table(b"when,n\n2004-03-10,1\n2004-03-11,2\n2004-04-01,3\n", "iso.csv")
    assert result.dates == ()
    assert result.frame["when"].tolist() == ["2004-03-10", "2004-03-11", "2004-04-01"]
    profile = profile_table(result.frame)[0]
    assert profile.kind is ColumnKind.DATETIME
    assert (profile.stats["first"], profile.stats["last"]) == ("2004-03-10 00:00:00", "2004-04-01 00:00:00")


@pytest.mark.parametrize("name", ["Time", "T"])
def test_times_of_day_are_not_taken_for_dates(name):
    data = f"Date;{name};n\n10/03/2004;18.00.00;1\n10/03/2004;10.30.15;2\n11/03/2004;09.05.00;3\n".encode()
    result = read_table(data, "times.csv")
    assert result.frame[name].tolist() == ["18.00.00", "10.30.15", "09.05.00"]
    assert [d.column for d in result.dates] == ["Date"]
    assert not any(name in note for note in result.notes)


@pytest.mark.parametrize(("separator", "order"), [(";", "day-first"), (",", "month-first")])
def test_dates_that_nothing_decides_say_so_and_follow_the_file_style(separator, order):
    # the same four dates in an order neither reading sorts: only the file's style is left to go by
    values = ["05/06/2004", "01/02/2004", "06/05/2004", "02/01/2004"]
    text = f"when{separator}n\n" + "".join(f"{v}{separator}{i}\n" for i, v in enumerate(values))
    result = read_table(text.encode(), "plain.csv")
    (date,) = result.dates
    assert date.order == order and date.ambiguous
    assert "nothing in the file tells which" in date.reason
    first = result.frame["when"].iloc[0]
    assert (first.month, first.day) == ((6, 5) if order == "day-first" else (5, 6))


def test_dates_written_both_ways_are_kept_as_text_with_a_note():
    result = read_table(b"when,n\n13/03/2004,1\n03/14/2004,2\n", "mixed.csv")
    assert result.dates == ()
    assert result.frame["when"].tolist() == ["13/03/2004", "03/14/2004"]
    assert any("no single reading" in note and "'when'" in note for note in result.notes)


def test_profile_reads_text_dates_in_one_order():
    profile = profile_table(pd.DataFrame({"d": ["10/03/2004", "13/03/2004", "01/04/2004"]}))[0]
    assert (profile.stats["first"], profile.stats["last"]) == ("2004-03-10 00:00:00", "2004-04-01 00:00:00")


def test_switch_date_order_swaps_day_and_month_and_keeps_times():
    frame = pd.DataFrame({"when": pd.to_datetime(["2004-03-10 18:00", None, "2004-04-01 07:30"]), "n": [1, 2, 3]})
    order = detect_date_order(pd.Series(["10/03/2004 18:00", None, "01/04/2004 07:30"], name="when"), prefer_day_first=True)
    switched_frame, switched = switch_date_order(frame, order)
    assert switched_frame["when"].tolist()[0] == pd.Timestamp("2004-10-03 18:00")
    assert pd.isna(switched_frame["when"].iloc[1])
    assert switched_frame["when"].iloc[2] == pd.Timestamp("2004-01-04 07:30")
    assert switched.order == "month-first" and "you chose month-first" in switched.reason
    assert switched.example_read == "3 October 2004 18:00"
    assert frame["when"].iloc[0] == pd.Timestamp("2004-03-10 18:00")  # the input is not changed
    forced = detect_date_order(pd.Series(["13/03/2004"], name="when"))
    with pytest.raises(BadInputError, match="can only be read day-first"):
        switch_date_order(pd.DataFrame({"when": pd.to_datetime(["2004-03-13"])}), forced)


def test_text_dates_in_excel_and_parquet_are_read_in_one_order():
    frame = pd.DataFrame({"Date": ["10/03/2004", "13/03/2004", "01/04/2004"], "n": [1, 2, 3]})
    for data, name in ((xlsx_bytes(frame), "book.xlsx"), (parquet_bytes(frame), "t.parquet")):
        result = read_table(data, name)
        assert result.frame["Date"].tolist() == [pd.Timestamp("2004-03-10"), pd.Timestamp("2004-03-13"), pd.Timestamp("2004-04-01")]
        assert result.dates[0].order == "day-first"


# --- codes for missing values ---------------------------------------------------------------------


def test_air_quality_sentinels_are_found_with_their_counts():
    result = read_table(air_quality_csv(), "AirQualityUCI.csv")
    found = {s.column: s for s in result.sentinels}
    assert set(found) == {"CO(GT)", "NMHC(GT)"}
    co = found["CO(GT)"]
    assert (co.value, co.rows, co.side, co.others_min, co.others_max) == (-200.0, 3, "below", 1.0, pytest.approx(7.3))
    assert co.describe() == "-200 appears in 3 rows of 'CO(GT)', far below its other values (1 to 7.3)."
    assert found["NMHC(GT)"].rows == 8
    assert (result.frame["CO(GT)"] == -200).sum() == 3  # found, not applied: the user decides


@pytest.mark.parametrize(
    ("values", "code", "side"),
    [
        (list(range(1990, 2021)) + [9999] * 5, 9999.0, "above"),
        ([v / 2 for v in range(-20, 60)] + [-999] * 4, -999.0, "below"),
        (list(range(0, 1200, 10)) + [-200] * 3, -200.0, "below"),  # a negative code in a never-negative column
    ],
)
def test_sentinels_far_outside_the_other_values_are_found(values, code, side):
    (found,) = find_sentinels(pd.DataFrame({"x": values}))
    assert (found.value, found.side) == (code, side)


@pytest.mark.parametrize(
    "values",
    [
        list(range(990, 1011)) + [999] * 4,  # 999 among its neighbours
        list(range(0, 999)) + [999] * 5,  # right next to the other values
        [0, 1] * 30,  # a 0/1 column
        list(range(1, 30)) + [-999],  # once is not a code
        list(range(-500, 1, 25)) + [-200] * 5,  # inside the range of a column that goes negative
        [v / 10 for v in range(-300, 400)] + [-99] * 5,  # a cold day, not far from the others
    ],
)
def test_legitimate_values_are_not_taken_for_sentinels(values):
    assert find_sentinels(pd.DataFrame({"x": values})) == ()


def test_booleans_and_text_are_never_sentinels():
    frame = pd.DataFrame({"b": [True, False] * 10, "t": ["-200"] * 20})
    assert find_sentinels(frame) == ()


def test_treat_as_missing_empties_only_the_code():
    frame = read_table(air_quality_csv(), "aq.csv").frame
    sentinels = find_sentinels(frame)
    changed, applied = treat_as_missing(frame, sentinels)
    assert changed["CO(GT)"].isna().sum() == 3 and changed["NMHC(GT)"].isna().sum() == 8
    assert changed["CO(GT)"].min() == 1.0
    assert changed["PT08.S1(CO)"].equals(frame["PT08.S1(CO)"])
    assert [(s.column, s.rows) for s in applied] == [("CO(GT)", 3), ("NMHC(GT)", 8)]
    assert (frame["CO(GT)"] == -200).sum() == 3  # the input is not changed


# --- empty lines and unnamed empty columns --------------------------------------------------------


def test_separator_only_lines_and_unnamed_empty_columns_are_dropped():
    result = read_table(air_quality_csv(), "AirQualityUCI.csv")
    assert result.frame.shape == (24, 9)
    assert list(result.frame.columns) == ["Date", "Time", "CO(GT)", "PT08.S1(CO)", "NMHC(GT)", "C6H6(GT)", "T", "RH", "AH"]
    assert result.frame["PT08.S1(CO)"].dtype == "int64"  # the empty lines did not make it decimal
    assert (result.dropped_rows, result.dropped_columns) == (4, ("column_10", "column_11"))
    assert "Dropped 4 empty lines and 2 unnamed empty columns." in result.notes
    assert not any("had no name" in note for note in result.notes)


def test_named_empty_columns_and_unnamed_columns_with_values_are_kept():
    result = read_table(b"a;Comment;;\n1;;5;\n2;;;\n;;;\n", "keep.csv")
    assert list(result.frame.columns) == ["a", "Comment", "column_3"]
    assert result.frame["column_3"].tolist()[0] == 5
    assert "Dropped 1 empty line and 1 unnamed empty column." in result.notes
    assert any("Column 3 had no name" in note for note in result.notes)


def test_empty_rows_are_dropped_in_quoted_csv_too():
    result = read_table(b'a,b,c\n1,x,"y, z"\n,,\n  ,"",\n2,w,"v"\n', "quoted.csv")
    assert result.frame["a"].tolist() == [1, 2] and result.frame["a"].dtype == "int64"
    assert "Dropped 2 empty lines." in result.notes


def test_excel_empty_rows_and_columns_beyond_the_header_are_dropped():
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Date", "x", None, "y"])
    sheet.append(["10/03/2004", 1, None, 2])
    sheet.append([None, None, None, None])
    sheet.append(["13/03/2004", 3, None, 4])
    sheet["F6"] = " "  # a stray space far below and to the right
    buffer = io.BytesIO()
    book.save(buffer)
    result = read_table(buffer.getvalue(), "sensors.xlsx")
    assert list(result.frame.columns) == ["Date", "x", "y"]
    assert result.frame["x"].tolist() == [1, 3] and result.frame["x"].dtype == "int64"
    assert result.frame["Date"].tolist() == [pd.Timestamp("2004-03-10"), pd.Timestamp("2004-03-13")]
    assert "Dropped 3 empty rows and 3 unnamed empty columns." in result.notes


def test_parquet_empty_rows_and_unnamed_columns_are_dropped_types_kept():
    frame = pd.DataFrame({"Unnamed: 0": [None, None, None], "v": [1.0, None, 2.0], "s": ["a", None, "b"]})
    result = read_table(parquet_bytes(frame), "t.parquet")
    assert list(result.frame.columns) == ["v", "s"]
    assert result.frame["v"].tolist() == [1.0, 2.0] and result.frame["v"].dtype == "float64"
    assert "Dropped 1 empty row and 1 unnamed empty column." in result.notes


# --- Excel workbooks that would exhaust memory (issue "Hardening", item 5) ---------------------------


def _rezip(data: bytes, member: str, change) -> bytes:
    """The workbook with one member's bytes changed by ``change`` (deflated like the rest)."""
    source, target = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            content = source.read(info.filename)
            out.writestr(info.filename, change(content) if info.filename == member else content)
    return target.getvalue()


SHEET = "xl/worksheets/sheet1.xml"


@pytest.fixture
def never_opened(monkeypatch):
    """Fails the test if the Excel reader opens the workbook."""
    import openpyxl

    def refuse(*args, **kwargs):
        raise AssertionError("the workbook was opened")

    monkeypatch.setattr(openpyxl, "load_workbook", refuse)


def test_workbook_packed_like_a_zip_bomb_is_refused_before_it_is_opened(never_opened):
    padding = b"<!--" + b" " * 20_000_000 + b"-->"  # 20 MB of XML that packs into some 20 KB
    bomb = _rezip(xlsx_bytes(pd.DataFrame({"a": [1, 2]})), SHEET, lambda xml: xml.replace(b"<sheetData>", padding + b"<sheetData>"))
    assert len(bomb) < 100_000
    with pytest.raises(BadInputError, match=r"'bomb.xlsx' is compressed [\d,]+ times \(xl/worksheets/sheet1.xml packs 19.1 MB"
                                            r" into [\d.]+ KB\), which real workbooks never are"):
        read_table(bomb, "bomb.xlsx")


def test_workbook_expanding_beyond_the_limit_is_refused_before_it_is_opened(monkeypatch, never_opened):
    monkeypatch.setattr(datasets, "XLSX_MAX_EXPANDED_BYTES", 4 << 20)
    rng = np.random.default_rng(0)
    noise = b"<!--" + rng.integers(0, 16, 6_000_000).astype("uint8").tobytes().hex().encode()[:6_000_000] + b"-->"
    book = _rezip(xlsx_bytes(pd.DataFrame({"a": [1, 2]})), SHEET, lambda xml: xml.replace(b"<sheetData>", noise + b"<sheetData>"))
    with pytest.raises(FileTooLargeError, match=r"'big.xlsx' expands to 5.7 MB when opened, over the 4.0 MB limit for "
                                                r"workbooks.*Save the sheet as CSV"):
        read_table(book, "big.xlsx")


def test_workbook_declaring_a_huge_sheet_is_refused_before_it_is_read():
    book = _rezip(xlsx_bytes(pd.DataFrame({"a": [1, 2]})), SHEET,
                  lambda xml: re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:XFD1048576"', xml))
    with pytest.raises(FileTooLargeError, match=r"the sheet 'Sheet1' spans 1,048,576 rows x 16,384 columns "
                                                r"\(17,179,869,184 cells\), over the limit of 10,000,000 cells"):
        read_table(book, "huge.xlsx")


def test_sheet_with_a_cell_in_the_last_column_of_every_row_is_stopped_while_read(monkeypatch):
    """Small on disk and declaring one cell, but each row reaches column XFD: 16,384 cells a row."""
    import openpyxl

    monkeypatch.setattr(datasets, "XLSX_MAX_CELLS", 100_000)
    book = openpyxl.Workbook()
    for row in range(1, 51):
        book.active.cell(row=row, column=1, value=row)
        book.active.cell(row=row, column=16_384, value=1)
    buffer = io.BytesIO()
    book.save(buffer)
    sparse = _rezip(buffer.getvalue(), SHEET, lambda xml: re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1"', xml))
    with pytest.raises(FileTooLargeError, match=r"the sheet 'Sheet' holds more than 100,000 cells"):
        read_table(sparse, "sparse.xlsx")


@pytest.fixture(scope="module")
def workbook_100k() -> bytes:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("sales")
    sheet.append(["id", "amount", "shop", "day"])
    shops = ["Lyon", "Porto", "São Paulo", "Zürich"]
    for i in range(100_000):
        sheet.append([i, round(i * 0.37, 2), shops[i % 4], f"{1 + i % 28:02d}/03/2004"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_a_real_workbook_of_100k_rows_passes_the_checks_and_loads(workbook_100k):
    with zipfile.ZipFile(io.BytesIO(workbook_100k)) as archive:
        datasets.check_workbook(archive, "sales.xlsx")
        sheet = archive.getinfo(SHEET)
    assert sheet.file_size / sheet.compress_size < datasets.XLSX_MAX_RATIO / 3  # far from the limit
    result = read_table(workbook_100k, "sales.xlsx")
    frame = result.frame
    assert frame.shape == (100_000, 4)
    assert frame["id"].dtype == "int64" and frame["amount"].iloc[-1] == round(99_999 * 0.37, 2)
    assert frame["shop"].iloc[2] == "São Paulo"
    assert frame["day"].iloc[27] == pd.Timestamp("2004-03-28") and result.dates[0].order == "day-first"


# --- parquet with two columns of one name (item 13) ----------------------------------------------------


def test_parquet_with_duplicate_column_names_is_read_and_renamed():
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table([pa.array([1, 2]), pa.array(["a", "b"]), pa.array([0.5, 1.5])], names=["x", "y", "x"]), buffer)
    result = read_table(buffer.getvalue(), "dups.parquet")
    assert list(result.frame.columns) == ["x", "y", "x (2)"]
    assert result.frame["x (2)"].tolist() == [0.5, 1.5]
    assert result.renamed_columns == {"x (2)": "x"}
    assert "More than one column was called 'x'; column 3 is now 'x (2)'." in result.notes


# --- rows longer or shorter than the header (item 10) ---------------------------------------------------


def test_a_first_data_row_longer_than_the_header_is_refused_with_its_line():
    # pandas took the extra field for an index and silently dropped a column for every row
    with pytest.raises(BadInputError, match=r"'labels.csv' is not a regular table: line 2 has 5 fields but the header "
                                            r"has 4 \(and 1 more: line 3\)\..*may lack a name"):
        read_table(b"a,b,c,d\nr1,1,2,3,4\nr2,5,6,7,8\n", "labels.csv")


def test_many_long_rows_are_counted_and_the_first_lines_listed():
    data = b"a,b\n" + b"".join(b"1,2\n" if i % 3 else b"1,2,3\n" for i in range(30))
    with pytest.raises(BadInputError, match=r"line 2 has 3 fields but the header has 2 \(and 9 more: lines 5, 8, 11, 14, 17, \.\.\.\)"):
        read_table(data, "long.csv")


def test_short_rows_are_counted_and_their_cells_left_empty():
    result = read_table(b"a,b,c\n1,2,3\n4,5\n6,7,8\n9\n", "short.csv")
    expected = pd.DataFrame({"a": [1, 4, 6, 9], "b": [2.0, 5.0, 7.0, np.nan], "c": [3.0, np.nan, 8.0, np.nan]})
    pd.testing.assert_frame_equal(result.frame, expected)
    assert "2 rows (lines 3, 5) have fewer fields than the header; their missing cells are empty." in result.notes


def test_many_short_rows_list_the_first_lines():
    data = b"a;b;c\n" + b"".join(b"1;2;3\n" if i % 4 else b"1;2\n" for i in range(48))
    result = read_table(data, "short.csv")
    assert "12 rows (lines 2, 6, 10, 14, 18, ...) have fewer fields than the header; their missing cells are empty." in result.notes


def test_separators_beyond_the_header_at_the_end_of_lines_are_left_out():
    result = read_table(b"a;b\n1;2;\n3;4;\n", "trailing.csv")
    assert result.frame.to_dict("list") == {"a": [1, 3], "b": [2, 4]}
    assert "2 rows end with more separators than the header has; the empty fields there were left out." in result.notes


def test_quoted_values_after_a_space_keep_their_separators():
    result = read_table(b'name, note\nAnn, "late, again"\nBob, "ok"\n', "spaced.csv")
    assert result.frame.to_dict("list") == {"name": ["Ann", "Bob"], "note": ["late, again", "ok"]}


# --- encodings (item 11) --------------------------------------------------------------------------------

UNICODE_TEXT = "Name\tCity\tAmount\nÉlodie\tTōkyō\t1,5\nJosé\tSão Paulo\t2,25\n"


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be"])
def test_utf16_text_as_excel_saves_it_is_read(codec):
    data = UNICODE_TEXT.encode(codec)
    if codec == "utf-16-be":
        data = b"\xfe\xff" + data
    result = read_table(data, "unicode.txt")
    assert result.frame.to_dict("list") == {"Name": ["Élodie", "José"], "City": ["Tōkyō", "São Paulo"], "Amount": [1.5, 2.25]}
    assert any("UTF-16" in note for note in result.notes)
    assert sniff_format(data[:100]) == "csv"


def test_utf16_without_a_byte_order_mark_is_read():
    result = read_table("a,b\nÉlodie,1\nJosé,2\n".encode("utf-16-le"), "nobom.csv")
    assert result.frame["a"].tolist() == ["Élodie", "José"]


def test_little_endian_numbers_are_still_binary_not_utf16():
    data = (np.arange(4000) % 200 + 1).astype("<i2").tobytes()  # every other byte zero, like UTF-16 text
    with pytest.raises(NotATableError, match="binary data"):
        read_table(data, "samples.csv")


def test_shift_jis_text_is_read_as_japanese_not_as_latin1():
    text = "商品名,価格,産地\n" + "".join(f"りんご{i},{100 + i},青森県\n" for i in range(20)) + "みかん,80,愛媛県\n"
    result = read_table(text.encode("shift_jis"), "商品.csv")
    assert result.frame.columns.tolist() == ["商品名", "価格", "産地"]
    assert result.frame["産地"].iloc[-1] == "愛媛県" and result.frame["価格"].iloc[-1] == 80
    assert "The file is not UTF-8; it was read as Shift-JIS (Japanese) text." in result.notes


def test_cyrillic_text_is_read_as_cyrillic():
    text = "город;население\nМосква;12600000\nСанкт-Петербург;5380000\nНовосибирск;1620000\n"
    assert read_table(text.encode("cp1251"), "города.csv").frame["город"].tolist() == ["Москва", "Санкт-Петербург", "Новосибирск"]


def test_text_no_single_encoding_reads_is_refused_rather_than_stored_garbled():
    data = b"a,b\n" + "".join(f"Montréal {i},1\n" for i in range(5)).encode("latin-1") \
        + "".join(f"東京タワー{i},2\n" for i in range(5)).encode("shift_jis")
    with pytest.raises(BadInputError, match=r"'mixed.csv' is not UTF-8 text, and no other encoding reads it as clean text "
                                            r"\(tried UTF-8, UTF-16 and the usual .* Japanese, Chinese and Korean encodings\)"
                                            r".*save it as CSV UTF-8"):
        read_table(data, "mixed.csv")


@pytest.mark.parametrize("data", [
    "city\nZürich\nMünchen\n".encode() + "Köln\n".encode("latin-1"),
    "name\ncafé\n".encode() + b"plain\n" * 300_000 + "Málaga\n".encode("latin-1"),  # after 1.8 MB
])
def test_utf8_text_with_a_line_in_another_encoding_is_refused_not_stored_garbled(data):
    """Found by the hardening probe: read as Windows-1250 / 1252, 'Zürich' was stored as 'ZĂĽrich'."""
    with pytest.raises(BadInputError, match=r"'pasted.csv' mixes encodings: its accented text is mostly UTF-8.*CSV UTF-8"):
        read_table(data, "pasted.csv")


def test_a_late_non_utf8_byte_decides_the_encoding_of_the_whole_file():
    data = b"name,n\n" + b"plain,1\n" * 100_000 + "Québec,2\n".encode("cp1252")
    result = read_table(data, "late.csv")
    assert result.frame["name"].iloc[-1] == "Québec"
    assert "The file is not UTF-8; it was read as Windows-1252 / Latin-1 text." in result.notes


def test_sniff_csv_file_tells_the_encoding_for_scoring(tmp_path):
    path = tmp_path / "unicode.txt"
    path.write_bytes(UNICODE_TEXT.encode("utf-16"))
    dialect = datasets.sniff_csv_file(path)
    assert (dialect.encoding, dialect.delimiter, dialect.decimal, dialect.header) == ("utf-16", "\t", ",", ("Name", "City", "Amount"))
    assert pd.read_csv(path, sep="\t", encoding=dialect.encoding)["City"].tolist() == ["Tōkyō", "São Paulo"]


# --- CSV read in blocks (item 6) -------------------------------------------------------------------------


def mixed_csv(rows: int, *, sep: str = ",", decimal: str = ".") -> bytes:
    """Whole numbers (one with gaps, one with -999 for "missing"), decimals, text, day-first dates and
    empty lines, like a real export."""
    rng = np.random.default_rng(1)
    count = rng.poisson(3, rows).astype(float)
    count[::37] = np.nan
    code = rng.integers(0, 300, rows)
    code[::101] = -999
    frame = pd.DataFrame({
        "id": np.arange(rows), "amount": rng.gamma(2, 30, rows).round(2), "count": pd.array(count, dtype="Int64"),
        "code": code, "city": rng.choice(["Lyon", "São Paulo", "Zürich"], rows),
        "day": pd.to_datetime(np.datetime64("2004-03-01") + (np.arange(rows) // 500).astype("timedelta64[D]")).strftime("%d/%m/%Y"),
    })
    text = frame.to_csv(index=False, sep=sep, decimal=decimal)
    return (text + sep * 5 + "\n").encode()


def test_a_large_csv_is_read_in_blocks_and_never_whole(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from core.tables import TableStore

    monkeypatch.setattr(datasets, "_BLOCK_BYTES", 64 << 10)
    monkeypatch.setattr(datasets, "_CHUNK_BYTES", 128 << 10)
    monkeypatch.setattr(datasets, "_ROW_GROUP_BYTES", 512 << 10)
    data = mixed_csv(60_000, sep=";", decimal=",")
    assert len(data) > 2_000_000
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    reference = read_table(data, "big.csv")  # the same reader, into one frame

    def whole(*args, **kwargs):
        raise AssertionError("the file was read whole by pandas")

    written = []
    write = datasets._ParquetSink.write
    monkeypatch.setattr(pd, "read_csv", whole)
    monkeypatch.setattr(datasets._ParquetSink, "write", lambda self, table: (written.append(table.num_rows), write(self, table)))
    store = TableStore(tmp_path / "tables")
    record = store.ingest(path, "big.csv").record
    assert len(written) > 10 and max(written) < 60_000 / 10 and sum(written) == 60_000
    assert pq.ParquetFile(store.path(record.table_id)).metadata.num_row_groups > 1
    assert record.digest == table_digest(reference.frame) == table_digest(store.load(record.table_id))
    stored = store.load(record.table_id)
    assert stored.dtypes.astype(str).to_dict() == {"id": "int64", "amount": "float64", "count": "float64", "code": "int64",
                                                   "city": "object", "day": "datetime64[ns]"}
    assert stored["day"].iloc[-1] == pd.Timestamp("2004-06-28") and record.dates[0].order == "day-first"
    assert [(s.column, s.value, s.rows) for s in record.sentinels] == [("code", -999.0, 595)]
    assert record.sentinels == reference.sentinels == find_sentinels(reference.frame)
    assert "Dropped 1 empty line." in record.notes and "Numbers use a decimal comma (1,5 means one and a half)." in record.notes
    assert not list(store.root.glob(".*"))  # no temporary file left


def test_the_streamed_reader_reads_what_pandas_reads(kobe_prod):
    frame = pd.read_parquet(kobe_prod)
    data = frame.to_csv(index=False).encode()
    pd.testing.assert_frame_equal(read_table(data, "kobe.csv").frame, pd.read_csv(io.BytesIO(data)))


def test_dates_read_in_blocks_are_judged_over_the_whole_column(monkeypatch):
    monkeypatch.setattr(datasets, "_BLOCK_BYTES", 8 << 10)
    monkeypatch.setattr(datasets, "_CHUNK_BYTES", 8 << 10)
    # every date reads both ways (no day over 12); only read day-first are the rows in date order
    days = [f"{d:02d}/{m:02d}/2004" for m in range(1, 13) for d in range(1, 13) for _ in range(40)]
    data = ("when,n\n" + "".join(f"{day},{i}\n" for i, day in enumerate(days))).encode()
    assert len(data) > 10 * (8 << 10)
    result = read_table(data, "days.csv")
    (order,) = result.dates
    assert (order.order, order.ambiguous, order.count) == ("day-first", True, len(days))
    assert "in date order" in order.reason and (order.first, order.last) == ("1 January 2004", "12 December 2004")
    assert order == detect_date_order(pd.Series(days, name="when"))  # as if the column were read at once


def test_read_parquet_gives_the_frame_pandas_gives_and_a_short_process_ends_cleanly(tmp_path):
    """pd.read_parquet hands pyarrow an open Python file; pyarrow's dataset reader then leaves threads
    that abort a process ending right after it (exit 134, "terminate called without an active
    exception", about one short run in four here). The studio's reader must give the same frame and
    let every such process end with 0."""
    import subprocess
    import sys

    frame = pd.DataFrame({"a": [1.5, None, 3.0], "b": ["x", None, "z"]}, index=pd.Index([7, 8, 9], name="key"))
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    pd.testing.assert_frame_equal(datasets.read_parquet(path), pd.read_parquet(path))
    pd.testing.assert_frame_equal(datasets.read_parquet(path, columns=["b"]), pd.read_parquet(path, columns=["b"]))
    code = f"from core.datasets import read_parquet; read_parquet({str(path)!r})"
    ended = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60) for _ in range(12)]
    assert [run.returncode for run in ended] == [0] * 12, [run.stderr[-300:] for run in ended if run.returncode]
