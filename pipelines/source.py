"""Reading a dataset's source table with Spark, typed by its config, and fingerprinting it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.config import ConfigError, DatasetConfig, resolve
from pipelines.context import StageError
from pipelines.source_files import data_files
from pipelines.spark import column, quoted
from synthlake.column_types import storage_type
from synthlake.metadata import ColumnSpec
from synthlake.related_frames import HOLDOUT

if TYPE_CHECKING:
    from pipelines.records import ProfileRecord


def spark_schema(columns: list[ColumnSpec]):
    """The Spark schema of a table with these columns, each typed by synthlake.column_types.storage_type."""
    from pyspark.sql import types as T

    types = {"bigint": T.LongType(), "double": T.DoubleType(), "timestamp": T.TimestampType(),
             "string": T.StringType()}
    return T.StructType([T.StructField(c.name, types[storage_type(c)]) for c in columns])


def read_source(spark, dataset: DatasetConfig, check: bool = True):
    """The source as a DataFrame with exactly the configured columns, in order, with their types.

    CSV columns arrive as text and are cast here; a value that does not cast is an error naming the
    column and the value, not a silent null, and so is a CSV header naming a column twice (`check`: a Spark job
    each; the stages after profile skip them, read_profiled). NaN and
    infinities in a numeric column are read as missing values: no generator learns them.
    """
    src = dataset.source
    what = f"dataset '{dataset.name}': source {src.path}"
    names = [c.name for c in dataset.columns]
    df = load_table(spark, src.format, resolve(src.path), src.options, what, names, check_header=check)
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise StageError(f"{what} lacks configured columns {missing}; it has {df.columns}")
    for c in dataset.columns:
        if not is_flat(df.schema[c.name].dataType):
            raise ConfigError(f"{what}: column '{c.name}' is {df.schema[c.name].dataType.simpleString()}; "
                              f"synthlake learns flat columns: leave it out of `columns` or flatten it upstream")
    typed = df.select([_finite(column(c.name).try_cast(storage_type(c)), storage_type(c)).alias(c.name)
                       for c in dataset.columns])
    if check:
        _check_casts(df, typed, dataset)
    return typed


def _finite(col, storage: str):
    from pyspark.sql import functions as F

    if storage != "double":
        return col
    return F.when(F.isnan(col) | F.abs(col).eqNullSafe(float("inf")), None).otherwise(col)


def is_flat(data_type) -> bool:
    """A type synthlake learns: not an array, struct, map or variant."""
    from pyspark.sql import types as T

    return not isinstance(data_type, (T.ArrayType, T.StructType, T.MapType, T.VariantType))


def load_table(spark, fmt: str, path: str, options: dict, what: str, names: list[str] | None = None,
               check_header: bool = True):
    """A source table as Spark reads it, for every reader of one (the stages, seed tables, infer-config). A
    missing or unreadable file, a table Spark refuses, or a CSV header naming a column twice is a StageError
    naming it (`check_header`: a Spark job). Parquet's nanosecond timestamps come back as timestamps
    (microseconds). `names`: a headerless CSV's columns."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import AnalysisException, PySparkException

    if "://" not in path and not Path(path).exists():
        raise StageError(f"{what}: {path} does not exist")
    header = fmt == "csv" and str(options.get("header", "false")).lower() == "true"
    reader = spark.read.format(fmt).options(**options)
    if fmt == "csv" and not header and names:
        reader = reader.schema(", ".join(f"{quoted(n)} string" for n in names))
    try:
        df = reader.load(path)
        if header and check_header:
            _check_header(spark, path, options, what)
    except (AnalysisException, PySparkException, Py4JJavaError) as exc:
        raise StageError(f"{what}: Spark cannot read {path}: {_first_line(exc)}") from exc
    return _nanos_as_timestamps(df, path) if fmt == "parquet" else df


