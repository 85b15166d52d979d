"""A throwaway synthlake project for integration tests: its own params, lake, work dir and MLflow store.

`make_project(root)` lays out, under `root`:

    conf/            a copy of the repo's conf/ (datasets and environments)
    conf/env/local.yaml   rewritten: work_dir, lake_dir and MLflow point into `root`; ivy_dir points to
                          IVY_DIR (absolute), whose cache already holds the Delta jar
    data -> REPO/data     a symlink: the source data is read, never written
    params.yaml      the repo's, made tiny: 1 epoch, 200 rows, 1 training process, gates off

Jobs find it through SYNTHLAKE_HOME=root (see `project_env`), and default to its params.yaml.
Import it from tests in this folder: `from project_fixture import make_project, project_env`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from pipelines.loopback_cluster import free_port  # noqa: F401  (tests import it from here)

REPO = Path(__file__).resolve().parents[2]
# Spark's Ivy cache for the tests' JVMs (Delta's jar): the repo's var/ivy, one per test process under pytest-xdist
# (spark-submit resolves its --packages before any of our code runs: resolutions in one cache at once can fail)
IVY_DIR = REPO / "var" / f"ivy-{os.environ['PYTEST_XDIST_WORKER']}" if "PYTEST_XDIST_WORKER" in os.environ else \
    REPO / "var" / "ivy"
VENV_BIN = Path(sys.executable).parent  # the project's environment: python, spark-submit, airflow

TINY_PARAMS: dict[str, Any] = {
    "seed": 7,
    "rows": 200,
    "train": {"num_processes": 1, "max_rows": 2000,
              "hyper": {"tabular_ar": {"epochs": 1}, "ctgan": {"epochs": 1, "batch_size": 100}}},
    "sample": {"partitions": 2, "block_rows": 100},
    "validate": {"min_column_shape": 0.0},  # a 1-epoch model must pass the gate: metric thresholds are off too
}


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if nested else value
    return out


def make_project(root: Path, params: dict[str, Any] | None = None) -> Path:
    """Build the project under `root` (created if missing) and return `root`."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "conf", root / "conf", dirs_exist_ok=True)
    if not (root / "data").exists():
        (root / "data").symlink_to(REPO / "data", target_is_directory=True)

    repo_params = yaml.safe_load((REPO / "params.yaml").read_text()) or {}
    repo_params["validate"]["thresholds"] = dict.fromkeys(repo_params["validate"]["thresholds"])  # measured only
    (root / "params.yaml").write_text(yaml.safe_dump(_merge(repo_params, _merge(TINY_PARAMS, params or {})),
                                                     sort_keys=False))

    env = yaml.safe_load((REPO / "conf" / "env" / "local.yaml").read_text()) or {}
    var = root / "var"
    env.update(
        work_dir=str(var),
        lake_dir=str(var / "lake"),
        ivy_dir=str(IVY_DIR),
        mlflow={**env.get("mlflow", {}), "tracking_uri": f"sqlite:///{var / 'mlflow.db'}",
                "artifact_location": str(var / "mlartifacts")},
    )
    env.setdefault("spark", {}).setdefault("conf", {})["spark.driver.memory"] = "2g"
    (root / "conf" / "env" / "local.yaml").write_text(yaml.safe_dump(env, sort_keys=False))
    var.mkdir(exist_ok=True)
    return root


def project_env(root: Path, **extra: str) -> dict[str, str]:
    """os.environ for a subprocess working in the project at `root`: venv first on PATH, no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SYNTHLAKE_", "PYSPARK_"))}
    env.update(
        SYNTHLAKE_HOME=str(root),
        PATH=os.pathsep.join([str(VENV_BIN), env.get("PATH", "")]),
        PYSPARK_PYTHON=sys.executable,
        MLFLOW_DISABLE_TELEMETRY="true",
        GX_ANALYTICS_ENABLED="false",
        DVC_NO_ANALYTICS="1",
        DO_NOT_TRACK="1",
    )
    env.update(extra)
    return env


def airflow_env(root: Path, airflow_home: Path, **extra: str) -> dict[str, str]:
    """project_env plus an isolated Airflow: own home and SQLite DB, the repo's dags/, a local Spark conn."""
    return project_env(
        root,
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW_CONN_SPARK_LOCAL='{"conn_type": "spark", "host": "local[2]"}',
        **extra,
    )


def spark_session(app_name: str):
    """The Spark session of an in-process test module (`SYNTHLAKE_HOME` set to its project). The first session of
    the pytest process starts the one JVM every later session reuses, and fixes its class path then: so each
    one asks for every package any test needs (the PostgreSQL JDBC driver the export tests use), whichever
    module runs first."""
    from pipelines import export
    from pipelines.config import load_env
    from pipelines.spark import get_spark

    return get_spark(load_env(), app_name=app_name, extra_packages=export.spark_packages("jdbc"))
