"""One error family, written for the person at the screen.

Pages show ``str(error)`` with ``st.error``; the CLI prints it and exits with ``error.exit_code``.
Each message says what is wrong, quotes what came in, and says what to do.
"""

from __future__ import annotations


class StudioError(Exception):
    """Root of the studio's errors; its message is meant for the user."""

    exit_code = 2


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
