"""Both images pushed to a real local registry (Debian's docker-registry on 127.0.0.1, its own config
and storage in a temporary folder), pulled back by digest into an empty image store, and the pulled
model image run: it answers /ping and a prediction."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request

import pandas as pd
import pytest

from core import images
from tests.conftest import KOBE_FEATURES, KOBE_PROD
from tests.containers.conftest import Container, free_port, podman, post, split_body, wait_for

pytestmark = pytest.mark.usefixtures("podman_ready")
REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """``docker-registry serve`` on a free 127.0.0.1 port; stopped after the module, passed or failed."""
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root / 'storage'}\n"
                      f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n")
    log = open(root / "registry.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (root / "registry.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                assert time.monotonic() < deadline, "docker-registry did not answer within 30 s"
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def empty_store():
    """podman options for an image store of its own, empty: what is pulled into it came from the registry.
    It lies beside podman's own store (same file system, so the same storage driver works there)."""
    import tempfile
    from pathlib import Path

    graph = Path(podman("info", "--format", "{{.Store.GraphRoot}}").stdout.strip())
    root = Path(tempfile.mkdtemp(prefix="studio-test-store-", dir=graph.parent))
    # Its own --tmpdir too: with podman's shared one (/run/libpod), resetting this store made podman
    # "refresh" the main store's running containers to Created, and their processes outlived rm --force.
    options = ("--root", str(root / "root"), "--runroot", str(root / "run"), "--tmpdir", str(root / "tmp"))
    try:
        yield options
    finally:
        podman(*options, "rm", "--all", "--force", check=False)
        podman(*options, "system", "reset", "--force", check=False)
        shutil.rmtree(root, ignore_errors=True)


def push(image: str, registry: str, name: str, folder) -> str:
    """Push ``image`` as ``registry/name``; the digest the registry stored."""
    digestfile = folder / f"{name}.digest"
    podman("push", "--tls-verify=false", "--digestfile", str(digestfile), image, f"{registry}/{name}:test", timeout=900)
    return digestfile.read_text().strip()


def test_both_images_go_through_the_registry_and_the_pulled_model_image_serves(
        registry, empty_store, model_image, studio_image, in_process, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # both at once: each push compresses on one core
        pushed = [pool.submit(push, model_image.tag, registry, "studio-model-kobe", tmp_path),
                  pool.submit(push, studio_image.tag, registry, "studio", tmp_path)]
        model_digest, studio_digest = (f.result() for f in pushed)
    assert model_digest.startswith("sha256:") and studio_digest.startswith("sha256:")
    assert model_digest != studio_digest
    # the registry lists both repositories
    with urllib.request.urlopen(f"http://{registry}/v2/_catalog", timeout=5) as response:
        assert {"studio", "studio-model-kobe"} <= set(json.load(response)["repositories"])

    with ThreadPoolExecutor(2) as pool:
        pulls = [pool.submit(podman, *empty_store, "pull", "--tls-verify=false", f"{registry}/{name}@{digest}", timeout=900)
                 for name, digest in (("studio-model-kobe", model_digest), ("studio", studio_digest))]
        for f in pulls:
            f.result()
    # the pulled studio image is the one pushed (same configuration digest, i.e. the same image id)
    pulled_studio = podman(*empty_store, "image", "inspect", "--format", "{{.Id}}", f"{registry}/studio@{studio_digest}")
    assert pulled_studio.stdout.strip() == studio_image.image_id.removeprefix("sha256:")
    pulled = f"{registry}/studio-model-kobe@{model_digest}"
    labels = json.loads(podman(*empty_store, "image", "inspect", "--format", "{{json .Labels}}", pulled).stdout)
    assert labels["io.studio.model.run_id"] == model_image.labels["io.studio.model.run_id"]

    with Container(pulled, images.MODEL_PORT, root=empty_store) as server:
        wait_for(f"{server.url}/ping", server.name, root=empty_store)
        row = pd.read_parquet(KOBE_PROD, columns=list(KOBE_FEATURES)).head(1)
        status, text = post(server.url, split_body(row))
        assert status == 200, text
        answer = json.loads(text)["predictions"][0]
        from tests.containers.test_model_image import parsed

        expected = in_process.predict(parsed(in_process, split_body(row)))
        assert answer["prediction"] == expected["prediction"].iloc[0]
