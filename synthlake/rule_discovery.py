"""Finding the business rules a table obeys, for `synthlake infer-config` (README: Rules).

Candidates come from a sample, the decision from statistics of every row; the middle step is the caller's:

    plan = candidates(sample, metadata)                 # relations that (nearly) hold on a sample of the rows
    stats = measure(frame, plan, metadata)              # every row: here in pandas; pipelines.rule_discovery
                                                        # gives the same Stats over a Spark table
    found = decide(plan, stats, metadata, max_violation_share, count_tuples)
    text = rules_yaml(found, stats.rows, share)         # the config's `rules:` block, evidence as comments

What it looks for, and the rule each becomes (synthlake.rules):
- a column computed from others (a derived expression): equal to another column, the sum or product of two
  numeric columns, or the year, month, day, weekday or hour of a datetime;
- a numeric column fixed by a key column (a derived lookup): the mean of a numeric column per key, or the
  column's own value per key (per date, per category), where keys repeat (MIN_ROWS_PER_KEY rows each on average);
- an order between two numeric or two datetime columns (an inequality, strict when no row has them equal);
- two low-cardinality columns (categorical, or integers with few values) that take far fewer combinations
  than independent columns would (fixed_combinations; pairs sharing a column merged when their tuples stay few).

A candidate becomes a rule only if it is broken by at most half of `max_violation_share` of the rows (the train
stage refuses a rule that more than that share of its training rows break; half leaves room for a training
split less clean than the whole), and holds on at least `min_support` rows with its columns present. What is
implied is left out: an inequality that the two columns' ranges already keep (independent columns would break it
on fewer than MIN_INDEPENDENT_BREAK of pairs), one implied by two others (a <= b <= c makes a <= c), a relation on
a column another rule already computes. Each rule is checked with the rules before it (synthlake.rules.parse_rules:
one rule per column, no cycle), in this order: expressions, lookups, combinations, inequalities.

The rows per candidate are counted by `row_counts`, additive over any split of the rows, so that a Spark job sums
it per partition with this very code; lookups, combinations and quantiles are group statistics (`measure` computes
them in pandas, pipelines.rule_discovery in Spark).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import yaml

from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata
from synthlake.rules import parse_rules
from synthlake.rules_base import values
from synthlake.rules_bounds import UNITS
from synthlake.rules_expr import column_ref

SCREEN_SHARE = 0.05  # a candidate on the sample: at most this share of its rows break it
SCREEN_RATIO = 0.8  # a pair on the sample: at most this share of the combinations independence would give
SCREEN_ROWS = 256  # the sample's first rows on which sums and products are tried first
MIN_SUPPORT = 20  # rows with the rule's columns present, and at least MIN_SUPPORT_SHARE of the rows
MIN_SUPPORT_SHARE = 0.01
MIN_ROWS_PER_KEY = 5  # a lookup's key: rows per key on average
MAX_KEYS = 100_000  # a lookup's distinct keys (its table is kept in the model)
MAX_CARDINALITY = 50  # a column of a fixed combination: distinct values (null counts as one)
MAX_COMBINATIONS = 500  # a fixed combination: tuples seen
SPARSE_RATIO = 0.5  # a pair: at most this share of the combinations independent columns would show
MERGE_GROWTH = 1.5  # pairs sharing a column merge if the tuples are at most this times the largest pair's
MIN_INDEPENDENT_BREAK = 0.05  # an inequality: share of pairs of quantiles independent columns would break
QUANTILES = [round(0.05 * i, 2) for i in range(1, 20)]
MAX_NUMERIC = 60  # numeric columns tried in sums and products
MAX_LOOKUP_VALUES = 20  # numeric columns tried as a lookup's mean
MAX_KEY_COLUMNS = 30
DATE_PARTS = ("year", "month", "day", "weekday", "hour")
OPS = {"same": "{0}", "year": "year({0})", "month": "month({0})", "day": "day({0})",
       "weekday": "weekday({0})", "hour": "hour({0})", "add": "{0} + {1}", "multiply": "{0} * {1}"}
PRIORITY = list(OPS)  # for one column: equality first, then date parts, sums, products
CONTINUOUS = (ColumnKind.NUMERIC, ColumnKind.DATETIME)


# ---- candidates -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Formula:
    """column = OPS[op] of args: a derived expression."""

    column: str
    op: str
    args: tuple[str, ...]

    @property
    def expression(self) -> str:
        return OPS[self.op].format(*(column_ref(a) for a in self.args))

    def rule(self) -> dict:
        return {"kind": "derived", "column": self.column, "expression": self.expression}


@dataclass(frozen=True)
class Order:
    """Two numeric or two datetime columns, compared both ways."""

    x: str
    y: str


@dataclass(frozen=True)
class Lookup:
    """`column` fixed by `key`: the mean of one of `means` per key (`column` itself last: its own value)."""

    column: str
    key: str
    means: tuple[str, ...]


@dataclass(frozen=True)
class Pair:
    """Two low-cardinality columns whose combinations are counted."""

    x: str
    y: str


@dataclass
class Plan:
    formulas: list[Formula] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    lookups: list[Lookup] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)

    def ordered_columns(self) -> list[str]:
        """The columns of the orders, whose quantiles (and, for datetimes, resolution) decide() needs."""
        return list(dict.fromkeys(c for o in self.orders for c in (o.x, o.y)))

    def size(self) -> int:
        return len(self.formulas) + len(self.orders) + len(self.lookups) + len(self.pairs)


@dataclass
class LookupStats:
    keys: int  # distinct non-null keys
    support: int  # rows with the column present
    violations: dict[str, int]  # per mean column: rows the lookup would break


@dataclass
class Stats:
    """What decide() needs, over every row of the source."""

    rows: int
    counts: dict[str, int]  # row_counts, summed
    lookups: dict[Lookup, LookupStats] = field(default_factory=dict)
    pairs: dict[Pair, dict[tuple, int]] = field(default_factory=dict)  # (x value, y value) -> rows; None: null
    quantiles: dict[str, list[float]] = field(default_factory=dict)  # QUANTILES of each ordered column


def candidates(sample: pd.DataFrame, metadata: TableMetadata) -> Plan:
    """Every relation worth measuring on all rows: those that hold on all but SCREEN_SHARE of the sample."""
    specs = [s for s in metadata.columns if s.kind in (*CONTINUOUS, ColumnKind.CATEGORICAL)]
    varied = [s for s in specs if sample[s.name].nunique(dropna=False) > 1]  # a constant column says nothing
    broad = Plan(formulas=_formulas(sample, varied), orders=_orders(varied), lookups=_lookups(sample, varied),
                 pairs=_pairs(sample, varied))
    own = [Lookup(lookup.column, lookup.key, (lookup.column,)) for lookup in broad.lookups]
    stats = measure(sample, Plan(broad.formulas, broad.orders, own, broad.pairs), metadata)
    rows, counts = stats.rows, stats.counts
    plan = Plan()
    for i, f in enumerate(broad.formulas):
        if counts[f"f{i}_support"] and counts[f"f{i}_violations"] <= SCREEN_SHARE * rows:
            plan.formulas.append(f)
    for i, o in enumerate(broad.orders):
        support, le, ge = (counts[f"o{i}_{k}"] for k in ("support", "le", "ge"))
        if support and le + ge - support < support and min(support - le, support - ge) <= SCREEN_SHARE * support:
            plan.orders.append(o)
    for lookup in broad.lookups:  # on a sample, only the column's own value per key can be judged
        own = stats.lookups[Lookup(lookup.column, lookup.key, (lookup.column,))]
        if own.support and own.violations[lookup.column] <= SCREEN_SHARE * rows:
            plan.lookups.append(lookup)
    for pair in broad.pairs:
        observed, expected = _sparsity(stats.pairs[pair])
        if observed <= SCREEN_RATIO * expected:
            plan.pairs.append(pair)
    return plan


def _formulas(sample: pd.DataFrame, specs: list[ColumnSpec]) -> list[Formula]:
    """Derived expressions that hold on the sample's first SCREEN_ROWS rows (all but SCREEN_SHARE of them): a
    copy of an earlier column of the same kind, date parts, sums and products."""
    head = sample.head(SCREEN_ROWS)
    continuous = [(s, values(head[s.name], s)) for s in specs if s.kind in CONTINUOUS]
    found = []
    for i, (a, x) in enumerate(continuous):
        for c, y in continuous[i + 1:]:
            if a.kind == c.kind and (a.integer or not c.integer) and _share_same(x, y) >= 1 - SCREEN_SHARE:
                found.append(Formula(c.name, "same", (a.name,)))
    numeric = [s for s in specs if s.kind == ColumnKind.NUMERIC]
    return found + _date_parts(head, specs) + _arithmetic(head, numeric[:MAX_NUMERIC])


def _share_same(x: np.ndarray, y: np.ndarray) -> float:
    return float(((x == y) | (np.isnan(x) & np.isnan(y))).mean()) if len(x) else 0.0


def _date_parts(head: pd.DataFrame, specs: list[ColumnSpec]) -> list[Formula]:
    """c = year(t), month(t), ... for an integer c."""
    integers = [(s.name, values(head[s.name], s)) for s in specs if s.integer]
    found = []
    for t in (s for s in specs if s.kind == ColumnKind.DATETIME):
        stamps = pd.to_datetime(head[t.name])
        for op in DATE_PARTS:
            part = pd.to_numeric(getattr(stamps.dt, op)).to_numpy(dtype=float, na_value=np.nan)
            for name, x in integers:
                if _share_same(x, part) >= 1 - SCREEN_SHARE:
                    found.append(Formula(name, op, (t.name,)))
    return found


def _arithmetic(head: pd.DataFrame, numeric: list[ColumnSpec]) -> list[Formula]:
    """c = a + b and c = a * b, every triple of one `a` at once; an integer c only from integers."""
    if len(numeric) < 3:
        return []
    x = np.column_stack([values(head[s.name], s) for s in numeric])  # rows x columns
    integer = np.array([s.integer for s in numeric])
    found = []
    for op, combine in (("add", np.add), ("multiply", np.multiply)):
        for i in range(len(numeric)):
            with np.errstate(all="ignore"):
                combined = combine(x[:, i:i + 1], x[:, i + 1:])  # rows x (a = i, b > i)
                same = np.isclose(x[:, None, :], combined[:, :, None], rtol=1e-9, atol=0) | (
                    np.isnan(x[:, None, :]) & np.isnan(combined[:, :, None]))  # rows x b x c
            share = same.mean(axis=0)
            for jb, k in zip(*np.nonzero(share >= 1 - SCREEN_SHARE), strict=True):
                j = i + 1 + jb
                if k not in (i, j) and (not integer[k] or (integer[i] and integer[j])):
                    found.append(Formula(numeric[k].name, op, (numeric[i].name, numeric[j].name)))
    return found


def _orders(specs: list[ColumnSpec]) -> list[Order]:
    continuous = [s for s in specs if s.kind in CONTINUOUS]
    return [Order(a.name, b.name) for i, a in enumerate(continuous) for b in continuous[i + 1:] if a.kind == b.kind]


def _lookups(sample: pd.DataFrame, specs: list[ColumnSpec]) -> list[Lookup]:
    """Numeric columns by key columns (categorical, datetime, integers with few values) whose values repeat: at
    least half the sample's rows share their key with another row."""
    numeric = [s for s in specs if s.kind == ColumnKind.NUMERIC]
    keys = [s for s in specs if s.kind in (ColumnKind.CATEGORICAL, ColumnKind.DATETIME)
            or (s.integer and sample[s.name].nunique() <= MAX_CARDINALITY)]
    keys = [s for s in keys if _repeated_share(sample[s.name]) >= 0.5][:MAX_KEY_COLUMNS]
    found = []
    for key in keys:
        for c in numeric:
            if c.name != key.name:
                means = [v.name for v in numeric if v.name not in (c.name, key.name)][:MAX_LOOKUP_VALUES]
                found.append(Lookup(c.name, key.name, (*means, c.name)))
    return found


