"""The champion behind a REST endpoint: MLflow's scoring server (what ``mlflow models serve`` runs)
on 127.0.0.1 behind a request-body limit, its status, and requests in MLflow's ``dataframe_split``
format.

MLflow's server (FastAPI under uvicorn) reads any request body whole, whatever its size, and neither
MLflow nor uvicorn has a setting for a limit. ``python -m core serve`` therefore runs it in-process
(``python -m core.serving``) wrapped in :class:`BodyLimit`: a body over ``STUDIO_SERVE_MAX_BODY_MB``
(default 10 MB) is answered 413 before it is read, and at most :data:`MAX_CONNECTIONS` requests are
served at once (503 beyond), so memory stays bounded.

The server's ``prediction`` follows the cut-off stored on the served version, read when
``python -m core serve`` starts it (``--cutoff``, handed to the model's loader as ``STUDIO_CUTOFF``)
and recorded in the serving state; a cut-off changed later takes a restart of the server. A version
whose loader predates cut-offs is served with the likelier class, and the server says so on stderr.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from core.errors import BadInputError, StudioError
from core.settings import Settings

DEFAULT_PORT = 5001
HOST = "127.0.0.1"
DEFAULT_MAX_BODY_MB = 10
MAX_CONNECTIONS = 16


def url(port: int = DEFAULT_PORT) -> str:
    return f"http://{HOST}:{port}"


def state_path(settings: Settings):
    return settings.serving_file


def serve_command(settings: Settings, name: str, alias: str = "champion", port: int = DEFAULT_PORT) -> tuple[list[str], dict[str, Any]]:
    """The command that serves ``models:/name@alias`` and the facts recorded about it (which version,
    and the cut-off its ``prediction`` follows: the one stored on the version, read now, handed to the
    server with ``--cutoff``; None when none is stored or the version's loader cannot apply it)."""
    from core import model_flavor, registry

    check_port(port)
    limit = max_body_bytes()
    view = registry.resolve(settings, f"{name}@{alias}")
    stored = registry.cutoff(settings, name, view.version)
    honoured = stored is not None and model_flavor.honours_cutoff(
        model_flavor.loader_format(settings, name, view.version, view.run_id))
    command = [sys.executable, "-m", "core.serving", f"models:/{name}/{view.version}", "--host", HOST, "--port", str(port),
               "--max-body-bytes", str(limit), "--cutoff", model_flavor.cutoff_env(stored)]
    facts = {"name": name, "alias": alias, "version": view.version, "port": port, "url": url(port), "pid": os.getpid(),
             "max_body_bytes": limit,
             "cutoff": json.loads(model_flavor.cutoff_env(stored)) if honoured else None,  # what REST answers at
             "stored_cutoff": stored.to_dict() if stored is not None else None}
    return command, facts


def check_port(port: int, host: str = HOST) -> None:
    """Refuse, before anything starts, a port that cannot be served on: outside 1-65535, or taken by
    another program (the server would otherwise say it started, then stop)."""
    import socket

    if not 1 <= int(port) <= 65535:
        raise BadInputError(f"--port must be a number from 1 to 65535; got {port}.")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a port in TIME_WAIT is free
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            raise BadInputError(f"Port {port} on {host} is already in use ({exc.strerror or exc}), so the model cannot be "
                                f"served there. Stop the program using it, or choose another port with --port.") from None


def max_body_bytes(env=None) -> int:
    """The largest request body the REST server reads: ``STUDIO_SERVE_MAX_BODY_MB`` megabytes (default 10)."""
    from core.errors import BadInputError

    env = os.environ if env is None else env
    given = (env.get("STUDIO_SERVE_MAX_BODY_MB") or "").strip()
    if not given:
        return DEFAULT_MAX_BODY_MB * 1024 * 1024
    try:
        megabytes = float(given)
    except ValueError:
        megabytes = -1.0
    if not 0 < megabytes <= 4096:
        raise BadInputError(f"STUDIO_SERVE_MAX_BODY_MB must be a number of megabytes from 0.001 to 4096; got '{given[:40]}'. "
                            f"Unset it for the default ({DEFAULT_MAX_BODY_MB} MB).")
    return int(megabytes * 1024 * 1024)


class BodyLimit:
    """ASGI middleware: a request whose body is over ``max_bytes`` is answered 413 without being read
    whole (by its Content-Length at once; a chunked body as soon as it passes the limit). Other
    requests reach ``app`` unchanged, their body read once and handed on."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send, declared.decode(errors="replace")[:20])
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, f"more than {size}")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, handed = b"".join(chunks), False

        async def replay():
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then what the server says next (a disconnect)

        await self.app(scope, replay, send)

    async def _refuse(self, send, declared: str) -> None:
        limit_mb = self.max_bytes / 1024 / 1024
        answer = json.dumps({
            "error_code": "REQUEST_TOO_LARGE",
            "message": f"The request body ({declared} bytes) is over this server's limit of {self.max_bytes:,} bytes "
                       f"({limit_mb:g} MB). Send fewer rows per request (score large files on the Score page or with "
                       "python -m core score), or start the server with a larger STUDIO_SERVE_MAX_BODY_MB.",
        }).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": answer})


def _verified(model_uri: str) -> str:
    """A local folder holding the checked files of ``models:/name/version`` (kept while the server
    runs); other URIs are refused, so the server never unpickles an unverified artifact."""
    import re
    import tempfile

    from core import integrity
    from core.settings import load_settings

    found = re.fullmatch(r"models:/([^/@]+)/(\d+)", model_uri)
    if not found:
        raise BadInputError(f"'{model_uri}' is not a registered version (models:/NAME/VERSION); only those are served.")
    import atexit
    import shutil

    folder = tempfile.mkdtemp(prefix="studio-serve-")
    atexit.register(shutil.rmtree, folder, True)  # removed when the server stops
    try:
        return str(integrity.verified_copy(load_settings(), found.group(1), int(found.group(2)), Path(folder)))
    except BaseException:  # refused: the files it fetched go at once
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _apply_cutoff(given: str | None, folder: str, name: str, version: int) -> None:
    """Set ``STUDIO_CUTOFF`` for the model about to be loaded from ``folder`` to ``given`` (the stored
    cut-off ``python -m core serve`` hands on; "" for none), and say on stderr what ``prediction``
    answers: at the cut-off, the likelier class, or, for a loader that predates cut-offs, that the
    stored cut-off is ignored and what to do. ``given`` None (the server started by hand without
    ``--cutoff``): the environment's ``STUDIO_CUTOFF`` is left as it is."""
    from core import model_flavor
    from core.studio_pyfunc_model import CUTOFF_ENV

    which = f"{name} version {version}"
    if given is None:
        return
    shell = os.environ.pop(CUTOFF_ENV, None)
    if shell and shell.strip() != given:
        print(f"note: {CUTOFF_ENV} set in this shell ('{shell[:80]}') is not used: python -m core serve answers at the "
              "cut-off stored on the version, as python -m core score does. Change it with python -m core models threshold.",
              file=sys.stderr)
    fmt = model_flavor.folder_format(folder)
    if not given:
        if fmt is not None:  # a classifier answering with probabilities
            print(f"{which}: 'prediction' is the likelier class (no cut-off is stored on this version).", file=sys.stderr)
        return
    try:  # what python -m core serve passes (JSON of the stored cut-off), or a bare number typed by hand
        stored = json.loads(given)
        stored = dict(stored) if isinstance(stored, dict) else {"value": stored, "positive": None}
        value = float(stored["value"])
    except (ValueError, TypeError, KeyError):
        from core.errors import BadInputError

        raise BadInputError(f"--cutoff '{given[:80]}' is not a cut-off: give JSON such as {{\"value\": 0.35, \"positive\": \"1\"}} "
                            "or a number from 0 to 1.") from None
    positive = "the last class" if stored.get("positive") is None else str(stored["positive"])
    if not model_flavor.honours_cutoff(fmt):
        from core.registry import Cutoff

        print(f"warning: {model_flavor.cutoff_notice(Cutoff(value, positive), version, fmt, name)}", file=sys.stderr)
        return
    os.environ[CUTOFF_ENV] = given
    print(f"{which}: 'prediction' is {positive} when the probability of {positive} is at least "
          f"{value:.6g} (the cut-off stored on the version), else the other class.", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``python -m core.serving MODEL_URI --host H --port P --max-body-bytes N [--cutoff JSON]``: MLflow's
    scoring server for the model (loaded from the store ``MLFLOW_TRACKING_URI`` names), behind
    :class:`BodyLimit`. ``--cutoff`` (what ``python -m core serve`` passes: the version's stored
    cut-off as ``STUDIO_CUTOFF`` reads it, "" for none) rules over the environment's ``STUDIO_CUTOFF``."""
    import argparse

    from core.settings import harden_process, redact

    harden_process()
    parser = argparse.ArgumentParser(prog="python -m core.serving")
    parser.add_argument("model_uri")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_MB * 1024 * 1024)
    parser.add_argument("--cutoff", default=None)
    args = parser.parse_args(argv)
    try:
        import mlflow.pyfunc
        from mlflow.pyfunc import scoring_server

        folder = _verified(args.model_uri)  # only models:/NAME/VERSION gets here
        name, version = args.model_uri.removeprefix("models:/").rsplit("/", 1)
        _apply_cutoff(args.cutoff, folder, name, int(version))
        model = mlflow.pyfunc.load_model(folder)
    except StudioError as exc:  # an unverified model, an unknown version: said as is
        print(f"error: {redact(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one line for the person who started the server
        print(f"error: the model {args.model_uri} could not be loaded: {redact(exc)[:1000]}", file=sys.stderr)
        return 1
    import uvicorn

    app = BodyLimit(scoring_server.init(model), args.max_body_bytes)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, limit_concurrency=MAX_CONNECTIONS, log_level="info")
    return 0


def record_state(settings: Settings, facts: dict[str, Any]) -> None:
    settings.workspace.mkdir(parents=True, exist_ok=True)
    state_path(settings).write_text(json.dumps(facts, indent=1))


def read_state(settings: Settings) -> dict[str, Any] | None:
    try:
        return json.loads(state_path(settings).read_text())
    except (OSError, ValueError):
        return None


def other_cutoff(settings: Settings, name: str, version: int, wanted: dict[str, Any] | None) -> tuple[str, dict | None] | None:
    """(its URL, the cut-off it answers at: ``{"value", "positive"}`` or None for the likelier class)
    when the REST server this workspace last started serves ``version`` of ``name`` at another rule
    than ``wanted``; None otherwise. The server reads the cut-off when it starts (whether it is still
    up is not asked here: see :func:`ping`)."""
    state = read_state(settings) or {}
    if state.get("name") != name or state.get("version") != version or "cutoff" not in state:
        return None
    running = state.get("cutoff")

    def rule(c):
        return None if not c else (float(c["value"]), str(c["positive"]))

    return None if rule(running) == rule(wanted) else (state.get("url", url()), running)


def ping(base: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/ping", timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def payload(columns: list[str], rows: list[list[Any]]) -> str:
    return json.dumps({"dataframe_split": {"columns": columns, "data": rows}})


def curl_example(base: str, columns: list[str], row: list[Any]) -> str:
    body = payload(columns, [row]).replace("'", "'\\''")
    return f"curl -s -X POST {base}/invocations -H 'Content-Type: application/json' -d '{body}'"


def invoke(base: str, body: str, timeout: float = 30.0) -> tuple[int, str]:
    """POST ``body`` to the server's /invocations; (HTTP status, response text). A refused
    connection is (0, reason). A body over the server's limit gets the server's 413 answer, which
    comes back before the body is sent whole."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    data = body.encode()
    connection = http.client.HTTPConnection(parts.hostname or HOST, parts.port or DEFAULT_PORT, timeout=timeout)
    try:
        connection.putrequest("POST", "/invocations")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(data)))
        connection.endheaders()
        try:
            for start in range(0, len(data), 1 << 16):
                connection.send(data[start:start + (1 << 16)])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (and closed) before reading it all: read its answer
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return 0, str(exc) or type(exc).__name__
    finally:
        connection.close()


def answer_table(text: str):
    """The server's JSON answer (``{"predictions": [...]}``) as a table, one row per prediction."""
    import pandas as pd

    try:
        predictions = json.loads(text).get("predictions", [])
    except (ValueError, AttributeError):
        return pd.DataFrame({"answer": [text]})
    rows = [p if isinstance(p, dict) else {"prediction": p} for p in predictions]
    return pd.DataFrame(rows)


if __name__ == "__main__":
    sys.exit(main())
