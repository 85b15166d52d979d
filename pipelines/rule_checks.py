"""A dataset's rules on Spark rows: which rows break each rule, decided by the rules' own code
(synthlake.rules.RuleSet.violations) in mapInPandas, so that Spark and the engine can never disagree.

The profile stage counts the source rows that break each rule (and refuses a rule broken too often); the
validate stage turns each rule into a Great Expectations expectation on a flag column (`rule_<i>`: whether
the row breaks rule i), which must be false on every staged row.
"""

from __future__ import annotations

from pipelines.spark import map_in_pandas

FLAG_PREFIX = "__synthlake_rule_"


def flag_column(index: int) -> str:
    return f"{FLAG_PREFIX}{index}"


def with_flags(df, rules):
    """`df` with one boolean column per rule (flag_column(i)): true where the row breaks rule i."""
    from pyspark.sql import types as T

    state, names = rules.state(), [flag_column(i) for i in range(len(rules.rules))]
    schema = T.StructType([*df.schema.fields, *(T.StructField(n, T.BooleanType(), False) for n in names)])

    def flag(frames):
        from synthlake.rules import RuleSet

        fitted = RuleSet.from_state(state)
        for part in frames:
            broken = fitted.violations(part)
            yield part.assign(**{n: broken.iloc[:, i].to_numpy(dtype=bool) for i, n in enumerate(names)})

    return map_in_pandas(df, flag, schema)


def broken_rows(df, rules) -> dict[str, int]:
    """How many rows of `df` break each rule, by rule label."""
    from pyspark.sql import functions as F

    flagged = with_flags(df, rules)
    totals = flagged.agg(*[F.sum(F.col(flag_column(i)).cast("long")).alias(str(i))
                           for i in range(len(rules.rules))]).first()
    return {rule.label: int(totals[str(i)] or 0) for i, rule in enumerate(rules.rules)}