def _repeated_share(column: pd.Series) -> float:
    sizes = column.value_counts(dropna=False)
    return float(sizes[sizes > 1].sum() / max(len(column), 1))


def _pairs(sample: pd.DataFrame, specs: list[ColumnSpec]) -> list[Pair]:
    few = [s for s in specs if (s.kind == ColumnKind.CATEGORICAL or s.integer)
           and sample[s.name].nunique(dropna=False) <= MAX_CARDINALITY]
    return [Pair(a.name, b.name) for i, a in enumerate(few) for b in few[i + 1:]]


# ---- measuring ------------------------------------------------------------------------------------------
def counter_names(plan: Plan, metadata: TableMetadata) -> list[str]:
    """The additive counters of row_counts, in order."""
    names = ["rows"]
    names += [f"f{i}_{k}" for i in range(len(plan.formulas)) for k in ("support", "violations")]
    names += [f"o{i}_{k}" for i in range(len(plan.orders)) for k in ("support", "le", "ge")]
    names += [f"u{j}_{unit}" for j, _ in enumerate(_datetimes(plan, metadata)) for unit in _UNITS]
    return names


_UNITS = [u for u in UNITS if u != "microsecond"]


def _datetimes(plan: Plan, metadata: TableMetadata) -> list[str]:
    return [c for c in plan.ordered_columns() if metadata.column(c).kind == ColumnKind.DATETIME]


