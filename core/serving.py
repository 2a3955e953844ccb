"""The champion behind a REST endpoint: ``mlflow models serve`` on 127.0.0.1, its status, and
requests in MLflow's ``dataframe_split`` format."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from core.settings import Settings

DEFAULT_PORT = 5001
HOST = "127.0.0.1"


def url(port: int = DEFAULT_PORT) -> str:
    return f"http://{HOST}:{port}"


def state_path(settings: Settings):
    return settings.workspace / "serving.json"


def serve_command(settings: Settings, name: str, alias: str = "champion", port: int = DEFAULT_PORT) -> tuple[list[str], dict[str, Any]]:
    """The command that serves ``models:/name@alias`` and the facts recorded about it (which version)."""
    from core import registry

    view = registry.resolve(settings, f"{name}@{alias}")
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}/{view.version}",
               "-h", HOST, "-p", str(port), "--env-manager", "local", "--workers", "1"]
    facts = {"name": name, "alias": alias, "version": view.version, "port": port, "url": url(port), "pid": os.getpid()}
    return command, facts


def record_state(settings: Settings, facts: dict[str, Any]) -> None:
    settings.workspace.mkdir(parents=True, exist_ok=True)
    state_path(settings).write_text(json.dumps(facts, indent=1))


def read_state(settings: Settings) -> dict[str, Any] | None:
    try:
        return json.loads(state_path(settings).read_text())
    except (OSError, ValueError):
        return None


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
    connection is (0, reason)."""
    request = urllib.request.Request(f"{base}/invocations", data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (OSError, urllib.error.URLError) as exc:
        return 0, str(getattr(exc, "reason", exc))


def answer_table(text: str):
    """The server's JSON answer (``{"predictions": [...]}``) as a table, one row per prediction."""
    import pandas as pd

    try:
        predictions = json.loads(text).get("predictions", [])
    except (ValueError, AttributeError):
        return pd.DataFrame({"answer": [text]})
    rows = [p if isinstance(p, dict) else {"prediction": p} for p in predictions]
    return pd.DataFrame(rows)
