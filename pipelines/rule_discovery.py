"""Rule discovery over every row of a Spark table, for `synthlake infer-config`.

The engine (synthlake.rule_discovery) proposes candidates from a sample and decides from the statistics; this
module computes those statistics over the whole source, in a few passes:
- the row counts of expressions and inequalities: the engine's own `row_counts` on each Arrow batch
  (mapInPandas, as the validate stage counts rule violations), summed: one pass, the engine's exact checks;
- quantiles of the ordered columns: one select of percentile_approx;
- lookups: per key column, a group-by of the key (count, min and max of each fixed column, the mean of each
  candidate mean column), then one aggregate over the groups;
- combinations: one group-by over (pair, x, y) of every candidate pair at once (explode), small by construction
  (columns of at most MAX_CARDINALITY values); merged pairs: a distinct count of their columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.spark import column, map_in_pandas
from synthlake.metadata import ColumnKind, TableMetadata
from synthlake.rule_discovery import (
    QUANTILES,
    Discovery,
    LookupStats,
    Plan,
    Stats,
    candidates,
    counter_names,
    decide,
    row_counts,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame


def discover(df: DataFrame, metadata: TableMetadata, sample_rows: int,
             max_violation_share: float) -> tuple[Discovery, int]:
    """The rules `df` obeys, candidates from its first `sample_rows` rows; and how many rows it has."""
    sample = df.limit(sample_rows).toPandas()
    plan = candidates(sample, metadata)
    stats = measure(df, plan, metadata)

    def count_tuples(columns: list[str]) -> int:
        return df.select(*[column(c) for c in columns]).distinct().count()

    return decide(plan, stats, metadata, max_violation_share, count_tuples), stats.rows


def measure(df: DataFrame, plan: Plan, metadata: TableMetadata) -> Stats:
    """synthlake.rule_discovery.Stats of every row of `df`, the same as the engine's `measure` in pandas."""
    counts = _row_counts(df, plan, metadata)
    return Stats(rows=counts["rows"], counts=counts, lookups=_lookups(df, plan, metadata), pairs=_pairs(df, plan),
                 quantiles=_quantiles(df, plan, metadata))


def _row_counts(df: DataFrame, plan: Plan, metadata: TableMetadata) -> dict[str, int]:
    names = counter_names(plan, metadata)
    used = {c for f in plan.formulas for c in (f.column, *f.args)} | set(plan.ordered_columns())
    if not used:
        return {"rows": df.count()}
    columns = [c for c in metadata.names if c in used]

    def count(frames):
        import pandas as pd

        for part in frames:
            found = row_counts(part, plan, metadata)
            yield pd.DataFrame([[found[n] for n in names]], columns=names)

    schema = ", ".join(f"{n} long" for n in names)
    totals = map_in_pandas(df.select(*[column(c) for c in columns]), count, schema).groupBy().sum().first()
    return {n: int(totals[i] or 0) for i, n in enumerate(names)}


def _numbers(name: str, metadata: TableMetadata) -> Column:
    """A numeric or datetime column as doubles (datetimes: microseconds since the epoch, as the engine)."""
    from pyspark.sql import functions as F

    if metadata.column(name).kind == ColumnKind.DATETIME:
        return F.unix_micros(column(name)).cast("double")
    return column(name).cast("double")


def _quantiles(df: DataFrame, plan: Plan, metadata: TableMetadata) -> dict[str, list[float]]:
    from pyspark.sql import functions as F

    columns = plan.ordered_columns()
    if not columns:
        return {}
    row = df.select(*[F.percentile_approx(_numbers(c, metadata), QUANTILES, 10_000).alias(f"q{i}")
                      for i, c in enumerate(columns)]).first()
    return {c: [float(v) for v in (row[f"q{i}"] or [])] for i, c in enumerate(columns)}


def _lookups(df: DataFrame, plan: Plan, metadata: TableMetadata) -> dict:
    """Per lookup: distinct keys, rows with the column present, and per mean column the rows of the keys on which
    the column is not that mean (synthlake.rule_discovery.group_holds, in Spark)."""
    from pyspark.sql import functions as F

    found = {}
    for key in dict.fromkeys(lookup.key for lookup in plan.lookups):
        lookups = [lookup for lookup in plan.lookups if lookup.key == key]
        fixed = list(dict.fromkeys(lookup.column for lookup in lookups))
        means = list(dict.fromkeys(m for lookup in lookups for m in lookup.means))
        groups = df.groupBy(column(key).alias("k")).agg(
            F.count(F.lit(1)).alias("n"),
            *[agg(_numbers(c, metadata)).alias(f"{name}{i}") for i, c in enumerate(fixed)
              for name, agg in (("nc", F.count), ("low", F.min), ("high", F.max))],
            *[F.avg(_numbers(m, metadata)).alias(f"mean{j}") for j, m in enumerate(means)])
        n, keyed = F.col("n"), F.col("k").isNotNull()
        outputs = [F.count(F.when(keyed, 1)).alias("keys")]
        outputs += [F.sum(f"nc{i}").alias(f"support{i}") for i in range(len(fixed))]
        for lookup_index, lookup in enumerate(lookups):
            i = fixed.index(lookup.column)
            low, high, nc = F.col(f"low{i}"), F.col(f"high{i}"), F.col(f"nc{i}")
            for m in lookup.means:
                mean = F.col(f"mean{means.index(m)}")
                close = (low == F.bround(mean, 0) if metadata.column(lookup.column).integer
                         else F.abs(low - mean) <= F.abs(mean) * 1e-9)
                holds = keyed & (nc == n) & (low == high) & close
                outputs.append(F.sum(F.when(holds, 0).otherwise(n)).alias(f"v{lookup_index}_{means.index(m)}"))
        row = groups.agg(*outputs).first()
        for lookup_index, lookup in enumerate(lookups):
            i = fixed.index(lookup.column)
            violations = {m: int(row[f"v{lookup_index}_{means.index(m)}"] or 0) for m in lookup.means}
            found[lookup] = LookupStats(keys=int(row["keys"] or 0), support=int(row[f"support{i}"] or 0),
                                        violations=violations)
    return found


def _pairs(df: DataFrame, plan: Plan) -> dict:
    """Rows per combination of each pair, every pair in one group-by (values as text, None for null)."""
    from pyspark.sql import functions as F

    if not plan.pairs:
        return {}
    structs = [F.struct(F.lit(i).alias("p"), column(pair.x).cast("string").alias("x"),
                        column(pair.y).cast("string").alias("y")) for i, pair in enumerate(plan.pairs)]
    rows = (df.select(F.explode(F.array(*structs)).alias("t")).select("t.p", "t.x", "t.y")
            .groupBy("p", "x", "y").count().collect())
    found: dict = {pair: {} for pair in plan.pairs}
    for row in rows:
        found[plan.pairs[row["p"]]][(row["x"], row["y"])] = int(row["count"])
    return found
