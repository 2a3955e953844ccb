"""Hardening probe: bad inputs, injected faults and lost work, in a temporary workspace with the
embedded MLflow store. Re-runnable; it changes nothing outside its temporary folder.

What it measures:

1. **Bad inputs** (generated here, about 200): files stored through the table store
   (``TableStore.ingest(bytes, name)``): cut and flipped parquet, empty and header-only files,
   ragged rows, binary junk named .csv, NUL bytes, UTF-16 / UTF-8-BOM / legacy encodings, ZIPs
   that are not workbooks, workbook bombs, duplicate names, formulas, huge fields, separator-only
   lines, wrong extensions, odd file names; files scored with a small registered model
   (``scoring.plan`` + ``scoring.run``): missing columns, text in numbers, empty columns, +-inf,
   unseen categories, no rows, data-folder names with ``..``, NUL or symlinks
   (``scoring.data_file``), columns that change kind further down; training specs and tables
   checked before a job (``core.training.prepare``, ``jobs.submit_training``): constant target,
   inf, target copies, out-of-range settings.
   *Handled cleanly*: it works and the result is right (rows kept, names unique, text not garbled),
   or it raises a ``core.errors.StudioError`` whose message is not empty and holds no traceback;
   and afterwards no ``*.part`` file is left in the workspace, no MLflow run is RUNNING, nothing is
   stored for a refused file. Anything else (another exception, no answer within ``--timeout``
   seconds, a leftover) is listed by name. Where the README documents another outcome than the one
   seen (a usable file refused, say) the case is listed apart, as a difference, not a failure;
   for the security cases (paths outside the data folder, workbook bombs) accepting is a failure.
2. **Faults** (about 80): SIGKILL / SIGTERM / SIGSTOP of a training job's worker, supervisor or
   both at named moments (each process frozen first, so the moment is exact), then
   ``jobs.sweep``; cancel, kill -9 and killpg of a scoring job mid-file; concurrent
   registrations of one run (threads and processes), concurrent ``submit_scoring`` of one plan,
   concurrent ingests; tampered model files (a byte appended, a malicious pickle, an extra file,
   a symlink, hashes removed) and versions whose source lies outside the artifact root, loaded
   by scoring, a scoring job and the REST server's loader; errors raised inside scoring, export,
   ingest and training (disk full, store errors, Ctrl-C, a failing model); damaged job folders
   and job files whose process ids now belong to someone else.
   *Survived*: after the sweep the job's state is final, no MLflow run is RUNNING in any
   experiment, no version registered by a failed job is left, runs that had FINISHED stay
   FINISHED, no process of the job is alive, no ``*.part`` file is left, the malicious pickle
   never ran, and the fault's own invariant (one version, one job, one table, ...) holds.
3. **Lost**: rows of successful scorings (output rows against input rows) and the FINISHED runs
   of successful jobs, checked again at the very end.

Prints one ``FAIL`` line per failing case, the differences and notes, and::

    bad inputs: N tried, M handled cleanly
    faults: N injected, M survived
    runs or rows lost: K

It exits 0 even when cases fail (it is a probe, not a test).

    .venv/bin/python benchmarks/probe.py [--quick] [--seed N] [--timeout S] [--keep] [--only SECTIONS]

``--quick`` injects fewer kill moments (about 7 instead of 21). Training jobs run in real background
processes (2 at most at once); a full run takes about 6-9 minutes on 2 busy cores.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import json
import os
import pickle
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import PROJECT_ROOT  # noqa: E402

FEATURES = ("num1", "num2", "cat")
TARGET = "label"
_TRACEBACK = re.compile(r'Traceback \(most recent call last\)|File "[^"\n]+", line \d+')
_CATCH_ALL = re.compile(r"could not be read as a table \((\w+):|Unexpected error \((\w+)\)")


# --- the probe's own signals ----------------------------------------------------------------------


class Mismatch(Exception):  # noqa: N818 - a verdict, not an error of the studio
    """The studio answered, but the answer is wrong (rows dropped, names clash, text garbled)."""


class ProbeTimeout(BaseException):  # noqa: N818 - a BaseException, so no `except Exception` of the studio swallows it
    pass


class Injected(Exception):  # noqa: N818
    """The error a fault injection raises (the studio must clean up after it, not hide it)."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


@contextmanager
def deadline(seconds: float | None):
    """Raise ProbeTimeout in the main thread after ``seconds`` (a hang is a finding, not a stuck probe)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum, frame):
        raise ProbeTimeout(f"no answer within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextmanager
def patched(owner, attribute: str, replacement):
    original = getattr(owner, attribute)
    setattr(owner, attribute, replacement)
    try:
        yield original
    finally:
        setattr(owner, attribute, original)


def nth_call_fails(original, n: int, error: BaseException, when: Callable[..., bool] | None = None):
    """A wrapper of ``original`` whose ``n``-th matching call raises ``error`` (the others pass through)."""
    count = {"calls": 0}

    def wrapper(*args, **kwargs):
        if when is None or when(*args, **kwargs):
            count["calls"] += 1
            if count["calls"] == n:
                raise error
        return original(*args, **kwargs)

    wrapper.count = count  # type: ignore[attr-defined]
    return wrapper


def message_problem(exc: BaseException) -> str | None:
    text = str(exc)
    if not text.strip():
        return "its message is empty"
    if _TRACEBACK.search(text):
        return "its message holds traceback text"
    return None


def where(exc: BaseException) -> str:
    """Where an exception came from: the innermost frame in the studio's core/, and the innermost of all."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "no traceback"
    core = str(PROJECT_ROOT / "core")
    ours = [f for f in frames if f.filename.startswith(core)]
    last = frames[-1]
    said = f"raised at {Path(last.filename).name}:{last.lineno} in {last.name}"
    if ours and ours[-1] is not last:
        mine = ours[-1]
        said = f"from {Path(mine.filename).relative_to(PROJECT_ROOT)}:{mine.lineno} in {mine.name}, " + said
    return said


def short(text: object, limit: int = 300) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[:limit] + "..."


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


# --- results ---------------------------------------------------------------------------------------


@dataclass
class Result:
    kind: str  # "bad input" or "fault"
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Ledger:
    results: list[Result] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)  # outcome differs from what the README documents
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # faults that could not be injected (moment missed)
    lost: list[str] = field(default_factory=list)

    def add(self, kind: str, name: str, problems: list[str], detail: str = "") -> None:
        ok = not problems
        self.results.append(Result(kind, name, ok, "; ".join(problems) if problems else detail))
        mark = "ok  " if ok else "FAIL"
        said = f" -> {detail}" if ok and detail else ""
        print(f"  {mark} {kind}: {name}" + (said if ok else f": {short('; '.join(problems), 600)}"), flush=True)

    def count(self, kind: str) -> tuple[int, int]:
        mine = [r for r in self.results if r.kind == kind]
        return len(mine), sum(r.ok for r in mine)


# --- the workspace ---------------------------------------------------------------------------------


class Probe:
    def __init__(self, root: Path, seed: int, timeout: float, quick: bool) -> None:
        import numpy as np

        self.root, self.seed, self.timeout, self.quick = root, seed, timeout, quick
        self.rng = np.random.default_rng(seed)
        self.ledger = Ledger()
        ws, data = root / "ws", root / "data"
        data.mkdir(parents=True, exist_ok=True)
        # the job processes read their settings from the environment: the same workspace, the embedded store
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.update({"STUDIO_WORKSPACE": str(ws), "STUDIO_DATA_DIR": str(data), "STUDIO_MAX_JOBS": "2",
                           "PYCARET_CUSTOM_LOGGING_PATH": str(ws / "pycaret.log"),
                           "PYCARET_CUSTOM_LOGGING_LEVEL": "WARNING"})
        from core.settings import harden_process, load_settings

        self.s = load_settings({"STUDIO_WORKSPACE": str(ws), "STUDIO_DATA_DIR": str(data), "STUDIO_MAX_JOBS": "2"})
        harden_process(self.s)
        self.kept_runs: dict[str, str] = {}  # run id -> what it is (FINISHED runs that must stay)
        self.started_pids: set[int] = set()

    # store queries ------------------------------------------------------------------------------
    def client(self):
        from core import tracking

        return tracking.client(self.s)

    def running_runs(self) -> list[str]:
        from mlflow.entities import ViewType

        c = self.client()
        experiments = c.search_experiments(view_type=ViewType.ALL)
        if not experiments:
            return []
        runs = c.search_runs([e.experiment_id for e in experiments], "attributes.status = 'RUNNING'",
                             run_view_type=ViewType.ALL, max_results=5000)
        return [r.info.run_id for r in runs]

    def job_runs_db(self, job_id: str) -> dict[str, str] | None:
        """run id -> status of a job's runs, read straight from sqlite (fast, works while a process is frozen)."""
        try:
            con = sqlite3.connect(f"file:{self.s.mlflow_db}?mode=ro", uri=True, timeout=2)
            try:
                rows = con.execute("SELECT r.run_uuid, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                                   "WHERE t.key = 'studio.job_id' AND t.value = ?", (job_id,)).fetchall()
            finally:
                con.close()
            return dict(rows)
        except sqlite3.Error:
            return None

    def versions(self, name: str) -> list:
        try:
            return list(self.client().search_model_versions(f"name='{name}'"))
        except Exception:  # noqa: BLE001 - no such model
            return []

    def part_files(self) -> set[str]:
        ws = self.s.workspace
        if not ws.exists():
            return set()
        found = {str(p) for p in ws.rglob("*.part")}
        found |= {str(p) for p in self.s.scorings_dir.glob(".*.scores")} if self.s.scorings_dir.exists() else set()
        return found

    def stored(self) -> set[str]:
        folder = self.s.tables_dir
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()

    # one case -----------------------------------------------------------------------------------
    def attempt(self, group: str, name: str, action: Callable[[], Any], *, expect: str = "either",
                security: bool = False, post: Callable[[str], list[str]] | None = None,
                timeout: float | None = None, runs: bool = True) -> str:
        """Run one bad input; classify it (ok / refused / not clean) and check what it left behind."""
        label = f"{group}/{name}"
        parts = self.part_files()
        problems: list[str] = []
        outcome, said_as = "ok", ""
        started = time.monotonic()
        try:
            with deadline(timeout or self.timeout):
                action()
        except Mismatch as exc:
            outcome, problems = "wrong", [f"worked but wrong: {exc}"]
        except ProbeTimeout as exc:
            outcome, problems = "hang", [str(exc)]
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - what the probe is here to see
            from core.errors import StudioError

            if isinstance(exc, StudioError):
                outcome, said_as = "refused", f"{type(exc).__name__}: {short(exc, 90)}"
                bad = message_problem(exc)
                if bad:
                    problems.append(f"{type(exc).__name__} but {bad}: {short(exc)}")
                caught = _CATCH_ALL.search(str(exc))
                if caught:
                    cause = exc.__cause__
                    self.ledger.notes.append(
                        f"{label}: refused only by a catch-all wrapper ({type(exc).__name__} around "
                        f"{type(cause).__name__ if cause else caught.group(1) or caught.group(2)}): {short(exc, 200)}")
            else:
                outcome = "error"
                problems.append(f"{type(exc).__name__}: {short(exc, 250)} ({where(exc)})")
        seconds = time.monotonic() - started
        if post is not None:
            try:
                problems += post(outcome)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"probe could not check what was left: {type(exc).__name__}: {exc}")
        left = sorted(self.part_files() - parts)
        if left:
            problems.append(f"left {len(left)} half-written file(s): {', '.join(Path(p).name for p in left[:3])}")
            for p in left:
                shutil.rmtree(p, ignore_errors=True) if Path(p).is_dir() else Path(p).unlink(missing_ok=True)
        if runs:
            running = self.running_runs()
            if running:
                problems.append(f"left {len(running)} MLflow run(s) RUNNING")
                for run_id in running:  # so the next case starts clean
                    self.client().set_terminated(run_id, "FAILED")
        if outcome in ("ok", "refused") and expect in ("ok", "refuse") and outcome != ("ok" if expect == "ok" else "refused"):
            said = f"{label}: {'accepted' if outcome == 'ok' else 'refused'}, expected {'it to work' if expect == 'ok' else 'a refusal'}"
            if security:
                problems.append(said.split(": ", 1)[1] + " (a security case)")
            else:
                self.ledger.differences.append(said)
        if seconds > 20 and not problems:
            self.ledger.notes.append(f"{label}: took {seconds:.0f} s")
        self.ledger.add("bad input", label, problems, detail=f"{outcome}{' (' + said_as + ')' if said_as else ''}, {seconds:.1f} s")
        return outcome

    def fault(self, name: str, inject: Callable[[], list[str]], *, timeout: float = 240) -> None:
        """Inject one fault; ``inject`` returns the invariants that failed (empty: survived), or raises
        Skip when the fault could not be injected."""
        parts = self.part_files()
        try:
            with deadline(timeout):
                problems = inject()
        except Skip as exc:
            self.ledger.skipped.append(f"{name}: {exc}")
            print(f"  skip fault: {name}: {exc}", flush=True)
            return
        except ProbeTimeout as exc:
            problems = [f"the fault's check did not end: {exc}"]
        except Exception as exc:  # noqa: BLE001
            problems = [f"{type(exc).__name__} escaped: {short(exc, 300)} ({where(exc)})"]
        left = sorted(p for p in self.part_files() - parts)
        if left:
            problems.append(f"left {len(left)} half-written file(s): {', '.join(Path(p).name for p in left[:3])}")
            for p in left:
                shutil.rmtree(p, ignore_errors=True) if Path(p).is_dir() else Path(p).unlink(missing_ok=True)
        self.ledger.add("fault", name, problems)


