"""Guessing column kinds from a sample of a table: drafts a dataset config and flags likely PII."""

from __future__ import annotations

import re

import pandas as pd
from pandas.api import types as ptypes

from synthlake.metadata import ColumnKind, ColumnSpec, PiiType

# Column names that say what a column holds, whatever its values look like.
_PII_NAMES = [
    (PiiType.EMAIL, r"e_?mail"),
    # Short words only as whole words: "hotel", "automobile" and "classname" are not PII.
    (PiiType.PHONE, r"phone|(^|_)(mobile|tel|fax)(_?(no|nr|num|number))?(_|$)"),
    (PiiType.SSN, r"(^|_)ssn(_|$)|social_?security|national_?id|passport"),
    (PiiType.ADDRESS, r"address|street|addr"),
    (PiiType.NAME, r"(first|last|full|given|family|middle|sur)_?name|^name$|customer_?name|patient_?name"),
]
# Value patterns that betray PII in a column of any name.
_PII_VALUES = [
    (PiiType.EMAIL, re.compile(r"^[\w.+-]+@[\w-]+\.[\w.-]+$")),
    (PiiType.SSN, re.compile(r"^\d{3}-\d{2}-\d{4}$")),
    (PiiType.PHONE, re.compile(r"^\+?[\d\s().-]{7,}\d$")),
]
# Any case for a separate word (id, ID, customer_id); camelCase only with a capital (customerId, userID),
# so "paid" or "valid" are not identifiers.
_ID_NAME = re.compile(r"(?i:(^|_)(id|uuid|guid|key)$|^id_)|[a-z](Id|ID)$")
_MATCH_SHARE = 0.9  # share of non-null values a pattern must match
# A text column is free text (faked, never learned) past this many distinct values in the sample, most of them
# distinct: categories that many would each be seen a handful of times
FREE_TEXT_VALUES, FREE_TEXT_SHARE = 1000, 0.5


def detect_pii(name: str, values: pd.Series) -> PiiType | None:
    """PII by column name, or by the values of a text column."""
    key = re.sub(r"[\s-]+", "_", name.strip()).lower()
    for pii, pattern in _PII_NAMES:
        if re.search(pattern, key):
            return pii
    text = values.dropna()
    if text.empty or not (ptypes.is_object_dtype(text) or ptypes.is_string_dtype(text)):
        return None
    text = text.astype(str).str.strip()
    if _looks_like_dates(text):  # "2021-01-05" also fits the phone pattern
        return None
    for pii, pattern in _PII_VALUES:
        if text.str.match(pattern).mean() >= _MATCH_SHARE:
            return pii
    return None


def infer_column(name: str, values: pd.Series) -> ColumnSpec:
    """The most plausible kind for one column, judged from a sample of its values."""
    pii = detect_pii(name, values)
    if pii is not None:
        return ColumnSpec(name=name, kind=ColumnKind.PII, pii=pii)
    present = values.dropna()
    unique_share = present.nunique() / max(len(present), 1)
    if _ID_NAME.search(name) and unique_share == 1.0 and len(present) > 1:
        return ColumnSpec(name=name, kind=ColumnKind.IDENTIFIER)
    if ptypes.is_bool_dtype(values):
        return ColumnSpec(name=name, kind=ColumnKind.CATEGORICAL)
    if ptypes.is_datetime64_any_dtype(values) or _looks_like_dates(present):
        return ColumnSpec(name=name, kind=ColumnKind.DATETIME)
    if ptypes.is_numeric_dtype(values):
        integral = ptypes.is_integer_dtype(values) or bool((present == present.round()).all())
        if present.nunique() <= 2:  # flags and 0/1 targets are categories, not quantities
            return ColumnSpec(name=name, kind=ColumnKind.CATEGORICAL)
        return ColumnSpec(name=name, kind=ColumnKind.NUMERIC, integer=integral)
    if present.nunique() > FREE_TEXT_VALUES and unique_share > FREE_TEXT_SHARE:
        # free text (comments, descriptions): too many values to learn as categories, and they may name people
        return ColumnSpec(name=name, kind=ColumnKind.PII, pii=PiiType.TEXT)
    return ColumnSpec(name=name, kind=ColumnKind.CATEGORICAL)


def infer_columns(sample: pd.DataFrame) -> list[ColumnSpec]:
    return [infer_column(str(name), sample[name]) for name in sample.columns]


def _looks_like_dates(values: pd.Series) -> bool:
    if values.empty or not (ptypes.is_object_dtype(values) or ptypes.is_string_dtype(values)):
        return False
    text = values.astype(str)
    if not text.str.match(r"^\d{4}-\d{2}-\d{2}").all():  # ISO dates only: guessing formats misleads
        return False
    return bool(pd.to_datetime(text, errors="coerce", format="ISO8601").notna().all())
