"""Rules about a row's values together: presence, uniqueness, fixed combinations, derived columns."""

from __future__ import annotations

import json
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from synthlake.column_types import most_frequent_first
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata
from synthlake.rules_base import CONTINUOUS, LEARNED, Rule, RuleConfig, add, replace, replace_spec, typed, values
from synthlake.rules_expr import DATETIME, NUMBER, Expression, Stamps


class When(RuleConfig):
    column: str
    equals: str | int | float  # a string for a categorical column, a number for a numeric one


class PresenceConfig(RuleConfig):
    kind: Literal["presence"]
    column: str
    when: When


class UniqueConfig(RuleConfig):
    kind: Literal["unique"]
    columns: list[str] = Field(min_length=1)
    start: int = 0  # the first value of a column generated from row numbers


class FixedCombinationsConfig(RuleConfig):
    kind: Literal["fixed_combinations"]
    columns: list[str] = Field(min_length=2)


class LookupConfig(RuleConfig):
    by: list[str] = Field(min_length=1)
    value: str


class DerivedConfig(RuleConfig):
    kind: Literal["derived"]
    column: str
    expression: str | None = None
    lookup: LookupConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DerivedConfig:
        if (self.expression is None) == (self.lookup is None):
            raise ValueError("a derived column needs either `expression` or `lookup`")
        return self


def _null(spec: ColumnSpec) -> Any:
    return np.nan if spec.kind in CONTINUOUS else None


def _distinct(rule: Rule, columns: list[str]) -> None:
    if len(set(columns)) < len(columns):
        raise rule.error(f"columns {columns} name a column twice")


class Presence(Rule):
    """`column` is present (not null) on the rows where `when` holds and null on the others.

    Learned: the column (stacked on an inequality's high: that rule's gap, which is null exactly where high is)
    without nulls: the rows where the condition fails, or where a real value is missing, get values drawn
    (seeded) from the rows where it holds, so that the generator learns no null and whatever it generates
    where the condition holds is a value of the column. Reverse: null where the condition fails; where it holds
    and the generator still gave a null (none of ours do: they generate no null they did not see), the learned
    fallback: the median, or the most frequent category, of the present values.
    learns_from_rows: the fill copies values between rows and the fallback is a statistic of them.
    """

    Config = PresenceConfig

    def __init__(self, index: int, config: PresenceConfig, metadata: TableMetadata):
        super().__init__(index, config, metadata)
        self.column = self.spec(config.column, LEARNED, "present")
        self.condition = self.spec(config.when.column, (ColumnKind.NUMERIC, ColumnKind.CATEGORICAL), "condition")
        if config.when.column == config.column:
            raise self.error(f"column {config.column!r} cannot be its own condition")
        if (self.condition.kind == ColumnKind.CATEGORICAL) != isinstance(config.when.equals, str):
            want = "a string (quote it)" if self.condition.kind == ColumnKind.CATEGORICAL else "a number"
            raise self.error(f"condition column {config.when.column!r} is {self.condition.kind.value}: "
                             f"`equals` must be {want}, not {config.when.equals!r}")
        self.reads, self.writes = (config.when.column,), (config.column,)
        self.carried = self.column  # the learned column holding the values; RuleSet.stack may change it
        self.fallback: Any = None

    @property
    def learns_from_rows(self) -> bool:
        return True

    def why_learns(self) -> str:
        return "values copied between rows, and a fallback value"

    def stack(self, carried: ColumnSpec) -> None:
        """Acts on `carried`, the learned column another rule keeps this rule's column in."""
        self.carried = carried

    def outputs(self) -> tuple[str, ...]:
        return (self.carried.name,)

    def learned_specs(self, specs: list[ColumnSpec]) -> list[ColumnSpec]:
        return specs

    def holds(self, frame: pd.DataFrame) -> np.ndarray:
        """The condition, per row (a null never equals)."""
        return np.asarray(values(frame[self.config.when.column], self.condition) == self.config.when.equals)

    def _fit(self, frame: pd.DataFrame) -> None:
        present = self._present(frame)
        if not len(present):
            raise self.error(f"no real row has {self.config.column!r} present where the condition holds")
        if self.carried.kind == ColumnKind.CATEGORICAL:
            self.fallback = most_frequent_first(pd.Series(present).value_counts().items())[0][0]
        else:
            self.fallback = float(np.round(np.median(present)) if self._exact() else np.median(present))

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        x, present = values(frame[self.carried.name], self.carried), self._present(frame)
        fill = ~self.holds(frame) | pd.isna(x)
        rng = np.random.default_rng(0)  # fixed: the same real rows give the same learned rows
        x[fill] = present[rng.integers(0, len(present), fill.sum())] if len(present) else self.fallback
        return self._put(frame, x)

    def reverse(self, frame: pd.DataFrame, row_offset: int = 0) -> pd.DataFrame:
        x = values(frame[self.carried.name], self.carried)
        x[pd.isna(x)] = self.fallback
        x[~self.holds(frame)] = _null(self.carried)
        return self._put(frame, x)

    def violations(self, frame: pd.DataFrame) -> pd.Series:
        present = pd.notna(values(frame[self.config.column], self.column))
        return pd.Series(present != self.holds(frame), index=frame.index)

    def describe(self) -> str:
        return f"{self.config.column} is present iff {self.config.when.column} = {self.config.when.equals!r}"

    def learned(self) -> dict[str, Any]:
        return {**super().learned(), "fallback": self.fallback}

    def load_learned(self, learned: dict[str, Any]) -> None:
        super().load_learned(learned)
        self.fallback = learned["fallback"]

    def _present(self, frame: pd.DataFrame) -> np.ndarray:
        x = values(frame[self.carried.name], self.carried)
        return x[self.holds(frame) & pd.notna(x)]

    def _exact(self) -> bool:
        return self.carried.integer or self.carried.kind == ColumnKind.DATETIME

    def _put(self, frame: pd.DataFrame, x: np.ndarray) -> pd.DataFrame:
        name = self.carried.name
        return replace(frame, name, name, typed(x, self.carried, self.tz.get(name)))


