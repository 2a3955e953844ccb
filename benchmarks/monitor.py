"""Monitor page on large scored batches: time to ready after the first render, and the page
process's memory growth, on batches of 1M and 4M rows (issue 15).

A Kobe pipeline (logistic regression on the six numeric shot features, trained on the real
development file) is registered as champion in a private temporary workspace (embedded MLflow
store). Production files resample the real production file's rows (3-point shots, so the features
drift; outcome ``shot_made_flag`` included, so the page shows F1 and the comparison with training)
and are scored with ``core.scoring.score`` (drift measured and recorded on the way, the output
logged), each in a child process, so that scoring's memory never counts in the page process.

The page process is this process: ``streamlit.testing.v1.AppTest`` runs the real app script here
(the script runs in a thread of this process). Before anything is measured, the process is warmed
on a batch of 400,000 rows (imports, the MLflow store opened, the training profile parsed: once per
process in the studio too; the charts sample 200,000 rows there, as on any larger batch). Then, for
each size, a fresh AppTest session opens the Monitor page from the Score page's link
(``?model=...&batch=...``); with ``--rounds 2`` each size gets two sessions, round 1 in the order of
``--sizes`` and round 2 reversed, so memory the process kept from an earlier session favours neither:

1. first render: ``switch_page("app_pages/monitor.py").run()``, timed (reported, not the target);
2. reruns: ``at.run()``, ``--runs`` times, each timed: "page ready after the first render";
3. a change a user makes: another feature in the "Look at one feature" selectbox, ``--runs``
   times (a different feature each time), each timed;
4. memory: the peak resident memory (RSS) of this process during 1-3, minus its RSS just before;
   the kernel's peak (``VmHWM`` in /proc/self/status, reset through /proc/self/clear_refs before
   each measure) when the kernel allows it, and RSS sampled every 10 ms by a background thread
   (psutil) in any case. Plus the peak of Python allocations during one more rerun under
   tracemalloc (not timed; it counts numpy and pandas memory, not Arrow's buffers).

Baseline, afterwards in the same process: the OLD behaviour's cost, not the page's: the batch's
profiled feature columns read whole (``pd.read_parquet(output, columns=features)``), as the page
did before it read the drift report recorded on the run and sampled one column for the charts;
timed, with its RSS peak growth measured the same way.

    .venv/bin/python benchmarks/monitor.py [--sizes 1000000,4000000] [--runs 3] [--rounds 2]
        [--warmup-rows 400000] [--profile]

Targets (issue 15): on the 1M batch, the page ready in under 3 s after the first render (rerun
time); the page process's memory growth about the same for 4M rows as for 1M (ratio about 1).
``--profile`` (or a median rerun over 3 s at a size of 1M rows or more) prints the top 25
functions by cumulative time of one more rerun (cProfile in the script's thread).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.settings import PROJECT_ROOT  # noqa: E402

KOBE = PROJECT_ROOT.parent / "shared" / "datasets" / "kobe"
FEATURES = ["lat", "lon", "minutes_remaining", "period", "playoffs", "shot_distance"]
TARGET = "shot_made_flag"
MODEL = "kobe-monitor-bench"
PAGE = "app_pages/monitor.py"
MB = 2**20


# --- children: training and scoring, so the page process stays clean ---------------------------


def child_setup() -> None:
    """Train the Kobe pipeline and register it as MODEL@champion."""
    import pandas as pd

    from core import registry
    from core.settings import load_settings
    from core.training import TrainingSpec, train

    settings = load_settings()
    result = train(settings, TrainingSpec(target=TARGET, features=tuple(FEATURES), algorithms=("lr",), folds=3),
                   pd.read_parquet(KOBE / "dataset_kobe_dev.parquet"), table_name="kobe dev", table_digest="0" * 64)
    registry.register(settings, result.models[0].run_id, MODEL, alias="champion")
    print(json.dumps({"run_id": result.models[0].run_id}))


def child_batch(path: str, rows: str) -> None:
    """Write ``rows`` labelled shots resampled from the production file, score them, drop the input."""
    from scoring import generate  # benchmarks/scoring.py, beside this script

    from core import scoring
    from core.settings import load_settings

    rows_ = int(rows)
    generate(Path(path), rows_, seed=rows_)
    settings = load_settings()
    model, pipeline = scoring.load_model(settings, f"{MODEL}@champion")
    started = time.perf_counter()
    report = scoring.score(settings, model, pipeline, scoring.open_input(settings, Path(path)), force=True)
    seconds = time.perf_counter() - started
    Path(path).unlink()
    print(json.dumps({"run_id": report.run_id, "rows": report.rows, "seconds": seconds, "output": report.output,
                      "drift": (report.drift or {}).get("status")}))


def run_child(*args: str) -> dict:
    from children import run_child as run  # benchmarks/children.py, beside this script

    return run(__file__, *args)


# --- memory of this process ------------------------------------------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _reset_kernel_peak() -> bool:
    """Reset VmHWM (the kernel's peak RSS of this process) to the current RSS; False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def settle() -> None:
    """Free what can be freed before a measure: Python garbage and Arrow's pooled memory."""
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()


class Peak:
    """RSS growth of this process over a ``with`` block: its peak minus its RSS at the start."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._stop = threading.Event()
        self.start_rss = self.sampled_peak = 0
        self.kernel_peak: int | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sampled_peak = max(self.sampled_peak, self._process.memory_info().rss)
            self._stop.wait(0.01)

    def __enter__(self) -> Peak:
        self._kernel = _reset_kernel_peak()
        self.start_rss = self.sampled_peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sampled_peak = max(self.sampled_peak, self._process.memory_info().rss)
        hwm = _status_kb("VmHWM") if self._kernel else None
        self.kernel_peak = hwm * 1024 if hwm is not None else None

    @property
    def growth(self) -> float:
        """MB above the start: the kernel's peak when available, else the sampled one."""
        return ((self.kernel_peak if self.kernel_peak is not None else self.sampled_peak) - self.start_rss) / MB

    @property
    def sampled_growth(self) -> float:
        return (self.sampled_peak - self.start_rss) / MB

    def text(self) -> str:
        sampled = f"{self.sampled_growth:,.1f} MB sampled every 10 ms"
        if self.kernel_peak is None:
            return f"{sampled} (kernel peak not resettable here)"
        return f"{self.growth:,.1f} MB kernel peak (VmHWM), {sampled}"


# --- the page ----------------------------------------------------------------------------------------


def check(at, doing: str) -> list[str]:
    """A page exception is a crash of the benchmark; st.error messages other than the drift verdict
    (the page says "Significant drift in ..." with st.error) are returned to be printed."""
    if at.exception:
        raise SystemExit(f"the app raised while {doing}: {[e.value for e in at.exception]}")
    return [str(e.value) for e in at.error if not str(e.value).startswith("Significant drift in")]


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def profile_rerun(at, top: int = 25) -> str:
    """cProfile of one ``at.run()``, in the thread that runs the script (AppTest runs it in a thread
    of its own; Python 3.11's cProfile only sees the thread that enabled it)."""
    import cProfile
    import io
    import pstats

    from streamlit.testing.v1.local_script_runner import LocalScriptRunner

    profiler = cProfile.Profile()
    original = LocalScriptRunner._run_script_thread

    def profiled(self):
        profiler.enable()
        try:
            original(self)
        finally:
            profiler.disable()

    LocalScriptRunner._run_script_thread = profiled
    try:
        at.run()
    finally:
        LocalScriptRunner._run_script_thread = original
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def session(app: str, batch: dict, runs: int, profile: bool = False) -> dict:
    """One browser session on the Monitor page for ``batch``: first render, reruns, feature changes."""
    from streamlit.testing.v1 import AppTest

    settle()
    at = AppTest.from_file(app, default_timeout=600)
    at.query_params["model"] = MODEL
    at.query_params["batch"] = batch["run_id"]
    at.run()  # the home page the link opens on, then the Monitor page
    check(at, "opening the app")
    result: dict = {"errors": []}
    with Peak() as peak:
        result["first"] = timed(lambda: at.switch_page(PAGE).run())
        result["errors"] += check(at, "rendering first")
        if at.selectbox(key=f"monitor.batch.{MODEL}").value != batch["run_id"]:
            raise SystemExit("the Monitor page did not open the linked batch")
        result["reruns"] = []
        for _ in range(runs):
            result["reruns"].append(timed(at.run))
            result["errors"] += check(at, "rerunning")
        feature_box = at.selectbox(key=f"monitor.feature.{MODEL}")
        features = list(feature_box.options)
        result["changes"] = []
        for k in range(runs):
            chosen = features[(k + 1) % len(features)]
            seconds = timed(lambda c=chosen: at.selectbox(key=f"monitor.feature.{MODEL}").set_value(c).run())
            result["changes"].append((chosen, seconds))
            result["errors"] += check(at, f"showing feature {chosen}")
            if at.selectbox(key=f"monitor.feature.{MODEL}").value != chosen:
                raise SystemExit(f"the feature selectbox did not take {chosen}")
    result["peak"] = peak
    result["charts"] = len(at.get("plotly_chart"))
    result["sampled"] = next((str(c.value) for c in at.caption if str(c.value).startswith("The charts show")), None)
    tracemalloc.start()
    at.run()
    result["python_peak"] = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()
    result["errors"] += check(at, "rerunning under tracemalloc")
    if profile:
        result["profile"] = profile_rerun(at)
    at = None  # the session freed before the next one
    settle()
    return result


def baseline(output: Path, features: list[str]) -> dict:
    """The OLD behaviour's cost (not the page's): the profiled feature columns read whole."""
    import pandas as pd

    settle()
    with Peak() as peak:
        started = time.perf_counter()
        frame = pd.read_parquet(output, columns=features)
        seconds = time.perf_counter() - started
    result = {"seconds": seconds, "peak": peak, "frame_mb": frame.memory_usage(deep=True).sum() / MB, "rows": len(frame)}
    del frame
    settle()
    return result


def runs_text(values: list[float]) -> str:
    return f"{', '.join(f'{v:.2f}' for v in values)} s (best {min(values):.2f}, median {statistics.median(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,4000000", help="rows of the scored batches, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="reruns and feature changes per batch")
    parser.add_argument("--warmup-rows", type=int, default=400_000,
                        help="rows of the batch the page process is warmed on (400,000: the charts sample 200,000, as on larger batches)")
    parser.add_argument("--rounds", type=int, default=2, help="sessions per size: round 1 in the order of --sizes, round 2 reversed, ...")
    parser.add_argument("--profile", action="store_true", help="cProfile one more rerun at every size")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        {"setup": child_setup, "batch": child_batch}[kind](*rest)
        return
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="monitor-bench-") as tmp:
        root = Path(tmp)
        # a private workspace and the embedded store, before anything of the app is imported
        os.environ["STUDIO_WORKSPACE"] = str(root / "workspace")
        os.environ["STUDIO_DATA_DIR"] = str(root / "data")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.chdir(PROJECT_ROOT)

        started = time.perf_counter()
        run_child("setup")
        print(f"model {MODEL}@champion trained and registered (child process): {time.perf_counter() - started:.1f} s", flush=True)
        batches: dict[int, dict] = {}
        for rows in ([args.warmup_rows] if args.warmup_rows else []) + sizes:
            batches[rows] = run_child("batch", str(root / f"shots_{rows}.parquet"), str(rows))
            b = batches[rows]
            print(f"scored {b['rows']:,} rows (child process): {b['seconds']:.1f} s, drift {b['drift']}", flush=True)

        from core import monitoring
        from core.settings import load_settings
        from tests.app_pages.conftest import APP

        settings = load_settings()
        if _status_kb("VmHWM") is None or not _reset_kernel_peak():
            print("(the kernel's peak RSS cannot be reset here: memory is RSS sampled every 10 ms only)")
        started = time.perf_counter()
        if args.warmup_rows:
            warm = session(APP, batches[args.warmup_rows], 1)
            print(f"page process warmed on the {args.warmup_rows:,}-row batch: {time.perf_counter() - started:.1f} s "
                  f"(first render {warm['first']:.2f} s; imports, store opened, profile parsed; not counted below)", flush=True)
        print(f"page process pid {os.getpid()}, RSS {_status_kb('VmRSS') / 1024:,.0f} MB before the sessions; "
              f"{len(os.sched_getaffinity(0))} cores", flush=True)

        pages: dict[int, list[dict]] = {}
        for round_ in range(1, args.rounds + 1):
            order = sizes if round_ % 2 else sizes[::-1]
            for rows in order:
                r = session(APP, batches[rows], args.runs, profile=args.profile and round_ == 1)
                if round_ == 1 and not args.profile and rows >= 1_000_000 and statistics.median(r["reruns"]) > 3:
                    r["profile"] = session(APP, batches[rows], 1, profile=True)["profile"]
                pages.setdefault(rows, []).append(r)
                print(f"\n{rows:,} rows, round {round_}, Monitor page (this process, fresh AppTest session from the Score page's link):")
                print(f"  first render: {r['first']:.2f} s (reported, not the target)")
                median = statistics.median(r["reruns"])
                target = f"; target under 3 s {'met' if median < 3 else 'NOT met'}" if rows == 1_000_000 else ""
                print(f"  page ready after the first render (rerun): {runs_text(r['reruns'])}{target}")
                print(f"  another feature in 'Look at one feature' ({', '.join(f for f, _ in r['changes'])}): "
                      f"{runs_text([t for _, t in r['changes']])}")
                print(f"  memory: peak RSS growth over first render + reruns + feature changes: {r['peak'].text()} "
                      f"(RSS before {r['peak'].start_rss / MB:,.0f} MB)")
                print(f"  Python allocations peak during one more rerun (tracemalloc, not timed; Arrow buffers not counted): "
                      f"{r['python_peak']:,.1f} MB")
                print(f"  page shows {r['charts']} charts; {r['sampled'] or 'no sampling caption (the charts show every row)'}")
                for message in dict.fromkeys(r["errors"]):
                    print(f"  ERROR shown on the page: {message}")
                if "profile" in r:
                    print(f"  cProfile of one rerun (script thread), top 25 by cumulative time:\n{r['profile']}")
                sys.stdout.flush()

        print("\nBaseline, the OLD behaviour's cost (not the page): the profiled feature columns read whole, "
              "pd.read_parquet(output, columns=features), in this process:")
        old: dict[int, dict] = {}
        for rows in sizes:
            b = batches[rows]
            opened = monitoring.open_batch(settings, next(x for x in monitoring.batches(settings, MODEL) if x.run_id == b["run_id"]))
            import pyarrow.parquet as pq

            names = pq.ParquetFile(opened.output).schema_arrow.names
            features = [f for f in opened.profile.features if f in names]
            old[rows] = o = baseline(opened.output, features)
            print(f"  {rows:,} rows, {len(features)} columns: {o['seconds']:.2f} s, peak RSS growth {o['peak'].text()} "
                  f"(the frame alone {o['frame_mb']:,.0f} MB)", flush=True)

        small, large = min(sizes), max(sizes)
        reruns = {rows: [t for r in pages[rows] for t in r["reruns"]] for rows in sizes}
        print(f"\nSummary ({args.rounds} round(s) of sessions" + ("; round 1 in the order of --sizes, round 2 reversed, so that "
              "memory this process kept from an earlier session favours neither size):" if args.rounds > 1 else "):"))
        for rows in sizes:
            growths = [r["peak"].growth for r in pages[rows]]
            firsts = ", ".join(f"{r['first']:.2f}" for r in pages[rows])
            print(f"  {rows:,} rows: rerun {runs_text(reruns[rows])}; first render {firsts} s; page peak RSS growth per session "
                  f"{', '.join(f'{g:,.1f}' for g in growths)} MB (highest {max(growths):,.1f}); old read-whole "
                  f"{old[rows]['peak'].growth:,.0f} MB in {old[rows]['seconds']:.2f} s")
        if 1_000_000 in reruns:
            median = statistics.median(reruns[1_000_000])
            print(f"  target, page ready after the first render on 1M rows under 3 s: median rerun {median:.2f} s, "
                  f"{'met' if median < 3 else 'NOT met'}")
        if small != large:
            g_small = max(r["peak"].growth for r in pages[small])
            g_large = max(r["peak"].growth for r in pages[large])
            ratio = g_large / g_small if g_small > 0 else float("inf")
            flat = ratio <= 1.2 or g_large - g_small <= 10
            o_small, o_large = old[small]["peak"].growth, old[large]["peak"].growth
            print(f"  target, page memory does not grow with the batch: highest growth {large:,} / {small:,} rows = "
                  f"{g_large:,.1f} / {g_small:,.1f} MB = {ratio:.2f} ({g_large - g_small:+,.1f} MB): "
                  f"{'met' if flat else 'NOT met'} (met: ratio <= 1.2 or under 10 MB apart)")
            print(f"  the old behaviour's read-whole, same sizes: {o_large:,.0f} / {o_small:,.0f} MB = "
                  f"{o_large / o_small if o_small > 0 else float('inf'):.2f}")

if __name__ == "__main__":
    main()
