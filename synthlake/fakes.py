"""Values for columns that are never learned: identifiers and PII."""

from __future__ import annotations

import pandas as pd

from synthlake.metadata import ColumnKind, ColumnSpec, PiiType

_PII_METHODS = {
    PiiType.NAME: "name",
    PiiType.EMAIL: "email",
    PiiType.PHONE: "phone_number",
    PiiType.ADDRESS: "address",
    PiiType.SSN: "ssn",
    PiiType.TEXT: "sentence",
}


def generated_column(spec: ColumnSpec, n: int, seed: int, row_offset: int) -> pd.Series:
    """Identifiers are the global row numbers as text (unique across blocks); PII comes from Faker, seeded."""
    if spec.kind == ColumnKind.IDENTIFIER:
        return pd.Series([str(i) for i in range(row_offset, row_offset + n)], name=spec.name, dtype=object)
    if spec.kind == ColumnKind.PII:
        from faker import Faker  # here: executors sampling a table without PII skip its import

        fake = Faker("en_US")
        fake.seed_instance(seed)
        method = getattr(fake, _PII_METHODS[spec.pii])
        return pd.Series([method().replace("\n", ", ") for _ in range(n)], name=spec.name, dtype=object)
    raise ValueError(f"column '{spec.name}' of kind {spec.kind} is learned, not generated")
