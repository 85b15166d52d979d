"""Spark's Ivy cache (the repo's var/ivy, which every test project shares) is filled once, before any test
starts a JVM: two test processes resolving into an empty cache at once could each write the same jar."""

import fcntl
import os
import subprocess

import pytest
from project_fixture import REPO, VENV_BIN

from pipelines import export
from pipelines.lineage import SPARK_PACKAGE
from pipelines.spark import delta_package

IVY = REPO / "var" / "ivy"


def _jar(coordinates: str) -> str:
    group, artifact, version = coordinates.split(":")
    return f"{group}_{artifact}-{version}.jar"  # the name Spark retrieves it under, in IVY/jars


@pytest.fixture(scope="session", autouse=True)
def ivy_cache_filled():
    packages = [delta_package(), *export.spark_packages("jdbc"), SPARK_PACKAGE]  # what the tests' JVMs ask for
    IVY.mkdir(parents=True, exist_ok=True)
    with open(IVY.parent / "ivy.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other test process waits here, then finds the jars
        if not all((IVY / "jars" / _jar(p)).exists() for p in packages):
            noop = IVY / "noop.py"
            noop.write_text("")
            env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
            proc = subprocess.run([str(VENV_BIN / "spark-submit"), "--conf", f"spark.jars.ivy={IVY}",
                                   "--packages", ",".join(packages), str(noop)], env=env, capture_output=True,
                                  text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr[-3000:]
