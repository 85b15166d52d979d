"""How validate treats a run drawn under conditions (synthlake.conditions): what its rows are compared with,
and the checks that the conditions hold.

- where: the real rows that meet the same condition (Spark reads it as SQL), and a check that no staged row
  fails it, counted by Spark over every staged row (the sampler's own parser is not trusted alone);
- rebalance: the real rows resampled to the same shares (synthlake.conditions.rebalanced);
- fairness: the statistical parity gap over every staged row, which must stay within `max_gap`, beside the
  real rows' gap (measured, not a gate), and what it cost in utility: the TSTR of rows the same model draws
  without fairness, beside the run's (measured).
"""

from __future__ import annotations

import pandas as pd

from pipelines.context import RunContext
from pipelines.records import SampleRecord, check
from pipelines.spark import column
from synthlake.conditions import parity_gap, rebalanced


def meeting(df, where: str | None):
    """The rows of a Spark DataFrame that meet `where` (all of them without one)."""
    return df if not where else df.where(where)


def reference(frames: dict[str, pd.DataFrame], ctx: RunContext) -> dict[str, pd.DataFrame]:
    """The real and holdout samples as a rebalanced run's rows should look."""
    if not ctx.dataset.rebalance:
        return frames
    shares = ctx.dataset.conditions().rebalance
    return {**frames, **{k: rebalanced(frames[k], shares, ctx.params.seed) for k in ("real", "holdout")}}


def condition_checks(ctx: RunContext, record: SampleRecord, staged, frames: dict[str, pd.DataFrame]) -> list[dict]:
    checks = []
    if record.where:
        outside = staged.where(f"NOT coalesce(({record.where}), false)").count()
        checks.append(check("where", "conditions", outside, 0, "<=", outside == 0))
    fairness = ctx.dataset.fairness
    if fairness:
        columns = [*fairness.sensitive, fairness.target]
        counts = staged.groupBy(*[column(c) for c in columns]).count().toPandas()
        gap = parity_gap(counts, fairness.target, fairness.sensitive)
        real_counts = frames["real"].groupby(columns, dropna=False).size().rename("count").reset_index()
        checks.append(check("parity_gap", "fairness", gap, fairness.max_gap, "<=", gap <= fairness.max_gap))
        checks.append(check("parity_gap_real", "fairness", parity_gap(real_counts, fairness.target,
                                                                       fairness.sensitive), None, None, None))
        if ctx.dataset.target:
            checks.append(check("tstr_without_fairness", "fairness", _unfair_tstr(ctx, frames), None, None, None))
    return checks


def _unfair_tstr(ctx: RunContext, frames: dict[str, pd.DataFrame]) -> float:
    """TSTR of as many rows as the run's, drawn by the same model without fairness (the run's other conditions
    do not apply either): set beside the run's tstr, what fairness cost in utility."""
    from synthlake.evaluation import get_metric
    from synthlake.generators import load_sampler
    from synthlake.generators.base import to_frame

    plain = to_frame(load_sampler(ctx.store.path("model")).sample_arrow(len(frames["synthetic"]), ctx.params.seed))
    metric = get_metric("tstr", max_rows=None, seed=ctx.params.seed)
    return metric.evaluate(frames["real"], plain, ctx.dataset.metadata, holdout=frames["holdout"]).value
