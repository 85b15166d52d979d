"""Encoding on Spark: a generator's column encodings fitted from Spark aggregates, and the training rows
encoded by the executors into Parquet shards under train_work, so the driver never holds the training rows.

For a generator that declares `shards` (tabular_ar), without privacy or rules (those fit on the driver). The
decisions are synthlake.generators.ar_columns' own (`keeps_values`, `bin_edges`, `RESOLUTIONS`), on what the
executors compute with the engine's own conversions (`category_strings`, `to_float`):
- a categorical column: its labels' counts, the `max_categories` most frequent that occur `min_category_count`
  times, the number of distinct labels, whether any is null;
- a numeric or datetime column: rows, nulls, maximum and the quantiles at `bin_levels` in one pass; the
  distinct values of columns with few; then, for binned columns, each bin's knots. Quantiles are
  percentile_approx's (a rank error of at most 1 / QUANTILE_ACCURACY of the column's or bin's rows) where
  prepare() on the driver takes exact ones.

Each training process reads every shard and keeps the rows whose position is its rank modulo the number of
processes (`rank_rows`): balanced, whatever the number and sizes of the files, and the same rows for the same
files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.spark import column, map_in_pandas

QUANTILE_ACCURACY = 10_000
SHARDS = "encoded"  # in train_work: Parquet files of int32 columns t0..tK, one per model column


def encodes_on_spark(model) -> bool:
    """Whether the train stage encodes `model`'s rows on the executors."""
    return model.shards and model.privacy is None and bool(model.metadata.learned_columns)


def fit_and_encode(spark, rows, model, work: Path) -> int:
    """Fit `model`'s column encodings on `rows` (a Spark DataFrame), write the encoded rows to work/SHARDS;
    return their number."""
    from pyspark import StorageLevel

    specs = model.metadata.learned_columns
    values = _fit_values(rows, specs).persist(StorageLevel.DISK_ONLY)  # read by three jobs; memory stays flat
    try:
        fitted = {**_categorical(values, specs, model.hyper), **_numeric(rows, values, specs, model.hyper)}
    finally:
        values.unpersist()
    model.use_columns([fitted[i] for i in range(len(specs))])
    return _write_shards(spark, rows.select(*[column(s.name) for s in specs]), model, work / SHARDS)