def row_counts(frame: pd.DataFrame, plan: Plan, metadata: TableMetadata) -> dict[str, int]:
    """Per candidate, rows counted with the rules engine's own checks; a sum over parts of the rows gives the
    counts of the whole. Formulas: rows with all columns present, rows the derived rule breaks. Orders: rows with
    both present, rows with x <= y, rows with x >= y. Datetimes of orders: rows not a whole number of each unit."""
    counts = {"rows": len(frame)}
    present = {s.name: pd.notna(values(frame[s.name], s)) for s in metadata.columns
               if s.name in _used(plan)}
    for i, formula in enumerate(plan.formulas):
        rule = parse_rules([formula.rule()], metadata).rules[0]
        rule.fit(frame)
        both = np.logical_and.reduce([present[c] for c in (formula.column, *formula.args)])
        counts[f"f{i}_support"] = int(both.sum())
        counts[f"f{i}_violations"] = int(rule.violations(frame).sum())
    for i, order in enumerate(plan.orders):
        x, y = (values(frame[c], metadata.column(c)) for c in (order.x, order.y))
        counts[f"o{i}_support"] = int((present[order.x] & present[order.y]).sum())
        counts[f"o{i}_le"], counts[f"o{i}_ge"] = int((x <= y).sum()), int((x >= y).sum())
    for j, column in enumerate(_datetimes(plan, metadata)):
        x = values(frame[column], metadata.column(column))
        x = x[~np.isnan(x)]
        for unit in _UNITS:
            counts[f"u{j}_{unit}"] = int((np.mod(x, UNITS[unit]) != 0).sum())
    return counts


