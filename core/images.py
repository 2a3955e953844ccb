"""Container images built with podman: a registered model served by MLflow's own scoring server,
and the whole studio.

- :func:`build_model_image` (``python -m core image --model NAME[@ALIAS]``, ``make image``): the model's
  files are the integrity-checked copy (:func:`core.integrity.verified_copy`), never the store's
  files unchecked. The Dockerfile is MLflow's own (``mlflow.pyfunc.backend.PyFuncBackend
  .generate_dockerfile``, what ``mlflow models generate-dockerfile`` writes), with three additions: the
  base image is a build argument (``BASE_IMAGE``), pip installs under the studio's exact pins
  (``PIP_CONSTRAINT``, a copy of requirements.txt), and the model's pinned requirements are installed
  in a layer of their own before its files are copied, so the next build reuses it. The container
  answers on port 8080 (``/ping``, ``/invocations``), as every MLflow model image does. The cut-off
  stored on the version at build time is baked in last (``ENV STUDIO_CUTOFF``, label
  ``studio.cutoff``; see :mod:`core.studio_pyfunc_model`): ``podman run -e STUDIO_CUTOFF=...``
  overrides it, and a cut-off changed later needs a new image (or that ``-e``).
- :func:`build_studio_image` (``make studio-image``): containers/Dockerfile.studio, from a context of
  only the files the studio runs.

Every podman call sets ``CONTAINERS_CONF`` to containers/containers.conf (runc, no default ulimits).
The host's pip cache is mounted into builds, so wheels downloaded once are reused (and the host's
certificate bundle, when its pip is given one, for networks behind a proxy with its own authority). An image is tagged
only after its build succeeded: a failed build leaves no image under the name asked for (and the
image a name pointed to before is removed once the name moves on, unless a container uses it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInputError
from core.settings import PROJECT_ROOT, Settings, redact
from core.studio_pyfunc_model import CUTOFF_ENV

CONTAINERS_CONF = PROJECT_ROOT / "containers" / "containers.conf"
STUDIO_DOCKERFILE = PROJECT_ROOT / "containers" / "Dockerfile.studio"
DEFAULT_BASE = "python:3.11-slim"  # where a registry is reachable; elsewhere scripts/base-image's
LOCAL_BASE = "localhost/studio-base:bookworm"  # what scripts/base-image makes from Debian's packages
MODEL_PORT = 8080  # MLflow's model images answer here (nginx in front of the scoring server)
STUDIO_PORT = 8501
LABEL_PREFIX = "io.studio"
CUTOFF_LABEL = "studio.cutoff"  # the cut-off a model image answers at (STUDIO_CUTOFF's JSON), or "none"
_TAG = re.compile(r"^[a-z0-9][a-z0-9._\-/:]{0,200}$")

Say = Callable[[str], None]


class ContainerToolMissingError(BadInputError):
    """podman is not installed (or cannot run) on this machine."""


class ImageBuildError(BadInputError):
    """podman could not build the image; nothing was tagged."""


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    image_id: str
    labels: dict[str, str]

    def to_dict(self) -> dict:
        return {"tag": self.tag, "image_id": self.image_id, "labels": self.labels}


def podman_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every podman call runs with: the project's containers.conf."""
    return {**(os.environ if env is None else env), "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman_path() -> str:
    found = shutil.which("podman")
    if not found:
        raise ContainerToolMissingError(
            "podman is not installed, so no container image can be built. Install it with scripts/ensure-containers "
            "(as root: it runs apt-get install podman runc), then try again.")
    return found


def podman(*args: str, check: bool = True, capture: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``podman ARGS`` with the project's containers.conf; output captured as text."""
    result = subprocess.run([podman_path(), *args], env=podman_env(), text=True, timeout=timeout,
                            capture_output=capture)
    if check and result.returncode != 0:
        raise ImageBuildError(f"podman {args[0]} failed: {redact((result.stderr or result.stdout or '').strip()[-1500:])}")
    return result


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def pip_cache_dir() -> Path:
    """The host's pip cache (what ``pip cache dir`` answers), made if missing."""
    given = os.environ.get("PIP_CACHE_DIR")
    folder = Path(given) if given else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def host_certificates() -> Path | None:
    """The certificate bundle the host's pip trusts (PIP_CERT, else SSL_CERT_FILE or REQUESTS_CA_BUNDLE),
    when one is set: a network whose proxy signs with its own authority needs it inside builds too."""
    for variable in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        given = os.environ.get(variable)
        if given and Path(given).is_file():
            return Path(given)
    return None


def _build_mounts(scratch: Path) -> list[str]:
    """``--volume`` options of a build (present while it runs, never in the image): the host's pip cache,
    and the host's certificate bundle with a pip.conf naming it."""
    mounts = ["--volume", f"{pip_cache_dir()}:/root/.cache/pip"]
    bundle = host_certificates()
    if bundle is not None:
        conf = scratch / "pip.conf"
        conf.write_text("[global]\ncert = /run/studio-build/ca-certificates.crt\n")
        conf.chmod(0o644)
        mounts += ["--volume", f"{bundle.resolve()}:/run/studio-build/ca-certificates.crt:ro",
                   "--volume", f"{conf}:/etc/pip.conf:ro"]
    return mounts


def check_tag(tag: str) -> str:
    if not _TAG.match(tag or ""):
        raise BadInputError(f"'{tag}' cannot be an image name: use lower-case letters, digits, '.', '_', '-', '/' and "
                            "':' for the tag (for example localhost/studio-kobe:3).")
    return tag


def model_tag(name: str, version: int) -> str:
    return f"localhost/studio-model-{name.lower()}:{version}"


def _build(context: Path, dockerfile: Path, tag: str, base: str, labels: dict[str, str], say: Say,
           scratch: Path) -> BuiltImage:
    """``podman build`` of ``context``; the image is tagged ``tag`` only once the build succeeded
    (``scratch``: a private folder for the build's log and image id)."""
    podman_path()
    check_tag(tag)
    if not image_exists(base) and base == LOCAL_BASE:
        raise ImageBuildError(f"The base image {base} does not exist yet. Make it with: make base-image "
                              "(scripts/base-image, as root), then try again.")
    iidfile = scratch / "image.iid"
    command = ["build", "--file", str(dockerfile), "--build-arg", f"BASE_IMAGE={base}", "--iidfile", str(iidfile),
               *_build_mounts(scratch), "--layers"]
    for key, value in labels.items():
        command += ["--label", f"{key}={value}"]
    _normalize_modes(context)
    say(f"building {tag} from {base} (podman build; this takes minutes the first time)")
    log = scratch / "build.log"
    with open(log, "w") as out:
        result = subprocess.run([podman_path(), *command, str(context)], env=podman_env(), stdout=out,
                                stderr=subprocess.STDOUT, text=True, preexec_fn=lambda: os.umask(0o022))
    if result.returncode != 0 or not iidfile.is_file():
        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-15:])
        hint = ""
        if "initializing source" in tail or "pinging container registry" in tail or "short-name" in tail:
            hint = (f" The base image {base} could not be fetched (no image registry is reachable from here, or it has "
                    f"no such image). Make a Debian base with make base-image and build with --base {LOCAL_BASE} "
                    "(make image does).")
        raise ImageBuildError(f"The image {tag} could not be built (podman build exited {result.returncode}); nothing was "
                              f"tagged.{hint} The build's last lines:\n{redact(tail)}")
    image_id = iidfile.read_text().strip()
    before = podman("image", "inspect", "--format", "{{.Id}}", tag, check=False).stdout.strip()
    podman("tag", image_id, tag)
    if before and before != image_id.removeprefix("sha256:"):
        # the image the name pointed to before, now nameless: removed unless a container still uses it
        podman("rmi", before, check=False)
    say(f"built {tag} ({image_id.removeprefix('sha256:')[:12]})")
    return BuiltImage(tag=tag, image_id=image_id, labels=labels)