def rank_rows(shards: Path, rank: int, world: int) -> np.ndarray:
    """This training process's rows of the shards: those at positions `rank` modulo `world`, in order."""
    import pyarrow.parquet as pq

    kept, position = [], 0
    for path in sorted(shards.glob("part-*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1 << 16):
            block = np.column_stack([c.to_numpy() for c in batch.columns]).astype(np.int32, copy=False)
            first = (rank - position) % world
            kept.append(block[first::world])
            position += len(block)
    width = len(pq.read_schema(next(shards.glob("part-*.parquet"))).names)
    return np.concatenate(kept) if kept else np.zeros((0, width), np.int32)


def _is_categorical(spec) -> bool:
    from synthlake.metadata import ColumnKind

    return spec.kind == ColumnKind.CATEGORICAL


def _fit_values(rows, specs):
    """One column v<i> per learned column: its label (string) or its value as a float (seconds since the epoch
    for datetimes), null when missing: what the encodings are fitted on, as the encoder will see it."""
    from pyspark.sql import types as T

    from synthlake.column_types import category_strings, to_float
    from synthlake.metadata import ColumnKind

    schema = T.StructType([T.StructField(f"v{i}", T.StringType() if _is_categorical(s) else T.DoubleType())
                           for i, s in enumerate(specs)])

    def convert(frames):
        for part in frames:
            yield pd.DataFrame({
                f"v{i}": category_strings(part[s.name]) if _is_categorical(s)
                else to_float(part[s.name], datetime=s.kind == ColumnKind.DATETIME)  # NaN arrives as null
                for i, s in enumerate(specs)})

    return map_in_pandas(rows.select(*[column(s.name) for s in specs]), convert, schema)


def _categorical(values, specs, hyper: dict) -> dict:
    """The categorical columns' encodings, by position."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from synthlake.generators.ar_columns import CategoricalColumn

    cats = [i for i, s in enumerate(specs) if _is_categorical(s)]
    if not cats:
        return {}
    pairs = F.array(*[F.struct(F.lit(i).alias("i"), F.col(f"v{i}").alias("label")) for i in cats])
    counts = values.select(F.explode(pairs).alias("p")).groupBy("p.i", "p.label").count().cache()
    try:
        order = Window.partitionBy("i").orderBy(F.desc("count"), F.asc("label"))
        top = (counts.where(F.col("label").isNotNull() & (F.col("count") >= hyper["min_category_count"]))
               .withColumn("r", F.row_number().over(order)).where(F.col("r") <= hyper["max_categories"])
               .collect())
        summary = {r["i"]: r for r in counts.groupBy("i").agg(
            F.count("label").alias("distinct"), F.max(F.col("label").isNull().cast("int")).alias("null")).collect()}
    finally:
        counts.unpersist()
    fitted = {}
    for i in cats:
        found = [(r["label"], r["count"]) for r in top if r["i"] == i]
        row = summary.get(i)
        fitted[i] = CategoricalColumn.from_counts(
            specs[i], found, row["distinct"] if row else 0, bool(row and row["null"]),
            hyper["min_category_count"], hyper["max_categories"])
    return fitted


def _numeric(rows, values, specs, hyper: dict) -> dict:
    """The numeric and datetime columns' encodings, by position."""
    from pyspark.sql import functions as F

    from synthlake.generators.ar_columns import (
        RESOLUTIONS,
        NumericColumn,
        bin_edges,
        bin_levels,
        column_time_zone,
        keeps_values,
    )
    from synthlake.metadata import ColumnKind

    nums = [i for i, s in enumerate(specs) if not _is_categorical(s)]
    if not nums:
        return {}
    max_bins = hyper["max_bins"]
    aggs = [F.count(F.lit(1)).alias("rows")]
    for i in nums:
        v = F.col(f"v{i}")
        aggs += [F.count(v).alias(f"n{i}"), F.max(v).alias(f"max{i}"),
                 F.approx_count_distinct(v, 0.01).alias(f"d{i}"),
                 F.percentile_approx(v, bin_levels(max_bins).tolist(), QUANTILE_ACCURACY).alias(f"q{i}")]
        if specs[i].kind == ColumnKind.DATETIME:
            aggs.append(F.array(*[F.bool_and(v % r == 0) for r in RESOLUTIONS]).alias(f"r{i}"))
    stats = values.agg(*aggs).first()
    few = [i for i in nums if stats[f"d{i}"] <= 2 * max_bins]  # approx_count_distinct errs by about 1%
    distinct = _distinct_values(values, few)
    datetimes = [s.name for s in specs if s.kind == ColumnKind.DATETIME]
    zones = rows.select(*[column(n) for n in datetimes]).limit(1).toPandas() if datetimes else None
    fitted, binned = {}, {}
    for i in nums:
        spec, n = specs[i], stats[f"n{i}"]
        is_dt = spec.kind == ColumnKind.DATETIME
        col = NumericColumn(spec.name, integer=spec.integer, datetime=is_dt, null=stats["rows"] > n,
                            tz=column_time_zone(zones[spec.name]) if is_dt else None)
        if is_dt and n:
            col.resolution = next((r for r, whole in zip(RESOLUTIONS, stats[f"r{i}"], strict=True) if whole), None)
        if i in distinct and keeps_values(spec, len(distinct[i]), n, max_bins):
            col.values = distinct[i]
        else:
            col.edges = bin_edges(np.asarray(stats[f"q{i}"], dtype=float), stats[f"max{i}"]).tolist()
            binned[i] = col
        fitted[i] = col
    _fit_knots(values, binned, hyper["bin_knots"])
    return fitted


def _distinct_values(values, columns: list[int]) -> dict[int, list[float]]:
    """The sorted distinct non-null values of the columns at `columns` (all of them few)."""
    from pyspark.sql import functions as F

    if not columns:
        return {}
    pairs = F.array(*[F.struct(F.lit(i).alias("i"), F.col(f"v{i}").alias("x")) for i in columns])
    found = values.select(F.explode(pairs).alias("p")).select("p.i", "p.x").where(F.col("x").isNotNull()) \
        .distinct().collect()
    return {i: sorted(r["x"] for r in found if r["i"] == i) for i in columns}


def _fit_knots(values, binned: dict, n_knots: int) -> None:
    """Each binned column's knots: per bin (edges[b-1], edges[b]], the quantiles at knot_levels."""
    from pyspark.sql import functions as F

    from synthlake.generators.ar_columns import knot_levels

    if not binned:
        return
    def below(v):
        return lambda edge: edge < v

    pairs = []
    for i, col in binned.items():
        v = F.col(f"v{i}")
        token = F.size(F.filter(F.array(*[F.lit(e) for e in col.edges]), below(v)))  # searchsorted(side="left")
        pairs.append(F.struct(F.lit(i).alias("i"), token.alias("bin"), v.alias("x")))
    found = (values.select(F.explode(F.array(*pairs)).alias("p")).select("p.*").where(F.col("x").isNotNull())
             .groupBy("i", "bin").agg(F.percentile_approx("x", knot_levels(n_knots).tolist(), QUANTILE_ACCURACY)
                                      .alias("knots")).collect())
    knots = {(r["i"], r["bin"]): [float(k) for k in r["knots"]] for r in found}
    for i, col in binned.items():
        col.knots = [knots[(i, b)] for b in range(len(col.edges) + 1)]  # no bin is empty: edges are values


def _write_shards(spark, rows, model, path: Path) -> int:
    """The encoded rows as Parquet under `path`, written by the executors (one file per partition)."""
    from pyspark.sql import types as T

    encode = model.encoder()
    width = len(model.vocabulary())
    names = [f"t{j}" for j in range(width)]
    schema = T.StructType([T.StructField(n, T.IntegerType(), False) for n in names])

    def encoded(frames):
        for part in frames:
            yield pd.DataFrame(encode(part), columns=names)

    map_in_pandas(rows, encoded, schema).write.mode("overwrite").parquet(str(path))
    return spark.read.parquet(str(path)).count()
