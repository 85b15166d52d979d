"""synthlake.inference: column kinds and PII guessed from a sample of values and the column name."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from synthlake.inference import detect_pii, infer_column, infer_columns
from synthlake.metadata import ColumnKind, PiiType, TableMetadata

rng = np.random.default_rng(0)
N = 60


def kind_of(name, values):
    return infer_column(name, pd.Series(values))


# ---- PII -------------------------------------------------------------------------------------------
def test_emails_are_found_by_value_whatever_the_name():
    spec = kind_of("contact", [f"user{i}@mail{i % 3}.example.com" for i in range(N)])
    assert (spec.kind, spec.pii) == (ColumnKind.PII, PiiType.EMAIL)


def test_phones_are_found_by_value():
    phones = [f"+1 (555) {rng.integers(100, 999)}-{rng.integers(1000, 9999)}" for _ in range(N)]
    spec = kind_of("reach_at", phones)
    assert (spec.kind, spec.pii) == (ColumnKind.PII, PiiType.PHONE)


def test_ssns_are_found_by_value():
    ssns = [f"{rng.integers(100, 999)}-{rng.integers(10, 99)}-{rng.integers(1000, 9999)}" for _ in range(N)]
    spec = kind_of("tax_ref", ssns)
    assert (spec.kind, spec.pii) == (ColumnKind.PII, PiiType.SSN)


@pytest.mark.parametrize("name,pii", [
    ("first_name", PiiType.NAME), ("Last Name", PiiType.NAME), ("name", PiiType.NAME),
    ("customer_name", PiiType.NAME), ("email_address", PiiType.EMAIL), ("E-Mail", PiiType.EMAIL),
    ("phone", PiiType.PHONE), ("mobile", PiiType.PHONE), ("tel_no", PiiType.PHONE),
    ("home_address", PiiType.ADDRESS), ("street", PiiType.ADDRESS), ("ssn", PiiType.SSN),
    ("passport_number", PiiType.SSN),
])
def test_pii_is_found_by_column_name(name, pii):
    spec = kind_of(name, ["x", "y", "z"] * 20)  # values that betray nothing
    assert (spec.kind, spec.pii) == (ColumnKind.PII, pii)


@pytest.mark.parametrize("name", ["hotel", "automobile", "classname", "businessname", "country", "income"])
def test_words_merely_containing_a_pii_word_are_not_pii(name):
    """Regression: 'hotel' matched 'tel', 'automobile' 'mobile', 'classname' 'ssn'."""
    assert detect_pii(name, pd.Series(["Resort", "City", "City"] * 20)) is None


def test_a_minority_of_pii_like_values_is_not_pii():
    values = ["a@b.com"] * 5 + ["plain text"] * 55
    assert detect_pii("notes", pd.Series(values)) is None


# ---- identifiers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["id", "ID", "customer_id", "order_uuid", "customerId", "customerID",
                                  "id_order"])
def test_unique_id_columns_are_identifiers(name):
    assert kind_of(name, [f"K{i:05d}" for i in range(N)]).kind == ColumnKind.IDENTIFIER


def test_repeated_values_in_an_id_column_are_not_an_identifier():
    assert kind_of("store_id", [f"S{i % 5}" for i in range(N)]).kind == ColumnKind.CATEGORICAL


@pytest.mark.parametrize("name", ["amount_paid", "valid", "covid"])
def test_names_ending_in_id_letters_are_not_identifiers(name):
    """Regression: a case-insensitive 'Id$' made 'amount_paid' (unique floats) an identifier."""
    spec = kind_of(name, rng.normal(100, 20, N).round(3))
    assert spec.kind == ColumnKind.NUMERIC and not spec.integer


def test_unique_values_without_an_id_name_are_not_identifiers():
    assert kind_of("amount", np.arange(N) * 1.5).kind == ColumnKind.NUMERIC


# ---- datetimes -------------------------------------------------------------------------------------
def test_iso_date_strings_are_datetimes():
    """Regression: 'YYYY-MM-DD' strings also match the phone pattern and were taken for phone numbers."""
    days = pd.to_timedelta(rng.integers(0, 900, N), unit="D")
    dates = (pd.Timestamp("2020-01-01") + days).strftime("%Y-%m-%d")
    assert kind_of("signup", list(dates)).kind == ColumnKind.DATETIME


def test_iso_timestamp_strings_and_date_objects_are_datetimes():
    stamps = [f"2021-0{1 + i % 9}-1{i % 10}T12:{i % 60:02d}:00" for i in range(N)]
    assert kind_of("updated", stamps).kind == ColumnKind.DATETIME
    dates = [dt.date(2021, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 500, N)]
    assert kind_of("born", dates).kind == ColumnKind.DATETIME  # what Spark's toPandas gives for a date column


def test_datetime_dtype_is_a_datetime():
    assert kind_of("ts", pd.date_range("2020-01-01", periods=N, freq="h")).kind == ColumnKind.DATETIME


def test_non_iso_date_like_strings_are_not_guessed():
    assert kind_of("when", ["03/04/2021", "12/01/2020", "07/07/2019"] * 20).kind == ColumnKind.CATEGORICAL


# ---- numbers and categories ------------------------------------------------------------------------
def test_integers_are_integer_numeric():
    spec = kind_of("age", rng.integers(18, 90, N))
    assert spec.kind == ColumnKind.NUMERIC and spec.integer


def test_whole_floats_are_integer_numeric_and_fractions_are_not():
    assert kind_of("count", [1.0, 2.0, 3.0, np.nan] * 15).integer
    spec = kind_of("ratio", rng.random(N))
    assert spec.kind == ColumnKind.NUMERIC and not spec.integer


@pytest.mark.parametrize("values", [[0, 1] * 30, [0.0, 1.0, np.nan] * 20, [True, False] * 30, [5] * N])
def test_flags_are_categorical(values):
    assert kind_of("flag", values).kind == ColumnKind.CATEGORICAL


def test_text_is_categorical():
    assert kind_of("colour", ["red", "green", "blue"] * 20).kind == ColumnKind.CATEGORICAL


def test_infer_columns_keeps_order_and_yields_valid_metadata():
    sample = pd.DataFrame({
        "order_id": [f"O{i}" for i in range(N)],
        "email": [f"u{i}@x.org" for i in range(N)],
        "placed": [f"2022-01-{1 + i % 28:02d}" for i in range(N)],
        "amount": rng.normal(50, 10, N),
        "status": ["open", "closed"] * (N // 2),
    })
    specs = infer_columns(sample)
    assert [s.name for s in specs] == list(sample.columns)
    assert [s.kind for s in specs] == [ColumnKind.IDENTIFIER, ColumnKind.PII, ColumnKind.DATETIME,
                                       ColumnKind.NUMERIC, ColumnKind.CATEGORICAL]
    TableMetadata(columns=specs)
