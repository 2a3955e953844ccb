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


# --- no secret printed, every process hardened (issue "Hardening") ------------------------------

def unredacted_uris(path) -> list[int]:
    """Lines of ``path`` where an f-string shows ``.tracking_uri`` / ``.remote_tracking_uri`` as is
    (a password in the URI would be printed; ``.safe_tracking_uri`` and ``redact(...)`` are the way)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            for part in node.values:
                if (isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Attribute)
                        and part.value.attr in ("tracking_uri", "remote_tracking_uri")):
                    lines.append(part.lineno)
    return lines


@pytest.mark.parametrize(
    "path",
    sorted([*(PROJECT_ROOT / "core").glob("*.py"), *(PROJECT_ROOT / "ui").glob("*.py"),
            *(PROJECT_ROOT / "app_pages").glob("*.py"), PROJECT_ROOT / "app.py"]),
    ids=lambda p: str(p.relative_to(PROJECT_ROOT)),
)
def test_no_message_shows_the_tracking_uri_unredacted(path):
    assert unredacted_uris(path) == []


def calls(path, function: str | None, name: str) -> bool:
    """Whether ``function`` (None: the module's top level) in ``path`` calls ``name``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    scope = tree if function is None else next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    body = scope.body if function is not None else [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == name
               for stmt in body for n in ast.walk(stmt))


@pytest.mark.parametrize(("file", "function"), [
    ("app.py", None), ("core/__main__.py", "main"), ("core/serving.py", "main"),
    ("core/jobs.py", "main"),
])
def test_every_studio_process_hardens_itself_first(file, function):
    assert calls(PROJECT_ROOT / file, function, "harden_process")
