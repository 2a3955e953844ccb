# Two commands do all set-up on a fresh machine:
#   make run    creates .venv if missing, installs, writes the demo data, serves the studio on 127.0.0.1:8501
#   make test   the same environment plus the dev tools and Debian's chromium (apt-get, as root), then the whole test suite
# Both are idempotent: an install runs again only when its requirements file changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8501

.PHONY: run test audit mlflow-ui serve demo lint bench clean-venv

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
	$(PY) scripts/check_floors.py
	$(PY) -m ruff check .
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

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .

bench: $(VENV)/.dev-installed
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/training.py
	$(PY) benchmarks/scoring.py
	$(PY) benchmarks/drift.py
	$(PY) benchmarks/ingest.py

clean-venv:
	rm -rf $(VENV)
