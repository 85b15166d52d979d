"""The engine stays pure: importing every synthlake module pulls in no Spark, MLflow, Airflow or GX."""

import subprocess
import sys

FORBIDDEN = ("pyspark", "mlflow", "airflow", "great_expectations", "delta", "dvc", "pipelines", "jobs")


def test_engine_imports_none_of_the_platform():
    code = (
        "import sys, pkgutil, importlib, synthlake\n"
        "for m in pkgutil.walk_packages(synthlake.__path__, 'synthlake.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('\\n'.join(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in out.split()}
    assert "synthlake" in loaded and "torch" in loaded
    assert not loaded & set(FORBIDDEN), sorted(loaded & set(FORBIDDEN))