def _used(plan: Plan) -> set[str]:
    return {c for f in plan.formulas for c in (f.column, *f.args)} | set(plan.ordered_columns())


def measure(frame: pd.DataFrame, plan: Plan, metadata: TableMetadata) -> Stats:
    """Every statistic decide() needs, over the rows of `frame` (pandas)."""
    stats = Stats(rows=len(frame), counts=row_counts(frame, plan, metadata))
    labels: dict[str, pd.Series] = {}

    def label(column: str) -> pd.Series:
        if column not in labels:
            labels[column] = _labels(frame[column], metadata.column(column))
        return labels[column]

    for key in dict.fromkeys(lookup.key for lookup in plan.lookups):
        by_key = [lookup for lookup in plan.lookups if lookup.key == key]
        stats.lookups |= lookup_stats(frame, key, by_key, metadata, label(key))
    for pair in plan.pairs:
        x, y = label(pair.x), label(pair.y)
        counts = pd.DataFrame({"x": x, "y": y}).value_counts(dropna=False)
        stats.pairs[pair] = {(_none(a), _none(b)): int(n) for (a, b), n in counts.items()}
    for column in plan.ordered_columns():
        x = values(frame[column], metadata.column(column))
        present = x[~np.isnan(x)]
        stats.quantiles[column] = np.quantile(present, QUANTILES).tolist() if len(present) else []
    return stats


