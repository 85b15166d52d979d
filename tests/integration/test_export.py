"""`synthlake export`: a published run's rows to CSV, JSON Lines, Parquet and a real PostgreSQL.

No pipeline runs here: the module writes the published and staging tables with Spark as the publish stage
leaves them (the run's rows, the configured columns and types, partitioned by run_id): two published runs of
Adult (300 and 120 source rows), a run in staging only (as a failed gate leaves it) and a published run of a
dataset whose column names hold spaces, dots, quotes, commas and unicode (its table uses Delta column
mapping, which such names need). PostgreSQL is Debian's server (`apt-get install postgresql`), started by
the `postgres` fixture on a free loopback port with a throwaway data folder, a password and scram auth.
The tests call `jobs.cli.main` in this process (it reuses the module's Spark session, started with the
JDBC driver); the first PostgreSQL export and a bad `--format` run the installed `synthlake` command.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from project_fixture import VENV_BIN, free_port, make_project, project_env, spark_session

from jobs.cli import main
from pipelines import export
from pipelines.context import RunContext
from synthlake.column_types import storage_type

pytestmark = pytest.mark.slow
RUN, OTHER, STAGED, ODD_RUN = "exp-run-1", "exp-run-2", "exp-staged-only", "odd-run-1"
PG_USER = "synthlake"

ODD_CONFIG = """name: odd
source: {path: data/odd.csv, format: csv, options: {header: "true"}}
columns:
  - {name: "first name", kind: categorical}
  - {name: "a.b", kind: numeric, integer: true}
  - {name: 'say "hi"', kind: numeric}
  - {name: "ünïcødé ✓", kind: datetime}
  - {name: "semi;colon,comma", kind: categorical}
  - {name: "Mixed Case", kind: pii, pii: name}
output: {staging: odd_staging, published: odd}
"""
ODD_ROWS = [
    ("Ada", 1, 1.5, datetime(2020, 1, 1, 12, 0, 0, 123456, tzinfo=UTC), "x,y", "Ada Lovelace"),
    ('said "no", then\nleft', None, -2.25e10, None, "ünï ✓", "O'Brien"),
    (None, -7, None, datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), 'q"uote', None),
    ("NA", 2**40, 0.1, datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC), "null", "Zoë"),
]


# ---- the project, its lake and PostgreSQL -------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("export"))
    (root / "conf/datasets/odd.yaml").write_text(ODD_CONFIG)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHLAKE_HOME", str(root))
        mp.chdir(root)
        yield root


@pytest.fixture(scope="module")
def spark(project):
    session = spark_session("synthlake-export-tests")
    yield session
    session.stop()


def context(project, run_id: str = RUN, dataset: str = "adult") -> RunContext:
    return RunContext.open(str(project / f"conf/datasets/{dataset}.yaml"), run_id)


def write_partition(spark, ctx: RunContext, kind: str, rows) -> None:
    """The run's rows into its partition of a Delta output table, as the sample and publish stages write."""
    from pyspark.sql import functions as F

    (rows.withColumn("run_id", F.lit(ctx.run_id)).write.format("delta").mode("overwrite").partitionBy("run_id")
     .option("replaceWhere", ctx.partition_filter).save(ctx.table_path(kind)))