def _normalize_modes(context: Path) -> None:
    """Readable modes in the build context (folders 0755, files 0644, or 0755 when executable), whatever
    the caller's umask (the studio's processes run with 077): the image's files, and podman's layer cache
    keys, are then the same from the CLI, make and the tests."""
    if context == PROJECT_ROOT:
        return
    for path in [context, *context.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if path.stat().st_mode & 0o100 else 0o644)


def _steady_copy(source: Path, target: Path) -> None:
    """Copy a file that a cached layer depends on with a fixed time and mode: podman's layer cache hashes
    the copied file's metadata too, so a fresh copy of the same pins would otherwise rebuild the layer."""
    shutil.copyfile(source, target)
    target.chmod(0o644)
    os.utime(target, (0, 0))


def _model_dockerfile(context: Path, model_dir: Path, cutoff: str = "") -> Path:
    """MLflow's Dockerfile for the model in ``model_dir`` (inside ``context``), with the base image as a
    build argument, the studio's pins as pip constraints, and the pinned requirements in their own layer;
    ``cutoff`` (``STUDIO_CUTOFF``'s value, see :mod:`core.studio_pyfunc_model`) baked in as an ENV last."""
    from mlflow.pyfunc.backend import PyFuncBackend

    # The generator copies the model into context/model_dir; it is given the verified copy.
    # base_image "python:3.11-slim" makes it write its python-slim steps (nginx from apt, pip with the
    # image's own python); the FROM line then takes the BASE_IMAGE argument.
    PyFuncBackend(config={}, env_manager="local").generate_dockerfile(
        model_uri=str(model_dir), output_dir=str(context), base_image=DEFAULT_BASE)
    dockerfile = context / "Dockerfile"
    text = dockerfile.read_text()
    copied = next(p for p in (context / "model_dir").iterdir() if p.is_dir())
    _steady_copy(PROJECT_ROOT / "requirements.txt", context / "constraints.txt")
    _steady_copy(copied / "requirements.txt", context / "model-requirements.txt")
    text = text.replace(f"FROM {DEFAULT_BASE}", f"ARG BASE_IMAGE={DEFAULT_BASE}\nFROM ${{BASE_IMAGE}}", 1)
    pins = (
        "# The studio's exact pins (its requirements.txt) constrain every pip install: the image resolves\n"
        "# the versions the studio runs.\n"
        "COPY constraints.txt /opt/studio/constraints.txt\n"
        "ENV PIP_CONSTRAINT=/opt/studio/constraints.txt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore\n\n"
    )
    requirements = (
        "# The model's pinned requirements before its files: a later build of a model with the same pins\n"
        "# reuses this layer.\n"
        "COPY model-requirements.txt /opt/studio/model-requirements.txt\n"
        "RUN pip install -r /opt/studio/model-requirements.txt\n\n"
    )
    if "# Install MLflow" not in text or "# Copy model to image" not in text or "FROM ${BASE_IMAGE}" not in text:
        raise ImageBuildError("MLflow's Dockerfile generator wrote an unexpected file; the studio cannot adapt it. "
                              f"Its start: {text[:300]}")
    # LightGBM (which PyCaret imports with every model) needs the GNU OpenMP library, absent from slim images;
    # the apt lists go in the same layer, so they take no room in the image.
    apt = "apt-get install -y --no-install-recommends nginx"
    if apt not in text:
        raise ImageBuildError("MLflow's Dockerfile generator no longer installs nginx as the studio expects; nothing was built.")
    text = text.replace(apt, f"{apt} libgomp1 && rm -rf /var/lib/apt/lists/*", 1)
    text = text.replace("# Install MLflow", pins + "# Install MLflow", 1)
    text = text.replace("# Copy model to image", requirements + "# Copy model to image", 1)
    if cutoff:
        # last, so a changed cut-off rebuilds no earlier layer; `podman run -e STUDIO_CUTOFF=...` overrides it
        quoted = json.dumps(cutoff).replace("$", "\\$")  # one double-quoted word: no variable is expanded in it
        text += (f"\n# The cut-off stored on the version when the image was built: 'prediction' follows it.\n"
                 f"ENV {CUTOFF_ENV}={quoted}\n")
    text += f"\nEXPOSE {MODEL_PORT}\n"
    dockerfile.write_text(text)
    return dockerfile


