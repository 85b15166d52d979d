"""Utility (TSTR against TRTR) on tasks whose answer is known: a target the features decide, or one they don't."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthlake.evaluation import MissingContext, get_metric
from synthlake.evaluation.utility import tstr_trtr
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata


def metadata(target: str, target_kind: ColumnKind = ColumnKind.CATEGORICAL) -> TableMetadata:
    return TableMetadata(columns=[
        ColumnSpec(name="id", kind=ColumnKind.IDENTIFIER),
        ColumnSpec(name="x", kind=ColumnKind.NUMERIC),
        ColumnSpec(name="group", kind=ColumnKind.CATEGORICAL),
        ColumnSpec(name="noise", kind=ColumnKind.NUMERIC),
        ColumnSpec(name=target, kind=target_kind),
    ], target=target)


def table(n: int, seed: int) -> pd.DataFrame:
    """`label` follows x and group closely, `tier` has three classes, `amount` is 3x plus a group offset."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    group = rng.choice(["a", "b", "c"], n)
    offset = pd.Series(group).map({"a": -1.0, "b": 0.0, "c": 1.0}).to_numpy()
    signal = x + offset + rng.normal(0, 0.3, n)
    return pd.DataFrame({
        "id": [f"row-{seed}-{i}" for i in range(n)],
        "x": x, "group": group, "noise": rng.normal(0, 1, n),
        "label": np.where(signal > 0, "yes", "no"),
        "tier": np.select([signal < -0.7, signal < 0.7], ["low", "mid"], "high"),
        "amount": 3 * x + offset + rng.normal(0, 0.3, n),
    })


TRAIN, HOLDOUT = table(1200, seed=0), table(800, seed=1)
CLASSIFY = metadata("label")


def broken(df: pd.DataFrame, column: str, seed: int = 5) -> pd.DataFrame:
    """The target shuffled: same marginal, no relation to the features."""
    return df.assign(**{column: np.random.default_rng(seed).permutation(df[column].to_numpy())})


def value(name: str, synthetic: pd.DataFrame, meta: TableMetadata = CLASSIFY, **context) -> float:
    return get_metric(name, max_iter=50).compute(TRAIN, synthetic, meta, holdout=HOLDOUT, **context)


def test_real_data_predicts_a_decided_target():
    assert value("trtr", TRAIN) > 0.95


def test_a_copy_of_the_training_rows_is_as_useful_as_they_are():
    assert value("tstr", TRAIN) == pytest.approx(value("trtr", TRAIN))
    assert value("utility_gap", TRAIN) == pytest.approx(0.0)


def test_a_fresh_sample_is_nearly_as_useful():
    assert value("tstr", table(1200, seed=7)) > 0.93
    assert value("utility_gap", table(1200, seed=7)) < 0.03


def test_a_target_unrelated_to_the_features_is_useless():
    assert value("tstr", broken(TRAIN, "label")) == pytest.approx(0.5, abs=0.08)
    assert value("utility_gap", broken(TRAIN, "label")) > 0.35


def test_multiclass_is_scored_by_macro_one_vs_rest_auc():
    meta = metadata("tier")
    assert value("trtr", TRAIN, meta) > 0.9
    assert value("tstr", broken(TRAIN, "tier"), meta) == pytest.approx(0.5, abs=0.08)


def test_regression_is_scored_by_r2():
    meta = metadata("amount", ColumnKind.NUMERIC)
    result = tstr_trtr(TRAIN, broken(TRAIN, "amount"), HOLDOUT, meta, max_iter=50)
    assert (result.task, result.score) == ("regression", "r2")
    assert result.trtr > 0.9
    assert result.tstr < 0.1, "no relation learned: about zero, possibly below"
    assert result.gap == pytest.approx(result.trtr - result.tstr)


def test_a_synthetic_table_with_one_class_scores_chance():
    assert value("tstr", TRAIN.assign(label="no")) == 0.5


def test_utility_needs_a_holdout_and_a_target():
    with pytest.raises(MissingContext, match="holdout"):
        get_metric("tstr").compute(TRAIN, TRAIN, CLASSIFY)
    no_target = TableMetadata(columns=CLASSIFY.columns)
    with pytest.raises(MissingContext, match="target"):
        get_metric("trtr").compute(TRAIN, TRAIN, no_target, holdout=HOLDOUT)
