"""Fidelity metrics on tables whose right answer is known: identical, shuffled, independent, hand-built."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthlake.evaluation import get_metric
from synthlake.evaluation.fidelity import (
    bivariate_accuracies,
    column_pair_trends,
    column_shapes,
    univariate_accuracies,
)
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata

META = TableMetadata(columns=[
    ColumnSpec(name="id", kind=ColumnKind.IDENTIFIER),
    ColumnSpec(name="x", kind=ColumnKind.NUMERIC),
    ColumnSpec(name="y", kind=ColumnKind.NUMERIC),
    ColumnSpec(name="side", kind=ColumnKind.CATEGORICAL),
    ColumnSpec(name="when", kind=ColumnKind.DATETIME),
    ColumnSpec(name="color", kind=ColumnKind.CATEGORICAL),
])


def table(n: int = 1500, seed: int = 0, correlated: bool = True) -> pd.DataFrame:
    """x, y, side and when move together (when `correlated`); color is independent and has nulls."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    y = x + rng.normal(0, 0.3, n) if correlated else rng.normal(0, 1, n)
    side = np.where((x if correlated else rng.normal(0, 1, n)) + rng.normal(0, 0.3, n) > 0, "hi", "lo")
    when = pd.Timestamp("2020-01-01") + pd.to_timedelta(((y if correlated else rng.normal(0, 1, n)) * 30 + 365)
                                                        .round(), unit="D")
    color = pd.Series(rng.choice(["red", "green", "blue"], n), dtype=object)
    color[rng.random(n) < 0.1] = None
    return pd.DataFrame({"id": np.arange(n), "x": x, "y": y, "side": side, "when": when, "color": color})


