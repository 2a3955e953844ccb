"""What the benchmarks share: running one of their own steps in a child process (a fresh interpreter,
so one measurement's imports, caches and memory never leak into the next)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from core.settings import PROJECT_ROOT


def run_child(script: str, *args: str) -> dict:
    """``script --child ARGS`` in a fresh interpreter; the JSON object its last line of output prints.
    A child that fails stops the benchmark with the end of its error output."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.run([sys.executable, script, "--child", *args], cwd=PROJECT_ROOT, stdout=out, stderr=err,
                                 text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"child {args[0]} failed:\n{err.read()[-3000:]}")
        return json.loads(out.read().strip().splitlines()[-1])
