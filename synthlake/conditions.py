"""What a user asks of the rows beyond "like the real ones": a condition every row satisfies (`where`), seed
rows whose values are kept (one output row per seed row), a column rebalanced to given shares, a target made
independent of sensitive columns (statistical parity).

A sampler meets them by construction, never by rejection: tabular_ar draws the constrained columns first
and only among allowed values (synthlake.generators.ar_conditional). Here: what they mean, parsed and
checked against the table's metadata, with no generator code.

`where` is the SQL subset Spark reads the same way: predicates on one column each (`=`, `!=`, `<>`, `<`,
`<=`, `>`, `>=`, `[NOT] IN (...)`, `[NOT] BETWEEN a AND b`, `IS [NOT] NULL`), joined by AND; OR only
between predicates on the same column; parentheses; names with any characters in backticks; strings in
single quotes (`''` inside); `TIMESTAMP '...'` or a plain string for a datetime column.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from synthlake.column_types import category_strings, to_float
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata


class ConditionError(ValueError):
    """A condition that cannot be met or does not parse; the message names the column or the text."""


@dataclass(frozen=True)
class ValueSet:
    """The values a column may take: numbers in closed `intervals` (seconds for datetimes) or strings in
    `labels` (all but them when `inverted`); `null` whether null may."""

    null: bool = False
    intervals: tuple[tuple[float, float], ...] | None = None
    labels: frozenset[str] | None = None
    inverted: bool = False

    @property
    def numeric(self) -> bool:
        return self.intervals is not None

    def contains_numbers(self, x: np.ndarray) -> np.ndarray:
        """Which floats (NaN: null) are in the set."""
        ok = np.zeros(len(x), dtype=bool)
        for low, high in self.intervals or ():
            ok |= (x >= low) & (x <= high)
        return np.where(np.isnan(x), self.null, ok)

    def contains_labels(self, labels: pd.Series) -> np.ndarray:
        """Which strings (None: null) are in the set."""
        missing = labels.isna().to_numpy()
        hit = labels.isin(self.labels or ()).to_numpy()
        return np.where(missing, self.null, hit != self.inverted)

    def __and__(self, other: ValueSet) -> ValueSet:
        null = self.null and other.null
        if self.numeric:
            return ValueSet(null, _merge([(max(a, c), min(b, d)) for a, b in self.intervals
                                          for c, d in other.intervals]))
        labels, inverted = _combine(self.labels, self.inverted, other.labels, other.inverted, both=True)
        return ValueSet(null, labels=labels, inverted=inverted)

    def __or__(self, other: ValueSet) -> ValueSet:
        null = self.null or other.null
        if self.numeric:
            return ValueSet(null, _merge(list(self.intervals) + list(other.intervals)))
        labels, inverted = _combine(self.labels, self.inverted, other.labels, other.inverted, both=False)
        return ValueSet(null, labels=labels, inverted=inverted)


def _merge(intervals: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    merged: list[list[float]] = []
    for low, high in sorted(i for i in intervals if i[0] <= i[1]):
        if merged and low <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return tuple((a, b) for a, b in merged)


def _combine(a: frozenset, a_inv: bool, b: frozenset, b_inv: bool, both: bool) -> tuple[frozenset, bool]:
    """Intersection (`both`) or union of two label sets, each a set or the complement of one."""
    if not both:  # De Morgan: a | b = not (not a & not b)
        labels, inverted = _combine(a, not a_inv, b, not b_inv, both=True)
        return labels, not inverted
    if not a_inv and not b_inv:
        return a & b, False
    if a_inv and b_inv:
        return a | b, True
    return (b - a, False) if a_inv else (a - b, False)


# ---- parsing `where` -----------------------------------------------------------------------------------
_TOKEN = re.compile(r"""\s*(?:(?P<name>`(?:[^`]|``)+`)|(?P<string>'(?:[^']|'')*')
    |(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op><=|>=|<>|!=|==|=|<|>|\(|\)|,))""", re.VERBOSE)
_GENERATED = "{what}: column {name} is generated (an identifier or PII), not learned: it cannot be conditioned on"
_KEYWORDS = {"AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "TIMESTAMP", "DATE"}


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos, text = [], 0, text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ConditionError(f"where: cannot read {text[pos:pos + 20]!r} (at character {pos + 1}); column "
                                 "names with characters other than letters, digits and _ go in backticks")
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            kind, value = "keyword", value.upper()
        tokens.append((kind, value))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str, metadata: TableMetadata):
        self.text, self.tokens, self.pos = text, _tokens(text), 0
        self.specs = {c.name: c for c in metadata.columns}

    def peek(self, *values: str) -> bool:
        return self.pos < len(self.tokens) and self.tokens[self.pos][1] in values

    def take(self, *values: str) -> str:
        if not self.peek(*values):
            found = self.tokens[self.pos][1] if self.pos < len(self.tokens) else "the end"
            raise ConditionError(f"where: expected {' or '.join(values)}, found {found!r} in {self.text!r}")
        self.pos += 1
        return self.tokens[self.pos - 1][1]

    def parse(self) -> dict[str, ValueSet]:
        result = self.disjunction()
        if self.pos < len(self.tokens):
            raise ConditionError(f"where: unexpected {self.tokens[self.pos][1]!r} in {self.text!r}")
        return result

    def disjunction(self) -> dict[str, ValueSet]:
        result = self.conjunction()
        while self.peek("OR"):
            self.take("OR")
            other = self.conjunction()
            if len(result) != 1 or result.keys() != other.keys():
                raise ConditionError(f"where: OR joins conditions on one column only (each row's columns are "
                                     f"constrained one by one), in {self.text!r}")
            (name, a), b = next(iter(result.items())), next(iter(other.values()))
            result = {name: a | b}
        return result

    def conjunction(self) -> dict[str, ValueSet]:
        result = self.term()
        while self.peek("AND"):
            self.take("AND")
            for name, values in self.term().items():
                result[name] = result[name] & values if name in result else values
        return result

    def term(self) -> dict[str, ValueSet]:
        if self.peek("("):
            self.take("(")
            result = self.disjunction()
            self.take(")")
            return result
        spec = self.column()
        return {spec.name: self.predicate(spec)}

    def column(self) -> ColumnSpec:
        kind, value = self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")
        if kind not in ("name", "word"):
            raise ConditionError(f"where: expected a column name, found {value or 'the end'!r} in {self.text!r}")
        self.pos += 1
        name = value[1:-1].replace("``", "`") if kind == "name" else value
        if name not in self.specs:
            raise ConditionError(f"where: no column {name!r} in the table (names with spaces or dots go in "
                                 "backticks)")
        if not self.specs[name].learned:
            raise ConditionError(_GENERATED.format(what="where", name=repr(name)))
        return self.specs[name]

    def predicate(self, spec: ColumnSpec) -> ValueSet:
        if self.peek("IS"):
            self.take("IS")
            negated = bool(self.peek("NOT")) and bool(self.take("NOT"))
            self.take("NULL")
            return _everything(spec, null=False) if negated else _nothing(spec, null=True)
        negated = bool(self.peek("NOT")) and bool(self.take("NOT"))
        if self.peek("IN"):
            self.take("IN")
            self.take("(")
            values = [self.literal(spec)]
            while self.peek(","):
                self.take(",")
                values.append(self.literal(spec))
            self.take(")")
            result = _nothing(spec)
            for v in values:
                result = result | _compare(spec, "=", v)
            return _negate(spec, result) if negated else result
        if self.peek("BETWEEN"):
            self.take("BETWEEN")
            low = self.literal(spec)
            self.take("AND")
            high = self.literal(spec)
            result = _compare(spec, ">=", low) & _compare(spec, "<=", high)
            return _negate(spec, result) if negated else result
        if negated:
            raise ConditionError(f"where: NOT goes with IN, BETWEEN or IS NULL, in {self.text!r}")
        op = self.take("=", "==", "!=", "<>", "<", "<=", ">", ">=")
        return _compare(spec, op, self.literal(spec))

    def literal(self, spec: ColumnSpec) -> float | str:
        if self.peek("TIMESTAMP", "DATE"):
            self.pos += 1
        kind, value = self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")
        self.pos += 1
        if kind == "string":
            value = value[1:-1].replace("''", "'")
        elif kind != "number":
            raise ConditionError(f"where: expected a value for column {spec.name!r}, found {value or 'the end'!r}")
        if spec.kind == ColumnKind.CATEGORICAL:
            return value
        if spec.kind == ColumnKind.DATETIME:
            if kind != "string":
                raise ConditionError(f"where: column {spec.name!r} is a datetime: compare it with a quoted "
                                     f"date or time, not {value}")
            try:
                return float(to_float(pd.Series([pd.Timestamp(value)]), datetime=True)[0])
            except ValueError:
                raise ConditionError(f"where: {value!r} is not a date or time (column {spec.name!r})") from None
        try:
            return float(value)
        except ValueError:
            raise ConditionError(f"where: column {spec.name!r} is numeric: {value!r} is not a number") from None


