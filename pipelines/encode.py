"""Encoding on Spark: a generator's column encodings fitted from Spark aggregates, and the training rows
encoded by the executors into Parquet shards under train_work, so the driver never holds the training rows.

For a generator that declares `shards` (tabular_ar), without rules (those fit and transform on the driver). The
decisions are synthlake.generators.ar_columns' own (`keeps_values`, `bin_edges`, `RESOLUTIONS`), on what the
executors compute with the engine's own conversions (`category_strings`, `to_float`):
- a categorical column: its labels' counts, the `max_categories` most frequent that occur `min_category_count`
  times, the number of distinct labels, whether any is null;
- a numeric or datetime column: rows, nulls, maximum and the quantiles at `bin_levels` in one pass; the
  distinct values of columns with few; then, for binned columns, each bin's knots. Quantiles are
  percentile_approx's (a rank error of at most 1 / QUANTILE_ACCURACY of the column's or bin's rows) where
  prepare() on the driver takes exact ones.

Under differential privacy the executors count instead (`SparkCounts`): every label, and the two histograms
synthlake.dp reads, bucketed by its own functions; the engine adds the noise on the driver, charged to the
budget as prepare() charges it, so the encodings are the ones prepare() would draw with the same noise.

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
    """Whether the train stage can encode `model`'s rows on the executors (not with a unit of privacy, whose
    DP-SGD needs each row's unit, which only the driver's prepare() keeps)."""
    unit = (model.privacy or {}).get("unit")
    return model.shards and bool(model.metadata.learned_columns) and not unit


def fit_and_encode(spark, rows, model, work: Path) -> int:
    """Fit `model`'s column encodings on `rows` (a Spark DataFrame), write the encoded rows to work/SHARDS;
    return their number."""
    from pyspark import StorageLevel

    specs = model.metadata.learned_columns
    values = _fit_values(rows, specs).persist(StorageLevel.DISK_ONLY)  # read by several jobs; memory stays flat
    try:
        if model.privacy is not None:
            model.use_dp_counts(SparkCounts(values, specs, _time_zones(rows, specs)), values.count())
        else:
            fitted = {**_categorical(values, specs, model.hyper), **_numeric(rows, values, specs, model.hyper)}
            model.use_columns([fitted[i] for i in range(len(specs))])
    finally:
        values.unpersist()
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
    counts = _label_frame(values, cats).cache()
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
    zones = _time_zones(rows, specs)
    fitted, binned = {}, {}
    for i in nums:
        spec, n = specs[i], stats[f"n{i}"]
        is_dt = spec.kind == ColumnKind.DATETIME
        col = NumericColumn(spec.name, integer=spec.integer, datetime=is_dt, null=stats["rows"] > n,
                            tz=zones.get(spec.name))
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


def _time_zones(rows, specs) -> dict[str, str | None]:
    """Each datetime column's time zone, as pandas reads the rows (one row suffices: the type says it)."""
    from synthlake.generators.ar_columns import column_time_zone
    from synthlake.metadata import ColumnKind

    names = [s.name for s in specs if s.kind == ColumnKind.DATETIME]
    if not names:
        return {}
    first = rows.select(*[column(n) for n in names]).limit(1).toPandas()
    return {n: column_time_zone(first[n]) for n in names}


class SparkCounts:
    """synthlake.generators.ar_dp.ColumnCounts from Spark aggregates over the fit values (v<i>): exact counts,
    which the engine then noises. The executors put the values in buckets with the engine's own functions
    (synthlake.dp.coarse_bucket, fine_bucket), so the histograms are the ones a table would give."""

    def __init__(self, values, specs, zones: dict[str, str | None]):
        self.values, self.zones = values, zones
        self.position = {s.name: i for i, s in enumerate(specs)}
        cats = [i for i, s in enumerate(specs) if _is_categorical(s)]
        nums = [i for i, s in enumerate(specs) if not _is_categorical(s)]
        self.labels = _label_counts(values, cats)
        self.coarse = _bucket_counts(values, {i: _coarse for i in nums})

    def categories(self, spec) -> tuple[list[str], np.ndarray, int]:
        found = self.labels.get(self.position[spec.name], {})
        names = sorted(k for k in found if k is not None)
        return names, np.array([found[k] for k in names], dtype=np.int64), found.get(None, 0)

    def histograms(self, spec):
        return _SparkHistograms(self, self.position[spec.name])

    def time_zone(self, spec) -> str | None:
        return self.zones.get(spec.name)


