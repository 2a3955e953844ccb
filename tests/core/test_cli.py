"""python -m core: headless commands, exit 2 with a one-line reason on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from core.settings import PROJECT_ROOT


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=PROJECT_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )


def test_demo_writes_both_tables(tmp_path):
    out = run_cli("demo", "--data-dir", str(tmp_path), env={})
    assert out.returncode == 0, out.stderr
    written = json.loads(out.stdout)["written"]
    assert sorted(os.path.basename(p) for p in written) == ["demo_dev.parquet", "demo_prod.parquet"]
    assert all(os.path.getsize(p) > 10_000 for p in written)


def test_tables_add_and_list(tmp_path):
    env = {"STUDIO_WORKSPACE": str(tmp_path / "ws")}
    csv = tmp_path / "t.csv"
    csv.write_text("a;b\n1,5;x\n2,5;y\n")
    added = run_cli("tables", "add", str(csv), "--name", "My table", env=env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["name"] == "My table"
    listed = json.loads(run_cli("tables", "list", env=env).stdout)
    assert [t["name"] for t in listed] == ["My table"]


def test_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path):
    png = tmp_path / "photo.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    out = run_cli("tables", "add", str(png), env={"STUDIO_WORKSPACE": str(tmp_path / "ws")})
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "is a PNG image, not a table" in out.stderr
    assert not (tmp_path / "ws" / "tables").exists() or not any((tmp_path / "ws" / "tables").iterdir())
