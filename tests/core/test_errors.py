"""core.errors: every error has a category (a code name and the CLI's exit code, one table); a bug is
recorded in the workspace log under an id and never shown as bad input, nor with a password."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import stat
import sys

import pytest

import core
from core import errors
from core.errors import CATEGORIES, JobCancelled, NotFoundError, StudioError, category_of, declared_category
from core.settings import PROJECT_ROOT
from tests.conftest import cli_on

PASSWORD = "s3cretPw42"


def core_error_classes() -> list[type[BaseException]]:
    """Every exception class defined in core's modules (found by walking them, not listed by hand)."""
    found = {}
    for info in pkgutil.walk_packages(core.__path__, "core."):
        if info.name == "core.__main__":
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_every_studio_error_in_core_has_a_category_and_an_exit_code():
    classes = core_error_classes()
    studio = [c for c in classes if issubclass(c, StudioError) and c is not StudioError]
    assert len(studio) >= 10 and JobCancelled in classes  # the walk found them (BadInputError and kin, BusyError, ...)
    missing = [f"{c.__module__}.{c.__qualname__}" for c in studio if declared_category(c) is None]
    assert not missing, f"add these to core.errors.CATEGORIES: {missing}"
    assert declared_category(JobCancelled).exit_code == 130
    names = [c.__qualname__ for c in classes if issubclass(c, StudioError)]
    assert len(names) == len(set(names)), "the table names errors by class name: two of core's errors share one"
    # every row of the table names a class that exists (a renamed error would silently lose its category)
    listed = {e for c in CATEGORIES for e in c.errors}
    assert listed - {c.__qualname__ for c in classes} == {"KeyboardInterrupt"}


def test_the_table_is_one_code_and_one_exit_code_per_category():
    assert len({c.exit_code for c in CATEGORIES}) == len({c.code for c in CATEGORIES}) == len(CATEGORIES)
    by_name = {c.name: c.exit_code for c in CATEGORIES}
    assert by_name == {"unexpected": 1, "bad_input": 2, "drift_found": 3, "not_found": 4, "already_exists": 5,
                       "unavailable": 6, "busy": 7, "cancelled": 130}
    from core.locks import BusyError
    from core.tracking import TrackingUnavailableError

    assert errors.CorruptFileError("x").exit_code == 2 and errors.CorruptFileError("x").code == "INVALID_PARAMETER_VALUE"
    assert NotFoundError("x").exit_code == 4 and NotFoundError("x").code == "RESOURCE_DOES_NOT_EXIST"
    assert TrackingUnavailableError("x").exit_code == 6 and BusyError("x").exit_code == 7
    assert StudioError("x").exit_code == 2  # a bare one counts as bad input, as before categories
    assert category_of(ZeroDivisionError()).name == "unexpected" and category_of(KeyboardInterrupt()).exit_code == 130
    assert category_of(type("NotFoundError", (Exception,), {})).name == "unexpected"  # another library's namesake


def test_the_cli_docstring_and_the_readme_show_the_table():
    import core.__main__ as cli

    readme = (PROJECT_ROOT / "README.md").read_text()
    for category in CATEGORIES:
        assert re.search(rf"^{category.exit_code}\s+{category.code}\s", cli.__doc__, re.M), category
        assert f"| {category.exit_code} | `{category.code}` |" in readme, category


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """``core.__main__`` run in this process on a fresh workspace; the process-wide changes main() makes
    (umask 077, the redacting excepthook) are undone afterwards."""
    with cli_on(monkeypatch, tmp_path / "ws") as module:
        yield module


