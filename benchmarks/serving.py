"""The champion served from its container image (``make image``) against the same model in-process.

A Kobe pipeline (logistic regression on the six numeric shot features, trained by the studio on the
real development file) is registered in a temporary workspace as ``kobe@champion``; its image is built
with ``core.images.build_model_image`` (cached layers reused). Printed:

1. image sizes: the base, the model image and the studio image (each as podman reports it, and what
   it adds to the base);
2. start: ``podman run -d`` of the model image until its first ``/ping`` answered 200 (MLflow's
   entrypoint starts nginx and the scoring server with one worker per core; each loads the model),
   several runs, each container removed afterwards; beside it, ``python -m core serve`` on the host
   until its first ``/ping`` (the same MLflow scoring server, one worker, no container; it checks the
   model's file hashes and loads it from the checked copy);
3. requests per second from one local client (one keep-alive HTTP connection, one request at a time)
   on real Kobe production rows in ``dataframe_split`` JSON, 1 row and 100 rows per request: to the
   container (nginx -> uvicorn -> pyfunc: JSON parsing, schema checks, prediction, JSON answer, the
   loopback network and podman's port forwarding), to the host server, and the baseline in this
   process: ``mlflow.pyfunc.load_model(...).predict`` on the very frames MLflow's parser makes of the
   same bodies (parsed before timing: prediction and the pyfunc's schema checks only, no JSON, no HTTP).

    .venv/bin/python benchmarks/serving.py [--base IMAGE] [--runs 3] [--requests 200]

No target: the figures say what serving from a container costs against calling the model directly.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import images  # noqa: E402
from core.settings import PROJECT_ROOT, load_settings  # noqa: E402

KOBE = PROJECT_ROOT.parent / "shared" / "datasets" / "kobe"
FEATURES = ["lat", "lon", "minutes_remaining", "period", "playoffs", "shot_distance"]
TAG = "localhost/studio-model-kobe-bench:latest"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], env=images.podman_env(), text=True, capture_output=True)
    if check and result.returncode != 0:
        raise SystemExit(f"podman {args[0]} failed: {result.stderr[-1500:]}")
    return result


def running(name: str) -> bool:
    return podman("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip() == "true"


def wait_ping(url: str, alive, timeout: float = 300) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except OSError:
            pass
        if not alive():
            raise SystemExit(f"the server behind {url} stopped before answering /ping")
        time.sleep(0.05)
    raise SystemExit(f"{url} did not answer /ping within {timeout:.0f} s")


def size_mb(image: str) -> float | None:
    found = podman("image", "inspect", "--format", "{{.Size}}", image, check=False)
    return int(found.stdout.strip()) / 1e6 if found.returncode == 0 else None


def champion(root: Path):
    import pandas as pd

    from core import registry
    from core.training import TrainingSpec, train

    settings = load_settings({"STUDIO_WORKSPACE": str(root / "ws"), "STUDIO_DATA_DIR": str(root / "data")})
    result = train(settings, TrainingSpec(target="shot_made_flag", features=tuple(FEATURES), algorithms=("lr",), folds=2),
                   pd.read_parquet(KOBE / "dataset_kobe_dev.parquet"), table_name="dataset_kobe_dev", table_digest="k" * 64)
    registry.register(settings, result.models[0].run_id, "kobe", alias="champion")
    return settings


def bodies(rows_per_request: int, count: int) -> list[str]:
    import pandas as pd

    rows = pd.read_parquet(KOBE / "dataset_kobe_prod.parquet", columns=FEATURES)
    out = []
    for i in range(count):
        start = (i * rows_per_request) % (len(rows) - rows_per_request)
        chunk = rows.iloc[start:start + rows_per_request]
        out.append(json.dumps({"dataframe_split": json.loads(chunk.to_json(orient="split", index=False))}))
    return out


def over_http(port: int, payloads: list[str]) -> float:
    """Requests per second, one keep-alive connection, one request at a time."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        start = time.perf_counter()
        for body in payloads:
            connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise SystemExit(f"the server answered {response.status}: {answer[:300]!r}")
        return len(payloads) / (time.perf_counter() - start)
    finally:
        connection.close()


