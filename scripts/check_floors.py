"""Supply-chain check: no pinned or installed package below a version that fixes a known advisory.

    python scripts/check_floors.py [--table security/floors.txt] [--requirements FILE ...] [--no-installed]

Reads the floor table (package, first fixed version, advisory id, optional ``accept:VERSION``, what it
is), then checks every ``name==version`` pin of the requirements files (``-r`` includes followed) and
every distribution installed in the interpreter that runs it. Exit 0 when nothing is below a floor,
1 when something is (each one named, with its advisory and what to do), 2 when the table or a
requirements file cannot be read. ``make test`` runs it first.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Floor:
    package: str  # normalised
    fixed: Version
    advisory: str
    accepted: Version | None
    what: str
    line: int


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class TableError(Exception):
    pass


def read_table(path: Path) -> list[Floor]:
    floors = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TableError(f"the floor table {path} cannot be read ({exc})") from exc
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split(None, 3)
        if len(parts) < 3:
            raise TableError(f"{path}:{number}: expected 'package fixed-in advisory [accept:VERSION] what'; got {raw.strip()!r}")
        package, fixed, advisory = parts[:3]
        rest = parts[3] if len(parts) > 3 else ""
        accepted = None
        if rest.startswith("accept:"):
            token, _, rest = rest.partition(" ")
            accepted = _version(token.removeprefix("accept:"), path, number)
        floors.append(Floor(normalise(package), _version(fixed, path, number), advisory, accepted, rest.strip(), number))
    if not floors:
        raise TableError(f"the floor table {path} lists no package")
    return floors


def _version(text: str, path: Path, number: int) -> Version:
    try:
        return Version(text)
    except InvalidVersion as exc:
        raise TableError(f"{path}:{number}: {text!r} is not a version") from exc


def read_pins(path: Path, seen: set[Path] | None = None) -> dict[str, tuple[str, str]]:
    """``{normalised name: (version, where)}`` for every ``name==version`` line, ``-r`` followed."""
    seen = seen if seen is not None else set()
    path = path.resolve()
    if path in seen:
        return {}
    seen.add(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TableError(f"the requirements file {path} cannot be read ({exc})") from exc
    pins: dict[str, tuple[str, str]] = {}
    for number, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if text.startswith(("-r ", "--requirement ")):
            pins.update(read_pins(path.parent / text.split(None, 1)[1], seen))
            continue
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;]+)", text)
        if match:
            pins[normalise(match[1])] = (match[3], f"{path.name}:{number}")
    return pins


def installed() -> dict[str, tuple[str, str]]:
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[normalise(name)] = (dist.version, f"installed in {sys.prefix}")
    return found


def check(floors: list[Floor], versions: dict[str, tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(failures, acceptances) as lines for people."""
    failures, accepted = [], []
    for floor in floors:
        if floor.package not in versions:
            continue
        text, where = versions[floor.package]
        try:
            version = Version(text)
        except InvalidVersion:
            failures.append(f"{floor.package} {text} ({where}) is not a version that can be compared with {floor.fixed}.")
            continue
        if version >= floor.fixed:
            continue
        if floor.accepted is not None and version == floor.accepted:
            accepted.append(f"{floor.package} {text} ({where}) is below {floor.fixed} ({floor.advisory}), accepted: {floor.what}")
            continue
        failures.append(
            f"{floor.package} {text} ({where}) is below {floor.fixed}, the first version that fixes {floor.advisory}"
            f"{f' ({floor.what})' if floor.what else ''}. Pin {floor.package}>={floor.fixed} in requirements*.txt and run make."
        )
    return failures, accepted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=ROOT / "security" / "floors.txt")
    parser.add_argument("--requirements", type=Path, nargs="*",
                        default=[ROOT / "requirements.txt", ROOT / "requirements-dev.txt"])
    parser.add_argument("--no-installed", action="store_true", help="check the pins only, not this environment")
    args = parser.parse_args(argv)
    try:
        floors = read_table(args.table)
        pins: dict[str, tuple[str, str]] = {}
        for path in args.requirements:
            pins.update(read_pins(path))
        sources = [pins]
    except TableError as exc:
        print(f"supply chain: {exc}", file=sys.stderr)
        return 2
    if not args.no_installed:
        sources.append(installed())
    failures, accepted = [], []
    for versions in sources:
        f, a = check(floors, versions)
        failures += [x for x in f if x not in failures]
        accepted += [x for x in a if x not in accepted]
    for line in accepted:
        print(f"supply chain: note: {line}")
    for line in failures:
        print(f"supply chain: FAIL: {line}", file=sys.stderr)
    if failures:
        print(f"supply chain: {len(failures)} version(s) below a known fix (table {args.table}).", file=sys.stderr)
        return 1
    what = f"{len(pins)} pins" + ("" if args.no_installed else f" and {len(sources[-1])} installed packages")
    print(f"supply chain: {what} checked against {len(floors)} floors ({args.table.name}); none below a known fix.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
