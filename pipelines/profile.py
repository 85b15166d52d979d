"""profile: read the source with Spark and write a versioned profile (types, nulls, ranges, categories)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from pipelines.context import RunContext, StageError
from pipelines.records import ProfileRecord
from pipelines.source import read_source, source_fingerprint, split
from pipelines.spark import column
from synthlake.column_types import is_continuous, storage_type
from synthlake.inference import detect_pii
from synthlake.metadata import ColumnKind

QUANTILES = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
HISTOGRAM_LEVELS = [i / 20 for i in range(1, 20)]  # a continuous column's histogram edges: its ventiles
TOP_CATEGORIES = 1000  # category frequencies kept per column; cardinality is always counted
PII_SCAN_ROWS = 1000


def run(ctx: RunContext, spark) -> dict:
    """Statistics of the training rows; the holdout (profile.holdout_fraction of the source, by a row hash
    seeded with profile.holdout_seed) is only counted here, so nothing learned downstream comes from it."""
    fraction, seed = ctx.params.profile.holdout_fraction, ctx.params.profile.holdout_seed
    source = read_source(spark, ctx.dataset)  # its casts and header checked once
    df = split(source, "train", fraction, seed).cache()
    try:
        body = {
            "dataset": ctx.dataset.name,
            "source": {**ctx.dataset.source.model_dump(), "fingerprint": source_fingerprint(spark, ctx.dataset)},
            **_statistics(df, ctx),
        }
        body["rules"] = _rule_shares(df, ctx, body["rows"])
    finally:
        df.unpersist()
    holdout_rows = split(source, "holdout", fraction, seed).count()
    if holdout_rows == 0:
        raise StageError(f"dataset '{ctx.dataset.name}': the holdout ({fraction:.0%} of the source) is empty; "
                         "the source is too small to validate against")
    body["holdout"] = {"fraction": fraction, "seed": seed, "rows": holdout_rows}
    version = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]
    profile = ProfileRecord.model_validate({"profile_version": version, "run_id": ctx.run_id,
                                            "created_at": datetime.now(UTC), **body})
    path = ctx.store.write(profile)
    for name, col in profile.columns.items():
        if col.pii_suspected:
            print(f"warning: column '{name}' looks like PII ({col.pii_suspected}) but is configured as "
                  f"{col.kind}; declare it `kind: pii` so it is never learned")
    return {"profile": str(path), "profile_version": version, "rows": profile.rows, "holdout_rows": holdout_rows}


def _rule_shares(df, ctx: RunContext, rows: int) -> dict[str, float]:
    """The share of the training rows that break each rule, counted over all of them with Spark (rules that
    learn from rows, such as lookups, fitted on the rows train will read); a rule broken by more than
    train.max_rule_violations is refused, naming it and the share."""
    from pipelines.rule_checks import broken_rows
    from pipelines.source import bounded

    rules = ctx.dataset.ruleset
    if rules is None or rows == 0:
        return {}
    rules.fit(bounded(df, ctx.params.train.max_rows, ctx.params.seed, total=rows).toPandas())
    allowed, shares = ctx.params.train.max_rule_violations, {}
    for label, broken in broken_rows(df, rules).items():
        shares[label] = broken / rows
        print(f"[synthlake] profile: {label} broken by {broken} of {rows} training rows ({broken / rows:.4%})",
              flush=True)
        if broken / rows > allowed:
            raise StageError(f"{ctx.config_path} {label}: {broken / rows:.2%} of the source's training rows break "
                             f"it ({broken} of {rows}), more than train.max_rule_violations ({allowed:.2%}): fix "
                             "the rule or the data")
    return shares


def _statistics(df, ctx: RunContext) -> dict:
    from pyspark.sql import functions as F

    specs = ctx.dataset.columns
    aggs = [F.count(F.lit(1)).alias("__rows")]
    for i, c in enumerate(specs):
        col = column(c.name)
        aggs += [F.sum(col.isNull().cast("int")).alias(f"{i}_nulls"),
                 F.approx_count_distinct(col).alias(f"{i}_distinct")]
        if is_continuous(c):
            num = as_number(c)
            aggs += [F.min(col).alias(f"{i}_min"), F.max(col).alias(f"{i}_max"),
                     F.mean(num).alias(f"{i}_mean"), F.stddev(num).alias(f"{i}_std"),
                     F.percentile_approx(num, QUANTILES, 10_000).alias(f"{i}_quantiles")]
            aggs.append(F.percentile_approx(num, HISTOGRAM_LEVELS, 10_000).alias(f"{i}_edges"))
    stats = df.agg(*aggs).first().asDict()
    rows = stats["__rows"]
    if rows == 0:
        raise StageError(f"dataset '{ctx.dataset.name}': the source has no training rows")
    edges = {c.name: sorted(set(stats[f"{i}_edges"] or [])) for i, c in enumerate(specs) if is_continuous(c)}
    histograms = histogram_shares(df, specs, edges)
    sample = df.limit(PII_SCAN_ROWS).toPandas()
    frequencies = category_frequencies(df, [c.name for c in specs if c.kind == ColumnKind.CATEGORICAL], rows)
    columns = {}
    for i, c in enumerate(specs):
        info = {"kind": c.kind.value, "type": storage_type(c), "null_fraction": stats[f"{i}_nulls"] / rows,
                "distinct_approx": stats[f"{i}_distinct"]}
        if is_continuous(c):
            info.update(min=stats[f"{i}_min"], max=stats[f"{i}_max"], mean=stats[f"{i}_mean"],
                        std=stats[f"{i}_std"],
                        quantiles=dict(zip(map(str, QUANTILES), stats[f"{i}_quantiles"] or [], strict=False)),
                        histogram={"edges": edges[c.name], "shares": histograms[c.name]})
        if c.kind == ColumnKind.CATEGORICAL:
            info["categories"] = frequencies[c.name]
            pii = detect_pii(c.name, sample[c.name])
            if pii is not None:
                info["pii_suspected"] = pii.value
        columns[c.name] = info
    return {"rows": rows, "columns": columns}


def as_number(spec):
    """A continuous column as doubles (a datetime as Unix seconds): what its quantiles and histogram describe."""
    from pyspark.sql import functions as F

    col = column(spec.name)
    return col.cast("double") if spec.kind == ColumnKind.NUMERIC else F.unix_seconds(col).cast("double")


def histogram_shares(df, specs, edges: dict[str, list[float]]) -> dict[str, list[float]]:
    """Each continuous column's share of non-null values in the bins (-inf, e1], (e1, e2], ... (ek, inf) of its
    `edges`, counted exactly over every row of `df` in one pass (all zeros where a column has no values)."""
    from pyspark.sql import functions as F

    specs = [c for c in specs if c.name in edges]
    aggs = []
    for i, c in enumerate(specs):
        num, bounds = as_number(c), edges[c.name]
        conditions = [num <= bounds[0]] if bounds else []
        conditions += [(num > lo) & (num <= hi) for lo, hi in zip(bounds, bounds[1:], strict=False)]
        conditions.append(num > bounds[-1] if bounds else num.isNotNull())
        aggs += [F.count(F.when(cond, 1)).alias(f"{i}_{b}") for b, cond in enumerate(conditions)]
    if not aggs:
        return {}
    counts = df.agg(*aggs).first().asDict()
    out = {}
    for i, c in enumerate(specs):
        bins = [counts[f"{i}_{b}"] for b in range(len(edges[c.name]) + 1)]
        total = sum(bins)
        out[c.name] = [n / total if total else 0.0 for n in bins]
    return out


def category_frequencies(df, names: list[str], rows: int) -> dict[str, dict]:
    """Each (string) column's TOP_CATEGORIES most frequent values and their shares, in one pass over `df` for
    all of them (a job per column costs a second each: minutes on a wide table)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if not names:
        return {}
    pairs = F.explode(F.array(*[F.struct(F.lit(i).alias("i"), column(n).alias("v")) for i, n in enumerate(names)]))
    counts = df.select(pairs.alias("p")).groupBy("p.i", "p.v").count()
    rank = F.row_number().over(Window.partitionBy("i").orderBy(F.desc("count"), F.asc("v")))
    top = counts.withColumn("rank", rank).where(F.col("rank") <= TOP_CATEGORIES + 1).orderBy("i", "rank").collect()
    out = {name: {"truncated": False, "frequencies": []} for name in names}
    for r in top:
        entry = out[names[r["i"]]]
        if r["rank"] > TOP_CATEGORIES:
            entry["truncated"] = True
        else:
            entry["frequencies"].append([r["v"], r["count"] / rows])  # value None is null
    return out