def lookup_stats(frame: pd.DataFrame, key: str, lookups: list[Lookup], metadata: TableMetadata,
                 labels: pd.Series | None = None) -> dict[Lookup, LookupStats]:
    """The lookups by one key, from one group-by of it: per key, the rows, each fixed column's count, min and
    max, and each mean column's mean; a key's rows all break a lookup by a mean column unless the column is
    present on all of them, the same on all, and equal to the mean (group_holds). Null keys break it."""
    labels = _labels(frame[key], metadata.column(key)) if labels is None else labels
    fixed = list(dict.fromkeys(lookup.column for lookup in lookups))
    means = list(dict.fromkeys(m for lookup in lookups for m in lookup.means))
    table = pd.DataFrame({"key": labels, **{f"c{i}": values(frame[c], metadata.column(c)) for i, c in
                                            enumerate(fixed)},
                          **{f"m{j}": values(frame[m], metadata.column(m)) for j, m in enumerate(means)}})
    groups = table.groupby("key", dropna=False, sort=False)
    n = groups.size().to_numpy()
    columns = [f"c{i}" for i in range(len(fixed))]
    count, low, high = (groups[columns].agg(how).to_numpy(float) for how in ("count", "min", "max"))
    mean = groups[[f"m{j}" for j in range(len(means))]].mean().to_numpy(float)
    keyed = pd.notna(groups.size().index.to_series()).to_numpy()
    found = {}
    for lookup in lookups:
        i, integer = fixed.index(lookup.column), metadata.column(lookup.column).integer
        violations = {}
        for m in lookup.means:
            holds = group_holds(n, count[:, i], low[:, i], high[:, i], mean[:, means.index(m)], integer) & keyed
            violations[m] = int(n[~holds].sum())
        found[lookup] = LookupStats(keys=int(keyed.sum()), support=int(count[:, i].sum()), violations=violations)
    return found


def group_holds(n, nc, low, high, mean, integer: bool) -> np.ndarray:
    """Per key group: whether the lookup's value (the mean) is the column on every row of the group."""
    with np.errstate(invalid="ignore"):
        close = low == np.round(mean) if integer else np.abs(low - mean) <= 1e-9 * np.abs(mean)
        return (nc == n) & (low == high) & close


