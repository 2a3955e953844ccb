"""Time from server start to the home page rendered in headless Chromium.

Baseline, in the same run: a one-line Streamlit app (``st.title``) started and opened the same
way, so the ratio shows what the studio adds on top of Streamlit itself. A test (tests/test_boundaries.py)
checks that rendering the pages imports neither PyCaret nor MLflow.

    .venv/bin/python benchmarks/startup.py [--runs 3]

Target (issue 2): under 3 s on the 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, start_studio, stop  # noqa: E402

BASELINE_APP = 'import streamlit as st\nst.title("Baseline")\n'


def time_to_render(browser, root: Path, heading: str, script: str = "app.py") -> float:
    """Seconds from launching the server to ``heading`` visible in a fresh browser page."""
    started = time.perf_counter()
    process, url = start_studio(root, script=script)
    try:
        page = browser.new_page()
        page.goto(url)
        page.get_by_role("heading", name=heading).wait_for(timeout=60_000)
        elapsed = time.perf_counter() - started
        page.close()
        return elapsed
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        root = Path(tmp)
        baseline = root / "baseline.py"
        baseline.write_text(BASELINE_APP)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        # One untimed start of each warms the OS file cache, as a second `make run` would be.
        time_to_render(browser, root, "ML Studio")
        time_to_render(browser, root, "Baseline", str(baseline))
        studio, base = [], []
        for _ in range(args.runs):  # interleaved, so machine noise hits both alike
            studio.append(time_to_render(browser, root, "ML Studio"))
            base.append(time_to_render(browser, root, "Baseline", str(baseline)))
        browser.close()

    s, b = statistics.median(studio), statistics.median(base)
    print(f"studio home page rendered: median {s:.2f} s over {args.runs} runs ({', '.join(f'{t:.2f}' for t in studio)})")
    print(f"baseline one-line app:     median {b:.2f} s ({', '.join(f'{t:.2f}' for t in base)})")
    print(f"ratio studio / baseline:   {s / b:.2f}")
    print(f"target under 3 s:          {'met' if s < 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