def in_process(model, frames: list) -> float:
    start = time.perf_counter()
    for frame in frames:
        model.predict(frame)
    return len(frames) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default=images.LOCAL_BASE)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200, help="requests per run with 1 row (a quarter with 100 rows)")
    args = parser.parse_args()

    import mlflow.pyfunc
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    from core import integrity

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        settings = champion(root)
        print(f"trained and registered kobe@champion in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        built = images.build_model_image(settings, "kobe@champion", tag=TAG, base=args.base)
        print(f"built {built.tag} in {time.perf_counter() - t:.1f} s (cached layers reused)")

        print("\n== image sizes (podman image inspect) ==")
        base_mb = size_mb(args.base)
        for label, image in (("base", args.base), ("model", TAG), ("studio", "localhost/studio:latest")):
            mb = size_mb(image)
            if mb is None:
                print(f"{label:7s} {image}: not built (make studio-image)")
                continue
            added = f", {mb - base_mb:,.0f} MB over the base" if base_mb and image != args.base else ""
            print(f"{label:7s} {image}: {mb:,.0f} MB{added}")

        model = mlflow.pyfunc.load_model(str(integrity.verified_copy(settings, "kobe", 1, root / "in-process")))
        schema = model.metadata.get_input_schema()
        plans = {1: bodies(1, args.requests), 100: bodies(100, max(args.requests // 4, 10))}
        frames = {n: [infer_and_parse_data(json.loads(b), schema=schema) for b in payloads] for n, payloads in plans.items()}

        print("\n== start to first /ping (seconds) ==")
        container_starts, host_starts = [], []
        env = {**os.environ, "STUDIO_WORKSPACE": str(settings.workspace), "STUDIO_DATA_DIR": str(settings.data_dir)}
        env.pop("MLFLOW_TRACKING_URI", None)
        for run in range(args.runs):
            port = free_port()
            name = f"bench-serving-{os.getpid()}-{run}"
            t0 = time.perf_counter()
            podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:{images.MODEL_PORT}", TAG)
            try:
                wait_ping(f"http://127.0.0.1:{port}", lambda c=name: running(c))
                container_starts.append(time.perf_counter() - t0)
            finally:
                podman("rm", "--force", "--time", "2", name, check=False)
            hport = free_port()
            t0 = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-m", "core", "serve", "--model", "kobe", "--port", str(hport)],
                                       cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
            try:
                wait_ping(f"http://127.0.0.1:{hport}", lambda p=process: p.poll() is None)
                host_starts.append(time.perf_counter() - t0)
            finally:
                os.killpg(process.pid, 15)
                process.wait(timeout=30)
            print(f"run {run + 1}: container {container_starts[-1]:5.1f}   host python -m core serve {host_starts[-1]:5.1f}")
        print(f"median: container {statistics.median(container_starts):5.1f}   host {statistics.median(host_starts):5.1f}   "
              f"ratio {statistics.median(container_starts) / statistics.median(host_starts):.2f}x")

        print("\n== requests per second, one client, one request at a time ==")
        port, hport = free_port(), free_port()
        name = f"bench-serving-{os.getpid()}-rps"
        podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:{images.MODEL_PORT}", TAG)
        process = subprocess.Popen([sys.executable, "-m", "core", "serve", "--model", "kobe", "--port", str(hport)],
                                   cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        try:
            wait_ping(f"http://127.0.0.1:{port}", lambda: running(name))
            wait_ping(f"http://127.0.0.1:{hport}", lambda: process.poll() is None)
            for n, payloads in plans.items():
                over_http(port, payloads[:5])  # warm: every worker has answered once
                over_http(hport, payloads[:5])
                in_process(model, frames[n][:5])
                results = {"container": [], "host": [], "in-process": []}
                for run in range(args.runs):
                    results["container"].append(over_http(port, payloads))
                    results["host"].append(over_http(hport, payloads))
                    results["in-process"].append(in_process(model, frames[n]))
                    print(f"{n:3d} row(s)/request, run {run + 1}: container {results['container'][-1]:7.1f}   "
                          f"host server {results['host'][-1]:7.1f}   in-process predict {results['in-process'][-1]:7.1f}")
                med = {k: statistics.median(v) for k, v in results.items()}
                print(f"{n:3d} row(s)/request, median: container {med['container']:7.1f} req/s ({med['container'] * n:,.0f} rows/s)"
                      f" = {med['container'] / med['in-process']:.2f}x in-process, {med['container'] / med['host']:.2f}x host server; "
                      f"host server {med['host'] / med['in-process']:.2f}x in-process")
        finally:
            podman("rm", "--force", "--time", "2", name, check=False)
            os.killpg(process.pid, 15)
            process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