class Unique(Rule):
    """No value (no tuple of values, for several columns) appears twice; rows with a null in it are not
    compared, as under SQL's UNIQUE.

    By construction only through the row numbers, which blocks sampled apart keep apart (row_offset): an
    identifier column is unique already (the rule writes nothing); an integer or categorical column is not
    learned but generated as `start` + the row number (as text for a categorical), giving up its distribution
    for uniqueness, as an identifier does. A float, datetime or PII column cannot be made unique without
    changing its values or rejecting rows: refused. A set of columns is unique when one of its columns is: an
    identifier or a column with a unique rule of its own (RuleSet checks it); the set's rule writes nothing.
    """

    Config = UniqueConfig

    def __init__(self, index: int, config: UniqueConfig, metadata: TableMetadata):
        super().__init__(index, config, metadata)
        _distinct(self, config.columns)
        specs = [self.spec(c, tuple(ColumnKind), "unique") for c in config.columns]
        self.generated = len(specs) == 1 and _sequence(specs[0])
        if len(specs) == 1 and not self.generated and specs[0].kind != ColumnKind.IDENTIFIER:
            raise self.error(f"column {specs[0].name!r} is {_kind_text(specs[0])}: it cannot be made unique by "
                             "construction without changing its values; make it an integer, categorical or "
                             "identifier column, or drop the rule")
        self.reads = tuple(config.columns) if len(specs) > 1 else ()
        self.writes = tuple(config.columns) if self.generated else ()

    def learned_specs(self, specs: list[ColumnSpec]) -> list[ColumnSpec]:
        return [s for s in specs if s.name not in self.writes]

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.drop(columns=list(self.writes))

    def reverse(self, frame: pd.DataFrame, row_offset: int = 0) -> pd.DataFrame:
        if not self.writes:
            return frame
        spec = self.metadata.column(self.writes[0])
        numbers = np.arange(len(frame), dtype=np.int64) + row_offset + self.config.start
        column = numbers if spec.kind == ColumnKind.NUMERIC else numbers.astype(str).astype(object)
        return add(frame, spec.name, pd.Series(column))

    def violations(self, frame: pd.DataFrame) -> pd.Series:
        rows = frame[self.config.columns]
        complete = rows.notna().all(axis=1)
        repeated = rows[complete].duplicated(keep=False)
        return repeated.reindex(frame.index, fill_value=False).astype(bool)

    def describe(self) -> str:
        columns = self.config.columns
        return f"{columns[0] if len(columns) == 1 else '(' + ', '.join(columns) + ')'} is unique"


def _sequence(spec: ColumnSpec) -> bool:
    return spec.kind == ColumnKind.CATEGORICAL or (spec.kind == ColumnKind.NUMERIC and spec.integer)


def _kind_text(spec: ColumnSpec) -> str:
    return "a float column" if spec.kind == ColumnKind.NUMERIC else spec.kind.value