def _everything(spec: ColumnSpec, null: bool) -> ValueSet:
    if spec.kind == ColumnKind.CATEGORICAL:
        return ValueSet(null, labels=frozenset(), inverted=True)
    return ValueSet(null, intervals=((-math.inf, math.inf),))


def _nothing(spec: ColumnSpec, null: bool = False) -> ValueSet:
    if spec.kind == ColumnKind.CATEGORICAL:
        return ValueSet(null, labels=frozenset())
    return ValueSet(null, intervals=())


def _negate(spec: ColumnSpec, values: ValueSet) -> ValueSet:
    """NOT, as SQL reads it: null stays excluded."""
    if spec.kind == ColumnKind.CATEGORICAL:
        return ValueSet(False, labels=values.labels, inverted=not values.inverted)
    edges, low = [], -math.inf
    for a, b in values.intervals:
        edges.append((low, np.nextafter(a, -math.inf)))
        low = np.nextafter(b, math.inf)
    return ValueSet(False, intervals=_merge([*edges, (low, math.inf)]))


def _compare(spec: ColumnSpec, op: str, value: float | str) -> ValueSet:
    if spec.kind == ColumnKind.CATEGORICAL:
        if op in ("=", "=="):
            return ValueSet(labels=frozenset([value]))
        if op in ("!=", "<>"):
            return ValueSet(labels=frozenset([value]), inverted=True)
        raise ConditionError(f"where: column {spec.name!r} is categorical: compare it with =, != or IN, not {op}")
    up, down = np.nextafter(value, math.inf), np.nextafter(value, -math.inf)
    intervals = {"=": [(value, value)], "==": [(value, value)], "<": [(-math.inf, down)],
                 "<=": [(-math.inf, value)], ">": [(up, math.inf)], ">=": [(value, math.inf)],
                 "!=": [(-math.inf, down), (up, math.inf)], "<>": [(-math.inf, down), (up, math.inf)]}[op]
    return ValueSet(intervals=_merge(intervals))