def _check_header(spark, path: str, options: dict, what: str) -> None:
    """Spark renames a CSV header's repeated names (a, a -> a0, a1), case-insensitively: refused instead."""
    first = spark.read.options(**{**options, "header": "false", "inferSchema": "false"}).csv(path).first()
    seen: dict[str, str] = {}
    for name in first or []:
        key = (name or "").lower()
        if key in seen:
            also = "" if seen[key] == name else f" (as {seen[key]!r} too: Spark ignores case)"
            raise StageError(f"{what}: the header names column {name!r} twice{also}; rename one of them")
        seen[key] = name


def _nanos_as_timestamps(df, path: str):
    """Parquet's TIMESTAMP(NANOS) columns, which Spark reads as numbers (pipelines.spark sets
    spark.sql.legacy.parquet.nanosAsLong), as Spark timestamps; the footer of a local file tells which."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    local = Path(path)
    files = data_files(local) if "://" not in path else []
    if not files:
        return df
    schema = pq.read_schema(files[0])
    nanos = {f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"}
    if not nanos:
        return df
    # floored in integers (a double holds nanoseconds since 1970 only to about 256 ns; `div` rounds toward zero)
    micros = {n: F.expr(f"({quoted(n)} - pmod({quoted(n)}, 1000)) div 1000") for n in nanos}
    return df.select([F.timestamp_micros(micros[n]).alias(n) if n in nanos else column(n) for n in df.columns])


def _first_line(exc: Exception) -> str:
    """The JVM's own message (py4j's first line only names the call that failed)."""
    lines = [line.lstrip(": ") for line in str(exc).strip().splitlines()
             if line.strip() and not line.startswith("An error occurred while calling")]
    return lines[0][:300] if lines else type(exc).__name__


def _check_casts(raw, typed, dataset: DatasetConfig, what: str | None = None) -> None:
    from pyspark.sql import functions as F

    casted = [c for c in dataset.columns if storage_type(c) != "string"]
    if not casted:
        return
    failed = [F.sum((F.col(f"raw_{i}").isNotNull() & F.col(f"typed_{i}").isNull()).cast("int")).alias(str(i))
              for i, _ in enumerate(casted)]
    pairs = raw.select(
        *[column(c.name).alias(f"raw_{i}") for i, c in enumerate(casted)],
        *[column(c.name).try_cast(storage_type(c)).alias(f"typed_{i}") for i, c in enumerate(casted)],
    )
    counts = pairs.agg(*failed).first()
    for i, spec in enumerate(casted):
        if counts[str(i)]:
            bad = pairs.where(F.col(f"raw_{i}").isNotNull() & F.col(f"typed_{i}").isNull()).first()[f"raw_{i}"]
            raise StageError(f"{what or 'dataset ' + repr(dataset.name)}: column '{spec.name}' is configured as "
                             f"{spec.kind.value} ({storage_type(spec)}) but {counts[str(i)]} values do not "
                             f"convert, e.g. {bad!r}")


def guess_format(source: str) -> str:
    """delta, csv or parquet, from the folder's Delta log or the files' suffix."""
    path = Path(resolve(source))
    if "://" not in str(path) and not path.exists():
        raise StageError(f"{source} does not exist")
    if (path / "_delta_log").is_dir():
        return "delta"
    suffix = path.suffix.lower() if path.is_file() else next(
        (p.suffix.lower() for p in path.glob("*") if p.suffix), "") if path.is_dir() else path.suffix.lower()
    if suffix in (".csv", ".txt", ".data"):
        return "csv"
    if suffix == ".parquet":
        return "parquet"
    raise StageError(f"cannot tell the format of {source}; pass --format csv|parquet|delta")


def read_seed_table(spark, dataset: DatasetConfig, source: str):
    """A seed table's partial rows as pandas: each of its columns a learned column of the dataset, typed as
    configured (CSV with a header). A column that is not one, or a value that does not convert, is refused
    naming it."""
    fmt = guess_format(source)
    df = load_table(spark, fmt, resolve(source), {"header": "true"} if fmt == "csv" else {},
                    f"seed table {source}")
    specs = {c.name: c for c in dataset.columns}
    for name in df.columns:
        if name not in specs:
            raise StageError(f"seed table {source}: column {name!r} is not a column of dataset '{dataset.name}'")
    columns = [specs[n] for n in df.columns]
    typed = df.select([column(c.name).try_cast(storage_type(c)).alias(c.name) for c in columns])
    _check_casts(df, typed, dataset.model_copy(update={"columns": columns}), f"seed table {source}")
    rows = typed.toPandas()
    if rows.empty:
        raise StageError(f"seed table {source} has no rows")
    return rows


HOLDOUT_BUCKETS = 1_000_000


def split(df, part: str, fraction: float, seed: int):
    """The "train" or "holdout" rows of `df`. A row's side is a seeded hash of its values, so every stage
    recomputes the same split without storing it, and identical rows always fall on the same side (a
    duplicate on both sides would make a copy of a training row look like a good holdout match). Rows that say
    their side (a HOLDOUT column: a related table's model rows, held out by entity) are split as they say."""
    from pyspark.sql import functions as F

    if part not in ("train", "holdout"):
        raise ValueError(f"part must be 'train' or 'holdout', got {part!r}")
    if HOLDOUT in df.columns:  # a related table's model rows: held out by entity (synthlake.related_frames)
        in_holdout = F.coalesce(column(HOLDOUT) == "true", F.lit(False))
        return df.where(in_holdout if part == "holdout" else ~in_holdout)
    bucket = F.pmod(F.xxhash64(F.lit(seed), *[column(c) for c in df.columns]), F.lit(HOLDOUT_BUCKETS))
    in_holdout = bucket < int(round(fraction * HOLDOUT_BUCKETS))
    return df.where(in_holdout if part == "holdout" else ~in_holdout)


def read_profiled(spark, ctx, profile: ProfileRecord):
    """The source as the profile stage read it: refused if it changed since (its fingerprint), so that the
    split, the statistics and the model all describe the same rows; its casts were checked then."""
    now = source_fingerprint(spark, ctx.dataset)
    if now != profile.source.fingerprint:
        raise StageError(f"dataset '{ctx.dataset.name}': source {profile.source.path} changed since run "
                         f"{ctx.run_id!r} profiled it ({profile.source.fingerprint} -> {now}): run the profile "
                         f"stage again, under a new run id")
    return read_source(spark, ctx.dataset, check=False)


def read_real(spark, ctx, part: str, profile: ProfileRecord, source=None):
    """The source's training or holdout rows, split as the profile stage recorded it (of `source`, what
    read_profiled gave, if given)."""
    holdout = profile.holdout
    source = read_profiled(spark, ctx, profile) if source is None else source
    return split(source, part, holdout.fraction, holdout.seed)


def bounded(df, limit: int, seed: int, total: int | None = None, exact: bool = True):
    """At most `limit` rows of `df`, sampled by `seed`; `total` (its row count) saves a count when known.
    `exact=False`: about `limit` (a Bernoulli sample, no limit), so the rows stay spread over the partitions
    (a limit gathers them into one) and the same on every read."""
    total = df.count() if total is None else total
    if total <= limit:
        return df
    if not exact:
        return df.sample(fraction=limit / total, seed=seed)
    return df.sample(fraction=min(1.0, 1.2 * limit / total), seed=seed).limit(limit)


def source_fingerprint(spark, dataset: DatasetConfig) -> str:
    """Content hash for local files, table version for Delta, file listing hash otherwise."""
    path = resolve(dataset.source.path)
    if dataset.source.format == "delta":
        from delta.tables import DeltaTable

        version = DeltaTable.forPath(spark, path).history(1).first()["version"]
        return f"delta:{path}@v{version}"
    local = Path(path)
    if local.exists():
        files = data_files(local)
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.relative_to(local.parent).as_posix().encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        return f"sha256:{digest.hexdigest()}"
    listing = "\n".join(sorted(spark.read.format("binaryFile").load(path).select("path", "length",
                        "modificationTime").toPandas().astype(str).agg("|".join, axis=1)))
    return f"listing-sha256:{hashlib.sha256(listing.encode()).hexdigest()}"