class FixedCombinations(Rule):
    """The tuple of `columns` (numeric or categorical) on every row is one seen in the real rows.

    Learned: one categorical column `<c1>__<c2>...` of the tuples, each written as a JSON list, in place of the
    first column, the others dropped. Reverse: each label's tuple; a label that names no seen tuple (the
    generator's _RARE_ for tuples too rare to keep, or anything else) becomes the most frequent tuple.
    learns_from_rows: the seen tuples, rare ones included, are kept in the rule's state (rules.json).
    """

    Config = FixedCombinationsConfig

    def __init__(self, index: int, config: FixedCombinationsConfig, metadata: TableMetadata):
        super().__init__(index, config, metadata)
        _distinct(self, config.columns)
        self.specs = [self.spec(c, (ColumnKind.NUMERIC, ColumnKind.CATEGORICAL), "combined") for c in config.columns]
        self.writes = tuple(config.columns)
        self.merged = "__".join(config.columns)
        self.tuples: list[list[Any]] = []
        self.codes: dict[str, int] = {}

    @property
    def learns_from_rows(self) -> bool:
        return True

    def why_learns(self) -> str:
        return "the combinations seen"

    def new_columns(self) -> tuple[str, ...]:
        return (self.merged,)

    def _fit(self, frame: pd.DataFrame) -> None:
        seen = most_frequent_first(pd.Series(self._labels(frame)).value_counts().items())
        self._set([json.loads(label) for label, _ in seen])

    def _set(self, tuples: list[list[Any]]) -> None:
        self.tuples = tuples
        self.codes = {json.dumps(t): i for i, t in enumerate(tuples)}

    def learned_specs(self, specs: list[ColumnSpec]) -> list[ColumnSpec]:
        merged = ColumnSpec(name=self.merged, kind=ColumnKind.CATEGORICAL)
        return [s for s in replace_spec(specs, self.config.columns[0], merged) if s.name not in self.writes]

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        merged = pd.Series(self._labels(frame), dtype=object)
        frame = replace(frame, self.config.columns[0], self.merged, merged)
        return frame.drop(columns=self.config.columns[1:])

    def reverse(self, frame: pd.DataFrame, row_offset: int = 0) -> pd.DataFrame:
        codes = frame[self.merged].map(self.codes).fillna(0).to_numpy(dtype=np.int64)  # unknown: most frequent
        frame = frame.drop(columns=[self.merged])
        for j, spec in enumerate(self.specs):
            column = np.array([t[j] if t[j] is not None else _null(spec) for t in self.tuples], dtype=object)
            x = column[codes].astype(float) if spec.kind == ColumnKind.NUMERIC else column[codes]
            frame = add(frame, spec.name, typed(x, spec))
        return frame

    def violations(self, frame: pd.DataFrame) -> pd.Series:
        return pd.Series([label not in self.codes for label in self._labels(frame)], index=frame.index)

    def describe(self) -> str:
        seen = f"the {len(self.tuples)} combinations" if self.fitted else "the combinations"
        return f"({', '.join(self.config.columns)}) is one of {seen} seen in the real rows"

    def learned(self) -> dict[str, Any]:
        return {**super().learned(), "tuples": self.tuples}

    def load_learned(self, learned: dict[str, Any]) -> None:
        super().load_learned(learned)
        self._set(learned["tuples"])

    def _labels(self, frame: pd.DataFrame) -> list[str]:
        """Each row's tuple as a JSON list: integers as integers, floats as floats, nulls as null."""
        columns = [_json_values(values(frame[s.name], s), s) for s in self.specs]
        return [json.dumps(list(row)) for row in zip(*columns, strict=True)]


def _json_values(x: np.ndarray, spec: ColumnSpec) -> list[Any]:
    if spec.kind != ColumnKind.NUMERIC:
        return list(x)
    convert = int if spec.integer else float
    return [None if np.isnan(v) else convert(v) for v in x]