@pytest.fixture(scope="module")
def lake(project, spark):
    from pipelines.source import read_source, spark_schema

    adult = context(project)
    source = read_source(spark, adult.dataset, check=False).cache()
    write_partition(spark, adult, "published", source.limit(300))
    write_partition(spark, context(project, OTHER), "published", source.orderBy("fnlwgt").limit(120))
    write_partition(spark, context(project, STAGED), "staging", source.limit(50))
    odd = context(project, ODD_RUN, "odd")
    spark.conf.set("spark.databricks.delta.properties.defaults.columnMapping.mode", "name")
    try:
        write_partition(spark, odd, "published", spark.createDataFrame(ODD_ROWS, spark_schema(odd.dataset.columns)))
    finally:
        spark.conf.unset("spark.databricks.delta.properties.defaults.columnMapping.mode")
    source.unpersist()
    return project


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin folder (Debian: /usr/lib/postgresql/VERSION/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on 127.0.0.1:PORT with user `synthlake` (password auth), stopped afterwards."""
    bindir = postgres_bin()
    if bindir is None:
        message = "PostgreSQL's server is not installed (apt-get install postgresql; .ci/run installs it)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    as_postgres = []
    folder = Path(tempfile.mkdtemp(prefix="synthlake-pg-"))
    password = secrets.token_hex(12)
    (folder / "pwfile").write_text(password)
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        if subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        for path in (folder, folder / "pwfile"):
            shutil.chown(path, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port, data = free_port(), folder / "data"
    subprocess.run([*as_postgres, bindir / "initdb", "-D", data, "-U", PG_USER, f"--pwfile={folder / 'pwfile'}",
                    "-A", "scram-sha-256", "-E", "UTF8", "--no-locale"], check=True, capture_output=True)
    pg_ctl = [*as_postgres, bindir / "pg_ctl", "-D", data, "-l", folder / "server.log"]
    subprocess.run([*pg_ctl, "-w", "-t", "60", "-o", f"-p {port} -h 127.0.0.1 -k {folder}", "start"],
                   check=True, capture_output=True)
    try:
        yield {"url": f"jdbc:postgresql://127.0.0.1:{port}/postgres", "port": port, "password": password}
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def connect(postgres):
    import psycopg

    return psycopg.connect(host="127.0.0.1", port=postgres["port"], user=PG_USER, password=postgres["password"],
                           dbname="postgres", autocommit=True)


# ---- helpers ----------------------------------------------------------------------------------------
def records(frame: pd.DataFrame, ctx: RunContext) -> list[tuple]:
    """The rows as comparable tuples, sorted: numbers as floats, datetimes as UTC timestamps, nulls as None."""
    out = {}
    for c in ctx.dataset.columns:
        values, kind = frame[c.name], storage_type(c)
        if kind in ("bigint", "double"):
            values = pd.to_numeric(values).astype(float)
        elif kind == "timestamp":
            values = pd.to_datetime(values, utc=True, format="ISO8601")
        out[c.name] = values.astype(object).where(values.notna(), None)
    return sorted(pd.DataFrame(out).itertuples(index=False, name=None), key=repr)


def published(spark, ctx: RunContext) -> list[tuple]:
    return records(ctx.read_partition(spark, "published").drop("run_id").toPandas(), ctx)


def read_export(folder: Path, fmt: str, ctx: RunContext) -> pd.DataFrame:
    parts = sorted(folder.glob("part-*"))
    if fmt == "csv":
        return pd.concat(pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[""]) for p in parts)
    if fmt == "json":
        return pd.concat(pd.read_json(p, lines=True, dtype=False) for p in parts)
    return pd.read_parquet(folder)


def cli(*args: str) -> int:
    return main(["export", *args])


def table_rows(postgres, table: str, ctx: RunContext) -> tuple[list[str], list[tuple]]:
    with connect(postgres) as conn:
        cur = conn.execute(f"SELECT * FROM {table}")
        names = [d.name for d in cur.description]
        return names, records(pd.DataFrame(cur.fetchall(), columns=names), ctx)


def column_types(postgres, schema: str, table: str) -> list[tuple[str, str]]:
    with connect(postgres) as conn:
        return conn.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
                            "AND table_name = %s ORDER BY ordinal_position", (schema, table)).fetchall()


def tables(postgres) -> list[str]:
    with connect(postgres) as conn:
        return sorted(f"{s}.{t}" for s, t in conn.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"))


# ---- files --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_file_export_holds_the_published_rows(lake, spark, fmt):
    ctx = context(lake)
    target = lake / "exports" / fmt
    assert cli("conf/datasets/adult.yaml", "--run-id", RUN, "--format", fmt, "--to", f"exports/{fmt}") == 0
    parts = sorted(p.name for p in target.glob("part-*"))
    assert len(parts) == 1 and parts[0].endswith(f".{fmt}")  # one file by default
    meta = json.loads((target / export.MARKER).read_text())
    assert meta["run_id"] == RUN and meta["rows"] == 300 and meta["files"] == parts
    assert [c["name"] for c in meta["columns"]] == ctx.dataset.metadata.names
    frame = read_export(target, fmt, ctx)
    assert list(frame.columns) == ctx.dataset.metadata.names  # the configured columns in order, no run_id
    assert records(frame, ctx) == published(spark, ctx)
    if fmt == "csv":
        assert (target / parts[0]).read_text().splitlines()[0] == ",".join(ctx.dataset.metadata.names)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(target / parts[0])
        assert [str(schema.field(n).type) for n in ("age", "sex")] == ["int64", "string"]


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_odd_column_names_round_trip(lake, spark, fmt):
    ctx = context(lake, ODD_RUN, "odd")
    target = lake / "exports" / f"odd {fmt}"
    assert cli("conf/datasets/odd.yaml", "--run-id", ODD_RUN, "--format", fmt, "--to", str(target)) == 0
    frame = read_export(target, fmt, ctx)
    assert list(frame.columns) == ctx.dataset.metadata.names
    assert records(frame, ctx) == published(spark, ctx) == records(
        pd.DataFrame(ODD_ROWS, columns=ctx.dataset.metadata.names), ctx)


def test_reexport_replaces_the_folder(lake, spark):
    target = lake / "exports" / "again"
    for run_id in (RUN, OTHER):
        assert cli("conf/datasets/adult.yaml", "--run-id", run_id, "--format", "csv", "--to", str(target)) == 0
    frame = read_export(target, "csv", context(lake, OTHER))
    assert records(frame, context(lake, OTHER)) == published(spark, context(lake, OTHER))  # 120 rows, not 420
    assert len(frame) == 120 and json.loads((target / export.MARKER).read_text())["run_id"] == OTHER
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(".again")) == []  # no temporaries
    assert cli("conf/datasets/adult.yaml", "--run-id", RUN, "--format", "json", "--files", "3", "--to",
               str(target)) == 0
    assert not list(target.glob("*.csv")) and 1 <= len(list(target.glob("part-*.json"))) <= 3


def test_a_failed_export_leaves_the_previous_one(lake, monkeypatch):
    target = lake / "exports" / "kept"
    assert cli("conf/datasets/adult.yaml", "--run-id", OTHER, "--format", "parquet", "--to", str(target)) == 0
    before = sorted((p.name, p.read_bytes()) for p in target.iterdir())

    def crash(new, target):
        raise RuntimeError("killed before the swap")

    monkeypatch.setattr(export, "_swap", crash)
    with pytest.raises(RuntimeError, match="killed"):
        cli("conf/datasets/adult.yaml", "--run-id", RUN, "--format", "parquet", "--to", str(target))
    assert sorted((p.name, p.read_bytes()) for p in target.iterdir()) == before
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".kept")] == []


def test_a_folder_that_is_not_an_export_is_not_replaced(lake, capsys):
    target = lake / "exports" / "mine"
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("keep me")
    assert cli("conf/datasets/adult.yaml", "--run-id", RUN, "--format", "csv", "--to", str(target)) == 2
    assert "not an export" in capsys.readouterr().err
    assert [p.name for p in target.iterdir()] == ["notes.txt"]


# ---- refusals -----------------------------------------------------------------------------------------
def synthlake(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "synthlake"), *args], cwd=root, env=project_env(root, **env),
                          capture_output=True, text=True, timeout=300)


def test_a_run_in_staging_only_is_refused_with_one_line(lake, capsys):
    assert cli("conf/datasets/adult.yaml", "--run-id", STAGED, "--format", "csv", "--to", "exports/staged") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "staging only" in err[0] and STAGED in err[0]
    assert not (lake / "exports" / "staged").exists()


def test_an_unknown_run_is_refused(lake, capsys):
    assert cli("conf/datasets/adult.yaml", "--run-id", "no-such-run", "--format", "json", "--to", "exports/x") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-run" in err[0] and "no rows in the published table" in err[0]
    never = (lake / "conf/datasets/adult.yaml").read_text().replace("name: adult", "name: never")
    (lake / "conf/datasets/never.yaml").write_text(never.replace("published: adult", "published: never"))
    assert cli("conf/datasets/never.yaml", "--run-id", RUN, "--format", "json", "--to", "exports/x") == 3
    assert "there is no published table" in capsys.readouterr().err
    assert not (lake / "exports" / "x").exists()


def test_bad_arguments_exit_2(lake, capsys):
    out = synthlake(lake, "export", "conf/datasets/adult.yaml", "--run-id", RUN, "--format", "xml", "--to", "x")
    assert out.returncode == 2 and "--format" in out.stderr and "invalid choice" in out.stderr
    cases = {("--format", "jdbc", "--to", "postgresql://h/db"): "not a PostgreSQL JDBC URL",
             ("--format", "jdbc", "--to", "jdbc:postgresql://h/db?user=u&password=p"): "SYNTHLAKE_JDBC_PASSWORD",
             ("--format", "jdbc", "--to", "jdbc:postgresql://h/db", "--table", "a.b.c"): "--table",
             ("--format", "csv", "--to", "x", "--table", "t"): "jdbc only",
             ("--format", "csv", "--to", "s3a://bucket/x"): "local folder"}
    for args, message in cases.items():
        assert cli("conf/datasets/adult.yaml", "--run-id", RUN, *args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)


# ---- PostgreSQL ---------------------------------------------------------------------------------------
def test_jdbc_export_creates_the_table_from_the_config_types(lake, spark, postgres):
    ctx = context(lake)
    out = synthlake(lake, "export", "conf/datasets/adult.yaml", "--run-id", RUN, "--format", "jdbc",
                    "--to", postgres["url"], "--user", PG_USER, SYNTHLAKE_JDBC_PASSWORD=postgres["password"])
    assert out.returncode == 0, out.stderr
    assert "300 rows" in out.stdout and postgres["password"] not in out.stdout + out.stderr
    assert column_types(postgres, "public", "adult") == [
        (c.name, export.PG_TYPES[storage_type(c)]) for c in ctx.dataset.columns]
    assert [t for t in column_types(postgres, "public", "adult") if t[0] == "age"] == [("age", "bigint")]
    names, rows = table_rows(postgres, "adult", ctx)
    assert names == ctx.dataset.metadata.names and rows == published(spark, ctx)
    with connect(postgres) as conn:
        comment = conn.execute("SELECT obj_description('public.adult'::regclass)").fetchone()[0]
    assert f"run {RUN}" in comment and "300 rows" in comment
    assert tables(postgres) == ["public.adult"]  # no staging table left


def test_jdbc_reexport_replaces_the_table(lake, spark, postgres, monkeypatch):
    monkeypatch.setenv(export.PASSWORD_ENV, postgres["password"])
    args = ["--format", "jdbc", "--to", postgres["url"], "--user", PG_USER, "--table", "replaced"]
    for run_id in (RUN, OTHER, OTHER):
        assert cli("conf/datasets/adult.yaml", "--run-id", run_id, *args) == 0
    ctx = context(lake, OTHER)
    names, rows = table_rows(postgres, "replaced", ctx)
    assert len(rows) == 120 and rows == published(spark, ctx)  # the last export's rows, not appended
    assert "public.replaced" in tables(postgres) and not [t for t in tables(postgres) if "synthlake" in t]


def test_jdbc_failure_midway_leaves_the_previous_table(lake, spark, postgres, monkeypatch):
    from pyspark.sql import DataFrameWriter

    monkeypatch.setenv(export.PASSWORD_ENV, postgres["password"])
    args = ["--format", "jdbc", "--to", postgres["url"], "--user", PG_USER, "--table", "kept"]
    assert cli("conf/datasets/adult.yaml", "--run-id", OTHER, *args) == 0

    def broken(self, *a, **k):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(DataFrameWriter, "save", broken)
    with pytest.raises(RuntimeError, match="went away"):
        cli("conf/datasets/adult.yaml", "--run-id", RUN, *args)
    _, rows = table_rows(postgres, "kept", context(lake, OTHER))
    assert rows == published(spark, context(lake, OTHER))
    assert not [t for t in tables(postgres) if "synthlake" in t]  # the staging table was dropped


def test_jdbc_odd_names_and_every_type(lake, spark, postgres, monkeypatch):
    ctx = context(lake, ODD_RUN, "odd")
    monkeypatch.setenv(export.PASSWORD_ENV, postgres["password"])
    with connect(postgres) as conn:
        conn.execute('CREATE SCHEMA IF NOT EXISTS "Exports"')
    assert cli("conf/datasets/odd.yaml", "--run-id", ODD_RUN, "--format", "jdbc", "--to", postgres["url"],
               "--user", PG_USER, "--table", "Exports.odd rows") == 0
    assert column_types(postgres, "Exports", "odd rows") == [
        ("first name", "text"), ("a.b", "bigint"), ('say "hi"', "double precision"),
        ("ünïcødé ✓", "timestamp with time zone"), ("semi;colon,comma", "text"), ("Mixed Case", "text")]
    names, rows = table_rows(postgres, '"Exports"."odd rows"', ctx)
    assert names == ctx.dataset.metadata.names and rows == published(spark, ctx)


def test_jdbc_errors_are_one_line(lake, postgres, monkeypatch, capsys):
    monkeypatch.setenv(export.PASSWORD_ENV, postgres["password"])
    closed = f"jdbc:postgresql://127.0.0.1:{free_port()}/postgres"
    assert cli("conf/datasets/adult.yaml", "--run-id", RUN, "--format", "jdbc", "--to", closed, "--user",
               PG_USER) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot connect to {closed}") and "refused" in err[0]
    monkeypatch.setenv(export.PASSWORD_ENV, "wrong")
    assert cli("conf/datasets/adult.yaml", "--run-id", RUN, "--format", "jdbc", "--to", postgres["url"], "--user",
               PG_USER) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "password authentication failed" in err[0]


def test_a_view_on_the_table_stops_the_replace_and_keeps_the_table(lake, spark, postgres, monkeypatch, capsys):
    monkeypatch.setenv(export.PASSWORD_ENV, postgres["password"])
    args = ["--format", "jdbc", "--to", postgres["url"], "--user", PG_USER, "--table", "viewed"]
    assert cli("conf/datasets/adult.yaml", "--run-id", OTHER, *args) == 0
    with connect(postgres) as conn:
        conn.execute("CREATE VIEW viewed_ages AS SELECT age FROM viewed")
    capsys.readouterr()
    assert cli("conf/datasets/adult.yaml", "--run-id", RUN, *args) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "viewed_ages" in err[0]  # PostgreSQL names the view that depends on the table
    _, rows = table_rows(postgres, "viewed", context(lake, OTHER))
    assert rows == published(spark, context(lake, OTHER))
    assert not [t for t in tables(postgres) if "synthlake" in t]
