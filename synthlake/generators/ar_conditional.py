"""Conditional sampling of a fitted tabular_ar (synthlake.conditions), by construction: the constrained
columns are drawn first, and only among the tokens their condition allows; no row is drawn twice.

A network trained on random column orders too (`order_mixing` > 0) has learned p(column | any columns
before it), so drawing the constrained columns first and the rest after them gives each row from the model's
conditional distribution (one approximation: a column's allowed tokens are drawn in proportion to the model's
probabilities given the columns before it, not also weighed by how likely they make the later constraints).

- where: each constrained column's allowed tokens (a numeric bin that the condition cuts keeps only the part
  of its within-bin quantiles inside it, and the value is clipped to the allowed range);
- seed rows: their tokens are fixed, their values copied to the output as given;
- rebalance: the column's tokens drawn from the requested shares (the rest in the model's own proportions),
  then fixed;
- fairness: the sensitive columns drawn first, the target from its learned marginal (it sees none of them),
  then both fixed and the other columns drawn given them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from synthlake.column_types import category_strings
from synthlake.conditions import ConditionError, Conditions, ValueSet, satisfied
from synthlake.generators.ar_columns import CategoricalColumn, NumericColumn, join_split
from synthlake.metadata import RARE_CATEGORY

WITHIN_GRID = 512  # within-bin uniforms a cut bin's allowed share is measured on


class Plan:
    """What the kernel needs for one request over n rows: the model columns in drawing order, the fixed
    tokens (n x model columns, -1: draw) and the allowed tokens (see ar_sampler._tokens)."""

    def __init__(self, sampler, n: int):
        self.sampler, self.n = sampler, n
        self.spans = _spans(sampler.splits)  # table column -> its model columns
        self.first: list[int] = []  # table columns drawn before the others, in this order
        sub, widest = len(sampler.arrays["vocab"]), int(sampler.arrays["vocab"].max())
        self.fixed = np.full((0, sub), -1, np.int32)
        self.allow = np.zeros((0, 1, 1), np.float32)
        self.fine = np.zeros(sub, np.int32)
        for start, stop in self.spans:
            self.fine[start + 1 : stop] = 1
        self.widest = widest

    def order(self, columns: list[int] | None = None) -> np.ndarray:
        """The model columns of `columns` (default: `first`, then every other table column in its own order)."""
        if columns is None:
            columns = self.first + [c for c in range(len(self.spans)) if c not in self.first]
        return np.asarray([j for c in columns for j in range(*self.spans[c])], np.int32)

    def fix(self, column: int, tokens: np.ndarray) -> None:
        """Every row's token of table column `column`, which is drawn first."""
        if not len(self.fixed):
            self.fixed = np.full((self.n, len(self.fine)), -1, np.int32)
        start, stop = self.spans[column]
        split = self.sampler.splits[column]
        if split:
            self.fixed[:, start], self.fixed[:, start + 1] = tokens // split, tokens % split
        else:
            self.fixed[:, start] = tokens
        self.first.append(column)

    def restrict(self, column: int, weights: np.ndarray) -> None:
        """Table column `column` draws token j with its probability times weights[j] (allowed_tokens: 0 for a
        token the condition excludes, the allowed share of a token it cuts)."""
        if not len(self.allow):
            coarse = max(int(self.sampler.arrays["vocab"][self.fine == 0].max()), 1)
            self.allow = np.ones((len(self.fine), coarse, self.widest), np.float32)
        start, _ = self.spans[column]
        split = self.sampler.splits[column]
        if split:
            width = -(-len(weights) // split)
            grid = np.zeros(width * split)
            grid[: len(weights)] = weights
            grid = grid.reshape(width, split)  # [coarse, fine]
            self.allow[start + 1, :width, :split] = grid
            # a coarse token weighs the model's probability of its allowed fine tokens, given it alone (exact
            # for the first column drawn): else the values just inside a cut would take its whole weight
            emb = self.sampler.arrays["emb"][start]
            self.allow[start, :, :width] = [(self.sampler.head_probs(start + 1, emb[c]) * grid[c]).sum()
                                            if grid[c].any() else 0.0 for c in range(width)]
        else:
            self.allow[start, :, : len(weights)] = weights
        self.first.append(column)


def sample(sampler, n: int, seed: int, row_offset: int, conditions: Conditions) -> pa.Table:
    """n rows that meet `conditions` (n must equal the seed rows' count when there are seed rows)."""
    if not sampler.flexible:
        raise ConditionError("this tabular_ar model was trained in one column order (order_mixing: 0); "
                             "conditional sampling, rebalancing and fairness need order_mixing > 0")
    metadata = sampler.metadata
    where = conditions.check(metadata)
    seeds = conditions.seed_rows
    if seeds is not None and len(seeds) != n:
        raise ConditionError(f"{len(seeds)} seed rows for {n} rows: a request with seed rows makes one row each")
    index = {c.name: i for i, c in enumerate(sampler.columns)}
    plan = Plan(sampler, n)
    for name in seeds.columns if seeds is not None else ():
        plan.fix(index[name], _seed_tokens(sampler.columns[index[name]], seeds[name]))
    if conditions.rebalance:
        column = index[conditions.rebalance.column]
        rng = np.random.default_rng([seed, 1])
        plan.fix(column, rng.choice(len(p := _rebalanced(sampler, column, conditions.rebalance.shares)), n, p=p))
    if conditions.fairness:
        _fair(sampler, plan, index, conditions.fairness, seed)
    for name, values in where.items():
        plan.restrict(index[name], allowed_tokens(sampler.columns[index[name]], values))
    tokens, within = sampler.draw(n, np.random.default_rng(seed), plan)
    for name, values in where.items():
        column = sampler.columns[index[name]]
        if isinstance(column, NumericColumn) and column.values is None:
            within[:, index[name]] = _within(column, values, tokens_of(sampler, tokens, index[name]),
                                             within[:, index[name]])
    table = sampler.decode(tokens, within, seed, row_offset, clip=where)
    if seeds is not None:
        for name in seeds.columns:
            position = table.schema.get_field_index(name)
            table = table.set_column(position, name, _seed_array(seeds[name], table.schema.field(name).type))
    if where and not satisfied(table.select(list(where)).to_pandas(), where, metadata).all():
        raise RuntimeError("conditional sampling produced a row outside the condition (a bug: please report it)")
    return table


def tokens_of(sampler, sub_tokens: np.ndarray, column: int) -> np.ndarray:
    return join_split(sub_tokens, sampler.columns, sampler.splits)[column]


def allowed_tokens(column, values: ValueSet) -> np.ndarray:
    """Each of the column's tokens' weight under `values`: 1 where every value it produces is allowed, 0 where
    none is, and for a numeric bin the condition cuts, the share of its within-bin quantile range allowed."""
    allowed = np.zeros(column.vocab)
    if isinstance(column, CategoricalColumn):
        labels = pd.Series(column.categories + ([RARE_CATEGORY] if column.rare else []), dtype=object)
        allowed[: len(labels)] = values.contains_labels(labels)
    elif column.values is not None:
        allowed[: column.bins] = values.contains_numbers(np.asarray(column.values, dtype=float))
    else:  # the share of a bin's within-bin uniforms whose value (rounded as the column rounds) is allowed
        u = (np.arange(WITHIN_GRID) + 0.5) / WITHIN_GRID
        for b, knots in enumerate(column.knots):
            if _cut(column, values, knots[0], knots[-1]) is not None:  # a single allowed point still has a chance
                share = values.contains_numbers(column._values(np.full(WITHIN_GRID, b), u)).mean()
                allowed[b] = max(share, 1e-6)
    if column.null_token is not None:
        allowed[column.null_token] = values.null
    if not allowed.any():
        raise ConditionError(f"where: no value the model generates for column {column.name!r} satisfies the "
                             "condition (its categories or range were learned without such values)")
    return allowed


def _cut(column: NumericColumn, values: ValueSet, low: float, high: float) -> tuple[float, float] | None:
    """The hull of the allowed values within [low, high] (a bin's range), as the column rounds its values;
    None when there are none."""
    step = 1.0 if column.integer else (column.resolution if column.datetime and column.resolution else None)
    parts = []
    for a, b in values.intervals:
        a, b = max(a, low), min(b, high)
        if step:
            a, b = np.ceil(a / step) * step, np.floor(b / step) * step
        if a <= b:
            parts.append((a, b))
    return (parts[0][0], parts[-1][1]) if parts else None


def _within(column: NumericColumn, values: ValueSet, tokens: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The within-bin uniforms squeezed into the part of each bin that the condition allows."""
    grid = np.linspace(0, 1, len(column.knots[0]))
    u = u.copy()
    for b in np.unique(tokens[tokens < column.bins]):
        knots = np.asarray(column.knots[b])
        low, high = _cut(column, values, knots[0], knots[-1])
        u_low, u_high = np.interp(low, knots, grid), np.interp(high, knots, grid)
        rows = tokens == b
        u[rows] = u_low + u[rows] * (u_high - u_low)
    return u


def clip_bounds(column: NumericColumn, values: ValueSet, x: np.ndarray) -> np.ndarray:
    """x moved into the allowed interval nearest to it (float error at a bin's cut edges), NaN kept."""
    parts = [p for p in (_cut(column, ValueSet(intervals=(i,)), -np.inf, np.inf) for i in values.intervals) if p]
    if not parts:
        return x
    lows, highs = np.array([p[0] for p in parts]), np.array([p[1] for p in parts])
    inside = (x[:, None] >= lows) & (x[:, None] <= highs)
    nearest = np.clip(x[:, None], lows, highs)
    pick = np.abs(nearest - x[:, None]).argmin(axis=1)
    moved = nearest[np.arange(len(x)), pick]
    return np.where(np.isnan(x) | inside.any(axis=1), x, moved)


def _seed_tokens(column, values: pd.Series) -> np.ndarray:
    try:
        return column.encode(values).astype(np.int64)
    except ValueError as exc:
        raise ConditionError(f"seed rows: {exc}") from None


def _seed_array(values: pd.Series, type_: pa.DataType) -> pa.Array:
    if pa.types.is_string(type_):
        return pa.array(category_strings(values), type=type_)
    try:
        return pa.array(values, from_pandas=True).cast(type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise ConditionError(f"seed rows: column {values.name!r} does not hold {type_} values: {exc}") from None


def _rebalanced(sampler, column: int, shares: dict[str, float]) -> np.ndarray:
    """Each token's probability: the named labels' shares, the rest split in the model's marginal proportions."""
    spec = sampler.columns[column]
    if sampler.splits[column]:
        raise ConditionError(f"rebalance: column {spec.name!r} has too many categories ({spec.vocab}) to rebalance")
    labels = spec.categories + ([RARE_CATEGORY] if spec.rare else [])
    unknown = sorted(set(shares) - set(labels))
    if unknown:
        raise ConditionError(f"rebalance: column {spec.name!r} has no categories {unknown}; it has {labels[:20]}")
    named = np.zeros(spec.vocab, bool)
    p = np.zeros(spec.vocab)
    for label, share in shares.items():
        named[labels.index(label)] = True
        p[labels.index(label)] = share
    rest = sampler.head_probs(_spans(sampler.splits)[column][0]) * ~named
    left = 1.0 - p.sum()
    if left > 1e-12 and rest.sum() == 0:
        raise ConditionError(f"rebalance: the shares of column {spec.name!r} add up to {p.sum():g}, and it has no "
                             "other category to give the rest to")
    p += left * rest / rest.sum() if rest.sum() > 0 else 0
    return p / p.sum()


def _fair(sampler, plan: Plan, index: dict[str, int], fairness, seed: int) -> None:
    """Fix the sensitive columns (drawn given each other) and the target (drawn from its marginal)."""
    sensitive = [index[name] for name in fairness.sensitive]
    target = index[fairness.target]
    drawn, _ = sampler.draw(plan.n, np.random.default_rng([seed, 2]), plan, plan.order(sensitive))
    alone, _ = sampler.draw(plan.n, np.random.default_rng([seed, 3]), plan, plan.order([target]))
    for column in sensitive:
        plan.fix(column, tokens_of(sampler, drawn, column))
    plan.fix(target, tokens_of(sampler, alone, target))


def _spans(splits: list[int]) -> list[tuple[int, int]]:
    spans, k = [], 0
    for split in splits:
        spans.append((k, k + (2 if split else 1)))
        k = spans[-1][1]
    return spans
