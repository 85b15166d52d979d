"""synthlake.column_types: the conversions every layer shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthlake.column_types import category_strings, most_frequent_first, storage_type, to_float, to_seconds
from synthlake.metadata import ColumnKind, ColumnSpec, PiiType


@pytest.mark.parametrize(("spec", "expected"), [
    (ColumnSpec(name="n", kind=ColumnKind.NUMERIC, integer=True), "bigint"),
    (ColumnSpec(name="x", kind=ColumnKind.NUMERIC), "double"),
    (ColumnSpec(name="t", kind=ColumnKind.DATETIME), "timestamp"),
    (ColumnSpec(name="c", kind=ColumnKind.CATEGORICAL), "string"),
    (ColumnSpec(name="i", kind=ColumnKind.IDENTIFIER), "string"),
    (ColumnSpec(name="e", kind=ColumnKind.PII, pii=PiiType.EMAIL), "string"),
])
def test_storage_type_by_kind(spec, expected):
    assert storage_type(spec) == expected


def test_datetimes_become_utc_seconds_whatever_their_zone():
    naive = pd.Series([pd.Timestamp("1970-01-02"), pd.NaT])
    paris = pd.Series([pd.Timestamp("1970-01-02 01:00", tz="Europe/Paris")])
    np.testing.assert_array_equal(to_seconds(naive), [86400.0, np.nan])
    assert to_float(paris)[0] == 86400.0  # detected by dtype
    assert to_float(pd.Series(["1970-01-01 00:01:00"]), datetime=True)[0] == 60.0


def test_numbers_raise_or_coerce_on_what_does_not_convert():
    np.testing.assert_array_equal(to_float(pd.Series([1, None, 2.5])), [1.0, np.nan, 2.5])
    with pytest.raises(ValueError):
        to_float(pd.Series(["1", "one"]))
    np.testing.assert_array_equal(to_float(pd.Series(["1", "one"]), errors="coerce"), [1.0, np.nan])


def test_category_strings_keep_or_mark_nulls():
    values = pd.Series([1, None, "a"], dtype=object)
    assert category_strings(values).tolist() == ["1", None, "a"]
    assert category_strings(values, "<null>").tolist() == ["1", "<null>", "a"]


def test_most_frequent_first_breaks_ties_by_value():
    assert most_frequent_first([("b", 2), ("c", 5), ("a", 2)]) == [("c", 5), ("a", 2), ("b", 2)]
