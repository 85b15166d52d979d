"""export: one published run's rows out of the lake, as CSV, JSON Lines or Parquet files or a PostgreSQL table.

Only the published table is read (the run's partition, at one table version): a run that is not there, e.g.
one that failed its gate and exists only in staging, or an unknown run id, is refused (StageError). The
export holds the dataset config's columns, in its order and with its types (synthlake.column_types
.storage_type), without `run_id`: one export is one run, and the run id is recorded beside the rows instead
(`_synthlake_export.json` in a folder, the table's comment in PostgreSQL).

A re-export replaces the previous one, and a failure midway leaves the previous one as it was:

- files (csv, json, parquet): TARGET is a folder. Spark writes into a hidden sibling `.NAME.export-XXXXXXXX`,
  which then swaps names with TARGET in one rename (renameat2 RENAME_EXCHANGE on Linux; elsewhere two
  renames) before the old export is removed. TARGET is replaced only when it is missing, empty or a
  previous export (it holds `_synthlake_export.json`), so a mistyped `--to` cannot wipe a folder.
- jdbc (PostgreSQL): the table is created from the config's types (`PG_TYPES`); Spark writes the rows into a
  new staging table, then one transaction names its columns, drops the old table and renames the staging
  table over it (PostgreSQL's DDL is transactional): readers see the old rows or the new ones, never a half
  table. Indexes, grants and views on the old table go with it.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines.config import ConfigError, DatasetConfig
from pipelines.context import RunContext, StageError
from pipelines.spark import column
from synthlake.column_types import storage_type

FILE_FORMATS = ("csv", "json", "parquet")
FORMATS = (*FILE_FORMATS, "jdbc")
POSTGRES_DRIVER = "org.postgresql:postgresql:42.7.14"  # Maven coordinates, added to Spark only for jdbc
PASSWORD_ENV = "SYNTHLAKE_JDBC_PASSWORD"
MARKER = "_synthlake_export.json"  # in every exported folder: what it holds; a re-export replaces only these
# storage type -> PostgreSQL column type; timestamps are instants (Spark's session time zone is UTC)
PG_TYPES = {"bigint": "bigint", "double": "double precision", "timestamp": "timestamp with time zone",
            "string": "text"}
PG_MAX_NAME = 63  # bytes: PostgreSQL silently truncates longer identifiers
TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"  # CSV and JSON: ISO 8601, microseconds, UTC as Z


@dataclass(frozen=True)
class ExportSpec:
    format: str
    target: str  # a folder (csv, json, parquet) or a JDBC URL (jdbc)
    files: int = 1  # at most this many files (csv, json, parquet)
    table: str | None = None  # jdbc: [SCHEMA.]TABLE, default the dataset's name
    user: str | None = None  # jdbc; the password comes from $SYNTHLAKE_JDBC_PASSWORD

    def checked(self, dataset: DatasetConfig) -> ExportSpec:
        """The spec with its defaults filled in, or ConfigError naming the option (before Spark starts)."""
        if self.format not in FORMATS:
            raise ConfigError(f"--format: {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.format == "jdbc":
            _check_jdbc_url(self.target)
            table = self.table or dataset.name
            _split_table(table)
            too_long = [c.name for c in dataset.columns if len(c.name.encode()) > PG_MAX_NAME]
            if too_long:
                raise ConfigError(f"columns {too_long} have names over {PG_MAX_NAME} bytes, PostgreSQL's limit")
            return ExportSpec(self.format, self.target, self.files, table, self.user)
        if self.table or self.user:
            raise ConfigError("--table and --user apply to --format jdbc only")
        if self.files < 1:
            raise ConfigError(f"--files: must be at least 1, got {self.files}")
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", self.target):
            raise ConfigError(f"--to: {self.target!r} is not a local folder (files are exported to a local folder)")
        target = Path(self.target).absolute()
        _check_replaceable(target)
        return ExportSpec(self.format, str(target), self.files)


def spark_packages(fmt: str) -> list[str]:
    """The Maven packages Spark needs for this format, beyond Delta's."""
    return [POSTGRES_DRIVER] if fmt == "jdbc" else []


def run(ctx: RunContext, spark, spec: ExportSpec) -> dict:
    """Export the run's published rows as `spec` says; returns what was written."""
    spec = spec.checked(ctx.dataset)
    df, version, rows = published_rows(ctx, spark)
    meta = {"dataset": ctx.dataset.name, "run_id": ctx.run_id, "format": spec.format, "rows": rows,
            "columns": [{"name": c.name, "type": storage_type(c)} for c in ctx.dataset.columns],
            "published_table": ctx.table_path("published"), "published_version": version,
            "exported_at": datetime.now(UTC).isoformat()}
    if spec.format == "jdbc":
        where = _write_jdbc(spark, df, spec, ctx, meta)
    else:
        where = _write_files(spark, df, spec, meta)
    return {**meta, **where}


