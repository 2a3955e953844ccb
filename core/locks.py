"""Locks that serialise one kind of change across the studio's processes on this machine (pages,
job workers, the CLI): registering a run as a version of a model, scoring a file with a version.

A lock is ``fcntl.flock`` on a file under ``workspace/locks/``: the kernel frees it when its holder
exits, however it exits, so a killed process never leaves a stale lock. Two studio machines sharing a
team MLflow server do not share these files; the registry also checks after the fact (see
``registry.register``)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from core.errors import StudioError
from core.settings import Settings


class BusyError(StudioError):
    """Another process holds the lock for longer than the caller is willing to wait."""


@contextmanager
def locked(settings: Settings, kind: str, key: str, timeout: float = 600.0) -> Iterator[None]:
    """Hold the lock of (``kind``, ``key``) for the block; waits up to ``timeout`` seconds."""
    folder = settings.locks_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BusyError(f"Another {kind} of '{key}' is still under way; try again when it has finished.") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the file frees the lock
