"""Spark's Ivy cache (project_fixture.IVY_DIR, which every test project of this process shares) is filled
before any test starts a JVM, so that no two of them download the same jar at once (test_faults starts two
runs together)."""

import os
import subprocess

import pytest
from project_fixture import IVY_DIR, VENV_BIN

from pipelines import export
from pipelines.lineage import SPARK_PACKAGE
from pipelines.spark import delta_package, ivy_lock


def _jar(coordinates: str) -> str:
    group, artifact, version = coordinates.split(":")
    return f"{group}_{artifact}-{version}.jar"  # the name Spark retrieves it under, in IVY_DIR/jars


@pytest.fixture(scope="session", autouse=True)
def ivy_cache_filled():
    packages = [delta_package(), *export.spark_packages("jdbc"), SPARK_PACKAGE]  # what the tests' JVMs ask for
    with ivy_lock(str(IVY_DIR)):
        if all((IVY_DIR / "jars" / _jar(p)).exists() for p in packages):
            return
        noop = IVY_DIR / "noop.py"
        noop.write_text("")
        env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
        proc = subprocess.run([str(VENV_BIN / "spark-submit"), "--conf", f"spark.jars.ivy={IVY_DIR}",
                               "--packages", ",".join(packages), str(noop)], env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
