"""Real podman, real containers: the model image and the studio image, each built once per session
(core.images, from the Debian base scripts/base-image makes), and a real Debian docker-registry.

Every container a test starts is removed afterwards, and the registry process is stopped, whether the
test passed or not. Without a working podman the tests are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from core import images
from core.settings import PROJECT_ROOT, Settings, load_settings
from tests.conftest import KOBE_DEV, KOBE_FEATURES

OUTPUT = PROJECT_ROOT / "test-output" / "containers"
MODEL_TAG = "localhost/studio-model-kobe-test:latest"
STUDIO_TAG = "localhost/studio-test:latest"
START_TIMEOUT = 240  # seconds a container may take to answer (two workers load PyCaret on 2 cores)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], env=images.podman_env(), text=True, capture_output=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def wait_for(url: str, name: str, timeout: float = START_TIMEOUT, root: tuple[str, ...] = ()) -> None:
    """Wait until ``url`` answers 200; fail with the container's log if it stops or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        state = podman(*root, "inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip()
        if state != "true" or time.monotonic() > deadline:
            log = podman(*root, "logs", name, check=False)
            raise AssertionError(f"{name} did not answer {url} (running: {state or 'gone'}):\n"
                                 f"{(log.stdout + log.stderr)[-3000:]}")
        time.sleep(0.5)


class Container:
    """``podman run -d`` of an image with one port published on 127.0.0.1; removed on exit."""

    def __init__(self, image: str, inner_port: int, *options: str, root: tuple[str, ...] = ()) -> None:
        self.name = f"studio-test-{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.root = root
        self.command = [*root, "run", "-d", "--name", self.name, "-p", f"127.0.0.1:{self.port}:{inner_port}", *options, image]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Container:
        podman(*self.command)
        return self

    def __exit__(self, *exc) -> None:
        podman(*self.root, "rm", "--force", "--time", "2", self.name, check=False)
        # Seen here during the whole suite (not when the container tests run alone): podman forgets a
        # container whose processes still run after rm --force. Its monitor and the container's init
        # are killed (the kernel then ends every process of its PID namespace), so nothing outlives
        # the test, and a warning says it happened.
        left = monitors_of(self.name)
        for pid in left:
            subprocess.run(["pkill", "-KILL", "-P", str(pid)], check=False)
            subprocess.run(["kill", "-KILL", str(pid)], check=False)
        if left:
            import warnings

            warnings.warn(f"{self.name}'s processes outlived podman rm --force (conmon {left}); they were killed", RuntimeWarning, stacklevel=2)
        deadline = time.monotonic() + 10
        while monitors_of(self.name) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not monitors_of(self.name), f"{self.name}'s processes could not be stopped"


def monitors_of(name: str) -> list[int]:
    """The conmon processes (podman's container monitors) of the container called ``name``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            words = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if words and words[0].endswith(b"conmon") and name.encode() in words:
            found.append(int(proc.name))
    return found


@pytest.fixture(scope="session")
def podman_ready() -> None:
    """Skip the container tests, with the reason, when podman cannot run containers here."""
    try:
        images.podman_path()
    except images.ContainerToolMissingError as exc:
        pytest.skip(f"podman cannot run here: {exc}")
    info = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here: {info.stderr.strip().splitlines()[-1] if info.stderr.strip() else 'podman info failed'}")


@pytest.fixture(scope="session")
def base_image(podman_ready) -> str:
    """``BASE_IMAGE`` when set (where a registry is reachable, as in CI: python:3.11-slim), else the
    Debian bookworm base scripts/base-image makes (kept once made: seconds; else ~35 s)."""
    given = os.environ.get("BASE_IMAGE", "").strip()
    if given and given != images.LOCAL_BASE:
        return given
    result = subprocess.run([str(PROJECT_ROOT / "scripts" / "base-image"), images.LOCAL_BASE], text=True,
                            capture_output=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return images.LOCAL_BASE


@pytest.fixture(scope="session")
def kobe_champion(tmp_path_factory) -> Settings:
    """A workspace with a logistic regression trained on the real Kobe shots by the studio, registered as
    kobe@champion (its file hashes recorded, as every studio model's are)."""
    from core import registry
    from core.training import TrainingSpec, train

    root = tmp_path_factory.mktemp("containers")
    settings = load_settings({"STUDIO_WORKSPACE": str(root / "ws"), "STUDIO_DATA_DIR": str(root / "data")})
    result = train(settings, TrainingSpec(target="shot_made_flag", features=KOBE_FEATURES, algorithms=("lr",), folds=2),
                   pd.read_parquet(KOBE_DEV), table_name="dataset_kobe_dev", table_digest="k" * 64)
    registry.register(settings, result.models[0].run_id, "kobe", alias="champion")
    return settings


@pytest.fixture(scope="session")
def model_image(kobe_champion, base_image) -> images.BuiltImage:
    """``python -m core image --model kobe@champion``'s work, once per session (cached layers: the pinned
    requirements are reused, the model's own layers are rebuilt)."""
    return images.build_model_image(kobe_champion, "kobe@champion", tag=MODEL_TAG, base=base_image)


@pytest.fixture(scope="session")
def in_process(kobe_champion):
    """The same champion loaded in this process by MLflow, from its integrity-checked copy."""
    import mlflow.pyfunc

    from core import integrity

    folder = Path(kobe_champion.workspace.parent / "in-process")
    return mlflow.pyfunc.load_model(str(integrity.verified_copy(kobe_champion, "kobe", 1, folder)))


@pytest.fixture(scope="session")
def model_server(model_image) -> Iterator[Container]:
    """The model image running, answering /ping."""
    with Container(model_image.tag, images.MODEL_PORT) as container:
        wait_for(f"{container.url}/ping", container.name)
        yield container


@pytest.fixture(scope="session")
def studio_image(base_image) -> images.BuiltImage:
    return images.build_studio_image(tag=STUDIO_TAG, base=base_image)


@pytest.fixture(scope="session")
def output() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


def post(url: str, body: str | bytes) -> tuple[int, str]:
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(f"{url}/invocations", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def split_body(frame: pd.DataFrame) -> str:
    return json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))})