def parse_where(text: str, metadata: TableMetadata) -> dict[str, ValueSet]:
    """Each constrained column's allowed values; a ConditionError names what does not parse or cannot hold."""
    if not text or not text.strip():
        raise ConditionError("where: the condition is empty")
    result = _Parser(text, metadata).parse()
    for name, values in result.items():
        if not values.null and (values.intervals == () or (values.labels == frozenset() and not values.inverted)):
            raise ConditionError(f"where: no value of column {name!r} satisfies {text!r}")
    return result


# ---- what a request asks for -------------------------------------------------------------------------
@dataclass(frozen=True)
class Rebalance:
    """`column` (categorical) follows `shares` (label -> share); labels not named share what is left in the
    proportions the model learned."""

    column: str
    shares: dict[str, float]


@dataclass(frozen=True)
class Fairness:
    """`target` independent of the `sensitive` columns (statistical parity); everything else as learned."""

    target: str
    sensitive: tuple[str, ...]


@dataclass(frozen=True)
class Conditions:
    """One sampling request's conditions (any may be None). `seed_rows`: partial rows whose values are kept,
    one output row per seed row; a block of rows takes `slice(start, stop)` of them."""

    where: str | None = None
    seed_rows: pd.DataFrame | None = field(default=None, compare=False)
    rebalance: Rebalance | None = None
    fairness: Fairness | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.where, self.seed_rows, self.rebalance, self.fairness))

    def slice(self, start: int, stop: int) -> Conditions:
        if self.seed_rows is None:
            return self
        return replace(self, seed_rows=self.seed_rows.iloc[start:stop].reset_index(drop=True))

    def fixed_columns(self) -> dict[str, list[str]]:
        """The columns whose values are set before the others are drawn, by what sets them."""
        return {"the seed rows": list(self.seed_rows.columns) if self.seed_rows is not None else [],
                "rebalance": [self.rebalance.column] if self.rebalance else [],
                "fairness": [self.fairness.target, *self.fairness.sensitive] if self.fairness else []}

    def check(self, metadata: TableMetadata) -> dict[str, ValueSet]:
        """The parsed `where`; a ConditionError for any column that is unknown, not learned, asked for twice
        or would keep every column of a seed row."""
        learned = {c.name for c in metadata.learned_columns}
        where = parse_where(self.where, metadata) if self.where is not None else {}
        named = {"where": list(where), **self.fixed_columns()}
        seeded = named["the seed rows"]
        for what, columns in named.items():
            for name in columns:
                if name not in metadata.names:
                    raise ConditionError(f"{what}: no column {name!r} in the table")
                if name not in learned:
                    raise ConditionError(_GENERATED.format(what=what, name=repr(name)))
        if seeded and set(learned) <= set(seeded):
            raise ConditionError("the seed rows hold every learned column: there would be nothing to generate "
                                 "(and real rows given as seeds would be copied out)")
        fixed = [c for what, columns in named.items() if what != "where" for c in columns]
        twice = {c for c in fixed if fixed.count(c) > 1} | (set(fixed) & set(where))
        if twice:
            raise ConditionError("a column appears in more than one of where, the seed rows, rebalance and "
                                 f"fairness: {sorted(twice)}")
        if self.rebalance:
            _check_rebalance(self.rebalance, metadata)
        return where


