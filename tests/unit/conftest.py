"""Shared fixtures for the engine's unit tests: a small mixed table and one tiny fitted CTGAN."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthlake.metadata import ColumnKind, ColumnSpec, PiiType, TableMetadata

# Small networks and one epoch: these tests check the contract, not the quality of the model.
TINY_HYPER = {
    "epochs": 1,
    "batch_size": 100,
    "generator_dim": [32],
    "discriminator_dim": [32],
    "embedding_dim": 16,
    "max_modes": 5,
}


def make_mixed_table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Every column kind: identifier, integer, float with nulls, categorical with nulls, datetime, email."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50_000, 12_000, n)
    income[rng.random(n) < 0.1] = np.nan
    color = pd.Series(rng.choice(["red", "green", "blue", "violet"], n, p=[0.4, 0.3, 0.2, 0.1]), dtype=object)
    color[rng.random(n) < 0.15] = None
    return pd.DataFrame({
        "customer_id": [f"CUST-{v:010d}" for v in rng.choice(10**9, n, replace=False)],
        "age": rng.integers(18, 90, n),
        "income": income,
        "color": color,
        "signup": pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 3 * 365 * 86400, n), unit="s"),
        "email": [f"real.person{i}@corp-example.test" for i in range(n)],
    })


def mixed_metadata() -> TableMetadata:
    return TableMetadata(columns=[
        ColumnSpec(name="customer_id", kind=ColumnKind.IDENTIFIER),
        ColumnSpec(name="age", kind=ColumnKind.NUMERIC, integer=True),
        ColumnSpec(name="income", kind=ColumnKind.NUMERIC),
        ColumnSpec(name="color", kind=ColumnKind.CATEGORICAL),
        ColumnSpec(name="signup", kind=ColumnKind.DATETIME),
        ColumnSpec(name="email", kind=ColumnKind.PII, pii=PiiType.EMAIL),
    ])


@pytest.fixture(scope="session")
def mixed_table() -> pd.DataFrame:
    """Shared: copy it before changing it."""
    return make_mixed_table()


@pytest.fixture(scope="session")
def metadata() -> TableMetadata:
    return mixed_metadata()


@pytest.fixture(scope="session")
def fitted_ctgan():
    """One tiny CTGAN fitted on the mixed table, shared by the generator tests (fitting takes seconds)."""
    from synthlake.generators import get_generator

    table = make_mixed_table()
    model = get_generator("ctgan")(mixed_metadata(), **TINY_HYPER)
    model.fit(table)
    return model, table


@pytest.fixture(scope="session")
def mixed_transformer(mixed_table, metadata):
    from synthlake.transforms import TableTransformer

    return TableTransformer.fit(mixed_table, metadata, max_modes=5, seed=0)
