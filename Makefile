# Every target creates or updates the virtualenv in .venv first.
# torch is pinned to 2.13.0; where the machine provides a local CPU wheel (PIP_FIND_LINKS),
# uv is pointed at it so no multi-GB CUDA build is downloaded.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
FIND_LINKS := $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),)

.PHONY: install demo demo-loop test test-container lint format bench-pipeline bench-serving bench-canary bench-drift bench-drift-detection bench-anomaly bench-experiments mlflow-ui prefect-ui clean-state

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install --quiet "uv==0.13.8"
	$(UV) pip install --python $(PY) $(FIND_LINKS) --compile-bytecode --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## Run the whole demo pipeline on embedded defaults (state under .loopline/).
demo: install
	$(VENV)/bin/loopline run

## The closed loop after the pipeline: serve, monitor, drift, retrain through a canary.
demo-loop: install
	$(VENV)/bin/loopline demo

## Run the test suite.
test: install
	$(VENV)/bin/pytest

test-container: install  # needs podman (apt-get install podman buildah debootstrap runc)
	$(VENV)/bin/pytest -m container

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench-pipeline: install
	$(PY) benchmarks/pipeline.py

mlflow-ui: install
	$(VENV)/bin/loopline ui mlflow

prefect-ui: install
	$(VENV)/bin/loopline ui prefect

clean-state:
	rm -rf .loopline artifacts data/raw data/prepared dvc.lock

bench-serving: install
	$(VENV)/bin/python benchmarks/serving.py

bench-canary: install
	$(VENV)/bin/python benchmarks/canary.py

bench-drift: install
	$(VENV)/bin/python benchmarks/drift.py

bench-drift-detection: install
	$(VENV)/bin/python benchmarks/drift_detection.py

bench-anomaly: install
	$(VENV)/bin/python benchmarks/anomaly.py

bench-experiments: install
	$(VENV)/bin/python benchmarks/experiments.py