class Skip(Exception):  # noqa: N818
    pass


# --- data ------------------------------------------------------------------------------------------


def model_frame(rng, n: int, labelled: bool = True):
    import pandas as pd

    frame = pd.DataFrame({"num1": rng.normal(size=n), "num2": rng.integers(0, 10, n),
                          "cat": rng.choice(["a", "b", "c"], n)})
    if labelled:
        frame[TARGET] = ((frame["num1"] + (frame["cat"] == "a") * 1.0 + rng.normal(0, 0.7, n)) > 0.4).astype(int)
    return frame


def parquet_bytes(frame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def arrow_parquet_bytes(table, **kwargs) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, **kwargs)
    return buf.getvalue()


def xlsx_bytes(rows: list[list[object]]) -> bytes:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def rebuild_xlsx(sheet_writer: Callable[[Any], None], *, level: int = 9, extra: dict[str, bytes] | None = None,
                 members: int = 0) -> bytes:
    """A real workbook whose first sheet's XML is written by ``sheet_writer`` (streamed, compressed)."""
    template = zipfile.ZipFile(io.BytesIO(xlsx_bytes([["a", "b"], [1, 2]])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        for name in template.namelist():
            if name == "xl/worksheets/sheet1.xml":
                with z.open(name, "w", force_zip64=True) as f:
                    sheet_writer(f)
            else:
                z.writestr(name, template.read(name))
        for name, data in (extra or {}).items():
            z.writestr(name, data)
        for k in range(members):
            z.writestr(f"xl/media/pad{k}.bin", b"")
    return out.getvalue()


SHEET_HEAD = b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'


def bomb_sheet(expanded: int):
    def write(f):
        f.write(SHEET_HEAD + b"<sheetData>")
        row = b'<row><c t="inlineStr"><is><t>' + b"A" * 200 + b"</t></is></c></row>"
        chunk = row * 4096
        written = 0
        while written < expanded:
            f.write(chunk)
            written += len(chunk)
        f.write(b"</sheetData></worksheet>")
    return write


def fixed_sheet(xml: bytes):
    return lambda f: f.write(xml)


def csv_text(rows: list[list[object]], sep: str = ",") -> str:
    return "".join(sep.join("" if v is None else str(v) for v in row) + "\n" for row in rows)


TEXTS = {  # encoding -> values every reader must give back exactly (no mojibake)
    "latin-1": ["café", "Zürich", "São Paulo", "Ærøskøbing", "naïve", "Málaga", "Düsseldorf", "Göteborg", "Señor", "Île"],
    "cp1252": ["€ 5 café", "“quoted” naïve", "Œuvre – Zürich", "Málaga", "façade", "Ærø", "Señor", "Göteborg"],
    "cp1250": ["Łódź", "Kraków", "Gdańsk", "Žižkov", "Příbram", "Zażółć gęślą jaźń", "Brno", "Świętokrzyskie"],
    "cp1251": ["Москва", "Санкт-Петербург", "Новосибирск", "Привет мир", "Екатеринбург", "Казань", "Самара"],
    "shift_jis": ["東京", "大阪", "京都", "日本語のテキスト", "札幌", "横浜", "名古屋", "福岡"],
    "gbk": ["北京", "上海", "广州", "深圳", "中文文本", "杭州", "成都", "武汉"],
    "big5": ["臺北", "高雄", "臺中", "繁體中文", "新竹", "臺南", "嘉義", "基隆"],
    "euc_kr": ["서울", "부산", "인천", "한국어 텍스트", "대구", "광주", "대전", "울산"],
}


def city_csv(values: list[str], rows: int = 40) -> str:
    return "city,value\n" + "".join(f"{values[i % len(values)]},{i}\n" for i in range(rows))


# --- 1. bad inputs: ingest ----------------------------------------------------------------------------


def ingest_cases(p: Probe) -> None:
    from decimal import Decimal

    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from core import tables

    store = tables.store(p.s)
    rng = p.rng

    def ingest(name: str, data: bytes, file_name: str, *, expect: str = "either", rows: int | None = None,
               columns: list[str] | None = None, verify: Callable[[pd.DataFrame, Any], None] | None = None,
               security: bool = False, max_bytes: int | None = None, timeout: float | None = None) -> None:
        before = p.stored()

        def action():
            result = store.ingest(data, file_name, max_bytes=max_bytes)
            record = result.record
            frame = store.load(record.table_id)
            check(len(frame) == record.rows, f"record says {record.rows} rows, the stored table has {len(frame)}")
            if rows is not None:
                check(record.rows == rows, f"{record.rows} rows stored, the file holds {rows}")
            names = [str(c) for c in frame.columns]
            check(len(set(names)) == len(names), f"stored column names clash: {names[:10]}")
            if columns is not None:
                check(names == columns, f"columns {names[:10]}, expected {columns[:10]}")
            check(not re.search(r"[\x00-\x1f\x7f]", record.name) and len(record.name) <= 100,
                  f"display name {record.name!r} holds control characters or is too long")
            check(store.path(record.table_id).resolve().is_relative_to(p.s.tables_dir.resolve()), "stored outside the tables folder")
            if verify is not None:
                verify(frame, record)

        def post(outcome: str) -> list[str]:
            if outcome in ("ok", "wrong"):  # stored, and checked above
                return []
            added = p.stored() - before
            return [f"stored {sorted(added)[:3]} although the file was refused"] if added else []

        p.attempt("ingest", name, action, expect=expect, security=security, post=post, timeout=timeout, runs=False)

    # parquet: cut short, fake footers, flipped bytes, garbled middles
    base = pd.DataFrame({"id": np.arange(50), "x": rng.normal(size=50), "city": rng.choice(["Paris", "Lyon", "Nice"], 50),
                         "flag": rng.integers(0, 2, 50).astype(bool)})
    good = parquet_bytes(base)
    n = len(good)
    ingest("parquet control", good, "t.parquet", expect="ok", rows=50)
    cuts = sorted({1, 8, n // 4, n // 2, n - 100, n - 12, n - 8, n - 4, n - 1})
    for k in cuts:
        ingest(f"parquet cut at byte {k} of {n}", good[:k], "cut.parquet", expect="refuse")
    for k in sorted({n // 2, n - 8}):
        ingest(f"parquet cut at byte {k} with a fake footer", good[:k] + b"PAR1", "fake.parquet", expect="refuse")
    positions = sorted({8, 20, n - 6, n - 9, n - 30, *map(int, rng.integers(8, n - 8, 4))})
    for k in positions:
        flipped = bytearray(good)
        flipped[k] ^= 0xFF
        ingest(f"parquet byte {k} flipped", bytes(flipped), "flip.parquet", rows=50)
    ingest("parquet middle zeroed", good[: n // 3] + bytes(n // 3) + good[2 * n // 3:], "zero.parquet")
    ingest("parquet junk inserted", good[: n // 2] + os.urandom(37) + good[n // 2:], "ins.parquet")
    ingest("parquet twice back to back", good + good, "twice.parquet")
    ingest("parquet zero rows", parquet_bytes(base.iloc[:0]), "none.parquet", expect="refuse")
    ingest("parquet zero columns", arrow_parquet_bytes(pa.table({})), "nocols.parquet", expect="refuse")
    dup = pa.Table.from_arrays([pa.array([1, 2, 3]), pa.array([4, 5, 6]), pa.array(["a", "b", "c"])], names=["x", "x", "y"])
    ingest("parquet duplicate column names", arrow_parquet_bytes(dup), "dup.parquet", expect="ok", rows=3,
           columns=["x", "x (2)", "y"])
    clash = pa.Table.from_arrays([pa.array([1]), pa.array([2]), pa.array([3])], names=["x", "x (2)", "x"])
    ingest("parquet duplicates that clash with the new name", arrow_parquet_bytes(clash), "clash.parquet", expect="ok", rows=1)
    ingest("parquet column named ''", arrow_parquet_bytes(pa.table({"": [1, 2], "b": [3, 4]})), "empty-name.parquet", rows=2)
    nested = pa.table({"a": [1, 2, 3], "lst": pa.array([[1, 2], [], None]), "st": pa.array([{"u": 1}, {"u": 2}, None])})
    ingest("parquet list and struct columns", arrow_parquet_bytes(nested), "nested.parquet", rows=3)
    odd = pa.table({"null": pa.nulls(3), "u64": pa.array([0, 2**63, 2**64 - 1], pa.uint64()),
                    "dec": pa.array([Decimal("1.10"), Decimal("2.20"), None], pa.decimal128(10, 2)),
                    "bin": pa.array([b"\x00\x01", b"", None]), "dur": pa.array([1, 2, 3], pa.duration("s")),
                    "tz": pa.array([0, 1, 2], pa.timestamp("ns", tz="Europe/Paris"))})
    ingest("parquet null, uint64, decimal, binary, duration, tz columns", arrow_parquet_bytes(odd), "odd.parquet", rows=3)
    ingest("parquet dictionary column", arrow_parquet_bytes(pa.table({"d": pa.array(["a", "b", "a"]).dictionary_encode(), "v": [1, 2, 3]})),
           "dict.parquet", expect="ok", rows=3)
    indexed = io.BytesIO()
    base.set_index("city").to_parquet(indexed)  # the named index kept in pandas metadata
    ingest("parquet with a named index", indexed.getvalue(), "indexed.parquet", expect="ok", rows=50,
           verify=lambda f, r: check("city" in f.columns, "the named index (city) was lost"))
    groups = arrow_parquet_bytes(pa.Table.from_pandas(base, preserve_index=False), row_group_size=7)
    ingest("parquet in 8 row groups", groups, "groups.parquet", expect="ok", rows=50)
    wide = pa.table({f"c{k}": [k] for k in range(3000)})
    ingest("parquet 3,000 columns", arrow_parquet_bytes(wide), "wide.parquet", expect="ok", rows=1)

    # empty files, header only, separators only
    for data, name in ((b"", "empty.csv"), (b"", "empty.parquet"), (b"", "empty.xlsx"), (b"\n\n\n", "newlines.csv"),
                       (b"\xef\xbb\xbf", "bom-only.csv"),
                       (b"\xff\xfe", "utf16-bom-only.csv"), (b"\x00", "nul-only.csv"), (b"\x00" * 4096, "nuls.csv")):
        ingest(f"empty: {name} ({len(data)} bytes)", data, name, expect="refuse")
    for text, name in (("a,b,c\n", "header.csv"), ("a,b,c", "header-no-newline.csv"), ("a;b;c\r\n", "header-semicolon.csv"),
                       ("a\tb\n", "header-tab.csv"), ("a,b\n\n\n\n", "header-blank-lines.csv"), ("a,b\n,\n,\n", "header-separators.csv"),
                       ("x\n", "one-word.csv"), ("\ufeffa,b,c\r\n", "header-bom.csv")):
        ingest(f"header only: {name}", text.encode(), name, expect="refuse")
    ingest("header only, UTF-16", "a,b,c\r\n".encode("utf-16"), "header16.csv", expect="refuse")
    ingest("separator-only lines", b",,,\n,,,\n,,,\n", "seps.csv", expect="refuse")
    ingest("separator-only lines between rows", b"a,b\n1,2\n,\n\n3,4\n,,\n", "seps-mid.csv", expect="ok", rows=2)
    ingest("semicolon-only lines", b"a;b\n;\n1;2\n;;\n", "semi.csv", expect="ok", rows=1)

    # ragged rows
    long_row = b"a,b\n1,2\n3,4,5\n6,7\n"
    ingest("a row with more values than names", long_row, "long.csv", expect="refuse")
    ingest("a long row far down", b"a,b\n" + b"1,2\n" * 5000 + b"3,4,5\n", "long-late.csv", expect="refuse")
    ingest("rows with fewer values", b"a,b,c\n1,2,3\n4,5\n6\n", "short.csv", expect="ok", rows=3)
    ingest("trailing separator on every line", b"a,b,\n1,2,\n3,4,\n", "trailing.csv", expect="ok", rows=2, columns=["a", "b"])
    ingest("unbalanced quote", b'a,b\n"1,2\n3,4\n', "quote.csv")
    ingest("quoted newline in a cell", b'a,b\n"line1\nline2",2\n3,4\n', "qnl.csv", expect="ok", rows=2)
    ingest("CR-only line ends (old Mac)", b"a,b\r1,2\r3,4\r", "cr.csv", rows=2)
    ingest("one column, many rows", ("v\n" + "".join(f"{k}\n" for k in range(2000))).encode(), "col.csv", expect="ok", rows=2000)
    ingest("blank lines before the header", b"\n\n\na,b\n1,2\n", "blank-top.csv")

    # binary junk named .csv
    junk = {"random bytes 1 KB": os.urandom(1024), "random bytes 200 KB": os.urandom(200_000),
            "PNG": b"\x89PNG\r\n\x1a\n" + os.urandom(500), "JPEG": b"\xff\xd8\xff\xe0" + os.urandom(500),
            "PDF": b"%PDF-1.7\n" + os.urandom(300),
            "gzip of a CSV": gzip.compress(b"a,b\n1,2\n"), "bzip2 of a CSV": bz2.compress(b"a,b\n1,2\n"),
            "ELF": b"\x7fELF\x02\x01\x01" + os.urandom(400),
            "SQLite": b"SQLite format 3\x00" + os.urandom(400),
            "old .xls (OLE)": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + os.urandom(600),
            "high bytes without NUL": bytes(rng.integers(128, 256, 3000, dtype=np.uint8)),
            "printable junk": bytes(rng.integers(33, 127, 3000, dtype=np.uint8))}
    for what, data in junk.items():
        expect = "either" if what == "printable junk" else "refuse"
        ingest(f"binary junk named .csv: {what}", data, "data.csv", expect=expect)
    ingest("JSON named .csv", b'{"a": 1, "b": [1, 2]}', "j.csv")
    ingest("HTML named .csv", b"<html><body><table><tr><td>1</td></tr></table></body></html>\n", "page.csv")

    # NUL bytes
    ingest("NUL inside a cell", b"a,b\n1,2\x003\n4,5\n", "nul.csv", expect="refuse")
    ingest("NUL in the header", b"a\x00,b\n1,2\n", "nulh.csv", expect="refuse")
    late = b"a,b\n" + b"1,2\n" * 30000 + b"3,\x004\n" + b"5,6\n"
    ingest("NUL after the first 64 KB", late, "nul-late.csv", rows=30002)

    # encodings
    western = TEXTS["latin-1"]
    for label, encoded in (("UTF-8", city_csv(western).encode("utf-8")), ("UTF-8 with BOM", city_csv(western).encode("utf-8-sig")),
                           ("UTF-16 LE with BOM", city_csv(western).encode("utf-16")),
                           ("UTF-16 BE with BOM", b"\xfe\xff" + city_csv(western).encode("utf-16-be")),
                           ("UTF-16 LE without BOM", city_csv(western).encode("utf-16-le")),
                           ("UTF-16 BE without BOM", city_csv(western).encode("utf-16-be")),
                           ("UTF-32 with BOM", city_csv(western).encode("utf-32"))):
        ingest(f"encoding {label}", encoded, "cities.csv", expect="either" if "32" in label else "ok", rows=40,
               verify=_cities_are(western))
    for codec, values in TEXTS.items():
        ingest(f"encoding {codec}", city_csv(values).encode(codec), f"cities-{codec}.csv", expect="ok", rows=40,
               verify=_cities_are(values))
    mixed = (city_csv(western[:5], 20).encode("utf-8") + "".join(f"{v},{k}\n" for k, v in enumerate(western[5:])).encode("latin-1"))
    ingest("UTF-8 and Latin-1 mixed in one file", mixed, "mixed.csv", expect="refuse", verify=_cities_are(western))
    tail = ("city,value\n" + "café,1\n" + "plain,2\n" * 150_000).encode("utf-8") + "Málaga,3\n".encode("latin-1")
    ingest("UTF-8, then one Latin-1 byte after 2 MB", tail, "late-latin1.csv", expect="refuse",
           verify=_cities_are(["café", "plain", "Málaga"]))
    few = "city\nZürich\nMünchen\n".encode() + "Köln\n".encode("latin-1")
    ingest("UTF-8 text with one Latin-1 line", few, "few.csv", expect="refuse", verify=_cities_are(["Zürich", "München", "Köln"]))
    ingest("Shift-JIS with too little text to tell", "a,b\n東京,1\n".encode("shift_jis"), "tiny-sjis.csv",
           verify=lambda f, r: check(str(f["a"].iloc[0]) == "東京", f"東京 read as {f['a'].iloc[0]!r}"))

    # ZIP files that are not workbooks, and workbooks that are traps
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("data.csv", "a,b\n1,2\n")
    ingest("ZIP holding a CSV", buf.getvalue(), "data.xlsx", expect="refuse")
    ingest("empty ZIP", b"PK\x05\x06" + bytes(18), "empty.xlsx", expect="refuse")
    book = xlsx_bytes([["a", "b"], *[[k, f"t{k}"] for k in range(200)]])
    ingest("workbook control", book, "book.xlsx", expect="ok", rows=200)
    ingest("workbook cut in half", book[: len(book) // 2], "half.xlsx", expect="refuse")
    ingest("workbook with its sheet XML garbled", rebuild_xlsx(fixed_sheet(SHEET_HEAD + b"<sheetData><row><c><v>1</sheetData>")),
           "garbled.xlsx", expect="refuse")
    no_sheet = io.BytesIO()
    with zipfile.ZipFile(no_sheet, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")
    ingest("ZIP with only xl/workbook.xml", no_sheet.getvalue(), "bare.xlsx", expect="refuse")
    ingest("workbook bomb: 100 MB sheet packed ~250x", rebuild_xlsx(bomb_sheet(100 << 20)), "bomb.xlsx", expect="refuse", security=True)
    ingest("workbook bomb: 1.1 GB sheet", rebuild_xlsx(bomb_sheet(1100 << 20), level=1), "bomb-big.xlsx", expect="refuse",
           security=True, timeout=120)
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              + b"".join(f'<!ENTITY lol{k} "{("&lol" + (str(k - 1) if k > 1 else "") + ";") * 10}">'.encode() for k in range(1, 10))
              + b']><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1">'
              + b'<c r="A1" t="inlineStr"><is><t>&lol9;</t></is></c></row></sheetData></worksheet>')
    ingest("workbook with billion-laughs entities", rebuild_xlsx(fixed_sheet(laughs)), "laughs.xlsx", expect="refuse", security=True)
    declared = SHEET_HEAD + b'<dimension ref="A1:XFD1048576"/><sheetData><row r="1"><c r="A1"><v>1</v></c></row></sheetData></worksheet>'
    ingest("workbook declaring A1:XFD1048576", rebuild_xlsx(fixed_sheet(declared)), "declared.xlsx", expect="refuse", security=True)
    far = SHEET_HEAD + b"<sheetData>" + b"".join(
        f'<row r="{i}"><c r="A{i}"><v>1</v></c><c r="XFD{i}"><v>1</v></c></row>'.encode() for i in range(1, 701)) + b"</sheetData></worksheet>"
    ingest("workbook with a cell in column XFD on 700 rows", rebuild_xlsx(fixed_sheet(far)), "far.xlsx", expect="refuse", security=True)
    ingest("workbook of 10,001 files", rebuild_xlsx(fixed_sheet(SHEET_HEAD + b"<sheetData/></worksheet>"), members=10_001),
           "members.xlsx", expect="refuse", security=True)
    ingest("workbook with duplicate headers", xlsx_bytes([["x", "x", "y"], [1, 2, 3], [4, 5, 6]]), "dup.xlsx", expect="ok", rows=2,
           columns=["x", "x (2)", "y"])
    ingest("workbook with formulas", xlsx_bytes([["a", "b"], [1, "=A2*2"], [2, "=SUM(A2:A3)"], [3, '=HYPERLINK("http://x","y")']]),
           "formulas.xlsx", expect="ok", rows=3)
    ingest("workbook with only a header", xlsx_bytes([["a", "b"]]), "header.xlsx", expect="refuse")
    ingest("workbook with an empty sheet", xlsx_bytes([]), "blank.xlsx", expect="refuse")

    # names, formulas, huge fields
    ingest("CSV duplicate column names", b"a,a,b\n1,2,3\n", "dup.csv", expect="ok", rows=1, columns=["a", "a (2)", "b"])
    ingest("CSV duplicates clashing with the new name", b"x,x (2),x\n1,2,3\n", "clash.csv", expect="ok", rows=1)
    ingest("CSV names differing in case only", b"A,a\n1,2\n", "case.csv", expect="ok", rows=1, columns=["A", "a"])
    ingest("CSV columns without names", b",,b\n1,2,3\n4,5,6\n", "noname.csv", expect="ok", rows=2)
    formulas = (b'v,w\n=1+2,1\n"=HYPERLINK(""http://evil"",""x"")",2\n+1,3\n-1,4\n@SUM(A1),5\n'
                b"\"=cmd|' /C calc'!A0\",6\n")
    ingest("CSV formulas in cells", formulas, "formulas.csv", expect="ok", rows=6)
    for size in (100_000, 1 << 20, 10 << 20, 40 << 20):
        ingest(f"CSV field of {size:,} bytes", b"a,b\n1," + b"x" * size + b"\n2,y\n", "huge.csv", expect="ok", rows=2,
               verify=lambda f, r, size=size: check(len(str(f["b"].iloc[0])) == size, "the long cell was cut"))
    ingest("CSV header name of 1 MB", b"a" * (1 << 20) + b",b\n1,2\n", "longname.csv", rows=1)
    ingest("CSV 20,000 columns", (",".join(f"c{k}" for k in range(20000)) + "\n" + ",".join("1" for _ in range(20000)) + "\n").encode(),
           "wide.csv", expect="ok", rows=1)
    ingest("CSV number beyond int64", b"a\n99999999999999999999999\n1\n", "bigint.csv", expect="ok", rows=2)
    ingest("CSV inf and NaN words", b"a,b\ninf,1\n-inf,2\nNaN,3\n1e309,4\n", "inf.csv", expect="ok", rows=4)
    ingest("CSV mixed kinds in a column", b"a\n1\nx\n2.5\nTrue\n\n", "mixed.csv", expect="ok", rows=4)
    ingest("CSV decimal commas with semicolons", b"a;b\n1,5;2\n2,25;3\n", "comma.csv", expect="ok", rows=2,
           verify=lambda f, r: check(abs(float(f["a"].iloc[0]) - 1.5) < 1e-9, f"1,5 read as {f['a'].iloc[0]!r}"))

    # wrong extensions (the format is told from the content)
    csv_bytes = b"a,b\n1,2\n3,4\n"
    for data, name, rows in ((good, "t.csv", 50), (good, "t.xlsx", 50), (good, "t", 50), (good, "T.PARQUET", 50),
                             (csv_bytes, "c.parquet", 2), (csv_bytes, "c.xlsx", 2), (csv_bytes, "c.xls", 2),
                             (book, "b.csv", 200)):
        ingest(f"wrong extension: {name} holding {'parquet' if data is good else 'a workbook' if data is book else 'CSV'}",
               data, name, expect="ok", rows=rows)

    # file names
    for label, name in (("path traversal", "../../../etc/passwd.csv"), ("Windows path", "C:\\Users\\x\\..\\evil.csv"),
                        ("NUL", "a\x00b.csv"), ("newline", "a\nb.csv"), ("10,000 characters", "n" * 10_000 + ".csv"),
                        ("empty", ""), ("a dot", "."), ("right-to-left override", "\u202egnp.csv"), ("only spaces", "   ")):
        ingest(f"file name: {label}", f"a,b\n1,2\n{len(label)},{len(name)}\n".encode(), name, expect="ok", rows=2)
    ingest("over the size limit", b"a,b\n" + b"1,2\n" * 100, "big.csv", max_bytes=100, expect="refuse")


def _cities_are(values: list[str]):
    def verify(frame, record):
        got = set(map(str, frame["city"].dropna()))
        check(got == set(values), f"text read back as {sorted(got)[:4]} (expected {sorted(values)[:4]}): garbled")
    return verify


def _no_mojibake(frame, record):
    text = " ".join(map(str, frame.astype(str).to_numpy().ravel()[:5000]))
    check(not re.search("[ÃÂ][\u0080-\u00bf]|\ufffd|Ã©|Ã¼", text), f"stored garbled text: {short(text, 120)}")


# --- 1. bad inputs: scoring -----------------------------------------------------------------------------


def scoring_cases(p: Probe, reference: str) -> None:
    import numpy as np
    import pandas as pd

    from core import scoring

    s, rng = p.s, p.rng

    def score(name: str, file_name: str, content: bytes | pd.DataFrame | None, *, expect: str = "either", rows: int | None = None,
              batch_rows: int | None = None, verify: Callable[[Any, pd.DataFrame], None] | None = None, force: bool = True,
              security: bool = False) -> None:
        if content is not None:
            path = s.data_dir / file_name
            if isinstance(content, pd.DataFrame):
                content.to_parquet(path, index=False) if file_name.endswith(".parquet") else content.to_csv(path, index=False)
            else:
                path.write_bytes(content)
        outputs = set(s.scorings_dir.glob("*.parquet")) if s.scorings_dir.exists() else set()

        def action():
            path = scoring.data_file(s, file_name)
            planned = scoring.plan(s, reference, path, name=file_name)
            report = scoring.run(s, planned, force=force, **({"batch_rows": batch_rows} if batch_rows else {}))
            import pyarrow.parquet as pq

            written = pq.ParquetFile(report.output).metadata.num_rows
            if rows is not None and (report.rows != rows or written != rows):
                p.ledger.lost.append(f"scoring/{name}: {rows} rows in, {report.rows} reported, {written} written")
                raise Mismatch(f"{rows} rows in, {report.rows} reported and {written} written")
            status = p.client().get_run(report.run_id).info.status
            check(status == "FINISHED", f"its run is {status}")
            if verify is not None:
                verify(report, pd.read_parquet(report.output))

        def post(outcome: str) -> list[str]:
            now = set(s.scorings_dir.glob("*.parquet")) if s.scorings_dir.exists() else set()
            problems = []
            for out in now - outputs:
                status = p.client().get_run(out.stem).info.status
                if status != "FINISHED":
                    problems.append(f"an output {out.name} of a {status} run was left")
            return problems

        p.attempt("scoring", name, action, expect=expect, post=post, security=security)

    n = 400
    good = model_frame(rng, n, labelled=False)
    score("CSV control", "good.csv", good, expect="ok", rows=n)
    score("parquet control", "good.parquet", good, expect="ok", rows=n)
    score("labelled file", "labelled.parquet", model_frame(rng, n), expect="ok", rows=n,
          verify=lambda r, out: check(r.metrics is not None and "auc" in r.metrics, f"no metrics on a labelled file: {r.metrics}"))
    big_book = xlsx_bytes([list(FEATURES), *good.astype(object).values.tolist() * 8])
    check_size = len(big_book)
    score(f"Excel workbook of {check_size // 1024} KB (over 64 KB)", "book.xlsx", big_book, expect="ok", rows=n * 8)
    score("one feature missing", "missing1.csv", good.drop(columns=["num2"]), expect="refuse")
    score("every feature missing", "missing-all.csv", pd.DataFrame({"other": [1, 2, 3]}), expect="refuse")
    text = good.copy()
    text["num1"] = text["num1"].astype(object)
    text.loc[::7, "num1"] = "abc"
    score("text in a numeric column", "text.csv", text, expect="ok", rows=n,
          verify=lambda r, out: check(out["input_problems"].notna().sum() == len(range(0, n, 7)),
                                      f"{out['input_problems'].notna().sum()} rows marked, {len(range(0, n, 7))} hold text"))
    comma = good.copy()
    comma["num1"] = comma["num1"].map(lambda v: f"{v:.3f}".replace(".", ","))
    score("decimal commas as text", "comma.parquet", comma, expect="ok", rows=n,
          verify=lambda r, out: check(out["input_problems"].isna().all(), "decimal commas were marked unusable"))
    alltext = good.copy()
    alltext["num2"] = "many"
    score("a numeric column all text", "alltext.csv", alltext, expect="ok", rows=n)
    empty_num = good.copy()
    empty_num["num1"] = np.nan
    score("a numeric column all empty", "empty-num.csv", empty_num, expect="ok", rows=n,
          verify=lambda r, out: check(any("no value in any row" in m for m in r.messages), "the empty column was not pointed out"))
    empty_cat = good.copy()
    empty_cat["cat"] = None
    score("a text column all empty", "empty-cat.parquet", empty_cat, expect="ok", rows=n)
    inf = good.copy()
    inf.loc[::5, "num1"] = np.inf
    inf.loc[1::5, "num1"] = -np.inf
    score("+-inf in a feature (parquet)", "inf.parquet", inf, expect="ok", rows=n,
          verify=lambda r, out: check(out["input_problems"].notna().sum() == 2 * len(range(0, n, 5)), "infinite values were not marked"))
    score("inf written as text in a CSV", "inf.csv", inf, expect="ok", rows=n)
    unseen = good.copy()
    unseen.loc[::3, "cat"] = "never-seen"
    score("unseen categories", "unseen.csv", unseen, expect="ok", rows=n,
          verify=lambda r, out: check(any("never seen in training" in m for m in r.messages), "unseen categories were not counted"))
    numcat = good.copy()
    numcat["cat"] = rng.integers(0, 3, n).astype(float)
    score("categories given as numbers", "numcat.parquet", numcat, expect="ok", rows=n)
    score("all NaN", "nan.parquet", good.assign(num1=np.nan, num2=np.nan, cat=None), expect="ok", rows=n)
    score("zero rows (CSV header)", "none.csv", b"num1,num2,cat\n", expect="refuse")
    score("zero rows (parquet)", "none.parquet", good.iloc[:0], expect="refuse")
    score("one row", "one.csv", good.iloc[:1], expect="ok", rows=1)
    dup_bytes = good.to_csv(index=False).replace("num1,num2,cat", "num1,num2,cat,num1", 1)
    dup_bytes = "\n".join(line + (",1" if k else "") for k, line in enumerate(dup_bytes.splitlines())) + "\n"
    score("a feature's name twice", "dup.csv", dup_bytes.encode(), expect="ok", rows=n)
    clash = good.assign(prediction="mine", model_name="x")
    score("input columns named prediction and model_name", "clash.parquet", clash, expect="ok", rows=n,
          verify=lambda r, out: check((out["prediction"] == "mine").all() and "prediction_scored" in out.columns,
                                      "an input column was overwritten by the output"))
    score("2,000 extra columns", "wide.parquet", pd.concat([good, pd.DataFrame(np.zeros((n, 2000)), columns=[f"e{k}" for k in range(2000)])], axis=1),
          expect="ok", rows=n)
    score("booleans in a numeric feature", "bool.parquet", good.assign(num2=good["num2"] > 4), expect="ok", rows=n)
    score("dates in a numeric feature", "dates.parquet", good.assign(num1=pd.Timestamp("2024-01-01")), expect="ok", rows=n)
    score("labelled with a class never seen", "newclass.parquet", model_frame(rng, n).assign(label=lambda f: f["label"].where(f.index % 4 > 0, 2)),
          expect="ok", rows=n)
    score("labelled with text labels", "textlabel.parquet", model_frame(rng, n).assign(label=lambda f: f["label"].map({0: "no", 1: "yes"})),
          expect="either", rows=n)
    score("labelled with every label missing", "nolabel.parquet", model_frame(rng, n).assign(label=np.nan), expect="ok", rows=n)
    big = pd.concat([model_frame(rng, 3000, labelled=False)] * 1, ignore_index=True)
    kinds = big.copy()
    kinds["num1"] = kinds["num1"].astype(object)
    kinds.loc[2500:, "num1"] = "oops"
    score("a feature turns to text after 2,500 rows (batches of 1,000)", "kind.csv", kinds, batch_rows=1000, rows=3000)
    extra = big.assign(note=[k if k < 2500 else "text" for k in range(3000)])
    score("an extra column turns from numbers to text further down", "kind-extra.csv", extra, batch_rows=1000, rows=3000)
    ints = big.assign(amount=[k if k < 2500 else k + 0.5 for k in range(3000)])
    score("an extra column of whole numbers gets decimals further down", "ints-then-decimals.csv", ints, batch_rows=1000, expect="ok",
          rows=3000)
    sparse = big.assign(comment=[None if k < 2500 else "late comment" for k in range(3000)])
    score("an extra column empty for 2,500 rows, then text", "sparse.csv", sparse, batch_rows=1000, expect="ok", rows=3000)
    blanks = big.assign(count=[None if k >= 2500 and k % 2 else k for k in range(3000)])
    score("an extra column of whole numbers gets blanks further down", "blanks.csv", blanks, batch_rows=1000, expect="ok", rows=3000)

    formulas = good.assign(note=["=1+2", "+SUM(A1)", "-2+3", "@cmd", "=HYPERLINK(\"http://evil\")", "plain", "a\n=1", "\t=x"] * (n // 8))

    def exported(report, out):
        target = p.root / "export" / "formulas.csv"
        scoring.export(Path(report.output), target, "csv")
        import csv

        with open(target, newline="", encoding="utf-8") as f:
            cells = [row for row in csv.reader(f)]
        header = cells[0]
        risky = [c for row in cells[1:] for c in (row[header.index("note")],) if re.match(r"^[=+\-@\t\r]", c)
                 or re.search(r"[\n\r][=+\-@]", c)]
        check(not risky, f"formula cells left live in the CSV export: {risky[:3]}")
    score("formula cells, exported to CSV", "formulas.parquet", formulas, expect="ok", rows=n, verify=exported)

    # the same file twice (no force): the earlier result is offered
    score("the same file scored again without force", "good.csv", None, force=False, expect="refuse")

    # files that are not tables
    score("truncated parquet", "cut.parquet", parquet_bytes(good)[:500], expect="refuse")
    score("parquet with a fake footer", "fake.parquet", parquet_bytes(good)[:500] + b"PAR1", expect="refuse")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.csv", "num1,num2,cat\n1,2,a\n")
    score("ZIP that is not a workbook", "zip.xlsx", buf.getvalue(), expect="refuse")
    score("workbook bomb", "bomb.xlsx", rebuild_xlsx(bomb_sheet(100 << 20)), expect="refuse", security=True)
    score("binary junk", "junk.csv", os.urandom(5000), expect="refuse")
    score("empty file", "empty.csv", b"", expect="refuse")
    score("UTF-16 CSV", "utf16.csv", good.to_csv(index=False).encode("utf-16"), expect="ok", rows=n)
    sjis = good.assign(cat=[["東京", "大阪", "京都"][k % 3] for k in range(n)])
    score("Shift-JIS CSV", "sjis.csv", sjis.to_csv(index=False).encode("shift_jis"), expect="ok", rows=n,
          verify=lambda r, out: check(set(out["cat"]) == {"東京", "大阪", "京都"}, f"categories read as {sorted(set(out['cat']))[:3]}"))

    # names of files in the data folder
    (s.data_dir / "sub").mkdir(exist_ok=True)
    outside = p.root / "outside.csv"
    good.to_csv(outside, index=False)
    link = s.data_dir / "link-out.csv"
    if not link.exists():
        link.symlink_to(outside)
    inside_link = s.data_dir / "link-in.csv"
    if not inside_link.exists():
        inside_link.symlink_to(s.data_dir / "good.csv")
    for label, name, expect in (("../ to a file outside", "../outside.csv", "refuse"), ("/etc/passwd", "/etc/passwd", "refuse"),
                                ("sub/../../ outside", "sub/../../outside.csv", "refuse"), ("~ (home)", "~/.bashrc", "refuse"),
                                ("~unknown user", "~nosuchuser123/x.csv", "refuse"), ("NUL byte", "good.csv\x00.txt", "refuse"),
                                ("5,000 characters", "x" * 5000, "refuse"), ("empty", "", "refuse"), ("the folder itself", ".", "refuse"),
                                ("a sub-folder", "sub", "refuse"), ("symlink pointing outside", "link-out.csv", "refuse"),
                                ("absolute path outside", str(outside), "refuse")):
        score(f"data-folder name: {label}", name, None, expect=expect, security=True)
    score("data-folder name: symlink inside the folder", "link-in.csv", None, expect="ok", rows=n)
    score("data-folder name: absolute path inside", str(s.data_dir / "good.parquet"), None, expect="ok", rows=n)
    score("data-folder name with a newline", "new\nline.csv", good, expect="ok", rows=n)


# --- 1. bad inputs: training checks -----------------------------------------------------------------------


def training_cases(p: Probe, table_id: str) -> None:
    import numpy as np
    import pandas as pd

    from core import jobs
    from core.training import TrainingSpec, prepare

    rng = p.rng
    n = 300

    def frame(**extra):
        f = model_frame(rng, n)
        for k, v in extra.items():
            f[k] = v(f) if callable(v) else v
        return f

    def case(name: str, data: pd.DataFrame, spec: TrainingSpec, *, expect: str = "refuse",
             verify: Callable[[Any], None] | None = None) -> None:
        def action():
            prepared = prepare(data, spec)
            if verify is not None:
                verify(prepared)
        p.attempt("training", name, action, expect=expect, runs=False)

    spec = TrainingSpec(target=TARGET, algorithms=("lr",), folds=2)
    reg = TrainingSpec(target="y", algorithms=("lr",), folds=2, task="regression")
    case("control", frame(), spec, expect="ok")
    case("constant regression target", frame(y=5.0), reg)
    case("constant class target", frame(label=1), spec)
    case("inf in a feature", frame(num1=lambda f: f["num1"].where(f.index % 9 > 0, np.inf)), spec)
    case("-inf in a feature", frame(num1=lambda f: f["num1"].where(f.index % 9 > 0, -np.inf)), spec)
    case("inf in the target", frame(y=lambda f: f["num1"].where(f.index % 9 > 0, np.inf)), reg)
    case("inf in a feature, treated as missing", frame(num1=lambda f: f["num1"].where(f.index % 9 > 0, np.inf)),
         TrainingSpec(target=TARGET, algorithms=("lr",), folds=2, inf_as_missing=True), expect="ok",
         verify=lambda pr: check(any("treated as missing" in note for note in pr.notes), "no note on the infinite values"))
    case("inf in the target, treated as missing", frame(y=lambda f: f["num1"].where(f.index % 9 > 0, np.inf)),
         TrainingSpec(target="y", algorithms=("lr",), folds=2, task="regression", inf_as_missing=True), expect="ok",
         verify=lambda pr: check(pr.rows_dropped == len(range(0, n, 9)), f"{pr.rows_dropped} rows left out, {len(range(0, n, 9))} hold inf"))

    def left_out(column):
        return lambda pr: check(column not in pr.features and "leak" in pr.excluded.get(column, ""),
                                f"'{column}' kept as a feature ({pr.excluded.get(column)!r})")

    def warned(column):
        return lambda pr: check(any(column in note and "leak" in note for note in pr.notes), f"no warning that '{column}' leaks")

    case("a copy of the target (default features)", frame(copy=lambda f: f[TARGET]), TrainingSpec(target=TARGET, algorithms=("lr",), folds=2),
         expect="ok", verify=left_out("copy"))
    case("a copy of the target, chosen", frame(copy=lambda f: f[TARGET]),
         TrainingSpec(target=TARGET, features=("num1", "copy"), algorithms=("lr",), folds=2), expect="ok", verify=warned("copy"))
    case("the target relabelled", frame(word=lambda f: f[TARGET].map({0: "miss", 1: "make"})), spec, expect="ok", verify=left_out("word"))
    case("a scaled copy of a numeric target", frame(y=lambda f: f["num1"] * 3 + 1, twice=lambda f: f["num1"] * 6 + 2),
         TrainingSpec(target="y", features=("num2", "twice"), algorithms=("lr",), folds=2, task="regression"), expect="ok",
         verify=warned("twice"))
    case("a copy of the target with gaps", frame(copy=lambda f: f[TARGET].where(f.index % 10 > 0)), spec, expect="ok", verify=left_out("copy"))
    case("target not in the table", frame(), TrainingSpec(target="nope"))
    case("feature not in the table", frame(), TrainingSpec(target=TARGET, features=("num1", "nope")))
    case("the target as a feature", frame(), TrainingSpec(target=TARGET, features=("num1", TARGET)))
    case("no features", frame(), TrainingSpec(target=TARGET, features=()))
    case("only unusable features", frame().assign(rowid=lambda f: [f"r{k}" for k in range(n)])[["rowid", TARGET]], TrainingSpec(target=TARGET))
    case("target missing everywhere", frame(label=np.nan), spec)
    case("identifier as target", frame(code=lambda f: [f"id-{k}" for k in range(n)]), TrainingSpec(target="code"))
    case("60 classes", frame(many=lambda f: np.arange(n) % 60), TrainingSpec(target="many", task="classification", folds=2))
    case("a class with one row", frame(label=lambda f: f[TARGET].where(f.index > 0, 7)), spec)
    case("four rows", frame().iloc[:4], spec)
    case("test size 90%", frame(), TrainingSpec(target=TARGET, test_size=0.9))
    case("one fold", frame(), TrainingSpec(target=TARGET, folds=1))
    case("unknown algorithm", frame(), TrainingSpec(target=TARGET, algorithms=("xgb-turbo",)))
    case("max_depth 0", frame(), TrainingSpec(target=TARGET, algorithms=("dt",), params={"dt": {"max_depth": 0}}))
    case("max_depth as text", frame(), TrainingSpec(target=TARGET, algorithms=("dt",), params={"dt": {"max_depth": "deep"}}))
    case("unknown hyperparameter", frame(), TrainingSpec(target=TARGET, algorithms=("dt",), params={"dt": {"warp": 9}}))
    case("hyperparameters of an algorithm not chosen", frame(), TrainingSpec(target=TARGET, algorithms=("lr",), params={"dt": {"max_depth": 3}}))
    case("tuning -1 iterations", frame(), TrainingSpec(target=TARGET, tune_iterations=-1))
    case("unknown tuning metric", frame(), TrainingSpec(target=TARGET, tune_iterations=3, tune_metric="happiness"))
    case("unknown task", frame(), TrainingSpec(target=TARGET, task="clustering"))
    case("regression on a text target", frame(word=lambda f: f[TARGET].map({0: "no", 1: "yes"})), TrainingSpec(target="word", task="regression"))
    case("dates as target", frame(when=lambda f: pd.Timestamp("2024-01-01") + pd.to_timedelta(f.index % 3, unit="D")),
         TrainingSpec(target="when"), expect="either")
    case("NaN and inf in the target", frame(y=lambda f: f["num1"].where(f.index % 5 > 0, np.nan).where(f.index % 7 > 0, np.inf)), reg)
    case("a feature with no value, chosen", frame(blank=np.nan), TrainingSpec(target=TARGET, features=("num1", "blank"), algorithms=("lr",), folds=2),
         expect="ok", verify=lambda pr: check("blank" not in pr.features, "an all-missing feature was kept"))
    case("a feature listed twice", frame(), TrainingSpec(target=TARGET, features=("num1", "num1", "cat"), algorithms=("lr",), folds=2),
         expect="ok", verify=lambda pr: check(list(pr.features) == ["num1", "cat"], f"features {pr.features}"))

    # refused before a job exists
    def before_job(name: str, spec: TrainingSpec, table: str = table_id) -> None:
        folder = p.s.jobs_dir
        jobs_before = {x.name for x in folder.iterdir()} if folder.is_dir() else set()

        def post(outcome):
            now = {x.name for x in folder.iterdir()} if folder.is_dir() else set()
            return [f"a job folder was made for a refused spec ({sorted(now - jobs_before)})"] if now - jobs_before else []

        p.attempt("training", f"job: {name}", lambda: jobs.submit_training(p.s, spec, table), expect="refuse", post=post)

    before_job("unknown table", TrainingSpec(target=TARGET), "0123456789abcdef")
    before_job("table id with ../", TrainingSpec(target=TARGET), "../../etc")
    before_job("bad hyperparameter", TrainingSpec(target=TARGET, algorithms=("dt",), params={"dt": {"max_depth": 0}}))
    before_job("model name with a slash", TrainingSpec(target=TARGET, register_name="bad/name"))
    before_job("reserved alias", TrainingSpec(target=TARGET, register_name="fine", register_alias="latest"))
    before_job("a name holding another kind of model", TrainingSpec(target="num1", task="regression", features=("num2", "cat"), register_name="probe"))


# --- 2. faults: training jobs killed -----------------------------------------------------------------


MOMENTS: dict[str, Callable[[Any], bool]] = {
    "submitted": lambda st: True,
    "loading the table": lambda st: st.state == "running" and st.step == "Loading the table",
    "preparing the data": lambda st: st.step == "Preparing the data",
    "cross-validating lr": lambda st: st.step == "Cross-validating" and st.model == "lr",
    "recording lr": lambda st: st.step == "Recording in MLflow" and st.model == "lr",
    "cross-validating rf": lambda st: st.step == "Cross-validating" and st.model == "rf",
    "holdout of rf": lambda st: st.step == "Scoring the holdout rows" and st.model == "rf",
    "recording rf": lambda st: st.step == "Recording in MLflow" and st.model == "rf",
    "finishing (registering)": lambda st: st.step == "Finishing",
}

KILLS_FULL = [
    ("worker SIGKILL", "loading the table"), ("worker SIGKILL", "preparing the data"), ("worker SIGKILL", "cross-validating lr"),
    ("worker SIGKILL", "recording lr"), ("worker SIGKILL", "cross-validating rf"), ("worker SIGKILL", "holdout of rf"),
    ("worker SIGKILL", "recording rf"), ("worker SIGKILL", "finishing (registering)"),
    ("both SIGKILL", "submitted"), ("both SIGKILL", "preparing the data"), ("both SIGKILL", "cross-validating rf"),
    ("both SIGKILL", "finishing (registering)"),
    ("supervisor SIGKILL", "cross-validating lr"), ("supervisor SIGTERM", "cross-validating lr"),
    ("worker SIGTERM", "preparing the data"), ("worker SIGTERM", "recording lr"), ("worker SIGTERM", "cross-validating rf"),
    ("cancel", "submitted"), ("cancel", "cross-validating rf"),
    ("worker SIGKILL + two sweeps racing the supervisor", "recording rf"),
    ("cancel of a frozen worker (SIGSTOP)", "cross-validating rf"),
]
KILLS_QUICK = [("worker SIGKILL", "cross-validating rf"), ("worker SIGKILL", "finishing (registering)"), ("both SIGKILL", "cross-validating rf"),
               ("supervisor SIGKILL", "cross-validating lr"), ("worker SIGTERM", "cross-validating rf"), ("cancel", "submitted"),
               ("worker SIGKILL", "recording lr")]


def kill_faults(p: Probe, table_id: str) -> None:
    from core.training import TrainingSpec

    plan = KILLS_QUICK if p.quick else KILLS_FULL
    for k, (how, moment) in enumerate(plan):
        name = f"kill-{k}"
        spec = TrainingSpec(target=TARGET, features=FEATURES, algorithms=("lr", "rf"), params={"rf": {"n_estimators": 150}},
                            folds=3, seed=p.seed + k, register_name=name, register_alias="champion")
        p.fault(f"training job, {how} at '{moment}'", lambda spec=spec, how=how, moment=moment, name=name: _kill_one(p, spec, table_id, how, moment, name),
                timeout=300)


def _kill_one(p: Probe, spec, table_id: str, how: str, moment: str, name: str) -> list[str]:
    from core import jobs

    s = p.s
    store = jobs.JobStore(s)
    job = jobs.submit_training(s, spec, table_id)
    job_id = job.job_id
    wanted = MOMENTS[moment]
    deadline_at = time.monotonic() + 180
    st = store.read(job_id)
    while not wanted(st):
        if st.finished or time.monotonic() > deadline_at:
            _finish(p, job_id)
            raise Skip(f"the job went past '{moment}' before it was seen (it ended {st.state})")
        time.sleep(0.01)
        st = store.read(job_id)
    sup, worker = st.supervisor_pid, st.worker_pid
    p.started_pids.update(x for x in (sup, worker) if x)
    targets = {"worker": [worker], "supervisor": [sup], "both": [sup, worker], "cancel": [worker]}[how.split()[0]]
    if how.startswith(("worker", "both")) and not worker and moment != "submitted":
        _finish(p, job_id)
        raise Skip("the worker had no pid yet")
    frozen = [x for x in targets if x and _alive(x)]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)  # the moment, held still while the runs are read
    at_kill = store.read(job_id)
    snapshot = p.job_runs_db(job_id) or {}
    finished_before = {r for r, status in snapshot.items() if status == "FINISHED"}
    problems: list[str] = []
    if how.startswith("cancel of a frozen"):
        jobs.cancel(s, job_id)  # SIGTERM stays pending in the frozen worker
        grace = jobs.CANCEL_GRACE_SECONDS + 10
        end = time.monotonic() + grace
        while time.monotonic() < end and not jobs.status(s, job_id).finished:
            time.sleep(0.5)
        if not jobs.status(s, job_id).finished:
            problems.append(f"a cancelled worker that does not respond was still '{jobs.status(s, job_id).state}' {grace} s later "
                            f"(core/jobs.py says it is killed after CANCEL_GRACE_SECONDS={jobs.CANCEL_GRACE_SECONDS})")
            os.kill(worker, signal.SIGKILL)  # our own job's worker: end it, then check the clean-up
        for pid in frozen:
            if _alive(pid):
                os.kill(pid, signal.SIGCONT)
        expected = ("cancelled", "failed")
    elif how == "cancel":
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        jobs.cancel(s, job_id)
        expected = ("cancelled",)
    elif how.startswith("both"):
        os.killpg(sup, signal.SIGKILL)
        expected = ("failed",)
    elif how.startswith("supervisor"):
        os.kill(sup, signal.SIGKILL if "KILL" in how else signal.SIGTERM)
        if "TERM" in how:
            os.kill(sup, signal.SIGCONT)
        expected = ("succeeded",)
    else:
        os.kill(worker, signal.SIGKILL if "KILL" in how else signal.SIGTERM)
        if "TERM" in how:
            os.kill(worker, signal.SIGCONT)
        expected = ("failed",) if "KILL" in how else ("cancelled",)
        if "racing" in how:
            threads = [threading.Thread(target=jobs.sweep, args=(s,)) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
    if at_kill.state in jobs.FINAL:  # the job had ended between the look and the freeze
        expected = (at_kill.state,)
    final = _finish(p, job_id)
    problems += _job_end_invariants(p, job_id, final, expected, name, finished_before, (sup, worker))
    return problems


def _finish(p: Probe, job_id: str, timeout: float = 150):
    """Sweep until the job is final (as a page that lists jobs would)."""
    from core import jobs

    end = time.monotonic() + timeout
    while True:
        jobs.sweep(p.s)
        st = jobs.status(p.s, job_id)
        if st.finished or time.monotonic() > end:
            return st
        time.sleep(0.25)


def _job_end_invariants(p: Probe, job_id: str, final, expected: tuple[str, ...], model_name: str | None,
                        finished_before: set[str], pids: tuple[int | None, ...]) -> list[str]:
    problems = []
    if not final.finished:
        problems.append(f"job still '{final.state}' after the sweep ({final.step})")
    elif final.state not in expected:
        problems.append(f"job ended '{final.state}', expected {' or '.join(expected)} ({short(final.error, 150)})")
    if final.error and message_problem(Exception(final.error)):
        problems.append(f"the job's error holds a traceback: {short(final.error, 150)}")
    end = time.monotonic() + 20
    while time.monotonic() < end and any(_alive(x) for x in pids):
        time.sleep(0.2)
    alive = [x for x in pids if _alive(x)]
    if alive:
        problems.append(f"processes {alive} of the job still alive after it ended")
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
    running = p.running_runs()
    if running:
        problems.append(f"{len(running)} MLflow run(s) left RUNNING")
        for run_id in running:
            p.client().set_terminated(run_id, "FAILED")
    runs = p.job_runs_db(final.job_id) or {}
    flipped = [r for r in finished_before if runs.get(r) != "FINISHED"]
    if flipped:
        problems.append(f"{len(flipped)} run(s) FINISHED before the fault are now {[runs.get(r) for r in flipped]}")
        p.ledger.lost.extend(f"run {r} of job {job_id} (FINISHED before the fault)" for r in flipped)
    for r in finished_before:
        p.kept_runs[r] = f"a model run of job {job_id} that finished before the fault"
    tagged = list(p.client().search_model_versions(f"tags.`studio.job_id` = '{job_id}'"))
    if final.state == "succeeded":
        if model_name:
            versions = p.versions(model_name)
            if len(versions) != 1:
                problems.append(f"a succeeded job left {len(versions)} versions of '{model_name}'")
        for run in ([final.result.get("parent_run_id")] if final.result else []) + \
                   [m.get("run_id") for m in (final.result or {}).get("models", []) if m.get("status") == "FINISHED"]:
            if run:
                p.kept_runs[run] = f"a run of succeeded job {job_id}"
        if any(status not in ("FINISHED",) for status in runs.values()):
            problems.append(f"a succeeded job's runs are {sorted(set(runs.values()))}")
    else:
        if tagged:
            problems.append(f"{len(tagged)} version(s) registered by the {final.state} job left")
        if model_name and p.versions(model_name):
            problems.append(f"'{model_name}' has {len(p.versions(model_name))} version(s) after the job {final.state}")
        parent = [r for r, status in runs.items() if status == "FINISHED" and r not in finished_before]
        if parent:
            problems.append(f"{len(parent)} run(s) of the {final.state} job ended FINISHED after the fault")
    return problems


# --- 2. faults: scoring jobs, concurrency, tampering -----------------------------------------------------


def scoring_job_faults(p: Probe, reference: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core import jobs, scoring

    s, rng = p.s, p.rng
    big = s.data_dir / "big.parquet"
    rows = 1_500_000
    writer = None
    for _ in range(0, rows, 250_000):
        block = model_frame(rng, 250_000)
        table = pa.Table.from_pandas(block, preserve_index=False)
        writer = writer or pq.ParquetWriter(big, table.schema)
        writer.write_table(table)
    writer.close()

    def mid_file(how: str) -> list[str]:
        path = scoring.data_file(s, "big.parquet")
        planned = scoring.plan(s, reference, path, name="big.parquet")
        job = jobs.submit_scoring(s, planned, force=True)
        end = time.monotonic() + 120
        st = jobs.JobStore(s).read(job.job_id)
        while not (st.state == "running" and st.done >= 250_000):
            if st.finished or time.monotonic() > end:
                raise Skip(f"the scoring ended ({st.state}) before its first batch was seen")
            time.sleep(0.01)
            st = jobs.JobStore(s).read(job.job_id)
        sup, worker = st.supervisor_pid, st.worker_pid
        parts = [x for x in s.scorings_dir.glob(f".{job.job_id}-*")]
        if how == "cancel":
            jobs.cancel(s, job.job_id)
            expected = ("cancelled",)
        elif how == "worker SIGKILL":
            os.kill(worker, signal.SIGKILL)
            expected = ("failed",)
        else:
            os.killpg(sup, signal.SIGKILL)
            expected = ("failed",)
        final = _finish(p, job.job_id)
        problems = _job_end_invariants(p, job.job_id, final, expected, None, set(), (sup, worker))
        if not parts:
            p.ledger.notes.append(f"scoring job {how}: no temporary output was seen at the moment of the fault")
        left = [x.name for x in s.scorings_dir.glob(f".{job.job_id}-*")]
        if left:
            problems.append(f"temporary output left: {left}")
        runs = p.job_runs_db(job.job_id) or {}
        outputs = [r for r in runs if scoring.output_path(s, r).exists()]
        if final.state != "succeeded" and outputs:
            problems.append(f"an output of the {final.state} scoring is in the workspace")
        return problems

    for how in ("cancel", "worker SIGKILL", "both SIGKILL"):
        p.fault(f"scoring job of 1.5M labelled rows, {how} after the first batch", lambda how=how: mid_file(how))

    def deleted_input() -> list[str]:
        path = s.data_dir / "vanishing.parquet"
        model_frame(rng, 500, labelled=False).to_parquet(path, index=False)
        planned = scoring.plan(s, reference, scoring.data_file(s, "vanishing.parquet"), name="vanishing.parquet")
        path.unlink()
        job = jobs.submit_scoring(s, planned, force=True)
        final = _finish(p, job.job_id)
        problems = _job_end_invariants(p, job.job_id, final, ("failed",), None, set(), (final.supervisor_pid, final.worker_pid))
        if final.error and "Unexpected error" in final.error:
            p.ledger.notes.append(f"a scoring job whose input was deleted after submit fails as a bug: {short(final.error, 220)}")
        return problems

    p.fault("scoring job whose input file is deleted after submit", deleted_input)

    def concurrent_submits(force: bool) -> list[str]:
        path = s.data_dir / f"twice-{force}.parquet"
        n = 3000
        model_frame(rng, n, labelled=False).to_parquet(path, index=False)
        planned = scoring.plan(s, reference, scoring.data_file(s, path.name), name=path.name)
        errors: list[str] = []
        submitted: list[str] = []

        def go():
            try:
                submitted.append(jobs.submit_scoring(s, planned, force=force).job_id)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{type(exc).__name__}: {short(exc, 150)}")

        threads = [threading.Thread(target=go) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        problems = [f"a submission failed: {e}" for e in errors]
        ids = set(submitted)
        if len(ids) != 1:
            problems.append(f"4 submissions of one plan at once started {len(ids)} jobs")
        for job_id in ids:
            final = _finish(p, job_id)
            problems += _job_end_invariants(p, job_id, final, ("succeeded",), None, set(), (final.supervisor_pid, final.worker_pid))
            if final.state == "succeeded":
                out = pq.ParquetFile(final.result["output"]).metadata.num_rows
                if out != n:
                    problems.append(f"scored {out} rows of {n}")
                    p.ledger.lost.append(f"scoring job {job_id}: {n} rows in, {out} out")
        return problems

    p.fault("4 submit_scoring of one plan at once", lambda: concurrent_submits(False))
    p.fault("4 submit_scoring of one plan at once, forced", lambda: concurrent_submits(True))


def registration_faults(p: Probe, runs: list[str]) -> None:
    from core import registry
    from core.errors import StudioError

    s = p.s

    def race(name: str, run_ids: list[str], threads: int, *, alias: str | None = None, expect_new: int) -> list[str]:
        before = len(p.versions(name))
        made, refused, errors = [], [], []

        def go(run_id):
            try:
                made.append(registry.register(s, run_id, name, alias=alias).version)
            except StudioError as exc:
                refused.append(str(exc))
                if message_problem(exc):
                    errors.append(f"refusal with a bad message: {short(exc)}")
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{type(exc).__name__}: {short(exc, 200)}")

        pool = [threading.Thread(target=go, args=(run_ids[k % len(run_ids)],)) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(120)
        problems = list(errors)
        after = p.versions(name)
        if len(after) - before != expect_new:
            problems.append(f"{len(after) - before} new version(s), expected {expect_new} (made {sorted(made)})")
        if len(set(made)) != len(made):
            problems.append(f"the same version number given twice: {sorted(made)}")
        if len({v.run_id for v in after}) != len(after):
            problems.append("one run is registered as two versions")
        if alias and made:
            target = p.client().get_model_version_by_alias(name, alias).version
            if int(target) not in made:
                problems.append(f"alias {alias} points at {target}, not at the version made ({made})")
        return problems

    p.fault("8 threads register one run as a new model", lambda: race("conc-a", runs[:1], 8, expect_new=1))
    p.fault("8 threads register one run with alias champion", lambda: race("conc-b", runs[:1], 8, alias="champion", expect_new=1))
    p.fault("8 threads register an already registered run", lambda: race("conc-a", runs[:1], 8, expect_new=0))
    p.fault("3 different runs registered to one name at once (none lost)", lambda: race("conc-c", runs[:3], 3, expect_new=3))

    def processes() -> list[str]:
        code = ("import sys, json\nfrom core import registry\nfrom core.settings import load_settings\n"
                "try:\n    print(json.dumps({'version': registry.register(load_settings(), sys.argv[1], 'conc-proc').version}))\n"
                "except Exception as exc:\n    print(json.dumps({'error': type(exc).__name__, 'message': str(exc)}))\n")
        procs = [subprocess.Popen([sys.executable, "-c", code, runs[1]], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        outs = []
        for proc in procs:
            p.started_pids.add(proc.pid)
            out, err = proc.communicate(timeout=180)
            try:
                outs.append(json.loads(out.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                outs.append({"error": "no output", "message": short(err[-400:])})
        problems = [f"{o['error']}: {short(o['message'], 150)}" for o in outs
                    if "error" in o and o["error"] not in ("BadInputError",)]
        made = [o["version"] for o in outs if "version" in o]
        if len(made) != 1 or len(p.versions("conc-proc")) != 1:
            problems.append(f"3 processes registering one run made {len(p.versions('conc-proc'))} versions ({made})")
        return problems

    p.fault("3 processes register one run at once", processes)


def ingest_faults(p: Probe) -> None:
    import pandas as pd

    from core import datasets, tables

    s = p.s
    store = tables.store(s)
    big_csv = ("a,b,c\n" + "".join(f"{k},{k * 0.5},{'word' if k % 3 else 'other'}\n" for k in range(200_000))).encode()

    def survived_ingest(fault, data: bytes, name: str) -> list[str]:
        before = p.stored()
        listed = {r.table_id for r in store.list()}
        problems = []
        try:
            fault(lambda: store.ingest(data, name))
            problems.append("the injected error did not come out")
        except (Injected, KeyboardInterrupt, OSError):
            pass
        added = p.stored() - before
        if {r.table_id for r in store.list()} != listed:
            problems.append("a table is listed after the failed ingest")
        if added:
            p.ledger.notes.append(f"ingest fault '{name}': files stay in tables/ after the failure: {sorted(added)} (not listed)")
        again = store.ingest(data, name)
        if again.record.rows != len(pd.read_parquet(store.path(again.record.table_id))):
            problems.append("the table stored again afterwards is wrong")
        store.delete(again.record.table_id)
        return problems

    def sink_full(go):
        error = OSError(28, "No space left on device")
        with patched(datasets._ParquetSink, "write", nth_call_fails(datasets._ParquetSink.write, 2, error)):
            go()

    def replace_fails(go):
        original = os.replace
        with patched(os, "replace", nth_call_fails(original, 1, OSError(5, "Input/output error"),
                                                   when=lambda src, dst, *a, **k: str(dst).endswith(".parquet"))):
            go()

    def record_fails(go):
        with patched(tables.TableStore, "_write_record", nth_call_fails(tables.TableStore._write_record, 1, Injected("disk gone"))):
            go()

    def interrupted(go):
        with patched(datasets._ParquetSink, "write", nth_call_fails(datasets._ParquetSink.write, 3, KeyboardInterrupt())):
            go()

    for label, fault in (("disk full while writing a CSV's blocks", sink_full), ("rename of the stored table fails", replace_fails),
                         ("the table's record cannot be written", record_fails), ("Ctrl-C while reading", interrupted)):
        p.fault(f"ingest: {label}", lambda fault=fault, label=label: survived_ingest(fault, big_csv, f"{label}.csv"))

    def same_at_once() -> list[str]:
        data = b"p,q\n" + b"".join(f"{k},{k * 3}\n".encode() for k in range(5000))
        results, errors = [], []

        def go():
            try:
                results.append(store.ingest(data, "same.csv"))
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{type(exc).__name__}: {short(exc)}")

        pool = [threading.Thread(target=go) for _ in range(6)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(60)
        ids = {r.record.table_id for r in results}
        problems = [f"an ingest failed: {e}" for e in errors]
        listed = [r for r in store.list() if r.table_id in ids]
        if len(ids) != 1 or len(listed) != 1:
            problems.append(f"6 ingests of one file at once: {len(ids)} ids, {len(listed)} listed tables")
        return problems

    p.fault("6 threads ingest the same file at once", same_at_once)

    def names_at_once() -> list[str]:
        datas = [f"p,q\n{k},1\n{k},2\n".encode() for k in range(4)]
        results = []
        pool = [threading.Thread(target=lambda d=d: results.append(store.ingest(d, "report.csv"))) for d in datas]
        for t in pool:
            t.start()
        for t in pool:
            t.join(60)
        names = [r.record.name for r in results]
        return [] if len(set(names)) == len(names) == 4 else [f"4 different files named report.csv at once got names {sorted(names)}"]

    p.fault("4 different files with one name stored at once (names stay distinct)", names_at_once)


def scoring_faults(p: Probe, reference: str) -> None:
    import pyarrow.parquet as pq
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from core import drift, scoring


    export_module = sys.modules["core.scoring.export"]  # core.scoring.export is also the name of a function
    s, rng = p.s, p.rng
    path = s.data_dir / "faults.parquet"
    n = 5000
    model_frame(rng, n).to_parquet(path, index=False)
    model, pipeline = scoring.load_model(s, reference)
    source = scoring.open_input(s, path, name="faults.parquet")

    class Faulty:
        def __init__(self, inner, at: int, error: BaseException) -> None:
            self.inner, self.at, self.error, self.calls = inner, at, error, 0

        def predict_proba(self, X):
            self.calls += 1
            if self.calls == self.at:
                raise self.error
            return self.inner.predict_proba(X)

        def predict(self, X):
            return self.inner.predict(X)

    def scored(fault: Callable[[Callable[[], Any]], Any], *, should_fail: bool = True, expect_status: str = "FAILED") -> list[str]:
        outputs = set(s.scorings_dir.glob("*.parquet")) if s.scorings_dir.exists() else set()
        experiment = p.client().get_experiment_by_name(scoring.EXPERIMENT)
        before = {r.info.run_id for r in p.client().search_runs([experiment.experiment_id], max_results=5000)} if experiment else set()
        problems = []
        report = None
        try:
            report = fault(lambda pipe=pipeline: scoring.score(s, model, pipe, source, batch_rows=1000, force=True))
            if should_fail:
                problems.append("the injected error did not come out")
        except (Injected, KeyboardInterrupt, OSError, MlflowException):
            if not should_fail:
                problems.append("the scoring failed although the fault should not stop it")
        experiment = p.client().get_experiment_by_name(scoring.EXPERIMENT)
        new = [r for r in p.client().search_runs([experiment.experiment_id], max_results=5000) if r.info.run_id not in before]
        for run in new:
            if run.info.status != (expect_status if should_fail else "FINISHED"):
                problems.append(f"the scoring run ended {run.info.status}, expected {expect_status if should_fail else 'FINISHED'}")
        now = set(s.scorings_dir.glob("*.parquet"))
        if should_fail and now - outputs:
            problems.append(f"an output was left for the failed scoring: {[x.name for x in now - outputs]}")
        if report is not None:
            written = pq.ParquetFile(report.output).metadata.num_rows
            if report.rows != n or written != n:
                problems.append(f"{n} rows in, {report.rows} reported, {written} written")
                p.ledger.lost.append(f"scoring fault: {n} rows in, {written} written")
        again = scoring.score(s, model, pipeline, source, batch_rows=1000, force=True)
        if again.rows != n:
            problems.append(f"the scoring afterwards gave {again.rows} rows of {n}")
            p.ledger.lost.append(f"scoring after a fault: {n} rows in, {again.rows} out")
        return problems

    def predict_fails(go):
        return scoring.score(s, model, Faulty(pipeline, 3, Injected("model failed")), source, batch_rows=1000, force=True)

    def predict_interrupted(go):
        return scoring.score(s, model, Faulty(pipeline, 2, KeyboardInterrupt()), source, batch_rows=1000, force=True)

    def writer_full(go):
        import pyarrow.parquet as pqm

        class Full(pqm.ParquetWriter):
            calls = 0

            def write_table(self, table, *a, **k):
                Full.calls += 1
                if Full.calls == 3:
                    raise OSError(28, "No space left on device")
                return super().write_table(table, *a, **k)

        with patched(pqm, "ParquetWriter", Full):
            return go()

    def replace_fails(go):
        with patched(os, "replace", nth_call_fails(os.replace, 1, OSError(5, "Input/output error"),
                                                   when=lambda src, dst, *a, **k: str(src).endswith(".parquet.part"))):
            return go()

    def store_error(go):
        with patched(MlflowClient, "log_batch", nth_call_fails(MlflowClient.log_batch, 2, MlflowException("database is locked"))):
            return go()

    def drift_fails(go):
        with patched(drift.BatchComparison, "add", nth_call_fails(drift.BatchComparison.add, 2, Injected("drift bug"))):
            return go()

    def no_hard_links(go):
        with patched(os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(18, "Invalid cross-device link"))):
            return go()

    def counter_fails(go):
        from core.scoring import outcomes

        with patched(outcomes._Outcomes, "add", nth_call_fails(outcomes._Outcomes.add, 2, Injected("metric bug"))):
            return go()

    p.fault("scoring: the model fails on batch 3", lambda: scored(predict_fails))
    p.fault("scoring: Ctrl-C on batch 2", lambda: scored(predict_interrupted, expect_status="KILLED"))
    p.fault("scoring: disk full writing batch 3", lambda: scored(writer_full))
    p.fault("scoring: the final rename fails", lambda: scored(replace_fails))
    p.fault("scoring: the store refuses a write (log_batch)", lambda: scored(store_error))
    p.fault("scoring: labelled metrics fail on batch 2", lambda: scored(counter_fails))
    p.fault("scoring: drift counting fails on batch 2 (scores stand)", lambda: scored(drift_fails, should_fail=False))
    p.fault("scoring: no hard links (the output is uploaded instead)", lambda: scored(no_hard_links, should_fail=False))

    def export_fails() -> list[str]:
        report = scoring.score(s, model, pipeline, source, batch_rows=1000, force=True)
        target = p.root / "export" / "fault.csv"
        target.unlink(missing_ok=True)
        problems = []
        with patched(export_module, "_csv_rows", nth_call_fails(export_module._csv_rows, 2, OSError(28, "No space left on device"))):
            try:
                scoring.export(Path(report.output), target, "csv", batch_rows=1000)
                problems.append("the injected error did not come out")
            except OSError:
                pass
        if target.exists():
            problems.append("a half-written export is left under the final name")
        left = list(target.parent.glob(".*.part"))
        if left:
            problems.append(f"export temporary files left: {[x.name for x in left]}")
        return problems

    p.fault("export: disk full on the second CSV batch", export_fails)


def tamper_faults(p: Probe, run_id: str) -> None:
    from urllib.parse import unquote, urlparse

    from core import integrity, jobs, registry, scoring, serving
    from core.errors import StudioError

    s = p.s
    registry.register(s, run_id, "tamper", alias="champion")
    c = p.client()
    mv = c.get_model_version("tamper", "1")
    folder = Path(unquote(urlparse(mv.source).path))
    backup = p.root / "tamper-backup"
    shutil.copytree(folder, backup)
    marker = p.root / "pickle-ran"
    payload = pickle.dumps(_Payload(str(marker)))
    data = s.data_dir / "tamper.parquet"
    model_frame(p.rng, 200, labelled=False).to_parquet(data, index=False)
    tag = mv.tags[integrity.MANIFEST_TAG]

    def restore():
        shutil.rmtree(folder)
        shutil.copytree(backup, folder, symlinks=False)

    def refused(load: Callable[[], Any], what: str) -> list[str]:
        try:
            load()
            return [f"{what}: the altered model loaded"]
        except StudioError as exc:
            bad = message_problem(exc)
            return [f"{what}: refusal message {bad}"] if bad else []
        except Exception as exc:  # noqa: BLE001
            return [f"{what}: {type(exc).__name__}: {short(exc, 200)} instead of a refusal"]

    def serve_folders() -> set[Path]:
        return set(Path(tempfile.gettempdir()).glob("studio-serve-*"))

    def case(mutate: Callable[[], None], *, via: str = "load") -> list[str]:
        marker.unlink(missing_ok=True)
        serving_before = serve_folders()
        mutate()
        problems = []
        try:
            if via == "load":
                problems += refused(lambda: scoring.load_model(s, "tamper@champion"), "scoring.load_model")
                problems += refused(lambda: serving._verified("models:/tamper/1"), "the REST server's loader")
            elif via == "run":
                planned = scoring.plan(s, "tamper@champion", data, name="tamper.parquet")
                problems += refused(lambda: scoring.run(s, planned, force=True), "scoring.run")
                if p.running_runs():
                    problems.append("a scoring run was left RUNNING")
            else:
                planned = scoring.plan(s, "tamper@champion", data, name="tamper.parquet")
                job = jobs.submit_scoring(s, planned, force=True)
                final = _finish(p, job.job_id)
                problems += _job_end_invariants(p, job.job_id, final, ("failed",), None, set(), (final.supervisor_pid, final.worker_pid))
                if final.state == "failed" and "not the ones logged" not in (final.error or "") and "hashes" not in (final.error or ""):
                    problems.append(f"the job failed for another reason: {short(final.error, 200)}")
        finally:
            restore()
            c.set_model_version_tag("tamper", "1", integrity.MANIFEST_TAG, tag)
            c.set_tag(run_id, integrity.MANIFEST_TAG, tag)
        if marker.exists():
            problems.append("the malicious pickle RAN")
        for left in serve_folders() - serving_before:  # made by this process's call of the REST loader
            p.ledger.notes.append(f"tampered model: the REST server's loader (core/serving.py _verified) left the refused files in "
                                  f"{left.parent}/{left.name[:13]}...: {sorted(x.name for x in left.rglob('*') if x.is_file())[:4]}")
            shutil.rmtree(left, ignore_errors=True)
        try:
            scoring.load_model(s, "tamper@champion")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"the restored model no longer loads: {type(exc).__name__}: {short(exc, 150)}")
        return problems

    pkl = folder / "model.pkl"

    def append_byte():
        pkl.write_bytes(pkl.read_bytes() + b"\x00")

    def malicious():
        pkl.write_bytes(payload)

    def truncate():
        pkl.write_bytes(pkl.read_bytes()[: pkl.stat().st_size // 2])

    def edit_mlmodel():
        (folder / "MLmodel").write_text((folder / "MLmodel").read_text() + "\n# edited\n")

    def extra_file():
        (folder / "extra.pkl").write_bytes(payload)

    def delete_file():
        victim = next(x for x in sorted(folder.iterdir()) if x.is_file() and x.name not in ("model.pkl", "MLmodel"))
        victim.unlink()

    def symlink():
        evil = p.root / "evil.pkl"
        evil.write_bytes(payload)
        pkl.unlink()
        pkl.symlink_to(evil)

    def no_hashes():
        c.delete_model_version_tag("tamper", "1", integrity.MANIFEST_TAG)
        c.delete_tag(run_id, integrity.MANIFEST_TAG)
        pkl.write_bytes(payload)

    def forged_run_hashes():  # the version's own hashes stay; the run's are rewritten to match a replaced file
        import hashlib

        pkl.write_bytes(payload)
        forged = json.loads(tag)
        forged["model.pkl"] = hashlib.sha256(payload).hexdigest()
        c.set_tag(run_id, integrity.MANIFEST_TAG, json.dumps(forged))

    for label, mutate, via in (("one byte appended to model.pkl", append_byte, "load"), ("model.pkl replaced by a malicious pickle", malicious, "load"),
                               ("model.pkl cut in half", truncate, "load"), ("MLmodel edited", edit_mlmodel, "load"),
                               ("a malicious extra file beside the model", extra_file, "load"), ("a model file deleted", delete_file, "load"),
                               ("model.pkl a symlink to a malicious pickle", symlink, "load"),
                               ("hashes removed and model.pkl replaced", no_hashes, "load"),
                               ("the run's hashes forged to match a replaced model.pkl", forged_run_hashes, "load"),
                               ("malicious model.pkl, scored with plan + run", malicious, "run"),
                               ("malicious model.pkl, scored by a background job", malicious, "job")):
        p.fault(f"tampered model: {label}", lambda mutate=mutate, via=via: case(mutate, via=via))

    # versions whose files lie outside the artifact root
    outside = p.root / "elsewhere" / "model"
    shutil.copytree(backup, outside)
    (outside / "model.pkl").write_bytes(payload)
    link = s.artifacts_dir / "link-to-elsewhere"
    if not link.exists():
        link.symlink_to(outside, target_is_directory=True)
    traversal = str(s.artifacts_dir / ".." / ".." / "elsewhere" / "model")
    for label, source in (("an absolute path", str(outside)), ("a file:// URI", outside.as_uri()), ("a path with ../ out of mlartifacts", traversal),
                          ("a symlink inside mlartifacts", str(link)), ("an s3:// URI", "s3://bucket/model"),
                          ("an http:// URI", "http://127.0.0.1:9/model"), ("a relative path", os.path.relpath(outside))):
        def outside_case(source=source) -> list[str]:
            marker.unlink(missing_ok=True)
            try:
                version = c.create_model_version("tamper", source=source, run_id=run_id)
            except Exception as exc:  # noqa: BLE001 - MLflow itself refused the source: nothing to load
                p.ledger.notes.append(f"outside source {source!r}: MLflow refused to create the version ({type(exc).__name__})")
                return []
            problems = refused(lambda: scoring.load_model(s, f"tamper/{version.version}"), "scoring.load_model")
            problems += refused(lambda: integrity.verified_copy(s, "tamper", int(version.version), p.root / f"copy-{version.version}"),
                                "integrity.verified_copy")
            if marker.exists():
                problems.append("the malicious pickle RAN")
            c.delete_model_version("tamper", version.version)
            return problems

        p.fault(f"version source outside the artifact root: {label}", outside_case)


class _Payload:
    """Unpickling this creates a file: proof that an artifact's code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def training_faults(p: Probe, frame) -> None:
    import mlflow

    from core import registry, training
    from core.errors import StudioError
    from core.tracking import TrackingUnavailableError
    from core.training import TrainingSpec, train

    s = p.s

    def runs_after(before: set[str]) -> dict[str, str]:
        c = p.client()
        experiment = c.get_experiment_by_name(training.EXPERIMENT)
        return {r.info.run_id: r.info.status for r in c.search_runs([experiment.experiment_id], max_results=5000)
                if r.info.run_id not in before}

    def known() -> set[str]:
        experiment = p.client().get_experiment_by_name(training.EXPERIMENT)
        return {r.info.run_id for r in p.client().search_runs([experiment.experiment_id], max_results=5000)} if experiment else set()

    def second_model_fails() -> list[str]:
        before = known()
        original = mlflow.sklearn.log_model
        with patched(mlflow.sklearn, "log_model", nth_call_fails(original, 2, Injected("artifact store full"))):
            result = train(s, TrainingSpec(target=TARGET, features=FEATURES, algorithms=("lr", "dt"), folds=2, register_name="tf-a"),
                           frame, table_name="t", table_digest="c" * 64)
        problems = []
        statuses = sorted(runs_after(before).values())
        if statuses != ["FAILED", "FINISHED", "FINISHED"]:
            problems.append(f"runs ended {statuses}, expected one model FAILED, the other and the parent FINISHED")
        if len(p.versions("tf-a")) != 1:
            problems.append(f"{len(p.versions('tf-a'))} versions registered (the finished model should be)")
        if p.running_runs():
            problems.append("runs left RUNNING")
        for m in result.models:
            if m.status == "FINISHED":
                p.kept_runs[m.run_id] = "a finished model of a training with one failed model"
        return problems

    def registration_fails() -> list[str]:
        before = known()
        problems = []
        error = TrackingUnavailableError("The MLflow tracking server cannot be reached (injected).")
        with patched(registry, "register", lambda *a, **k: (_ for _ in ()).throw(error)):
            try:
                train(s, TrainingSpec(target=TARGET, features=FEATURES, algorithms=("lr",), folds=2, register_name="tf-b"),
                      frame, table_name="t", table_digest="d" * 64)
                problems.append("the registration error did not come out")
            except StudioError:
                pass
        statuses = runs_after(before)
        if "RUNNING" in statuses.values():
            problems.append("runs left RUNNING after the registration failed")
        if p.versions("tf-b"):
            problems.append("a version exists although registration failed")
        return problems

    def interrupted() -> list[str]:
        before = known()
        problems = []
        from pycaret.classification import ClassificationExperiment

        original = ClassificationExperiment.create_model
        with patched(ClassificationExperiment, "create_model", nth_call_fails(original, 2, KeyboardInterrupt())):
            try:
                train(s, TrainingSpec(target=TARGET, features=FEATURES, algorithms=("lr", "dt"), folds=2, register_name="tf-c"),
                      frame, table_name="t", table_digest="e" * 64)
                problems.append("Ctrl-C did not come out")
            except KeyboardInterrupt:
                pass
        statuses = runs_after(before)
        if "RUNNING" in statuses.values():
            problems.append(f"runs left RUNNING after Ctrl-C: {sorted(statuses.values())}")
        if p.versions("tf-c"):
            problems.append("a version exists after Ctrl-C")
        return problems

    def no_run_left_active(inject: Callable[[], list[str]]) -> Callable[[], list[str]]:
        def run() -> list[str]:
            problems = inject()
            if mlflow.active_run() is not None:
                problems.append("an MLflow run stays active in the process afterwards (the next training would nest in it)")
                while mlflow.active_run() is not None:
                    mlflow.end_run("FAILED")
            return problems
        return run

    p.fault("training: the second model cannot be logged", no_run_left_active(second_model_fails))
    p.fault("training: registration fails at the end", no_run_left_active(registration_fails))
    p.fault("training: Ctrl-C while the second model cross-validates", no_run_left_active(interrupted))


def sweep_faults(p: Probe) -> None:
    from core import jobs

    s = p.s
    store = jobs.JobStore(s)

    def damaged(write: Callable[[Path], None], *, expect_listed: bool = False) -> list[str]:
        job = store.create("training", "damaged", {"spec": {}, "table_id": "0" * 16})
        write(store.folder(job.job_id))
        try:
            listed = {j.job_id: j for j in jobs.sweep(s)}
        except Exception as exc:  # noqa: BLE001
            return [f"sweep failed: {type(exc).__name__}: {short(exc, 200)}"]
        problems = []
        if job.job_id in listed and listed[job.job_id].state in jobs.ACTIVE:
            problems.append(f"the job is still '{listed[job.job_id].state}' after the sweep")
        shutil.rmtree(store.folder(job.job_id), ignore_errors=True)
        return problems

    def dead_pids(folder: Path) -> None:
        proc = subprocess.Popen(["true"])
        proc.wait()  # a pid that existed and is gone
        data = json.loads((folder / "status.json").read_text())
        data.update(state="running", supervisor_pid=proc.pid, worker_pid=proc.pid, created_at=time.time() - 3600)
        (folder / "status.json").write_text(json.dumps(data))

    p.fault("job folder: status.json is garbage", lambda: damaged(lambda f: (f / "status.json").write_bytes(os.urandom(64))))
    p.fault("job folder: status.json is JSON null", lambda: damaged(lambda f: (f / "status.json").write_text("null")))
    p.fault("job folder: status.json has an unknown field", lambda: damaged(
        lambda f: (f / "status.json").write_text(json.dumps({**json.loads((f / "status.json").read_text()), "surprise": 1}))))
    p.fault("job folder: running, processes gone, spec.json missing", lambda: damaged(lambda f: (dead_pids(f), (f / "spec.json").unlink())))

    def stray_folder() -> list[str]:
        for name in ("not-a-job", "ZZZZ", ".hidden"):
            (s.jobs_dir / name).mkdir(parents=True, exist_ok=True)
        (s.jobs_dir / "a-file.txt").write_text("x")
        try:
            jobs.sweep(s)
            return []
        except Exception as exc:  # noqa: BLE001
            return [f"sweep failed: {type(exc).__name__}: {short(exc, 200)}"]
        finally:
            for name in ("not-a-job", "ZZZZ", ".hidden"):
                shutil.rmtree(s.jobs_dir / name, ignore_errors=True)
            (s.jobs_dir / "a-file.txt").unlink(missing_ok=True)

    p.fault("jobs folder: folders and files that are not jobs", stray_folder)

    def reused_pid_sweep() -> list[str]:
        """After a restart the job's recorded pids may belong to other processes."""
        stranger = subprocess.Popen(["sleep", "120"])
        p.started_pids.add(stranger.pid)
        job = store.create("training", "from before a restart", {"spec": {}, "table_id": "0" * 16})
        store.update(job.job_id, state="running", supervisor_pid=stranger.pid, worker_pid=stranger.pid, created_at=time.time() - 86400,
                     started_at=time.time() - 86400)
        problems = []
        try:
            swept = {j.job_id: j for j in jobs.sweep(s)}[job.job_id]
            if swept.state in jobs.ACTIVE:
                problems.append(f"a job whose recorded pid now belongs to another process (sleep) stays '{swept.state}' for ever: "
                                "core/jobs.py _alive() checks only that some process has that pid")
            jobs.cancel(s, job.job_id)
            time.sleep(0.5)
            if stranger.poll() is not None:
                problems.append(f"cancelling it sent a signal to the unrelated process (it ended with {stranger.returncode})")
        finally:
            if stranger.poll() is None:
                stranger.kill()
            stranger.wait()
            store.update(job.job_id, state="failed", finished_at=time.time())
        return problems

    p.fault("job from before a restart whose pids were reused", reused_pid_sweep)


# --- setup and the run --------------------------------------------------------------------------


def setup_models(p: Probe):
    """A small classifier registered as probe@champion, and a table for the jobs."""
    from core import registry, tables
    from core.training import TrainingSpec, train

    frame = model_frame(p.rng, 3000)
    record = tables.store(p.s).ingest(parquet_bytes(frame), "jobs-table.parquet").record
    result = train(p.s, TrainingSpec(target=TARGET, features=FEATURES, algorithms=("lr", "dt", "nb"), folds=2), frame,
                   table_name="probe", table_digest=record.digest)
    runs = [m.run_id for m in result.models if m.status == "FINISHED"]
    registry.register(p.s, runs[0], "probe", alias="champion")
    for m in result.models:
        p.kept_runs[m.run_id] = "a model run trained in the probe's setup"
    p.kept_runs[result.parent_run_id] = "the probe's setup training run"
    tamper = train(p.s, TrainingSpec(target=TARGET, features=FEATURES, algorithms=("lr",), folds=2), frame,
                   table_name="probe-tamper", table_digest=record.digest)
    return record.table_id, runs, tamper.models[0].run_id, frame


def final_lost_check(p: Probe) -> None:
    c = p.client()
    for run_id, what in p.kept_runs.items():
        try:
            run = c.get_run(run_id)
            if run.info.status != "FINISHED" or run.info.lifecycle_stage != "active":
                p.ledger.lost.append(f"{what} ({run_id}) is now {run.info.status}/{run.info.lifecycle_stage}")
        except Exception as exc:  # noqa: BLE001
            p.ledger.lost.append(f"{what} ({run_id}) is gone: {type(exc).__name__}")


def end_own_processes(p: Probe) -> None:
    """The job processes this probe started (by pid, from the job files): none may outlive it."""
    from core import jobs

    pids = set(p.started_pids)
    for job in jobs.JobStore(p.s).list():
        pids.update(x for x in (job.supervisor_pid, job.worker_pid) if x)
    mine = f"STUDIO_WORKSPACE={p.s.workspace}".encode()
    for pid in pids:
        if pid == os.getpid() or not _alive(pid):
            continue
        try:
            environment = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if mine in environment.split(b"\0"):  # started for this probe's workspace: ours
            os.kill(pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer kill moments (7 instead of 21)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a bad input may take before it counts as a hang")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace (its path is printed)")
    parser.add_argument("--only", help="comma-separated sections to run (default: all): ingest, scoring, training, ingest-faults, "
                                       "scoring-faults, training-faults, registration, tamper, sweep, scoring-jobs, kills")
    args = parser.parse_args()

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="studio-probe-"))
    print(f"workspace: {root} (seed {args.seed}{', quick' if args.quick else ''})", flush=True)
    started = time.monotonic()
    p = Probe(root, args.seed, args.timeout, args.quick)
    try:
        table_id, runs, tamper_run, frame = setup_models(p)
        print(f"setup done in {time.monotonic() - started:.0f} s", flush=True)
        sections = {
            "ingest": lambda: ingest_cases(p), "scoring": lambda: scoring_cases(p, "probe@champion"),
            "training": lambda: training_cases(p, table_id), "ingest-faults": lambda: ingest_faults(p),
            "scoring-faults": lambda: scoring_faults(p, "probe@champion"), "training-faults": lambda: training_faults(p, frame),
            "registration": lambda: registration_faults(p, runs), "tamper": lambda: tamper_faults(p, tamper_run),
            "sweep": lambda: sweep_faults(p), "scoring-jobs": lambda: scoring_job_faults(p, "probe@champion"),
            "kills": lambda: kill_faults(p, table_id),
        }
        chosen = [x.strip() for x in args.only.split(",")] if args.only else list(sections)
        unknown = sorted(set(chosen) - set(sections))
        if unknown:
            parser.error(f"unknown section(s) {unknown}; sections: {', '.join(sections)}")
        for section in chosen:
            print(f"{section} ({time.monotonic() - started:.0f} s so far):", flush=True)
            sections[section]()
        final_lost_check(p)
    finally:
        end_own_processes(p)
    ledger = p.ledger
    print()
    failing = [r for r in ledger.results if not r.ok]
    print(f"failing cases ({len(failing)}):")
    for r in failing:
        print(f"FAIL {r.kind}: {r.name}: {r.detail}")
    if ledger.differences:
        print(f"\noutcomes that differ from what the README documents ({len(ledger.differences)}; not counted as failures):")
        for line in ledger.differences:
            print(f"  {line}")
    if ledger.skipped:
        print(f"\nfaults not injected (moment missed; not counted): {len(ledger.skipped)}")
        for line in ledger.skipped:
            print(f"  {line}")
    if ledger.notes:
        print(f"\nnotes ({len(ledger.notes)}):")
        for line in ledger.notes:
            print(f"  {short(line, 400)}")
    if ledger.lost:
        print("\nlost:")
        for line in ledger.lost:
            print(f"  {line}")
    tried, clean = ledger.count("bad input")
    injected, survived = ledger.count("fault")
    print(f"\nbad inputs: {tried} tried, {clean} handled cleanly")
    print(f"faults: {injected} injected, {survived} survived")
    print(f"runs or rows lost: {len(ledger.lost)}")
    print(f"({time.monotonic() - started:.0f} s)")
    if args.keep:
        print(f"workspace kept: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
