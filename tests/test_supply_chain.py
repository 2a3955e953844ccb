"""Supply chain (issue "Hardening", 4): `make test` fails on a pinned or installed version below a known
fix (scripts/check_floors.py against security/floors.txt), setuptools is pinned past its CVEs, and a
new virtual environment gets that setuptools at once (python -m venv seeds 65.5.0)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.version import Version

from core.settings import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "check_floors.py"


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)


def test_the_repository_passes_its_own_table():
    out = check()
    assert out.returncode == 0, out.stderr
    assert "none below a known fix" in out.stdout
    assert "scikit-learn 1.4.2" in out.stdout and "accepted" in out.stdout  # the one acceptance is said, every time


def test_an_installed_version_below_a_floor_fails_with_its_advisory(tmp_path):
    installed = metadata.version("packaging")
    table = tmp_path / "floors.txt"
    table.write_text("# test table\npackaging  9999.0  TEST-2026-0001  made up for this test\n")
    out = check("--table", str(table), "--requirements")
    assert out.returncode == 1
    assert (f"packaging {installed} (installed in {sys.prefix}) is below 9999.0, the first version that fixes "
            "TEST-2026-0001 (made up for this test). Pin packaging>=9999.0") in out.stderr


def test_a_pin_below_a_floor_fails_even_when_the_environment_is_fixed(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pinned\nsetuptools==65.5.0\nJinja2==3.1.6\n")
    out = check("--requirements", str(requirements), "--no-installed")
    assert out.returncode == 1
    assert "setuptools 65.5.0 (requirements.txt:2) is below 78.1.1, the first version that fixes CVE-2025-47273" in out.stderr
    assert "is below 70.0.0, the first version that fixes CVE-2024-6345" in out.stderr
    assert "jinja2" not in out.stderr.lower()


def test_an_acceptance_lets_exactly_one_version_through(tmp_path):
    table = tmp_path / "floors.txt"
    table.write_text("scikit-learn 1.5.0 CVE-2024-5206 accept:1.4.2 PyCaret needs it\n")
    for pinned, code in (("1.4.2", 0), ("1.4.1", 1)):
        requirements = tmp_path / f"req-{pinned}.txt"
        requirements.write_text(f"scikit_learn=={pinned}\n")  # names compare normalised
        out = check("--table", str(table), "--requirements", str(requirements), "--no-installed")
        assert out.returncode == code, out.stdout + out.stderr


def test_a_broken_table_is_a_clear_error(tmp_path):
    table = tmp_path / "floors.txt"
    table.write_text("setuptools not-a-version CVE-1\n")
    out = check("--table", str(table))
    assert out.returncode == 2 and "'not-a-version' is not a version" in out.stderr and "floors.txt:1" in out.stderr


def test_setuptools_is_pinned_past_its_cves_and_installed():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (PROJECT_ROOT / "requirements.txt").read_text(), re.M))
    assert Version(pins["setuptools"]) >= Version("78.1.1")
    assert Version(metadata.version("setuptools")) >= Version("78.1.1")


def test_make_test_runs_the_check_and_a_new_venv_gets_the_pinned_setuptools(tmp_path):
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "scripts/check_floors.py" in recipe.split("pytest")[0]  # before the tests
    venv = tmp_path / "venv"
    out = subprocess.run(["make", f"VENV={venv}", f"PYTHON={sys.base_prefix}/bin/python3", f"{venv}/bin/python"],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    shown = subprocess.run([str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('setuptools'))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    pinned = re.search(r"^setuptools==(\S+)", (PROJECT_ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert shown == pinned


def test_the_table_names_an_advisory_on_every_line():
    for line in Path(PROJECT_ROOT / "security" / "floors.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.match(r"^\S+\s+\S+\s+(CVE-\d{4}-\d+|GHSA-\S+|PYSEC-\S+)\s", line), line