class _SparkHistograms:
    def __init__(self, counts: SparkCounts, i: int):
        self.counts, self.i = counts, i

    def coarse(self) -> np.ndarray:
        from synthlake.dp import coarse_grid

        found = self.counts.coarse.get(self.i, {})
        return np.array([found.get(b, 0) for b in range(len(coarse_grid()) - 1)], dtype=np.int64)

    def fine(self, lo: float, hi: float, buckets: int) -> tuple[np.ndarray, int]:
        from synthlake.dp import fine_bucket

        def bucket(x: np.ndarray) -> np.ndarray:
            return fine_bucket(x, lo, hi, buckets)

        found = _bucket_counts(self.counts.values, {self.i: bucket}).get(self.i, {})
        return np.array([found.get(b, 0) for b in range(buckets)], dtype=np.int64), found.get(NULL_BUCKET, 0)


NULL_BUCKET = -1  # _bucket_counts' bucket for nulls


def _coarse(x: np.ndarray) -> np.ndarray:
    from synthlake.dp import coarse_bucket

    return coarse_bucket(x)


def _stacked(values, columns: list[int], name: str):
    """The columns v<i> at `columns` stacked into rows (i, `name`): one pass for all of them."""
    from pyspark.sql import functions as F

    pairs = F.array(*[F.struct(F.lit(i).alias("i"), F.col(f"v{i}").alias(name)) for i in columns])
    return values.select(F.explode(pairs).alias("p")).select("p.i", f"p.{name}")


def _label_frame(values, columns: list[int]):
    """Per categorical column (by position) and label (null included): its count, as rows (i, label, count)."""
    return _stacked(values, columns, "label").groupBy("i", "label").count()


def _label_counts(values, columns: list[int]) -> dict[int, dict[str | None, int]]:
    """Per categorical column (by position): each label's count, None's the nulls'."""
    if not columns:
        return {}
    found: dict[int, dict[str | None, int]] = {i: {} for i in columns}
    for r in _label_frame(values, columns).collect():
        found[r["i"]][r["label"]] = r["count"]
    return found


def _bucket_counts(values, buckets: dict) -> dict[int, dict[int, int]]:
    """Per numeric column (by position): the count of each bucket its function (values -> bucket indices, on
    the executors) puts the non-null values in, and of NULL_BUCKET."""
    from pyspark.sql import types as T

    if not buckets:
        return {}
    schema = T.StructType([T.StructField(n, T.LongType()) for n in ("i", "bucket", "rows")])

    def count(frames):
        for part in frames:
            for i, fn in buckets.items():
                x = part[f"v{i}"].to_numpy(dtype=float, na_value=np.nan)
                missing = np.isnan(x)
                b = pd.Series(np.r_[fn(x[~missing]), np.full(int(missing.sum()), NULL_BUCKET)]).value_counts()
                yield pd.DataFrame({"i": i, "bucket": b.index.astype(np.int64), "rows": b.to_numpy(np.int64)})

    found: dict[int, dict[int, int]] = {i: {} for i in buckets}
    partial = values.select(*[f"v{i}" for i in buckets]).mapInPandas(count, schema)
    for r in partial.groupBy("i", "bucket").sum("rows").collect():
        found[r["i"]][r["bucket"]] = r["sum(rows)"]
    return found


def _distinct_values(values, columns: list[int]) -> dict[int, list[float]]:
    """The sorted distinct non-null values of the columns at `columns` (all of them few)."""
    from pyspark.sql import functions as F

    if not columns:
        return {}
    found = _stacked(values, columns, "x").where(F.col("x").isNotNull()) \
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
