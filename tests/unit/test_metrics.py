"""synthlake.metrics: 1 for identical columns, 0 for disjoint ones, lower as distributions drift apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthlake.metadata import ColumnKind, ColumnSpec, PiiType, TableMetadata
from synthlake.metrics import column_shapes, ks_complement, tv_complement

rng = np.random.default_rng(0)


def test_identical_columns_score_one():
    x = pd.Series(rng.normal(0, 1, 500))
    c = pd.Series(rng.choice(["a", "b", "c"], 500))
    assert ks_complement(x, x) == 1.0
    assert tv_complement(c, c) == 1.0
    assert ks_complement(x, x.sample(frac=1, random_state=1)) == 1.0, "order does not matter"


def test_disjoint_columns_score_zero():
    assert tv_complement(pd.Series(["a", "b"] * 50), pd.Series(["c", "d"] * 50)) == 0.0
    assert ks_complement(pd.Series(np.arange(100.0)), pd.Series(np.arange(100.0) + 1000)) == 0.0


def test_shifted_numeric_scores_lower_than_unshifted():
    real = pd.Series(rng.normal(0, 1, 2000))
    same = pd.Series(rng.normal(0, 1, 2000))
    scores = [ks_complement(real, pd.Series(rng.normal(shift, 1, 2000))) for shift in (0.25, 1.0, 3.0)]
    assert ks_complement(real, same) > scores[0] > scores[1] > scores[2]
    assert ks_complement(real, same) > 0.9


def test_categorical_score_drops_with_frequency_drift():
    real = pd.Series(["a"] * 50 + ["b"] * 50)
    assert tv_complement(real, pd.Series(["a"] * 70 + ["b"] * 30)) == pytest.approx(0.8)
    assert tv_complement(real, pd.Series(["a"] * 90 + ["b"] * 10)) == pytest.approx(0.6)


def test_scores_are_symmetric_and_bounded():
    a, b = pd.Series(rng.normal(0, 1, 300)), pd.Series(rng.exponential(1, 400))
    assert ks_complement(a, b) == pytest.approx(ks_complement(b, a))
    assert 0 <= ks_complement(a, b) <= 1
    c, d = pd.Series(rng.choice(list("abc"), 300)), pd.Series(rng.choice(list("bcd"), 200))
    assert tv_complement(c, d) == pytest.approx(tv_complement(d, c))
    assert 0 <= tv_complement(c, d) <= 1


def test_ks_ignores_nulls_tv_counts_them():
    x = pd.Series([1.0, 2.0, 3.0, 4.0])
    assert ks_complement(pd.concat([x, pd.Series([np.nan] * 4)]), x) == 1.0
    c = pd.Series(["a", "b", "a", "b"])
    with_nulls = pd.Series(["a", "b", None, None])
    assert tv_complement(c, with_nulls) == pytest.approx(0.5)
    assert tv_complement(with_nulls, pd.Series(["a", np.nan, "b", None])) == 1.0


def test_ks_on_empty_columns():
    empty, x = pd.Series([], dtype=float), pd.Series([1.0, 2.0])
    assert ks_complement(empty, empty) == 1.0
    assert ks_complement(empty, x) == 0.0


def test_ks_on_datetimes_ignores_the_time_zone_label():
    """A generator returns UTC-aware datetimes; a source may be naive (UTC). The same instants score 1."""
    naive = pd.Series(pd.date_range("2020-01-01", periods=200, freq="D"))
    assert ks_complement(naive, naive.dt.tz_localize("UTC")) == 1.0
    assert ks_complement(naive, naive + pd.Timedelta(days=150)) < 0.5


def test_column_shapes_picks_the_metric_per_kind():
    n = 300
    real = pd.DataFrame({
        "id": [str(i) for i in range(n)],
        "age": rng.integers(18, 90, n),
        "color": rng.choice(["red", "blue"], n),
        "when": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D"),
        "email": ["x@y.z"] * n,
    })
    metadata = TableMetadata(columns=[
        ColumnSpec(name="id", kind=ColumnKind.IDENTIFIER),
        ColumnSpec(name="age", kind=ColumnKind.NUMERIC, integer=True),
        ColumnSpec(name="color", kind=ColumnKind.CATEGORICAL),
        ColumnSpec(name="when", kind=ColumnKind.DATETIME),
        ColumnSpec(name="email", kind=ColumnKind.PII, pii=PiiType.EMAIL),
    ])
    same = column_shapes(real, real, metadata)
    assert [(s.column, s.metric) for s in same] == [("age", "ks_complement"), ("color", "tv_complement"),
                                                    ("when", "ks_complement")]
    assert all(s.score == 1.0 for s in same)
    drifted = real.assign(age=real["age"] + 30, color="red")
    scores = {s.column: s.score for s in column_shapes(real, drifted, metadata)}
    assert scores["age"] < 0.7 and scores["color"] < 0.7 and scores["when"] == 1.0
