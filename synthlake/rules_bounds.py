"""Rules that bound a column: an inequality between two columns, a range with constant or column bounds.

The generator learns a gap or a share in place of the bounded column (under its own privacy accounting, if
any) and reverse rebuilds the column from its bounds, so that any generated gap or share gives a value inside
them. The gap is the plain difference and the share the plain fraction, not log1p or logit of them: the
generators bin numbers by quantiles, where such a rescaling changes nothing, real shares pile up at 0 and 1
(no discount, full price) where a logit is infinite, and reverse clips whatever comes out anyway. A datetime gap
is learned as a datetime (the gap after the epoch), so that the generator keeps its resolution as it does for
any datetime, and reverse rounds the column up to its unit: whole days stay whole days after a low that has
hours. The rules learn nothing from the rows but that unit, when the config does not give it (`unit:`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata
from synthlake.rules_base import CONTINUOUS, Rule, RuleConfig, replace, replace_spec, typed, values

Bound = float | str  # a constant, or the name of a column
Unit = Literal["day", "hour", "minute", "second", "microsecond"]
UNITS = {"day": 86400e6, "hour": 3600e6, "minute": 60e6, "second": 1e6, "microsecond": 1.0}  # in microseconds


class InequalityConfig(RuleConfig):
    kind: Literal["inequality"]
    low: str
    high: str
    strict: bool = False  # high > low + offset rather than high >= low + offset
    offset: float = Field(0.0, allow_inf_nan=False)  # in the columns' unit; seconds for datetimes
    unit: Unit | None = None  # datetimes: high's resolution (None: learned from the rows)


class RangeConfig(RuleConfig):
    kind: Literal["range"]
    column: str
    low: Bound | None = None
    high: Bound | None = None
    unit: Unit | None = None  # datetimes: the column's resolution (None: learned from the rows)

    @model_validator(mode="after")
    def _check_bounds(self) -> RangeConfig:
        if self.low is None and self.high is None:
            raise ValueError("a range needs `low`, `high` or both")
        if isinstance(self.low, float) and isinstance(self.high, float) and self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


def gap_spec(name: str, spec: ColumnSpec) -> ColumnSpec:
    """A gap is learned as a number, or for datetimes as a datetime (the gap after the epoch): the generator
    then keeps its resolution (whole days stay whole days) as it does for any datetime column."""
    return ColumnSpec(name=name, kind=spec.kind, integer=spec.integer)


def above(base: np.ndarray, gap: np.ndarray, step: float | None, strict: bool = False) -> np.ndarray:
    """base + gap, the gap clipped at 0, rounded up to a whole number of `step`s (1 for integers, the unit for
    datetimes, None for floats): >= base, or > base when strict (then a gap of 0 gives the next step up, or
    the next float)."""
    x = base + np.maximum(gap, 0)
    if step is None:
        return np.where(x <= base, np.nextafter(base, np.inf), x) if strict else x
    x = on_step(x, step)
    return np.where(x <= base, (np.floor(base / step) + 1) * step, x) if strict else x


def on_step(x: np.ndarray, step: float | None) -> np.ndarray:
    """x rounded up to a whole number of steps (None: as it is)."""
    return x if step is None else np.ceil(x / step) * step


def resolution(x: np.ndarray) -> float:
    """The coarsest unit (microseconds) every datetime in `x` is a whole number of, as tabular_ar finds it;
    whole units are counted from the epoch in UTC."""
    present = x[~np.isnan(x)]
    return next(unit for unit in UNITS.values() if np.all(np.mod(present, unit) == 0))


class Stepped:
    """The step a bounds rule rounds its column to: 1 for integers, none for floats, and for datetimes the
    `unit` of the config, or the resolution of the real values (then it learns from the rows)."""

    def _init_step(self, spec: ColumnSpec, unit: Unit | None) -> None:
        if unit is not None and spec.kind != ColumnKind.DATETIME:
            raise self.error(f"`unit` is for datetime columns; {spec.name!r} is {spec.kind.value}")
        self.step: float | None = UNITS[unit] if unit else 1.0 if spec.integer else None
        self.learns_step = spec.kind == ColumnKind.DATETIME and unit is None

    @property
    def learns_from_rows(self) -> bool:
        return self.learns_step

    def why_learns(self) -> str:
        return "the resolution of its datetimes (give `unit:` to learn nothing)"

    def _fit_step(self, x: np.ndarray) -> None:
        if self.learns_step:
            self.step = resolution(x)

    def learned(self) -> dict:
        return {**super().learned(), "step": self.step}

    def load_learned(self, learned: dict) -> None:
        super().load_learned(learned)
        self.step = learned["step"]


class Inequality(Stepped, Rule):
    """high >= low + offset, or high > low + offset when strict; two numeric or two datetime columns.

    Learned: `<high>__gap` = high - (low + offset) in place of high (gap_spec). Where low is null the rule says
    nothing and the gap column holds high itself, so that every row comes back (a presence rule on high relies
    on it). Reverse: high = low + offset + the gap clipped at 0, rounded up to high's step (`above`). Integers
    need an integer low and offset; datetimes are rounded up to the config's `unit` or, without one, to the
    resolution of the real values of high (then the rule learns from the rows: `learns_from_rows`).
    """

    Config = InequalityConfig

    def __init__(self, index: int, config: InequalityConfig, metadata: TableMetadata):
        super().__init__(index, config, metadata)
        low = self.spec(config.low, CONTINUOUS, "low")
        self.high = self.spec(config.high, CONTINUOUS, "high")
        if config.low == config.high:
            raise self.error(f"low and high are the same column {config.low!r}")
        if low.kind != self.high.kind:
            raise self.error(f"low {config.low!r} is {low.kind.value} and high {config.high!r} "
                             f"{self.high.kind.value}: both must be numeric or both datetime")
        if self.high.integer and not (low.integer and config.offset.is_integer()):
            raise self.error(f"integer high {config.high!r} needs an integer low and an integer offset")
        self._init_step(self.high, config.unit)
        self.reads, self.writes = (config.low,), (config.high,)
        self.gap = f"{config.high}__gap"
        scale = 1e6 if low.kind == ColumnKind.DATETIME else 1.0  # datetimes are microseconds inside
        self.offset = round(config.offset * scale) if scale > 1 else config.offset

    def new_columns(self) -> tuple[str, ...]:
        return (self.gap,)

    def learned_specs(self, specs: list[ColumnSpec]) -> list[ColumnSpec]:
        return replace_spec(specs, self.config.high, gap_spec(self.gap, self.high))

    def _fit(self, frame: pd.DataFrame) -> None:
        self._fit_step(values(frame[self.config.high], self.high))

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        low, high = self._low(frame), values(frame[self.config.high], self.high)
        gap = np.where(np.isnan(low), high, high - (low + self.offset))
        return replace(frame, self.config.high, self.gap, typed(gap, gap_spec(self.gap, self.high)))

    def reverse(self, frame: pd.DataFrame, row_offset: int = 0) -> pd.DataFrame:
        low, gap = self._low(frame), values(frame[self.gap], self.high)
        high = np.where(np.isnan(low), on_step(gap, self.step),
                        above(low + self.offset, gap, self.step, self.config.strict))
        return replace(frame, self.gap, self.config.high, typed(high, self.high, self.tz.get(self.config.high)))

    def violations(self, frame: pd.DataFrame) -> pd.Series:
        base = self._low(frame) + self.offset
        high = values(frame[self.config.high], self.high)
        return pd.Series(high <= base if self.config.strict else high < base, index=frame.index)

    def describe(self) -> str:
        c = self.config
        offset = f" + {c.offset:g}{'s' if self.high.kind == ColumnKind.DATETIME else ''}" if c.offset else ""
        return f"{c.high} {'>' if c.strict else '>='} {c.low}{offset}"

    def _low(self, frame: pd.DataFrame) -> np.ndarray:
        return values(frame[self.config.low], self.metadata.column(self.config.low))


class Range(Stepped, Rule):
    """low <= column <= high; each bound a constant or a column (integers: integer bounds; datetimes: column
    bounds only), one of them may be left out.

    Learned, in place of the column: between two bounds, a number: the share (column - low) / (high - low),
    with reverse low + share * (high - low) clipped into [low, high] (a null bound gives a null value); for a
    datetime between two bounds, or a single bound, the gap from the bound as Inequality learns it, with
    reverse bound +- the gap clipped at 0, then clipped at the other bound if there is one. A range with a
    column bound needs the bounds in order on every generated row: RuleSet checks that another rule sees to it.
    """

    Config = RangeConfig

    def __init__(self, index: int, config: RangeConfig, metadata: TableMetadata):
        super().__init__(index, config, metadata)
        self.column = self.spec(config.column, CONTINUOUS, "bounded")
        bounds = [b for b in (config.low, config.high) if b is not None]
        for bound in bounds:
            self._check_bound(bound)
        self._init_step(self.column, config.unit)
        self.reads = tuple(b for b in bounds if isinstance(b, str))
        self.writes = (config.column,)
        self.share = len(bounds) == 2 and self.column.kind == ColumnKind.NUMERIC
        self.learned_name = f"{config.column}__{'share' if self.share else 'gap'}"

    def _check_bound(self, bound: Bound) -> None:
        if isinstance(bound, str):
            spec = self.spec(bound, (self.column.kind,), "bound")
            if bound == self.config.column:
                raise self.error(f"column {bound!r} bounds itself")
            if self.column.integer and not spec.integer:
                raise self.error(f"integer column {self.config.column!r} needs integer bounds, not {bound!r}")
        elif self.column.kind == ColumnKind.DATETIME:
            raise self.error(f"datetime column {self.config.column!r} needs column bounds, not {bound!r}")
        elif self.column.integer and not bound.is_integer():
            raise self.error(f"integer column {self.config.column!r} needs integer bounds, not {bound}")

    def new_columns(self) -> tuple[str, ...]:
        return (self.learned_name,)

    def learned_specs(self, specs: list[ColumnSpec]) -> list[ColumnSpec]:
        return replace_spec(specs, self.config.column, self._learned_spec())

    def _learned_spec(self) -> ColumnSpec:
        if self.share:
            return ColumnSpec(name=self.learned_name, kind=ColumnKind.NUMERIC)
        return gap_spec(self.learned_name, self.column)

    def _fit(self, frame: pd.DataFrame) -> None:
        self._fit_step(values(frame[self.config.column], self.column))

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        x, (low, high) = values(frame[self.config.column], self.column), self._bounds(frame)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.share:  # an empty range: x - low, 0 where the rule holds (and null where x is)
                learned = np.where(high == low, x - low, (x - low) / (high - low))
            elif self.config.low is not None:
                learned = np.where(np.isnan(low), x, x - low)
            else:
                learned = np.where(np.isnan(high), x, high - x)
        return replace(frame, self.config.column, self.learned_name, typed(learned, self._learned_spec()))

    def reverse(self, frame: pd.DataFrame, row_offset: int = 0) -> pd.DataFrame:
        learned, (low, high) = values(frame[self.learned_name], self._learned_spec()), self._bounds(frame)
        if self.share:
            x = low + np.clip(learned, 0, 1) * (high - low)
            x = np.round(x) if self.column.integer else x
        elif self.config.low is not None:
            x = np.where(np.isnan(low), on_step(learned, self.step), above(low, learned, self.step))
        else:
            x = np.where(np.isnan(high), on_step(learned, self.step), -above(-high, learned, self.step))
        x = np.where(np.isnan(low), x, np.maximum(x, low))  # the last step holds it exactly, rounding or not
        x = np.where(np.isnan(high), x, np.minimum(x, high))
        return replace(frame, self.learned_name, self.config.column,
                       typed(x, self.column, self.tz.get(self.config.column)))

    def violations(self, frame: pd.DataFrame) -> pd.Series:
        x, (low, high) = values(frame[self.config.column], self.column), self._bounds(frame)
        return pd.Series((x < low) | (x > high), index=frame.index)

    def describe(self) -> str:
        c = self.config
        low = "" if c.low is None else f"{_text(c.low)} <= "
        return f"{low}{c.column}" + ("" if c.high is None else f" <= {_text(c.high)}")

    def _bounds(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) per row; a missing bound is -inf or +inf, a null one NaN."""
        return (self._bound(frame, self.config.low, -np.inf), self._bound(frame, self.config.high, np.inf))

    def _bound(self, frame: pd.DataFrame, bound: Bound | None, missing: float) -> np.ndarray:
        if isinstance(bound, str):
            return values(frame[bound], self.metadata.column(bound))
        return np.full(len(frame), missing if bound is None else bound)


def _text(bound: Bound) -> str:
    return f"{bound:g}" if isinstance(bound, float) else bound
