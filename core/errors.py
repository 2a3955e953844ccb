"""One error family, written for the person at the screen.

Pages show ``str(error)`` with ``st.error``; the CLI prints it and exits with ``error.exit_code``.
Each message says what is wrong, quotes what came in, and says what to do.

Every error belongs to a category of :data:`CATEGORIES`, which gives it a code name (in the manner of
MLflow's ``databricks_pb2`` error codes) and the CLI's exit code. Anything else that escapes is a
bug: :func:`unexpected` records its traceback in the workspace's log under a short id and says so
in one sentence; it is never re-worded as bad input.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """A kind of failure: what the CLI exits with, and the code name scripts and logs can match."""

    name: str
    code: str  # as MLflow's error codes (mlflow.protos.databricks_pb2) where one fits
    exit_code: int
    meaning: str
    errors: tuple[str, ...] = ()  # class names of the errors in it (core's, or builtins); their subclasses belong too


# THE table: every studio error's category, code and exit code (core/__main__.py and README.md show it;
# tests/core/test_errors.py checks that every StudioError subclass in core has a row and the docs agree).
CATEGORIES: tuple[Category, ...] = (
    Category("unexpected", "INTERNAL_ERROR", 1, "a bug: recorded in the workspace log (logs/errors.log) under an id"),
    Category("bad_input", "INVALID_PARAMETER_VALUE", 2, "a file, value or choice that cannot be used as given",
             ("BadInputError", "UntrustedModelError")),
    Category("drift_found", "DRIFT_FOUND", 3, "`drift` and `monitor`: it worked and a feature drifted significantly (not an error)"),
    Category("not_found", "RESOURCE_DOES_NOT_EXIST", 4, "a table, model, version, alias or run that does not exist",
             ("NotFoundError",)),
    Category("already_exists", "RESOURCE_ALREADY_EXISTS", 5,
             "already done: this file was scored with this version, or this batch already has outcomes",
             ("AlreadyScoredError", "LabelsAttachedError")),
    Category("unavailable", "TEMPORARILY_UNAVAILABLE", 6, "the MLflow store cannot be reached",
             ("TrackingUnavailableError",)),
    Category("busy", "COULD_NOT_ACQUIRE_LOCK", 7, "another studio process is making the same change; try again",
             ("BusyError",)),
    Category("cancelled", "CANCELLED", 130, "cancelled by the user (Ctrl-C, or the job's Cancel)",
             ("JobCancelled", "KeyboardInterrupt")),
)
BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}
_BY_CLASS: dict[str, Category] = {error: c for c in CATEGORIES for error in c.errors}


def declared_category(kind: type[BaseException]) -> Category | None:
    """The category :data:`CATEGORIES` gives ``kind`` or the nearest of its bases; None if none does."""
    for cls in kind.__mro__:
        # by name, so an error may move between core's modules; never another library's namesake
        if cls.__module__ == "builtins" or cls.__module__.partition(".")[0] == "core":
            found = _BY_CLASS.get(cls.__qualname__)
            if found is not None:
                return found
    return None


def category_of(error: BaseException | type[BaseException]) -> Category:
    """The category of an error (or error class): a bare :class:`StudioError` counts as bad input
    (exit 2, as before categories), anything outside the table is ``unexpected``."""
    kind = error if isinstance(error, type) else type(error)
    found = declared_category(kind)
    if found is None:
        found = BY_NAME["bad_input"] if issubclass(kind, StudioError) else BY_NAME["unexpected"]
    return found


class StudioError(Exception):
    """Root of the studio's errors; its message is meant for the user. Raise a subclass that has a
    category in :data:`CATEGORIES` (a bare StudioError counts as bad input)."""

    @property
    def category(self) -> Category:
        return category_of(self)

    @property
    def code(self) -> str:
        return self.category.code

    @property
    def exit_code(self) -> int:
        return self.category.exit_code


class BadInputError(StudioError, ValueError):
    """The input (a file, a value, a choice) cannot be used as given."""


class EmptyTableError(BadInputError):
    """The file holds no rows (empty, or column names only)."""


class NotATableError(BadInputError):
    """The file's content is not a table the studio can read, whatever its extension says."""


class CorruptFileError(BadInputError):
    """The file looks like a known format but is truncated or damaged."""


class FileTooLargeError(BadInputError):
    """The file is larger than the upload limit."""


class IncompatibleModelError(BadInputError):
    """A model that predicts another target, task or set of classes cannot be a version of a registered model."""


class NotFoundError(StudioError, LookupError):
    """A stored table, model or run that was asked for does not exist."""


class JobCancelled(BaseException):  # noqa: N818  (a BaseException, like KeyboardInterrupt)
    """The user cancelled a background job (SIGTERM): its runs end KILLED and nothing is kept."""


# --- a bug ---------------------------------------------------------------------------------------


def unexpected(exc: BaseException, where: str, settings=None) -> str:
    """Record a bug: its traceback (redacted, so no password) goes to the workspace's
    ``logs/errors.log`` (0600) under a short id; returns the one sentence to show people, which
    names the id and the log and holds nothing from the exception but its type."""
    import datetime
    import os
    import secrets
    import sys
    import traceback

    from core.settings import load_settings, redact

    incident = secrets.token_hex(4)
    moment = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    details = redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    entry = f"=== {incident} {moment} pid {os.getpid()} while {redact(where)}\n{details.rstrip()}\n\n".encode()
    kind = type(exc).__name__
    try:
        path = (settings or load_settings()).error_log
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            view = memoryview(entry)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except Exception as failure:  # noqa: BLE001 - the bug must not hide behind a second one
        sys.stderr.write(entry.decode())  # the traceback is kept somewhere: stderr, redacted
        return (f"Unexpected error ({kind}) while {redact(where)}, recorded as {incident}; the log could not be "
                f"written ({type(failure).__name__}: {redact(failure)}), so its details are on stderr. "
                "This is a bug in the studio, not a problem with your input: please report it with that id.")
    return (f"Unexpected error ({kind}) while {redact(where)}, recorded in the log as {incident} ({path}). "
            "This is a bug in the studio, not a problem with your input: please report it with that id.")
