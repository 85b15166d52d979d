# synthlake: `make run` runs the whole pipeline on the demo dataset; `make test` runs the test suite.
# Both create the project's environment (.venv, pinned versions from pyproject.toml) when it is missing.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
CONFIG ?= conf/datasets/adult.yaml
ARGS   ?=
# test processes: a Spark test keeps about one core busy (JVM start-up, Python), so two use both of CI's cores
TEST_WORKERS ?= 2
CLUSTER ?= var/cluster

# spark-submit and the venv's python first on PATH; no telemetry written to the home directory.
export PATH := $(BIN):$(PATH)
export PYSPARK_PYTHON := $(BIN)/python
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: run test lint env peer-env cluster-up cluster-down clean

run: env
	$(BIN)/synthlake run $(CONFIG) $(ARGS)

# whole modules per process (their fixtures are module-scoped), in tests/conftest.py's order: longest first
test: env
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(ARGS)

lint: env
	$(BIN)/ruff check .

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "synthlake needs Python 3.11, got " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --progress-bar off -e ".[dev]"
	touch $@

# A Spark standalone cluster (a master, two workers of one core) and an MLflow server on 127.0.0.1, for
# conf/env/cluster.yaml on this machine: pids, logs, env.sh and stores under $(CLUSTER). Then
# `. $(CLUSTER)/env.sh` and `synthlake run $(CONFIG) --env cluster` (README: On a cluster).
cluster-up: env
	$(BIN)/python -m pipelines.loopback_cluster up --state $(CLUSTER)

cluster-down:
	$(BIN)/python -m pipelines.loopback_cluster down --state $(CLUSTER)

# benchmarks/conditions.py's peer, mostlyai-engine 2.7.3, in an environment of its own: installed into .venv it
# would change it (psutil 7 -> 5, plus transformers, torchvision, torchaudio).
PEER_VENV ?= .venv-peer

peer-env: $(PEER_VENV)/.installed

$(PEER_VENV)/.installed:
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet --progress-bar off mostlyai-engine==2.7.3
	touch $@

clean:
	@if [ -d $(CLUSTER)/pids ]; then $(BIN)/python -m pipelines.loopback_cluster down --state $(CLUSTER); fi
	rm -rf var
