"""The one Spark session factory: Delta Lake configured, local by default, a cluster by conf/env."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path

from pipelines.config import EnvConfig, resolve

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Parquet's nanosecond timestamps (pandas' default) arrive as numbers, which pipelines.source turns into
    # timestamps: without this Spark refuses the whole file (PARQUET_TYPE_ILLEGAL)
    "spark.sql.legacy.parquet.nanosAsLong": "true",
}


def quoted(name: str) -> str:
    """A Spark SQL identifier for any column name (spaces, dots, quotes, unicode): backticks doubled."""
    return "`" + name.replace("`", "``") + "`"


def column(name: str):
    """The column `name` of a DataFrame, whatever characters it holds (F.col would read a dot as a field)."""
    from pyspark.sql import functions as F

    return F.col(quoted(name))


# Delta's writer refuses these in column names unless the table maps its columns to physical names
DELTA_REFUSED_CHARACTERS = frozenset(" ,;{}()\n\t=")


def delta_options(names: list[str]) -> dict[str, str]:
    """Options of a Spark Delta write of these columns: column mapping ('name' mode: readers need Delta reader
    version 2) when a name holds a character Delta refuses otherwise, else none. It takes effect when the
    write creates the table."""
    if any(DELTA_REFUSED_CHARACTERS & set(n) for n in names):
        return {"delta.columnMapping.mode": "name"}
    return {}


def map_in_pandas(df, fn, schema):
    """df.mapInPandas(fn, schema) for any column names: PySpark's own looks each input column up by its bare
    name, which fails on a backtick, so the columns travel under positional names and get theirs back."""
    names = df.columns

    def named(frames):
        for part in frames:
            part.columns = names
            yield part

    positional = df.select(*[column(n).alias(f"_{i}") for i, n in enumerate(names)])
    return positional.mapInPandas(lambda frames: fn(named(frames)), schema)


def under_spark_submit() -> bool:
    """spark-submit starts the JVM itself (with --master and --packages) and hands Python a gateway."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def delta_package() -> str:
    """The Maven coordinates of the Delta jar matching the installed delta-spark."""
    from delta.pip_utils import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    builder = configure_spark_with_delta_pip(SparkSession.builder)
    return builder._options["spark.jars.packages"]


def get_spark(env: EnvConfig, app_name: str = "synthlake", extra_packages: list[str] | None = None,
              lineage_parent=None):
    """A Spark session (one already started in this process is returned as it is). `extra_packages`: Maven
    coordinates Spark fetches besides Delta's, e.g. a JDBC driver; under spark-submit they come from --packages.
    `lineage_parent`: the pipelines.lineage run that starts the session, the parent of Spark's own OpenLineage
    events where the environment turns the openlineage-spark listener on."""
    from delta.pip_utils import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    # Executors' Python must be this environment's, or workers fail importing pandas or synthlake.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    listener = lineage_conf(env, app_name, lineage_parent)
    # tables created by name go under the metastore's folder (pipelines.catalog), not ./spark-warehouse
    warehouse = {"spark.sql.warehouse.dir": str(Path(resolve(env.catalog.metastore_dir)) / "warehouse")}
    for key, value in {**DELTA_CONF, **warehouse, **env.spark.conf, **listener}.items():
        builder = builder.config(key, value)
    if not under_spark_submit():
        from pipelines.lineage import SPARK_PACKAGE

        packages = [*(extra_packages or []), *([SPARK_PACKAGE] if listener else [])]
        builder = builder.master(env.spark.master).config("spark.jars.ivy", resolve(env.ivy_dir))
        builder = configure_spark_with_delta_pip(builder, extra_packages=packages or None)
        with ivy_lock(resolve(env.ivy_dir)):  # the JVM's start resolves the packages into the cache
            spark = builder.getOrCreate()
    else:
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


@contextlib.contextmanager
def ivy_lock(ivy_dir: str):
    """Held while a JVM resolves its packages into the Ivy cache `ivy_dir`: two resolutions at once in one cache
    can fail (Ivy rewrites its cache's metadata files as it resolves)."""
    Path(ivy_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(ivy_dir) / ".resolve.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def lineage_conf(env: EnvConfig, app_name: str, parent=None) -> dict[str, str]:
    """The openlineage-spark listener's conf (pipelines.lineage.spark_conf), merged into the environment's
    listeners and driver options; {} when it is off, or under a spark-submit not given its package."""
    from pipelines.lineage import SPARK_PACKAGE, spark_conf

    conf = spark_conf(env, app_name, parent)
    if not conf:
        return {}
    if under_spark_submit() and not _submitted_with(SPARK_PACKAGE.split(":")[1]):
        print(f"[synthlake] lineage: openlineage.spark_listener is on, but spark-submit was not given --packages "
              f"{SPARK_PACKAGE}: no events from Spark itself", file=sys.stderr, flush=True)
        return {}
    # the listener reaches into a class loader of java.base when Spark loaded it from --packages
    conf["spark.driver.extraJavaOptions"] = "--add-opens=java.base/java.security=ALL-UNNAMED"
    for key, sep in (("spark.extraListeners", ","), ("spark.driver.extraJavaOptions", " ")):
        if env.spark.conf.get(key):
            conf[key] = f"{env.spark.conf[key]}{sep}{conf[key]}"
    return conf


def _submitted_with(artifact: str) -> bool:
    """Whether spark-submit put a jar of `artifact` on the driver's classpath (its --packages or --jars)."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # the gateway spark-submit started: its conf is the JVM's
    conf = SparkConf()
    return any(artifact in conf.get(key, "") for key in ("spark.jars", "spark.jars.packages"))
