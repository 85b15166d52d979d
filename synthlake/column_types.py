"""Column-type conversions, one home for the engine, the evaluation and the pipelines.

A column's kind (synthlake.metadata) decides how its values are handled everywhere: numbers and datetimes
as floats (datetimes as seconds since the epoch, UTC), categories as strings, and one storage type per
column for the tables the pipeline writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

from synthlake.metadata import ColumnKind, ColumnSpec

StorageType = Literal["bigint", "double", "timestamp", "string"]


def storage_type(spec: ColumnSpec) -> StorageType:
    """The type a column is stored as (Spark SQL's names): integers, floats, timestamps or text."""
    if spec.kind == ColumnKind.NUMERIC:
        return "bigint" if spec.integer else "double"
    if spec.kind == ColumnKind.DATETIME:
        return "timestamp"
    return "string"


def is_continuous(spec: ColumnSpec) -> bool:
    """Numbers and datetimes: compared, binned and encoded as floats."""
    return spec.kind in (ColumnKind.NUMERIC, ColumnKind.DATETIME)


def to_seconds(values: pd.Series, errors: str = "raise") -> np.ndarray:
    """Datetimes (naive ones read as UTC, or text) as seconds since the epoch; nulls as nan."""
    stamps = pd.to_datetime(values, errors=errors, utc=True)
    return (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float, na_value=np.nan)


def to_float(values: pd.Series, datetime: bool | None = None, errors: str = "raise") -> np.ndarray:
    """Numbers as float64, datetimes as seconds since the epoch, nulls as nan. `datetime=None` decides by the
    dtype; errors="coerce" turns what does not convert into nan instead of raising."""
    if datetime or (datetime is None and pd.api.types.is_datetime64_any_dtype(values)):
        return to_seconds(values, errors)
    return pd.to_numeric(values, errors=errors).to_numpy(dtype=float, na_value=np.nan)


def category_strings(values: pd.Series, null: str | None = None) -> pd.Series:
    """Categories as strings; nulls as `null` (None keeps them null)."""
    values = values.astype(object)
    strings = values.astype(str)
    return strings.where(values.notna(), None) if null is None else strings.where(values.notna(), null)


def most_frequent_first(counts: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """(value, count) pairs, most frequent first, ties by value: an order that does not depend on row order."""
    return sorted(counts, key=lambda kv: (-kv[1], kv[0]))
