"""The studio's standing boundaries: core is UI-free; pages that do not train stay light."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from core.settings import PROJECT_ROOT


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((PROJECT_ROOT / "core").rglob("*.py")), ids=lambda p: p.name)
def test_core_never_imports_streamlit(path):
    assert "streamlit" not in imported_modules(path)


def test_every_core_module_imports_without_streamlit():
    modules = sorted(p.stem for p in (PROJECT_ROOT / "core").glob("*.py") if p.stem not in ("__init__", "__main__"))
    code = (
        "import importlib, sys, json\n"
        f"for m in {modules!r}: importlib.import_module('core.' + m)\n"
        "print(json.dumps('streamlit' in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False


def test_home_and_data_pages_import_neither_pycaret_nor_mlflow(tmp_path):
    code = f"""
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({str(PROJECT_ROOT / "app.py")!r}, default_timeout=60).run()
assert not at.exception, at.exception
at.switch_page("app_pages/data.py").run()
assert not at.exception, at.exception
at.button(key="data.load_demo").click().run()
assert not at.exception, at.exception
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & {{"pycaret", "mlflow", "sklearn"}})))
"""
    env = {**os.environ, "STUDIO_WORKSPACE": str(tmp_path / "ws"), "STUDIO_DATA_DIR": str(tmp_path / "data")}
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