def _labels(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    """A column's values as group labels: strings, numbers (datetimes in microseconds) or None."""
    x = pd.Series(values(series, spec), dtype=object)
    return x.where(x.notna(), None)


def _none(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _sparsity(counts: dict[tuple, int]) -> tuple[int, float]:
    """(combinations seen, combinations independent columns with these marginals would show in as many rows)."""
    n = sum(counts.values())
    if not n:
        return 0, 0.0
    px, py = {}, {}
    for (x, y), k in counts.items():
        px[x], py[y] = px.get(x, 0) + k, py.get(y, 0) + k
    cell = np.clip(np.outer(list(px.values()), list(py.values())) / n**2, 0, 1 - 1e-15)
    return len(counts), float((-np.expm1(n * np.log1p(-cell))).sum())


# ---- deciding -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Found:
    rule: dict
    evidence: str  # one line: what holds on how many rows


@dataclass
class Discovery:
    found: list[Found] = field(default_factory=list)
    skipped: list[tuple[dict, str]] = field(default_factory=list)  # held, but refused with the rules before it


def min_support(rows: int) -> int:
    return max(MIN_SUPPORT, math.ceil(MIN_SUPPORT_SHARE * rows))


def allowed_violations(rows: int, max_violation_share: float) -> int:
    """Rows a discovered rule may break: half the share the train stage allows."""
    return int(rows * max_violation_share / 2)


def decide(plan: Plan, stats: Stats, metadata: TableMetadata, max_violation_share: float = 0.01,
           count_tuples: Callable[[list[str]], int] | None = None) -> Discovery:
    """The rules to propose, each with its evidence, in the order they are tried: expressions, lookups,
    combinations, inequalities; each must parse with those before it (one rule per column, no cycle).
    `count_tuples(columns)` counts the distinct tuples of several columns on all rows (merging pairs)."""
    allowed, support = allowed_violations(stats.rows, max_violation_share), min_support(stats.rows)
    discovery = Discovery()
    for found in _decide_formulas(plan, stats, allowed, support):
        _accept(discovery, found, metadata)
    for found in _decide_lookups(plan, stats, allowed, support, _written(discovery)):
        _accept(discovery, found, metadata)
    written = _written(discovery)
    for found in _decide_pairs(plan, stats, metadata, support, written, count_tuples):
        _accept(discovery, found, metadata)
    for found in _decide_orders(plan, stats, metadata, allowed, support, _written(discovery)):
        _accept(discovery, found, metadata)
    return discovery


def _accept(discovery: Discovery, found: Found, metadata: TableMetadata) -> None:
    rules = [f.rule for f in discovery.found] + [found.rule]
    try:
        parse_rules(rules, metadata).learned_metadata()
    except ValueError as exc:
        discovery.skipped.append((found.rule, str(exc)))
        return
    discovery.found.append(found)


def _written(discovery: Discovery) -> set[str]:
    out = set()
    for f in discovery.found:
        r = f.rule
        out |= set(r["columns"]) if r["kind"] == "fixed_combinations" else {r.get("column", r.get("high"))}
    return out


def _held(rows: int, broken: int, of: str = "rows") -> str:
    share = f", {broken / rows:.2%}" if broken else ""
    return f"holds on {rows - broken:,} of {rows:,} {of} ({broken:,} violations{share})"


def _decide_formulas(plan: Plan, stats: Stats, allowed: int, support: int) -> list[Found]:
    best: dict[str, tuple[int, int, Formula, int]] = {}
    for i, f in enumerate(plan.formulas):
        present, broken = stats.counts[f"f{i}_support"], stats.counts[f"f{i}_violations"]
        if present < support or broken > allowed:
            continue
        rank = (PRIORITY.index(f.op), broken)
        if f.column not in best or rank < best[f.column][:2]:
            best[f.column] = (*rank, f, present)
    found = []
    for _, broken, f, present in best.values():
        nulls = stats.rows - present
        note = f"; {nulls:,} rows with a null in it" if nulls else ""
        found.append(Found(f.rule(), f"{f.column} = {f.expression}: {_held(stats.rows, broken)}{note}"))
    return found


def _decide_lookups(plan: Plan, stats: Stats, allowed: int, support: int, written: set[str]) -> list[Found]:
    best: dict[str, tuple] = {}
    for lookup in plan.lookups:
        s = stats.lookups[lookup]
        enough = s.support >= max(support, MIN_ROWS_PER_KEY * s.keys) and 2 <= s.keys <= MAX_KEYS
        if lookup.column in written or not enough:
            continue
        holding = [(broken, m == lookup.column, m) for m, broken in s.violations.items() if broken <= allowed]
        if not holding:
            continue
        broken, _, mean = min(holding)  # another column's mean before the column's own value
        rank = (s.keys, broken)
        if lookup.column not in best or rank < best[lookup.column][0]:
            best[lookup.column] = (rank, lookup, mean, broken, s)
    found = []
    for _, lookup, mean, broken, s in best.values():
        what = f"its own value per {lookup.key}" if mean == lookup.column else f"the mean of {mean} per {lookup.key}"
        rule = {"kind": "derived", "column": lookup.column, "lookup": {"by": [lookup.key], "value": mean}}
        evidence = (f"{lookup.column} = {what} ({s.keys:,} keys, {s.support / s.keys:,.1f} rows each): "
                    f"{_held(stats.rows, broken)}; learns from the rows")
        found.append(Found(rule, evidence))
    return found


def _decide_pairs(plan: Plan, stats: Stats, metadata: TableMetadata, support: int, written: set[str],
                  count_tuples: Callable[[list[str]], int] | None) -> list[Found]:
    sparse = []
    for pair in plan.pairs:
        counts = stats.pairs[pair]
        if pair.x in written or pair.y in written or sum(counts.values()) < support:
            continue
        cards = [len({k[j] for k in counts}) for j in (0, 1)]
        observed, expected = _sparsity(counts)
        if min(cards) >= 2 and max(cards) <= MAX_CARDINALITY and observed <= MAX_COMBINATIONS \
                and observed <= SPARSE_RATIO * expected:
            sparse.append((observed / expected, pair, observed, expected, cards))
    sparse.sort(key=lambda s: s[0])
    order = {name: i for i, name in enumerate(metadata.names)}
    found, taken = [], set()
    for component in _components([s[1] for s in sparse]):
        members = [s for s in sparse if {s[1].x, s[1].y} <= component]
        columns = sorted(component, key=order.get)
        if len(columns) > 2 and count_tuples is not None:
            tuples = count_tuples(columns)
            if tuples <= MAX_COMBINATIONS and tuples <= MERGE_GROWTH * max(m[2] for m in members):
                pairs = "; ".join(_pair_text(*m[1:]) for m in members)
                evidence = (f"({', '.join(columns)}) take {tuples:,} combinations over {stats.rows:,} rows ({pairs}); "
                            "the rule keeps every combination seen (0 violations); learns from the rows")
                found.append(Found({"kind": "fixed_combinations", "columns": columns}, evidence))
                taken |= component
                continue
        for _, pair, observed, expected, cards in members:  # the sparsest pairs that share no column
            if pair.x in taken or pair.y in taken:
                continue
            evidence = (f"{_pair_text(pair, observed, expected, cards)} over {stats.rows:,} rows; the rule keeps "
                        "every combination seen (0 violations); learns from the rows")
            found.append(Found({"kind": "fixed_combinations", "columns": [pair.x, pair.y]}, evidence))
            taken |= {pair.x, pair.y}
    return found


def _pair_text(pair: Pair, observed: int, expected: float, cards: list[int]) -> str:
    return (f"({pair.x}, {pair.y}) take {observed:,} of the {cards[0]} x {cards[1]} combinations (independent "
            f"columns: about {expected:,.0f})")


def _components(pairs: list[Pair]) -> list[set[str]]:
    components: list[set[str]] = []
    for pair in pairs:
        joined = [c for c in components if pair.x in c or pair.y in c]
        merged = {pair.x, pair.y}.union(*joined)
        components = [c for c in components if c not in joined] + [merged]
    return components


def _decide_orders(plan: Plan, stats: Stats, metadata: TableMetadata, allowed: int, support: int,
                   written: set[str]) -> list[Found]:
    edges: dict[tuple[str, str], tuple[int, int, int]] = {}  # (low, high) -> (broken, with both, equal)
    for i, o in enumerate(plan.orders):
        both, le, ge = (stats.counts[f"o{i}_{k}"] for k in ("support", "le", "ge"))
        equal = le + ge - both
        if both < support or equal == both:
            continue
        holds = [(o.x, o.y, both - le), (o.y, o.x, both - ge)]
        holding = [(low, high, broken) for low, high, broken in holds if broken <= allowed]
        if len(holding) == 1:  # both: mostly equal, neither ordered
            low, high, broken = holding[0]
            edges[(low, high)] = (broken, both, equal)
    implied = {(a, c) for (a, b) in edges for (b2, c) in edges if b == b2 and (a, c) in edges}
    best: dict[str, tuple] = {}
    for (low, high), (broken, both, equal) in edges.items():
        if (low, high) in implied or high in written:
            continue
        breaks = _independent_break(stats.quantiles.get(low, []), stats.quantiles.get(high, []))
        if breaks < MIN_INDEPENDENT_BREAK:
            continue
        median = _median(stats.quantiles[low])
        rank = (broken, -median)  # the fewest violations, then the tightest: the highest low
        if high not in best or rank < best[high][0]:
            best[high] = (rank, low, broken, both, equal, breaks)
    found = []
    for high, (_, low, broken, both, equal, breaks) in best.items():
        strict = equal == 0
        rule = {"kind": "inequality", "low": low, "high": high}
        if strict:
            rule["strict"] = True
        spec = metadata.column(high)
        if spec.kind == ColumnKind.DATETIME:
            rule["unit"] = _unit(plan, stats, metadata, high)
        equal_text = "none equal" if strict else f"{equal:,} equal"
        evidence = (f"{high} {'>' if strict else '>='} {low}: {_held(both, broken, 'rows with both')}, "
                    f"{equal_text}; independent columns would break it on about {breaks:.0%} of pairs")
        found.append(Found(rule, evidence))
    return found


def _independent_break(low: list[float], high: list[float]) -> float:
    """The share of (low, high) pairs of quantiles with low > high: how often independent columns with these
    distributions would break low <= high."""
    if not low or not high:
        return 0.0
    return float((np.asarray(low)[:, None] > np.asarray(high)[None, :]).mean())


def _median(quantiles: list[float]) -> float:
    return quantiles[len(quantiles) // 2] if quantiles else -math.inf


def _unit(plan: Plan, stats: Stats, metadata: TableMetadata, column: str) -> str:
    """The coarsest unit every value of a datetime column is a whole number of (the rule then learns none)."""
    j = _datetimes(plan, metadata).index(column)
    return next((u for u in _UNITS if stats.counts[f"u{j}_{u}"] == 0), "microsecond")


# ---- writing --------------------------------------------------------------------------------------------
def rules_yaml(discovery: Discovery, rows: int, max_violation_share: float = 0.01) -> str:
    """The `rules:` block of a dataset config: a header, then each rule in flow style after a comment with its
    evidence. Without rules, only comments."""
    allowed = allowed_violations(rows, max_violation_share)
    header = (f"Rules found by `synthlake infer-config` over all {rows:,} rows of the source: each breaks on at most "
              f"{allowed:,} rows (half of train.max_rule_violations, {max_violation_share:g}). Keep those that are "
              "business logic, not chance. Rules that learn from the rows (fixed_combinations, lookups) are refused "
              "under a `privacy:` budget: remove them if you add one.")
    lines = textwrap.wrap(header, 118, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)
    if not discovery.found:
        return "\n".join([*lines, "# None found.", ""])
    lines.append("rules:")
    for found in discovery.found:
        lines += textwrap.wrap(found.evidence, 116, initial_indent="  # ", subsequent_indent="  #   ")
        lines.append(f"  - {_flow(found.rule)}")
    return "\n".join([*lines, ""])


def _flow(rule: dict) -> str:
    return yaml.safe_dump(rule, default_flow_style=True, sort_keys=False, width=1 << 20).strip()


__all__ = ["Discovery", "Formula", "Found", "Lookup", "Order", "Pair", "Plan", "Stats", "candidates", "decide",
           "lookup_stats", "measure", "row_counts", "rules_yaml"]
