"""The one Spark session factory: Delta Lake configured, local by default, a cluster by conf/env."""

from __future__ import annotations

import os
import sys

from pipelines.config import EnvConfig, resolve

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def under_spark_submit() -> bool:
    """spark-submit starts the JVM itself (with --master and --packages) and hands Python a gateway."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def delta_package() -> str:
    """The Maven coordinates of the Delta jar matching the installed delta-spark."""
    from delta.pip_utils import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    builder = configure_spark_with_delta_pip(SparkSession.builder)
    return builder._options["spark.jars.packages"]


def get_spark(env: EnvConfig, app_name: str = "synthlake", extra_packages: list[str] | None = None):
    """A Spark session (one already started in this process is returned as it is). `extra_packages`: Maven
    coordinates Spark fetches besides Delta's, e.g. a JDBC driver; under spark-submit they come from --packages."""
    from delta.pip_utils import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    # Executors' Python must be this environment's, or workers fail importing pandas or synthlake.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    for key, value in {**DELTA_CONF, **env.spark.conf}.items():
        builder = builder.config(key, value)
    if not under_spark_submit():
        builder = builder.master(env.spark.master).config("spark.jars.ivy", resolve(env.ivy_dir))
        builder = configure_spark_with_delta_pip(builder, extra_packages=extra_packages)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