def shuffled(df: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """Every column permuted on its own: the same marginals, no joint structure."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: rng.permutation(df[c].to_numpy()) for c in df.columns})


def score(name: str, real, synthetic, metadata=META, **options) -> float:
    return get_metric(name, **options).compute(real, synthetic, metadata)


REAL = table()


@pytest.mark.parametrize("name", ["column_shapes", "column_pair_trends", "accuracy_univariate",
                                  "accuracy_bivariate", "accuracy"])
def test_identical_tables_score_one(name):
    assert score(name, REAL, REAL) == 1.0
    assert score(name, REAL, REAL.sample(frac=1, random_state=3)) == pytest.approx(1.0), "row order is no signal"


def test_identical_tables_cannot_be_detected():
    """Every synthetic row has a twin among the real ones, in the same fold: the classifier has no edge."""
    assert score("detection_auc", REAL, REAL) == pytest.approx(0.5, abs=0.02)


def test_shuffled_columns_keep_the_marginals_and_lose_the_pairs():
    syn = shuffled(REAL)
    assert score("column_shapes", REAL, syn) == 1.0
    assert score("accuracy_univariate", REAL, syn) == 1.0
    assert score("column_pair_trends", REAL, syn) < 0.85
    assert score("accuracy_bivariate", REAL, syn) < 0.8
    trends = {(t.column_1, t.column_2): t for t in column_pair_trends(REAL, syn, META)}
    assert trends[("x", "y")].metric == "correlation_similarity"
    assert trends[("x", "y")].real_correlation > 0.9 and abs(trends[("x", "y")].synthetic_correlation) < 0.1
    assert trends[("x", "y")].score < 0.6
    assert trends[("x", "side")].metric == "contingency_similarity" and trends[("x", "side")].score < 0.75


def test_shuffled_columns_are_detected():
    assert score("detection_auc", REAL, shuffled(REAL)) > 0.85


def test_fresh_sample_of_the_same_distribution_scores_high_and_goes_undetected():
    fresh = table(seed=9)
    assert score("column_shapes", REAL, fresh) > 0.95
    assert score("column_pair_trends", REAL, fresh) > 0.95
    assert score("accuracy", REAL, fresh) > 0.93
    assert score("detection_auc", REAL, fresh) == pytest.approx(0.5, abs=0.06)


def test_independent_columns_lose_nothing_when_shuffled():
    """Only joint structure is lost by shuffling: a table without any keeps its pair scores."""
    independent = table(correlated=False)
    assert score("column_pair_trends", independent, shuffled(independent)) > 0.95
    assert score("accuracy_bivariate", independent, shuffled(independent)) > 0.9  # 100 cells, 1500 rows: noise
    assert score("accuracy_bivariate", REAL, shuffled(REAL)) < 0.8
    assert score("column_pair_trends", REAL, shuffled(REAL)) < 0.85


def test_correlation_similarity_is_one_minus_half_the_difference():
    x = np.arange(100.0)
    meta = TableMetadata(columns=[ColumnSpec(name="a", kind=ColumnKind.NUMERIC),
                                  ColumnSpec(name="b", kind=ColumnKind.NUMERIC)])
    real = pd.DataFrame({"a": x, "b": 2 * x})
    (same,) = column_pair_trends(real, pd.DataFrame({"a": x, "b": x + 7}), meta)
    (flipped,) = column_pair_trends(real, pd.DataFrame({"a": x, "b": -x}), meta)
    assert (same.score, flipped.score) == (pytest.approx(1.0), pytest.approx(0.0))
    assert (flipped.real_correlation, flipped.synthetic_correlation) == (pytest.approx(1), pytest.approx(-1))
    (constant,) = column_pair_trends(real, pd.DataFrame({"a": x, "b": 1.0}), meta)
    assert np.isnan(constant.score), "undefined for a constant column, not a perfect score"
    assert score("column_pair_trends", real, pd.DataFrame({"a": x, "b": 1.0}), meta) != 1.0


def test_contingency_similarity_on_a_hand_built_table():
    meta = TableMetadata(columns=[ColumnSpec(name="a", kind=ColumnKind.CATEGORICAL),
                                  ColumnSpec(name="n", kind=ColumnKind.NUMERIC)])
    # n spans 0..100: 10 equal-width bins of width 10
    real = pd.DataFrame({"a": ["p"] * 50 + ["q"] * 50, "n": np.r_[np.linspace(0, 9, 50), np.linspace(91, 100, 50)]})
    (same,) = column_pair_trends(real, real, meta)
    assert same.metric == "contingency_similarity" and same.score == 1.0
    swapped = real.assign(a=["q"] * 50 + ["p"] * 50)  # every (a, n-bin) cell moves to an empty one
    (moved,) = column_pair_trends(real, swapped, meta)
    assert moved.score == pytest.approx(0.0)
    half = real.assign(a=["p"] * 25 + ["q"] * 25 + ["q"] * 50)  # a quarter of the mass moves
    assert column_pair_trends(real, half, meta)[0].score == pytest.approx(0.75)
    # within a bin, numeric values can move freely: the real bins are used for both tables
    (within,) = column_pair_trends(real, real.assign(n=real["n"].clip(upper=9.5).where(real["a"] == "p",
                                                                                          99.0)), meta)
    assert within.score == 1.0


def test_accuracy_uses_real_quantile_bins():
    meta = TableMetadata(columns=[ColumnSpec(name="n", kind=ColumnKind.NUMERIC)])
    real = pd.DataFrame({"n": np.arange(1000.0)})
    low = pd.DataFrame({"n": np.linspace(0, 90, 1000)})  # all in the real lowest decile (< 99.9)
    assert univariate_accuracies(real, low, meta) == {"n": pytest.approx(0.1)}
    # the real deciles are 99.9, 199.8, ... 899.1: a shift by 0.05 keeps every value in its bin
    assert score("accuracy_univariate", real, real + 0.05, meta) == 1.0, "a shift within the bins is invisible"
    assert score("column_shapes", real, real + 0.05, meta) < 1.0, "while the KS complement sees it"
    assert score("accuracy_univariate", real, real + 0.5, meta) == pytest.approx(0.999), "899.5 crosses 899.1"


def test_accuracy_pools_categories_beyond_the_ten_most_frequent():
    meta = TableMetadata(columns=[ColumnSpec(name="c", kind=ColumnKind.CATEGORICAL)])
    common = [f"c{i}" for i in range(10) for _ in range(100 - i)]
    real = pd.DataFrame({"c": common + ["rare1"] * 5 + ["rare2"] * 3})
    swapped = pd.DataFrame({"c": common + ["rare3"] * 8})  # the rare ones all land in "other"
    assert score("accuracy_univariate", real, swapped, meta) == 1.0
    assert score("column_shapes", real, swapped, meta) < 1.0
    dropped = pd.DataFrame({"c": [v for v in common if v != "c0"] + ["rare1"] * 5 + ["rare2"] * 3})
    assert score("accuracy_univariate", real, dropped, meta) < 0.95


def test_accuracy_is_the_mean_of_univariate_and_bivariate():
    syn = shuffled(REAL)
    uni, bi = univariate_accuracies(REAL, syn, META), bivariate_accuracies(REAL, syn, META)
    assert list(uni) == ["x", "y", "side", "when", "color"], "learned columns only"
    assert len(bi) == 10
    expected = (np.mean(list(uni.values())) + np.mean(list(bi.values()))) / 2
    assert score("accuracy", REAL, syn) == pytest.approx(expected)
    assert score("accuracy", REAL, syn) < 0.95


def test_missing_rate_counts_in_every_family():
    """A generator that never produces nulls is told so by the shapes, the pairs and the accuracy."""
    no_nulls = REAL.assign(color=REAL["color"].fillna("red"))
    assert score("column_shapes", REAL, no_nulls) < 1.0
    assert score("column_pair_trends", REAL, no_nulls) < 1.0
    assert score("accuracy", REAL, no_nulls) < 1.0


def test_column_shapes_cover_learned_columns_only():
    assert [(s.column, s.metric) for s in column_shapes(REAL, REAL, META)] == [
        ("x", "ks_complement"), ("y", "ks_complement"), ("side", "tv_complement"), ("when", "ks_complement"),
        ("color", "tv_complement")]
    different_ids = REAL.assign(id=REAL["id"] + 10**6)
    assert score("column_shapes", REAL, different_ids) == 1.0


def test_detection_is_seeded():
    syn = table(seed=5)
    assert score("detection_auc", REAL, syn, seed=3) == score("detection_auc", REAL, syn, seed=3)
