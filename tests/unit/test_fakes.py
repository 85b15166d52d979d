"""synthlake.fakes: identifiers numbered from the row offset, PII from seeded Faker."""

from __future__ import annotations

import pytest

from synthlake.fakes import generated_column
from synthlake.metadata import ColumnKind, ColumnSpec, PiiType

ID = ColumnSpec(name="id", kind=ColumnKind.IDENTIFIER)


def test_identifiers_number_rows_from_the_offset():
    first = generated_column(ID, 100, seed=1, row_offset=0)
    second = generated_column(ID, 100, seed=2, row_offset=100)
    assert first.is_unique and second.is_unique
    assert not set(first) & set(second)
    assert len(generated_column(ID, 0, seed=1, row_offset=5)) == 0


@pytest.mark.parametrize("pii", list(PiiType))
def test_pii_is_seeded_and_varied(pii):
    spec = ColumnSpec(name="p", kind=ColumnKind.PII, pii=pii)
    a, b = generated_column(spec, 40, seed=1, row_offset=0), generated_column(spec, 40, seed=1, row_offset=0)
    assert a.tolist() == b.tolist()
    assert a.tolist() != generated_column(spec, 40, seed=2, row_offset=0).tolist()
    assert a.nunique() > 1
    assert not a.str.contains("\n").any(), "one line per value (addresses included)"


def test_email_values_look_like_emails():
    spec = ColumnSpec(name="e", kind=ColumnKind.PII, pii=PiiType.EMAIL)
    assert generated_column(spec, 30, seed=3, row_offset=0).str.fullmatch(r"[^@\s]+@[^@\s]+\.\w+").all()


def test_learned_columns_are_not_generated():
    with pytest.raises(ValueError, match="amount"):
        generated_column(ColumnSpec(name="amount", kind=ColumnKind.NUMERIC), 5, seed=0, row_offset=0)