def _check_rebalance(rebalance: Rebalance, metadata: TableMetadata) -> None:
    spec = next(c for c in metadata.columns if c.name == rebalance.column)
    if spec.kind != ColumnKind.CATEGORICAL:
        raise ConditionError(f"rebalance: column {spec.name!r} is {spec.kind.value}; only a categorical column "
                             "can be rebalanced")
    shares = rebalance.shares
    if not shares or any(not 0 <= s <= 1 for s in shares.values()) or sum(shares.values()) > 1 + 1e-9:
        raise ConditionError(f"rebalance: the shares of column {spec.name!r} must each be in [0, 1] and add up to "
                             f"at most 1, got {shares}")


def rebalanced(frame: pd.DataFrame, rebalance: Rebalance, seed: int) -> pd.DataFrame:
    """`frame`'s rows resampled (with replacement, seeded) so that the column follows the shares, the other
    categories keeping their proportions: the real rows a rebalanced run's rows are compared with."""
    labels = category_strings(frame[rebalance.column])
    counts = labels.value_counts(dropna=False)
    named = {k: v / counts[k] for k, v in rebalance.shares.items() if counts.get(k, 0) > 0}  # weight per row
    others = len(labels) - sum(counts[k] for k in named)
    left = max(0.0, 1.0 - sum(rebalance.shares[k] for k in named))
    weights = labels.map(named).fillna(left / others if others else 0.0).to_numpy(float)
    if weights.sum() <= 0:
        return frame
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(frame), size=len(frame), p=weights / weights.sum())
    return frame.iloc[np.sort(picks)].reset_index(drop=True)


def parity_gap(counts: pd.DataFrame, target: str, sensitive: list[str]) -> float:
    """Statistical parity gap from row counts per (sensitive..., target) group (column `count`): over the
    target's values, the largest difference between two sensitive groups in the share of rows with that
    value. 0: the target is independent of the sensitive columns."""
    keys = [category_strings(counts[c]).fillna("<null>") for c in sensitive]
    table = counts.assign(_group=pd.Series(list(zip(*keys, strict=True)), index=counts.index).astype(str),
                          _target=category_strings(counts[target]).fillna("<null>"))
    shares = table.pivot_table(index="_group", columns="_target", values="count", aggfunc="sum", fill_value=0)
    shares = shares.div(shares.sum(axis=1), axis=0)
    return float((shares.max() - shares.min()).max()) if len(shares) > 1 else 0.0


def satisfied(frame: pd.DataFrame, where: dict[str, ValueSet], metadata: TableMetadata) -> np.ndarray:
    """Which rows of `frame` meet the parsed `where` (the check on what a sampler returns)."""
    ok = np.ones(len(frame), dtype=bool)
    for spec in metadata.columns:
        if spec.name in where:
            values = where[spec.name]
            if values.numeric:
                ok &= values.contains_numbers(to_float(frame[spec.name], datetime=spec.kind == ColumnKind.DATETIME))
            else:
                ok &= values.contains_labels(category_strings(frame[spec.name]))
    return ok


__all__ = ["ConditionError", "Conditions", "Fairness", "Rebalance", "ValueSet", "parity_gap", "parse_where",
           "rebalanced", "satisfied"]
