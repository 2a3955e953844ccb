"""Peak memory and time of storing an uploaded CSV file, on generated files of 50 and 200 MB.

Each file has mixed columns: whole numbers (one with gaps, one with -999 for "missing"), decimals,
text (categories, names with accents, free comments), dates written 10/03/2004 (read day-first),
ISO timestamps and True/False. Two variants of each size: comma-separated with decimal points, and
semicolon-separated with decimal commas (Latin-1 encoded, as Excel saves it in much of Europe).

Every run is a separate child process, which reports its peak resident memory (``ru_maxrss`` of
RUSAGE_SELF) minus its resident memory just before the measured step (read from /proc/self/statm,
after the imports), and the step's wall time:
- ``pandas``: the baseline, ``pandas.read_csv`` of the file with the right separator, decimal mark and
  encoding, into one frame (what the studio's reader did before, at the least: it also held the
  decoded text and a copy of it);
- ``studio file``: ``TableStore.ingest(path)``: the file read from disk in blocks, written to parquet
  as it is read (how the CLI can store a file);
- ``studio upload``: ``TableStore.ingest(bytes)`` as the Data page does it: the bytes of the upload are
  read into memory inside the measured step, so they count in the peak;
- ``previous`` (with ``--previous``): the reader of the last commit (``git show HEAD:core/datasets.py``).

    .venv/bin/python benchmarks/ingest.py [--sizes 50,200] [--runs 3] [--previous]

Target (issue "Hardening", item 6): the studio's peak increase at most 3 times the file's size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import PROJECT_ROOT  # noqa: E402

VARIANTS = {"comma": {"sep": ",", "decimal": ".", "encoding": "utf-8"},
            "semicolon": {"sep": ";", "decimal": ",", "encoding": "latin-1"}}


def generate(path: Path, megabytes: int, variant: str) -> int:
    """A CSV file of about ``megabytes`` MB, written 100,000 rows at a time; returns its rows."""
    import numpy as np
    import pandas as pd

    style = VARIANTS[variant]
    rng = np.random.default_rng(0)
    cities = np.array(["São Paulo", "Zürich", "Montréal", "Kraków", "Lyon", "Porto", "Köln", "Sevilla"])
    words = np.array(["good", "late", "refund asked", "called twice", "ok", "damaged box", "très bien", "no answer"])
    target, rows, start = megabytes * 1_000_000, 0, 0
    first_day = np.datetime64("2004-03-10")
    with open(path, "w", encoding=style["encoding"], newline="") as f:
        while f.tell() < target:
            n = 100_000
            days = first_day + (np.arange(start, start + n) // 2_000).astype("timedelta64[D]")
            count = rng.poisson(4, n).astype("float64")
            count[rng.random(n) < 0.02] = np.nan
            code = rng.integers(0, 500, n)
            code[rng.random(n) < 0.01] = -999
            block = pd.DataFrame({
                "id": np.arange(start, start + n),
                "amount": rng.gamma(2.0, 40.0, n).round(2),
                "score": rng.normal(0, 1, n).round(5),
                "count": pd.array(count, dtype="Int64"),
                "code": code,
                "category": rng.choice(list("ABCDEFGHIJKLMNOP"), n),
                "city": rng.choice(cities, n),
                "comment": [f"{w} #{i % 977}" for w, i in zip(rng.choice(words, n), range(start, start + n), strict=True)],
                "day": pd.to_datetime(days).strftime("%d/%m/%Y"),
                "stamp": pd.to_datetime(days + rng.integers(0, 86_400, n).astype("timedelta64[s]")).strftime("%Y-%m-%d %H:%M:%S"),
                "flag": rng.random(n) < 0.3,
            })
            block.to_csv(f, index=False, header=start == 0, sep=style["sep"], decimal=style["decimal"])
            start += n
            rows += n
    return rows


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(mode: str, path: str, variant: str, workdir: str) -> None:
    import pandas as pd  # noqa: F401
    import pyarrow.csv  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    from core import datasets
    from core.tables import TableStore

    store = TableStore(Path(workdir) / f"tables-{os.getpid()}")
    previous = None
    if mode == "previous":
        source = subprocess.run(["git", "show", "HEAD:core/datasets.py"], cwd=PROJECT_ROOT, capture_output=True,
                                text=True, check=True).stdout
        import types

        module = types.ModuleType("previous_datasets")
        sys.modules[module.__name__] = module  # dataclasses look their module up
        exec(compile(source, "previous_datasets.py", "exec"), module.__dict__)  # noqa: S102
        previous = module.__dict__
    # warm up as a running studio is: every lazy import done, the readers used once
    style = VARIANTS[variant]
    tiny = Path(workdir) / f"warm-{os.getpid()}.csv"
    tiny.write_text(f"a{style['sep']}b\n1{style['sep']}x\n", encoding=style["encoding"])
    pd.read_csv(tiny, sep=style["sep"])
    datasets.read_table_to_parquet(tiny, tiny.name, tiny.with_suffix(".parquet"))
    datasets.read_table(tiny.read_bytes(), tiny.name)
    before = _rss()
    started = time.perf_counter()
    if mode == "pandas":
        rows = len(pd.read_csv(path, sep=style["sep"], decimal=style["decimal"], encoding=style["encoding"],
                               low_memory=False))
    elif mode == "studio-file":
        rows = store.ingest(Path(path), Path(path).name).record.rows
    elif mode == "studio-upload":
        rows = store.ingest(Path(path).read_bytes(), Path(path).name).record.rows
    else:
        rows = len(previous["read_table"](Path(path).read_bytes(), Path(path).name).frame)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_increase": peak - before, "before": before}))


def run_child(mode: str, path: Path, variant: str, workdir: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(path), variant, str(workdir)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200", help="file sizes in MB, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="runs of each mode on each file")
    parser.add_argument("--variants", default="comma,semicolon")
    parser.add_argument("--previous", action="store_true", help="also measure the reader of the last commit")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    modes = ["pandas", "studio-file", "studio-upload"] + (["previous"] if args.previous else [])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for megabytes in [int(s) for s in args.sizes.split(",")]:
            for variant in args.variants.split(","):
                path = root / f"table_{megabytes}mb_{variant}.csv"
                rows = generate(path, megabytes, variant)
                size = path.stat().st_size
                print(f"{path.name}: {size / 1e6:,.0f} MB, {rows:,} rows, 11 columns")
                for mode in modes:
                    results = [run_child(mode, path, variant, root) for _ in range(args.runs)]
                    peaks = [r["peak_increase"] / 1e6 for r in results]
                    times = [r["seconds"] for r in results]
                    print(f"  {mode:14s} peak increase {', '.join(f'{p:,.0f}' for p in peaks)} MB "
                          f"({max(peaks) * 1e6 / size:.2f}x the file at most); "
                          f"time {', '.join(f'{t:.1f}' for t in times)} s")
                for leftover in root.glob("tables-*"):
                    for f in leftover.iterdir():
                        f.unlink()
                    leftover.rmdir()
                for leftover in root.glob("warm-*"):
                    leftover.unlink()
                path.unlink()


if __name__ == "__main__":
    main()