def published_rows(ctx: RunContext, spark):
    """(the run's published rows with the configured columns and types, the table version read, their count)."""
    from delta.tables import DeltaTable

    path = ctx.table_path("published")
    if not DeltaTable.isDeltaTable(spark, path):
        raise StageError(f"run {ctx.run_id!r} of dataset {ctx.dataset.name!r} is not published: there is no "
                         f"published table at {path} yet")
    version = DeltaTable.forPath(spark, path).history(1).first()["version"]
    part = ctx.read_partition(spark, "published", version=version)
    missing = [c.name for c in ctx.dataset.columns if c.name not in part.columns]
    if missing:
        raise StageError(f"the published table {path} lacks configured columns {missing}")
    df = part.select([column(c.name).cast(storage_type(c)).alias(c.name) for c in ctx.dataset.columns])
    rows = df.count()
    if rows == 0:
        raise StageError(_not_published(ctx, spark, path))
    return df, version, rows


def _not_published(ctx: RunContext, spark, path: str) -> str:
    from delta.tables import DeltaTable

    staging = ctx.table_path("staging")
    staged = DeltaTable.isDeltaTable(spark, staging) and ctx.read_partition(spark, "staging").limit(1).count() > 0
    if staged:
        return (f"run {ctx.run_id!r} of dataset {ctx.dataset.name!r} is in staging only, not published (it failed "
                f"its gate or publish has not run); export reads the published table only")
    return f"run {ctx.run_id!r} of dataset {ctx.dataset.name!r} has no rows in the published table {path}"


# ---- files ------------------------------------------------------------------------------------------
def _check_replaceable(target: Path) -> None:
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise ConfigError(f"--to: {target} exists and is not a folder; not replacing it")
    if any(target.iterdir()) and not (target / MARKER).is_file():
        raise ConfigError(f"--to: {target} is a folder that holds no {MARKER} (not an export); not replacing "
                          f"it: remove it or export elsewhere")


def _write_files(spark, df, spec: ExportSpec, meta: dict) -> dict:
    target = Path(spec.target)
    target.parent.mkdir(parents=True, exist_ok=True)
    new = target.parent / f".{target.name}.export-{secrets.token_hex(4)}"
    writer = df.coalesce(spec.files).write.mode("errorifexists")
    previous_ts_type = spark.conf.get("spark.sql.parquet.outputTimestampType")
    try:
        uri = f"file://{new}"
        if spec.format == "csv":
            # RFC 4180: a quote inside a quoted value is doubled (Spark's default escapes it with a backslash)
            writer.options(header="true", escape='"', timestampFormat=TIMESTAMP_FORMAT).csv(uri)
        elif spec.format == "json":
            writer.options(ignoreNullFields="false", timestampFormat=TIMESTAMP_FORMAT).json(uri)
        else:
            spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")  # not the legacy INT96
            writer.parquet(uri)
        for crc in new.glob(".*.crc"):
            crc.unlink()
        files = sorted(p.name for p in new.iterdir() if p.name.startswith("part-"))
        (new / MARKER).write_text(json.dumps({**meta, "files": files}, indent=2, ensure_ascii=False) + "\n",
                                  encoding="utf-8")
        _check_replaceable(target)  # again: it may have changed while Spark wrote
        _swap(new, target)
    finally:
        spark.conf.set("spark.sql.parquet.outputTimestampType", previous_ts_type)
        if new.exists():  # the rows that did not make it, or the previous export after the swap
            shutil.rmtree(new)
    return {"target": str(target), "files": files}


def _swap(new: Path, target: Path) -> None:
    """`new` becomes `target`; the previous `target`, if any, is left at `new` (for the caller to remove)."""
    if not target.exists():
        os.rename(new, target)
    elif not _exchange(new, target):
        old = new.with_name(new.name + ".old")
        os.rename(target, old)
        os.rename(new, target)
        os.rename(old, new)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths' names atomically (Linux renameat2 with RENAME_EXCHANGE); False where unsupported."""
    if sys.platform != "linux":
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a file system without it
        return False
    raise OSError(err, os.strerror(err), str(b))


# ---- PostgreSQL -------------------------------------------------------------------------------------
def _check_jdbc_url(url: str) -> None:
    if not re.match(r"^jdbc:postgresql://[^/?]+/[^?]+", url):
        raise ConfigError(f"--to: {url!r} is not a PostgreSQL JDBC URL (jdbc:postgresql://HOST:PORT/DATABASE)")
    if re.search(r"[?&;]password=", url, re.IGNORECASE):
        raise ConfigError(f"--to: the URL holds a password; put it in ${PASSWORD_ENV} instead")