def test_a_bug_in_a_command_exits_1_with_an_id_and_the_traceback_only_in_the_log(cli, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://u:{PASSWORD}@127.0.0.1:9")

    def listing_with_a_bug(args):
        stored = {"tables": []}
        per_table = len(stored["tables"]) / len(stored["tables"])  # a real ZeroDivisionError
        return int(per_table)

    def tables_list(args):
        uri = os.environ["MLFLOW_TRACKING_URI"]
        try:
            return listing_with_a_bug(args)
        except ZeroDivisionError as exc:
            raise RuntimeError(f"could not list the tables of {uri}") from exc  # the password in the message

    monkeypatch.setattr(cli, "_cmd_tables_list", tables_list)
    code = cli.main(["tables", "list"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    found = re.fullmatch(r"error: Unexpected error \(RuntimeError\) while running python -m core tables list, recorded in the log as "
                         r"([0-9a-f]{8}) \((.+)\)\. This is a bug in the studio, not a problem with your input: please report it "
                         r"with that id\.\n", err)
    assert found, err
    incident, log = found.group(1), found.group(2)
    assert "Traceback" not in err and PASSWORD not in err and "could not list" not in err
    assert log == str(tmp_path / "ws" / "logs" / "errors.log")
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    text = open(log).read()
    entry = text[text.index(f"=== {incident} "):]
    assert "while running python -m core tables list" in entry.splitlines()[0]
    assert "Traceback (most recent call last)" in entry and "ZeroDivisionError: division by zero" in entry
    assert "in listing_with_a_bug" in entry and "RuntimeError: could not list the tables of http://u:***@127.0.0.1:9" in entry
    assert PASSWORD not in text

    # a second bug gets its own id, appended to the same log
    assert cli.main(["tables", "list"]) == 1
    second = re.search(r"recorded in the log as ([0-9a-f]{8})", capsys.readouterr().err).group(1)
    assert second != incident and open(log).read().count("=== ") == 2


def test_a_studio_error_exits_with_its_category_code_and_one_line(cli, tmp_path, monkeypatch, capsys):
    def tables_list(args):
        from core.settings import load_settings
        from core.tables import TableStore

        TableStore(load_settings().tables_dir).get("0123456789ab")  # a table that is not there: NotFoundError
        return 0

    monkeypatch.setattr(cli, "_cmd_tables_list", tables_list)
    assert cli.main(["tables", "list"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err and "Unexpected" not in err
    assert not (tmp_path / "ws" / "logs").exists()  # not a bug: nothing recorded

    monkeypatch.setattr(cli, "_cmd_tables_list", lambda args: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert cli.main(["tables", "list"]) == 130
    assert capsys.readouterr().err == "error: cancelled\n"


def test_a_missing_model_exits_4_from_the_command_line(tmp_path):
    import subprocess

    out = subprocess.run([sys.executable, "-m", "core", "models", "show", "nosuch@champion"], cwd=PROJECT_ROOT,
                         env={**os.environ, "STUDIO_WORKSPACE": str(tmp_path / "ws")}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 4, out.stderr[-2000:]
    assert "There is no registered model 'nosuch'" in out.stderr and "Traceback" not in out.stderr


def test_unexpected_never_fails_when_the_log_cannot_be_written(tmp_path, monkeypatch, capsys):
    blocked = tmp_path / "ws"
    blocked.mkdir()
    (blocked / "logs").write_text("a file where the folder should be")
    monkeypatch.setenv("STUDIO_WORKSPACE", str(blocked))
    try:
        {}["missing"]
    except KeyError as exc:
        message = errors.unexpected(exc, "testing")
    assert message.startswith("Unexpected error (KeyError) while testing, recorded as ") and "details are on stderr" in message
    assert "KeyError: 'missing'" in capsys.readouterr().err  # kept somewhere: stderr


def test_a_bug_on_a_page_shows_the_id_and_no_traceback(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STUDIO_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://u:{PASSWORD}@127.0.0.1:9")

    def page():
        import os

        import ui

        with ui.guarded("testing the page"):
            raise RuntimeError(f"bug near {os.environ['MLFLOW_TRACKING_URI']}")
        with ui.guarded("refusing a file"):
            from core.errors import BadInputError

            raise BadInputError("That file is not a table.")

    at = AppTest.from_function(page, default_timeout=60).run()
    assert not at.exception
    bug, refusal = (str(e.value) for e in at.error)
    found = re.search(r"recorded in the log as ([0-9a-f]{8})", bug)
    assert bug.startswith("Unexpected error \\(RuntimeError\\) while testing the page") and found, bug
    assert "Traceback" not in bug and "bug near" not in bug and PASSWORD not in bug
    assert refusal == "That file is not a table."  # a studio error reads as written
    log = (tmp_path / "ws" / "logs" / "errors.log").read_text()
    assert f"=== {found.group(1)} " in log and "RuntimeError: bug near http://u:***@127.0.0.1:9" in log and PASSWORD not in log
