"""Exposure by default (issue "Hardening", 3): what the studio writes is private to the user whatever
the umask, Streamlit listens on loopback unless told otherwise, secrets files stay out of git. Real
processes throughout: the CLI and its job processes, the pages' script, ``streamlit run``."""

from __future__ import annotations

import os
import shlex
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from core.settings import PROJECT_ROOT


def under_umask_000(command: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """``command`` run by a shell whose umask is 000 (what some containers and service managers set)."""
    line = "umask 000 && exec " + " ".join(shlex.quote(part) for part in command)
    return subprocess.run(["sh", "-c", line], cwd=PROJECT_ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


def modes(root: Path) -> dict[str, str]:
    """Every folder and file under ``root`` (and root itself) with its permission bits, as octal text."""
    found = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def assert_private(root: Path) -> None:
    wrong = {name: mode for name, mode in modes(root).items()
             if mode != ("0o700" if (root / name).is_dir() else "0o600") and not (root / name).is_symlink()}
    assert not wrong, f"not private (folders must be 0700, files 0600): {wrong}"


def small_table(path: Path) -> Path:
    path.write_text("x,z,y\n" + "".join(f"{i % 7},{(i * 5) % 3},{(i % 7 > 3) ^ (i % 11 == 0):d}\n" for i in range(80)))
    return path


def test_a_training_under_umask_000_leaves_only_private_files(tmp_path):
    """Folders came out 0777 and files 0666 (0755 / 0644 under the usual umask): the tables, the
    sqlite store and the job folders were readable by every user of the machine."""
    ws = tmp_path / "ws"
    out = under_umask_000([sys.executable, "-m", "core", "train", "--data", str(small_table(tmp_path / "t.csv")),
                           "--target", "y", "--algorithms", "lr", "--folds", "2"],
                          env={"STUDIO_WORKSPACE": str(ws), "MLFLOW_TRACKING_URI": ""})
    assert out.returncode == 0, out.stderr[-3000:]
    assert (ws / "mlflow.db").is_file() and list((ws / "tables").glob("*.parquet")) and list((ws / "jobs").iterdir())
    assert list((ws / "mlartifacts").rglob("*.pkl")) or list((ws / "mlartifacts").rglob("MLmodel"))
    assert_private(ws)


def test_the_pages_write_private_files_under_umask_000(tmp_path):
    """The pages' process (app.py) hardens itself too: the demo tables it stores are private."""
    code = f"""
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({str(PROJECT_ROOT / "app.py")!r}, default_timeout=120).run()
at.switch_page("app_pages/data.py").run()
at.button(key="data.load_demo").click().run()
assert not at.exception, at.exception
"""
    ws = tmp_path / "ws"
    out = under_umask_000([sys.executable, "-c", code], env={"STUDIO_WORKSPACE": str(ws), "STUDIO_DATA_DIR": str(tmp_path / "data"),
                                                             "MLFLOW_TRACKING_URI": ""}, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(list((ws / "tables").glob("*.parquet"))) == 2
    assert_private(ws)
    assert_private(tmp_path / "data")


def test_an_open_workspace_is_closed_when_the_studio_opens_it(tmp_path):
    ws = tmp_path / "ws"
    (ws / "tables").mkdir(parents=True)
    os.chmod(ws, 0o755)  # made by an earlier version, or by hand
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "somebody else's notes.txt").write_text("x")
    os.chmod(shared, 0o755)
    for folder in (ws, shared):
        out = under_umask_000([sys.executable, "-m", "core", "tables", "list"], env={"STUDIO_WORKSPACE": str(folder)})
        assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(ws.stat().st_mode) == 0o700
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # not a studio workspace: left as it is


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


def test_streamlit_started_without_an_address_listens_on_loopback_only(tmp_path):
    """Without `make run` (which passes --server.address), Streamlit listened on every interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                               cwd=PROJECT_ROOT, env={**os.environ, "STUDIO_WORKSPACE": str(tmp_path / "ws")},
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the studio did not start within 90 s"
            time.sleep(0.3)
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only: not 0.0.0.0, not ::
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
        log.close()


def test_secret_files_stay_out_of_git():
    paths = [".streamlit/secrets.toml", ".env", ".env.production", "sub/.env"]
    out = subprocess.run(["git", "check-ignore", "--no-index", *paths, ".env.example"], cwd=PROJECT_ROOT,
                         capture_output=True, text=True)
    assert out.stdout.split() == paths  # .env.example (a template without values) may be committed


def test_job_files_never_hold_the_password(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ws = tmp_path / "ws"
    out = subprocess.run([sys.executable, "-m", "core", "train", "--data", str(small_table(tmp_path / "t.csv")), "--target", "y",
                          "--algorithms", "lr", "--folds", "2"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "STUDIO_WORKSPACE": str(ws), "MLFLOW_TRACKING_URI": f"http://alice:Sup3rSecretPw@127.0.0.1:{port}",
                              "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    assert out.returncode == 1 and "Sup3rSecretPw" not in out.stdout + out.stderr
    holding = [str(p.relative_to(ws)) for p in ws.rglob("*") if p.is_file() and b"Sup3rSecretPw" in p.read_bytes()]
    assert not holding, f"the password is written in {holding}"