def _split_table(table: str) -> tuple[str | None, str]:
    """[SCHEMA.]TABLE -> (schema or None, table); each is used as written (quoted)."""
    schema, dot, name = table.partition(".")
    parts = [schema, name] if dot else [schema]
    if not all(parts) or "." in name or any(len(p.encode()) > PG_MAX_NAME or "\0" in p for p in parts):
        raise ConfigError(f"--table: {table!r} is not [SCHEMA.]TABLE (each 1-{PG_MAX_NAME} bytes)")
    return (schema, name) if dot else (None, schema)


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier, quoted: any characters, case kept."""
    return '"' + name.replace('"', '""') + '"'


def _qualified(schema: str | None, name: str) -> str:
    return quote_ident(name) if schema is None else f"{quote_ident(schema)}.{quote_ident(name)}"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_table_sql(qualified_name: str, dataset: DatasetConfig, names: list[str] | None = None) -> str:
    """CREATE TABLE with the dataset's columns (or `names` in their place), typed from the config."""
    names = names or [c.name for c in dataset.columns]
    columns = ", ".join(f"{quote_ident(n)} {PG_TYPES[storage_type(c)]}" for n, c in zip(names, dataset.columns,
                                                                                           strict=True))
    return f"CREATE TABLE {qualified_name} ({columns})"


def _write_jdbc(spark, df, spec: ExportSpec, ctx: RunContext, meta: dict) -> dict:
    schema, table = _split_table(spec.table)
    staging = f"{table[:30]}_synthlake_{secrets.token_hex(4)}"
    # Spark writes positional names c0, c1, ...; the transaction gives the columns their names (any characters)
    positional = [f"c{i}" for i in range(len(ctx.dataset.columns))]
    password = os.environ.get(PASSWORD_ENV)
    with _Connection(spark, spec.target, spec.user, password) as conn:
        conn.execute(create_table_sql(_qualified(schema, staging), ctx.dataset, positional))
        try:
            options = {"url": spec.target, "dbtable": _qualified(schema, staging), "driver": "org.postgresql.Driver"}
            options.update({k: v for k, v in (("user", spec.user), ("password", password)) if v})
            df.toDF(*positional).write.format("jdbc").options(**options).mode("append").save()
            comment = (f"synthlake export of dataset {ctx.dataset.name}, run {ctx.run_id} (published table "
                       f"{meta['published_table']} version {meta['published_version']}), {meta['rows']} rows, "
                       f"at {meta['exported_at']}")
            conn.execute(
                *(f"ALTER TABLE {_qualified(schema, staging)} RENAME COLUMN {p} TO {quote_ident(c.name)}"
                  for p, c in zip(positional, ctx.dataset.columns, strict=True)),
                f"DROP TABLE IF EXISTS {_qualified(schema, table)}",
                f"ALTER TABLE {_qualified(schema, staging)} RENAME TO {quote_ident(table)}",
                f"COMMENT ON TABLE {_qualified(schema, table)} IS {_literal(comment)}",
                transaction=True)
        except BaseException:
            conn.execute_quietly(f"DROP TABLE IF EXISTS {_qualified(schema, staging)}")
            raise
    return {"target": spec.target, "table": _qualified(schema, table)}


class _Connection:
    """A JDBC connection made in Spark's JVM with the driver Spark writes with (one URL, one set of options);
    SQL errors become StageError with the driver's message."""

    def __init__(self, spark, url: str, user: str | None, password: str | None):
        from py4j.protocol import Py4JJavaError

        self.url = url
        jvm = spark._jvm
        props = jvm.java.util.Properties()
        for key, value in (("user", user), ("password", password)):
            if value:
                props.setProperty(key, value)
        try:
            driver = jvm.org.postgresql.Driver()
        except TypeError:  # py4j found no such class
            raise StageError(f"the PostgreSQL JDBC driver is not on Spark's class path (spark-submit: --packages "
                             f"{POSTGRES_DRIVER})") from None
        try:
            self.conn = driver.connect(url, props)
        except Py4JJavaError as exc:
            raise StageError(f"cannot connect to {url}: {_java_message(exc)}") from None
        if self.conn is None:
            raise StageError(f"the PostgreSQL JDBC driver does not accept the URL {url}")

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.execute_quietly()
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass

    def execute(self, *statements: str, transaction: bool = False) -> None:
        """Each statement in autocommit mode, or all of them in one transaction (rolled back on an error)."""
        from py4j.protocol import Py4JJavaError

        self.conn.setAutoCommit(not transaction)
        stmt = self.conn.createStatement()
        try:
            for sql in statements:
                stmt.execute(sql)
            if transaction:
                self.conn.commit()
        except Py4JJavaError as exc:
            if transaction:
                self.execute_quietly()
            raise StageError(f"PostgreSQL at {self.url}: {_java_message(exc)}") from None
        finally:
            stmt.close()

    def execute_quietly(self, *statements: str) -> None:
        """Roll back what is open, then run `statements` (clean-up), ignoring their errors."""
        try:
            if not self.conn.getAutoCommit():
                self.conn.rollback()
                self.conn.setAutoCommit(True)
            stmt = self.conn.createStatement()
            for sql in statements:
                stmt.execute(sql)
            stmt.close()
        except Exception:  # noqa: BLE001 - clean-up after an error already being raised
            pass


def _java_message(exc) -> str:
    """The Java exception's message on one line (with its cause's, when that says more)."""
    java = exc.java_exception
    message = str(java.getMessage() or java.toString())
    cause = java.getCause()
    if cause is not None and cause.getMessage() and str(cause.getMessage()) not in message:
        message += f" ({cause.getClass().getSimpleName()}: {cause.getMessage()})"
    return " ".join(message.split())
