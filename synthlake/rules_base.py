"""What every rule kind shares: its config model, the Rule base class and the column-value conversions.

Inside a rule, numbers are float64 arrays and datetimes microseconds since the epoch (float64, UTC), NaN for
null: integers, datetimes and offsets are then exact, and `typed` turns the results back into the column's own
type (integers stay integers, datetimes datetimes in their zone).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from synthlake.column_types import category_strings
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata
from synthlake.rules_expr import micros, to_datetimes

CONTINUOUS = (ColumnKind.NUMERIC, ColumnKind.DATETIME)
LEARNED = (ColumnKind.NUMERIC, ColumnKind.CATEGORICAL, ColumnKind.DATETIME)


class RuleConfig(BaseModel):
    """One rule as the dataset config writes it; `kind` picks the model."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Rule(ABC):
    """A rule that holds on every generated row by construction.

    `transform` turns real rows into what the generator learns (the columns of `learned_specs`), `reverse` turns
    any generated learned rows back into rows of the original schema on which the rule holds, whatever the
    generator produced. `reads` are the columns reverse needs, `writes` those it produces: a RuleSet runs
    each rule's reverse after the rules that write what it reads. `fit` learns what the rule keeps (its
    `learned()` state, JSON); `learns_from_rows` says whether that, or the transform, uses values of other rows.
    """

    Config: ClassVar[type[RuleConfig]]
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    def __init__(self, index: int, config: RuleConfig, metadata: TableMetadata):
        self.index, self.config, self.metadata = index, config, metadata
        self.fitted = False
        self.tz: dict[str, str | None] = {}  # the time zone of each column reverse produces (None: naive)

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def label(self) -> str:
        return f"rule #{self.index} ({self.kind})"

    @property
    def learns_from_rows(self) -> bool:
        return False

    def why_learns(self) -> str:
        """What the rule learns from the rows, when it does."""
        return ""

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.label}: {message}")

    def spec(self, name: str, kinds: tuple[ColumnKind, ...], role: str) -> ColumnSpec:
        """The column `name`, which must be of one of `kinds`; the error names the rule, the role and the column."""
        if name not in self.metadata.names:
            raise self.error(f"{role} column {name!r} is not a column of the table")
        spec = self.metadata.column(name)
        if spec.kind not in kinds:
            raise self.error(f"{role} column {name!r} is {spec.kind.value}; it must be "
                             f"{' or '.join(k.value for k in kinds)}")
        return spec

    def new_columns(self) -> tuple[str, ...]:
        """Columns of the learned table that this rule adds."""
        return ()

    def outputs(self) -> tuple[str, ...]:
        """The columns reverse produces (their time zones are kept from the real rows)."""
        return self.writes

    # ---- learning and the two directions -------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> None:
        """Learns from real rows (in the schema this rule sees: the earlier rules' transforms applied)."""
        self.tz = {name: time_zone(frame[name]) for name in self.outputs()}
        self._fit(frame)
        self.fitted = True

    def _fit(self, frame: pd.DataFrame) -> None:  # noqa: B027 (most kinds learn nothing more)
        """What a kind learns besides the time zones of the columns it produces."""

    @abstractmethod
    def learned_specs(self, specs: list[ColumnSpec]) -> list[ColumnSpec]:
        """The columns of the learned table, given those before this rule's transform."""

    @abstractmethod
    def transform(self, frame: pd.DataFrame) -> pd.DataFrame: ...

    @abstractmethod
    def reverse(self, frame: pd.DataFrame, row_offset: int = 0) -> pd.DataFrame:
        """Rows numbered from `row_offset` (the sampler's): the rule holds on every one of them afterwards."""

    @abstractmethod
    def violations(self, frame: pd.DataFrame) -> pd.Series:
        """True on the rows of `frame` (original schema) that break the rule; a null bound or value breaks none
        except where the rule is about nulls (presence)."""

    @abstractmethod
    def describe(self) -> str: ...

    # ---- state -----------------------------------------------------------------------------------------
    def learned(self) -> dict[str, Any]:
        """JSON-able state learned by fit, beyond the config."""
        return {"tz": self.tz}

    def load_learned(self, learned: dict[str, Any]) -> None:
        self.tz = dict(learned["tz"])
        self.fitted = True

    def state(self) -> dict[str, Any]:
        return {"config": self.config.model_dump(mode="json"), "learned": self.learned()}

    def check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{self.label}: not fitted; call fit on the real rows first")


# ---- values ---------------------------------------------------------------------------------------------
def values(series: pd.Series, spec: ColumnSpec) -> np.ndarray:
    """Numbers as float64, datetimes as microseconds since the epoch, NaN for null; anything else as strings,
    None for null."""
    if spec.kind == ColumnKind.DATETIME:
        return micros(series)
    if spec.kind == ColumnKind.NUMERIC:
        return pd.to_numeric(series).to_numpy(dtype=float, na_value=np.nan, copy=True)  # rules write into it
    return category_strings(series).to_numpy(dtype=object, copy=True)


def typed(x: np.ndarray, spec: ColumnSpec, tz: str | None = None) -> pd.Series:
    """Values back in the column's type: Int64 for integers with nulls, int64 without, datetimes in zone `tz`,
    strings; NaN and inf (a division by zero) are null."""
    if spec.kind == ColumnKind.DATETIME:
        return to_datetimes(x, tz).rename(spec.name)
    if spec.kind != ColumnKind.NUMERIC:
        return pd.Series(x, name=spec.name, dtype=object)
    missing = ~np.isfinite(x)
    if not spec.integer:
        return pd.Series(np.where(missing, np.nan, x), name=spec.name)
    ints = np.where(missing, 0, np.round(x)).astype(np.int64)
    return pd.Series(pd.arrays.IntegerArray(ints, missing) if missing.any() else ints, name=spec.name)


def time_zone(series: pd.Series) -> str | None:
    tz = getattr(series.dtype, "tz", None)
    return str(tz) if tz is not None else None


def replace(frame: pd.DataFrame, old: str, new: str, column: pd.Series) -> pd.DataFrame:
    """`frame` with column `old` replaced by `new` at the same position."""
    position = frame.columns.get_loc(old)
    frame = frame.drop(columns=[old])
    frame.insert(position, new, column.array)
    return frame


def replace_spec(specs: list[ColumnSpec], old: str, new: ColumnSpec) -> list[ColumnSpec]:
    return [new if s.name == old else s for s in specs]


def add(frame: pd.DataFrame, name: str, column: pd.Series) -> pd.DataFrame:
    frame = frame.copy()
    frame[name] = column.array
    return frame