class Derived(Rule):
    """`column` = an expression over other columns of the row (synthlake.rules_expr), or a lookup table learned
    from the real rows: the mean of `value` per key of the `by` columns, and the mean of all rows for a key the
    real rows do not hold; `value` may be the column itself, for a column fixed by its key (a rate per date).
    Computed after sampling, never learned by the generator: the column is dropped from the learned table.
    Integers are rounded half to even; the check on floats allows a relative 1e-9, so that a value computed
    elsewhere (Spark, GX) passes.
    learns_from_rows: a lookup (its table and mean are kept in the rule's state); an expression learns nothing.
    """

    Config = DerivedConfig

    def __init__(self, index: int, config: DerivedConfig, metadata: TableMetadata):
        super().__init__(index, config, metadata)
        self.column = self.spec(config.column, CONTINUOUS, "derived")
        self.writes = (config.column,)
        self.expression = self._parse() if config.expression is not None else None
        self.reads = tuple(self.expression.columns if self.expression else config.lookup.by)
        if config.lookup is not None:
            self._check_lookup(config.lookup)
        self.table: dict[tuple, float] = {}
        self.mean = np.nan

    def _parse(self) -> Expression:
        try:
            expression = Expression(self.config.expression)
            if self.config.column in expression.columns:
                raise ValueError(f"column {self.config.column!r} cannot be derived from itself")
            kinds = {s.name: DATETIME if s.kind == ColumnKind.DATETIME else NUMBER
                     for s in self.metadata.columns if s.kind in CONTINUOUS}
            kind = expression.kind(kinds)
        except ValueError as exc:
            raise self.error(str(exc)) from None
        target = DATETIME if self.column.kind == ColumnKind.DATETIME else NUMBER
        if kind != target:
            raise self.error(f"expression {self.config.expression!r} gives a {kind}, column "
                             f"{self.config.column!r} is {self.column.kind.value}")
        return expression

    def _check_lookup(self, lookup: LookupConfig) -> None:
        _distinct(self, lookup.by)
        self.keys = [self.spec(c, LEARNED, "lookup key") for c in lookup.by]
        self.spec(lookup.value, (ColumnKind.NUMERIC,), "lookup value")
        if self.column.kind != ColumnKind.NUMERIC:
            raise self.error(f"a lookup gives numbers; column {self.config.column!r} is {self.column.kind.value}")
        if self.config.column in lookup.by:
            raise self.error(f"column {self.config.column!r} cannot be its own lookup key")

    @property
    def learns_from_rows(self) -> bool:
        return self.config.lookup is not None

    def why_learns(self) -> str:
        return "the lookup table and its mean"

    def _fit(self, frame: pd.DataFrame) -> None:
        if self.config.lookup is None:
            return
        value = values(frame[self.config.lookup.value], self.metadata.column(self.config.lookup.value))
        if np.isnan(value).all():
            raise self.error(f"lookup value {self.config.lookup.value!r} has no value in the real rows")
        means = pd.Series(value).groupby(pd.Series(self._keys(frame)), sort=False).mean().dropna()
        self.table, self.mean = dict(means.items()), float(np.nanmean(value))

    def learned_specs(self, specs: list[ColumnSpec]) -> list[ColumnSpec]:
        return [s for s in specs if s.name != self.config.column]

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.drop(columns=[self.config.column])

    def reverse(self, frame: pd.DataFrame, row_offset: int = 0) -> pd.DataFrame:
        return add(frame, self.config.column, self._expected(frame))

    def violations(self, frame: pd.DataFrame) -> pd.Series:
        expected = values(self._expected(frame), self.column)
        actual = values(frame[self.config.column], self.column)
        if self.column.kind == ColumnKind.NUMERIC and not self.column.integer:
            same = np.isclose(actual, expected, rtol=1e-9, atol=0.0, equal_nan=True)
        else:
            same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
        return pd.Series(~same, index=frame.index)

    def describe(self) -> str:
        if self.expression is not None:
            return f"{self.config.column} = {self.config.expression}"
        lookup = self.config.lookup
        return f"{self.config.column} = the mean of {lookup.value} by ({', '.join(lookup.by)}), learned"

    def learned(self) -> dict[str, Any]:
        table = [[*key, mean] for key, mean in self.table.items()]
        return {**super().learned(), "table": table, "mean": None if np.isnan(self.mean) else self.mean}

    def load_learned(self, learned: dict[str, Any]) -> None:
        super().load_learned(learned)
        self.table = {tuple(row[:-1]): row[-1] for row in learned["table"]}
        self.mean = np.nan if learned["mean"] is None else learned["mean"]

    def _expected(self, frame: pd.DataFrame) -> pd.Series:
        """The column as the rule defines it, in its type."""
        if self.expression is None:
            x = np.array([self.table.get(key, self.mean) for key in self._keys(frame)], dtype=float)
        else:
            result = self.expression.evaluate(frame)
            x = result.micros if isinstance(result, Stamps) else result
        return typed(x, self.column, self.tz.get(self.config.column))

    def _keys(self, frame: pd.DataFrame) -> list[tuple]:
        """Each row's lookup key, JSON-able: numbers (datetimes in microseconds), strings, None for null."""
        columns = [[None if pd.isna(v) else v for v in values(frame[s.name], s)] for s in self.keys]
        return list(zip(*columns, strict=True))
