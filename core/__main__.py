"""``python -m core ...``: the studio's steps, headless.

Exit codes: 0 success, 2 bad input (a one-line reason on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from core.errors import StudioError
from core.settings import load_settings


def _cmd_demo(args: argparse.Namespace) -> int:
    from core.demo import write_demo

    settings = load_settings()
    paths = write_demo(args.data_dir or settings.data_dir)
    print(json.dumps({"written": [str(p) for p in paths], "synthetic": True}))
    return 0


def _cmd_tables_list(args: argparse.Namespace) -> int:
    from core.tables import TableStore

    store = TableStore(load_settings().tables_dir)
    print(json.dumps([r.to_dict() for r in store.list()], indent=2, ensure_ascii=False))
    return 0


def _cmd_tables_add(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.errors import BadInputError
    from core.tables import TableStore

    settings = load_settings()
    path = Path(args.file)
    if not path.is_file():
        raise BadInputError(f"There is no file at '{path}'. Check the path and try again.")
    result = TableStore(settings.tables_dir).ingest(path.read_bytes(), path.name, name=args.name)
    print(json.dumps({"created": result.created, **result.record.to_dict()}, indent=2, ensure_ascii=False))
    return 0


def _cmd_mlflow_ui(args: argparse.Namespace) -> int:
    from core.tracking import mlflow_ui_command

    settings = load_settings()
    if settings.is_remote:
        print(f"The studio uses {settings.tracking_uri}; open that server's own UI instead.")
        return 0
    command = mlflow_ui_command(settings, args.host, args.port)
    print(f"MLflow UI on http://{args.host}:{args.port} ({settings.describe_store()})", flush=True)
    os.execv(command[0], command)
    return 0  # pragma: no cover


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="The ML studio, headless.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="write the synthetic demo tables (development and production)")
    demo.add_argument("--data-dir", help="folder to write into (default: data/ or STUDIO_DATA_DIR)")
    demo.set_defaults(func=_cmd_demo)

    tables = sub.add_parser("tables", help="stored tables of the workspace")
    tables_sub = tables.add_subparsers(dest="tables_command", required=True)
    tables_sub.add_parser("list", help="list stored tables (JSON)").set_defaults(func=_cmd_tables_list)
    add = tables_sub.add_parser("add", help="store a CSV, parquet or Excel file")
    add.add_argument("file")
    add.add_argument("--name", help="display name (default: the file name)")
    add.set_defaults(func=_cmd_tables_add)

    ui = sub.add_parser("mlflow-ui", help="open the MLflow UI on the studio's embedded store")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=_cmd_mlflow_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
