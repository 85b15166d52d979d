"""`synthlake sql`: Spark's Thrift JDBC/ODBC server (HiveServer2's protocol) over the published tables, on loopback.

BI tools connect to it as to Hive (`jdbc:hive2://127.0.0.1:10000/synthetic`); every query runs in this Spark
session. It owns the environment's embedded metastore (pipelines.catalog): it registers the published and audit
tables when it starts and every --sync-interval seconds after, so a dataset published later appears by itself.
No authentication: it listens on a loopback address only.
"""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path

from pipelines import catalog
from pipelines.config import ConfigError, DatasetConfig, EnvConfig, is_loopback, resolve


def check_settings(host: str, port: int, sync_s: float) -> None:
    if not is_loopback(host):
        raise ConfigError(f"--host {host}: the SQL server has no authentication and listens on loopback only "
                          "(on a cluster, connect BI tools to its own Thrift server)")
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: must be 1..65535")
    if sync_s <= 0:
        raise ConfigError(f"--sync-interval {sync_s}: must be more than 0")
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror})") from None


def hive_env(env: EnvConfig, host: str, port: int) -> EnvConfig:
    """The environment with Spark's catalog in the embedded metastore and the Thrift server's address."""
    home = Path(resolve(env.catalog.metastore_dir))
    home.mkdir(parents=True, exist_ok=True)
    conf = {
        "spark.sql.catalogImplementation": "hive",
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={home / 'metastore_db'};create=true",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={home}",  # derby.log there, not in the cwd
        "spark.hadoop.hive.server2.thrift.bind.host": host,
        "spark.hadoop.hive.server2.thrift.port": str(port),
        "spark.hadoop.hive.server2.logging.operation.log.location": str(home / "operation_logs"),
    }
    return env.model_copy(update={"spark": env.spark.model_copy(update={"conf": {**env.spark.conf, **conf}})})


def sync(spark, env: EnvConfig, datasets: list[DatasetConfig]) -> list[str]:
    return [name for dataset in datasets for name in catalog.register(spark, env, dataset)]


def serve(env: EnvConfig, host: str, port: int, datasets: list[DatasetConfig], sync_s: float) -> None:
    from pipelines.spark import get_spark

    check_settings(host, port, sync_s)
    env = hive_env(env, host, port)
    spark = get_spark(env, app_name="synthlake-sql")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = None
    try:
        tables = sync(spark, env, datasets)
        server = spark._jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.startWithSparkSession(
            spark._jsparkSession, False)
        print(f"[synthlake] sql: jdbc:hive2://{host}:{port}/{env.catalog.database} serving "
              f"{', '.join(tables) or 'no published table yet'}", flush=True)
        while not stop.wait(sync_s):
            new = sorted(set(sync(spark, env, datasets)) - set(tables))
            if new:
                print(f"[synthlake] sql: registered {', '.join(new)}", flush=True)
                tables += new
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop(spark, server)


def _stop(spark, server) -> None:
    """The Thrift server first (its listener would stop it while the context stops), then Spark. A JVM that
    exits on the way (Hive's serving thread may call System.exit when its socket closes) has stopped all the
    same: said in a line, not raised."""
    from py4j.protocol import Py4JError

    try:
        if server is not None:
            server.stop()
        spark.stop()
    except Py4JError as exc:
        print(f"[synthlake] sql: the JVM exited while stopping ({type(exc).__name__})", flush=True)
