"""Table metadata: what each column is, the contract between a config and a generator."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

RARE_CATEGORY = "_RARE_"  # what generators emit for categories too rare to reproduce (privacy)


class ColumnKind(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    DATETIME = "datetime"
    IDENTIFIER = "identifier"  # generated unique, never learned
    PII = "pii"  # generated from fake values by `pii` type, never learned


class PiiType(StrEnum):
    NAME = "name"
    EMAIL = "email"
    PHONE = "phone"
    ADDRESS = "address"
    SSN = "ssn"
    TEXT = "text"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(Strict):
    name: str
    kind: ColumnKind
    integer: bool = False  # numeric only: values stay integers
    pii: PiiType | None = None  # pii only

    @model_validator(mode="after")
    def _check_kind_options(self) -> ColumnSpec:
        if self.kind == ColumnKind.PII and self.pii is None:
            raise ValueError(f"column '{self.name}': kind pii needs `pii:` one of {[p.value for p in PiiType]}")
        if self.kind != ColumnKind.PII and self.pii is not None:
            raise ValueError(f"column '{self.name}': `pii:` is only allowed on kind pii")
        if self.integer and self.kind != ColumnKind.NUMERIC:
            raise ValueError(f"column '{self.name}': `integer:` is only allowed on kind numeric")
        return self

    @property
    def learned(self) -> bool:
        """Identifiers and PII are generated, never learned from the real values."""
        return self.kind in (ColumnKind.NUMERIC, ColumnKind.CATEGORICAL, ColumnKind.DATETIME)


class TableMetadata(Strict):
    columns: list[ColumnSpec]
    target: str | None = None

    @model_validator(mode="after")
    def _check_columns(self) -> TableMetadata:
        names = [c.name for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate column names: {duplicates}")
        if not any(c.learned for c in self.columns):
            raise ValueError("no column to learn: at least one numeric, categorical or datetime column is needed")
        if self.target is not None and self.target not in names:
            raise ValueError(f"target column '{self.target}' is not among the columns {names}")
        return self

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def learned_columns(self) -> list[ColumnSpec]:
        return [c for c in self.columns if c.learned]

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"unknown column '{name}'")


class PrivacyBudget(Strict):
    """Differential privacy for everything a generator learns from the rows (preprocessing and training
    share the one budget): the dataset config's `privacy:` and a generator's `privacy=` both check it here."""

    epsilon: float = Field(gt=0, le=100, allow_inf_nan=False, strict=False)
    delta: float = Field(1e-5, gt=0, lt=1e-2, allow_inf_nan=False, strict=False)
    # the unit of privacy: a column naming whose rows they are (a customer, a patient). None: each row is its own
    # unit. With a unit, neighbouring tables differ by all the rows of one unit, of which `unit_rows` are kept.
    unit: str | None = None
    unit_rows: int = Field(100, ge=1, le=100_000)