def build_model_image(settings: Settings, reference: str, tag: str | None = None, base: str | None = None,
                      say: Say = lambda _: None) -> BuiltImage:
    """An image serving ``reference`` (NAME, NAME@ALIAS or NAME/VERSION; NAME alone is its champion)
    with MLflow's scoring server on port 8080, labelled with the model's name, version and run id.
    The cut-off stored on the version now is baked in (``ENV STUDIO_CUTOFF``, label ``studio.cutoff``:
    the cut-off the image answers at, or ``none``); a version whose loader predates cut-offs is
    built without it, and ``say`` tells so and what to do."""
    from core import integrity, model_flavor, registry

    podman_path()  # before any download: no podman, nothing fetched
    view = registry.resolve(settings, reference)
    tag = check_tag(tag or model_tag(view.name, view.version))
    base = base or DEFAULT_BASE
    labels = {f"{LABEL_PREFIX}.model.name": view.name, f"{LABEL_PREFIX}.model.version": str(view.version),
              f"{LABEL_PREFIX}.model.run_id": view.run_id or "",
              "org.opencontainers.image.title": f"{view.name} version {view.version} (MLflow scoring server)"}
    with tempfile.TemporaryDirectory(prefix="studio-image-") as tmp:
        say(f"checking the files of {view.name} version {view.version} against their recorded hashes")
        verified = integrity.verified_copy(settings, view.name, view.version, Path(tmp) / "verified")
        stored = registry.cutoff(settings, view.name, view.version)
        ignored = model_flavor.cutoff_notice(stored, view.version, model_flavor.folder_format(verified), view.name)
        baked = model_flavor.cutoff_env(stored) if ignored is None else ""
        labels[CUTOFF_LABEL] = baked or "none"
        if ignored:
            say(f"warning: {ignored} The image is built without the cut-off.")
        elif baked:
            say(f"baking the stored cut-off into the image: {stored.rule(view.target)} (ENV {CUTOFF_ENV}={baked}, label "
                f"{CUTOFF_LABEL}). Override it with podman run -e {CUTOFF_ENV}='{{\"value\": 0.5, \"positive\": "
                f"\"{stored.positive}\"}}'; after changing the stored cut-off, build the image again.")
        context = Path(tmp) / "context"
        context.mkdir()
        dockerfile = _model_dockerfile(context, verified, baked)
        shipped = next(p for p in (context / "model_dir").iterdir() if p.is_dir())
        if integrity.manifest(shipped) != integrity.manifest(verified):  # the generator's copy is the checked one
            raise ImageBuildError(f"The copy of {view.name} version {view.version} put in the build differs from the checked "
                                  "files; nothing was built.")
        return _build(context, dockerfile, tag, base, labels, say, scratch=Path(tmp))


STUDIO_FILES = ("app.py", "requirements.txt", ".streamlit", "core", "ui", "app_pages", "containers/studio-entrypoint")


def build_studio_image(tag: str = "localhost/studio:latest", base: str | None = None, say: Say = lambda _: None) -> BuiltImage:
    """The whole studio (streamlit on 0.0.0.0:8501, its workspace on the volume /workspace), built with
    containers/Dockerfile.studio from a context holding only :data:`STUDIO_FILES` (no virtual
    environment, workspace, data or caches)."""
    podman_path()
    labels = {"org.opencontainers.image.title": "ML studio (streamlit)"}
    with tempfile.TemporaryDirectory(prefix="studio-image-") as tmp:
        context = Path(tmp) / "context"
        for name in STUDIO_FILES:
            source, target = PROJECT_ROOT / name, context / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(source, target)
        _steady_copy(PROJECT_ROOT / "requirements.txt", context / "requirements.txt")
        return _build(context, STUDIO_DOCKERFILE, check_tag(tag), base or DEFAULT_BASE, labels, say, scratch=Path(tmp))
