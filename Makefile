# Two commands do all set-up on a fresh machine:
#   make run    creates .venv if missing, installs, writes the demo data, serves the studio on 127.0.0.1:8501
#   make test   the same environment plus the dev tools, Debian's chromium and podman (apt-get, as root), then the whole test suite
# Both are idempotent: an install runs again only when its requirements file changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8501

.PHONY: run test audit mlflow-ui serve demo lint bench clean-venv image studio-image base-image bench-serving demo-model push

# python -m venv seeds an old setuptools (65.5.0, with known CVEs): upgrade it to the pin at once.
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip $$(grep -E '^setuptools==' requirements.txt)

# Stamp files remember which requirements are installed; make re-installs only when they change.
$(VENV)/.runtime-installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.runtime-installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

data/demo_dev.parquet data/demo_prod.parquet &: core/demo.py | $(VENV)/.runtime-installed
	$(PY) -m core demo

demo: data/demo_dev.parquet

run: $(VENV)/.runtime-installed data/demo_dev.parquet
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT)

test: $(VENV)/.dev-installed data/demo_dev.parquet
	scripts/ensure-chromium
	scripts/ensure-containers
	$(PY) scripts/check_floors.py
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest

# Supply chain: no pinned or installed package below a version that fixes a known advisory
# (security/floors.txt; pip-audit cannot reach its vulnerability data from these machines).
audit: $(VENV)/.dev-installed
	$(PY) scripts/check_floors.py

mlflow-ui: $(VENV)/.runtime-installed
	$(PY) -m core mlflow-ui

# The champion of MODEL behind REST on 127.0.0.1:5001: make serve MODEL=kobe
MODEL ?= kobe
serve: $(VENV)/.runtime-installed
	$(PY) -m core serve --model $(MODEL) --port 5001

# Container images (podman, containers/containers.conf). No image registry reachable: the base is made
# from Debian's packages (scripts/base-image, as root; kept once made). With a registry: BASE_IMAGE=python:3.11-slim
#   make image MODEL=kobe         the champion of MODEL behind MLflow's scoring server (port 8080 inside)
#   make studio-image             the whole studio (port 8501 inside, its workspace on the volume /workspace)
BASE_IMAGE ?= localhost/studio-base:bookworm
IMAGE_TAG ?=
base-image:
	@case "$(BASE_IMAGE)" in localhost/studio-base*) scripts/ensure-containers podman runc mmdebstrap;; *) scripts/ensure-containers podman runc;; esac
	@case "$(BASE_IMAGE)" in localhost/studio-base*) scripts/base-image $(BASE_IMAGE);; *) echo "Using the base image $(BASE_IMAGE).";; esac

image: $(VENV)/.runtime-installed base-image
	$(PY) -m core image --model $(MODEL) --base $(BASE_IMAGE) $(if $(IMAGE_TAG),--tag $(IMAGE_TAG))

studio-image: $(VENV)/.runtime-installed base-image
	$(PY) -m core image --studio --base $(BASE_IMAGE) $(if $(IMAGE_TAG),--tag $(IMAGE_TAG))

# A model to build an image of on a fresh machine: logistic regression on the demo data, registered as demo@champion
# (kept when it exists).
demo-model: $(VENV)/.runtime-installed data/demo_dev.parquet
	@$(PY) -m core models show demo@champion >/dev/null 2>&1 && echo "demo@champion is registered already." || \
	  $(PY) -m core train --data data/demo_dev.parquet --target shot_made_flag --algorithms lr --folds 3 \
	    --register demo --alias champion >/dev/null

# Push the champion's image of MODEL and the studio image (built by make image / make studio-image) as
# REGISTRY/studio-model-MODEL:TAG and REGISTRY/studio:TAG for each of TAGS (log in first: podman login).
#   make push MODEL=kobe REGISTRY=registry.example:5000/team TAGS="1.0 latest" [PUSH_OPTS=--tls-verify=false]
REGISTRY ?=
TAGS ?= latest
PUSH_OPTS ?=
push: $(VENV)/.runtime-installed
	@test -n "$(REGISTRY)" || { echo "Say where to push: make push MODEL=$(MODEL) REGISTRY=host:port/path" >&2; exit 2; }
	@set -e; export CONTAINERS_CONF="$(CURDIR)/containers/containers.conf"; \
	shown=$$($(PY) -m core models show "$(MODEL)@champion") || exit $$?; \
	version=$$(printf '%s' "$$shown" | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["version"])'); \
	model=$$(echo "$(MODEL)" | tr '[:upper:]' '[:lower:]'); \
	for tag in $(TAGS); do \
	  podman tag "localhost/studio-model-$$model:$$version" "$(REGISTRY)/studio-model-$$model:$$tag"; \
	  podman push $(PUSH_OPTS) "$(REGISTRY)/studio-model-$$model:$$tag"; \
	  podman tag localhost/studio:latest "$(REGISTRY)/studio:$$tag"; \
	  podman push $(PUSH_OPTS) "$(REGISTRY)/studio:$$tag"; \
	done

# ruff on the code; the CI workflow against GitHub's workflow schema (check-jsonschema) and for
# unsafe patterns (zizmor, offline): the actionlint binary cannot be fetched from these machines.
WORKFLOWS := .github/workflows/ci.yml
lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows $(WORKFLOWS)
	$(VENV)/bin/zizmor --offline --quiet $(WORKFLOWS)

bench: $(VENV)/.dev-installed
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/training.py
	$(PY) benchmarks/scoring.py
	$(PY) benchmarks/drift.py
	$(PY) benchmarks/ingest.py

# Served champion vs the same model in-process (needs podman; builds the images it measures).
bench-serving: $(VENV)/.dev-installed base-image
	$(PY) benchmarks/serving.py --base $(BASE_IMAGE)

clean-venv:
	rm -rf $(VENV)
