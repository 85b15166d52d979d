"""What gives synthetic rows away: the detector's features, the worst columns and pairs, and rule hints computed
from the real and synthetic frames (each hint checked against a table where it must not appear)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthlake.evaluation import evaluate_results, get_metric
from synthlake.evaluation.explain import explain, hints
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata
from synthlake.rules import parse_rules

META = TableMetadata(columns=[
    ColumnSpec(name="id", kind=ColumnKind.IDENTIFIER),
    ColumnSpec(name="low", kind=ColumnKind.NUMERIC),
    ColumnSpec(name="high", kind=ColumnKind.NUMERIC),
    ColumnSpec(name="noise", kind=ColumnKind.NUMERIC),
    ColumnSpec(name="country", kind=ColumnKind.CATEGORICAL),
    ColumnSpec(name="currency", kind=ColumnKind.CATEGORICAL),
    ColumnSpec(name="color", kind=ColumnKind.CATEGORICAL),
    ColumnSpec(name="start", kind=ColumnKind.DATETIME),
    ColumnSpec(name="start_month", kind=ColumnKind.NUMERIC, integer=True),
])
CURRENCY = {"FR": "EUR", "DE": "EUR", "US": "USD", "JP": "JPY", "GB": "GBP"}
FIDELITY = ["column_shapes", "column_pair_trends", "accuracy_univariate", "accuracy_bivariate", "detection_auc"]


def table(n: int = 1500, seed: int = 0, breaks: tuple[str, ...] = ()) -> pd.DataFrame:
    """low <= high on every row (their ranges overlap), currency a function of country, start_month the month of
    start; noise and color independent of everything. `breaks` names the relations shuffled apart."""
    rng = np.random.default_rng(seed)
    low = rng.normal(100, 20, n)
    high = low + rng.exponential(5, n)
    country = rng.choice(list(CURRENCY), n)
    currency = pd.Series(country).map(CURRENCY).to_numpy()
    start = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    month = start.month.to_numpy()
    if "inequality" in breaks:
        high = rng.permutation(high)
    if "combinations" in breaks:
        currency = rng.permutation(currency)
    if "derived" in breaks:
        month = rng.permutation(month)
    return pd.DataFrame({"id": np.arange(n), "low": low, "high": high, "noise": rng.normal(0, 1, n),
                         "country": country, "currency": currency,
                         "color": rng.choice(["red", "green", "blue"], n), "start": start, "start_month": month})


REAL = table()


def rules_of(found) -> list[dict]:
    return [h.rule for h in found]


@pytest.fixture(scope="module")
def broken_inequality():
    synthetic = table(seed=1, breaks=("inequality",))
    results = evaluate_results(REAL, synthetic, META, FIDELITY)
    return synthetic, results


def test_the_detector_names_the_columns_of_the_broken_inequality(broken_inequality):
    _, results = broken_inequality
    features = results["detection_auc"].details["features"]
    assert [name for name, _ in features][:2] in (["low", "high"], ["high", "low"])
    importance = dict(features)
    assert set(importance) == {s.name for s in META.learned_columns}
    assert importance["high"] > 0.05
    assert abs(importance["noise"]) < importance["high"] / 5 and abs(importance["color"]) < importance["high"] / 5
    assert [v for _, v in features] == sorted((v for _, v in features), reverse=True)


def test_feature_importances_are_seeded(broken_inequality):
    synthetic, _ = broken_inequality
    metric = get_metric("detection_auc", explain_rows=200)
    first = metric.evaluate(REAL, synthetic, META, seed=4)
    again = metric.evaluate(REAL, synthetic, META, seed=4)
    assert first.details["features"] == again.details["features"]
    other = metric.evaluate(REAL, synthetic, META, seed=5)
    assert other.details["features"] != first.details["features"]


def test_the_broken_inequality_gets_an_inequality_hint(broken_inequality):
    synthetic, results = broken_inequality
    explanation = explain(REAL, synthetic, META, results)
    assert rules_of(explanation.hints) == [{"kind": "inequality", "low": "low", "high": "high"}]
    hint = explanation.hints[0]
    assert hint.yaml == "- {kind: inequality, low: low, high: high}"
    assert hint.real_share == 0
    assert hint.synthetic_share == pytest.approx(np.mean(synthetic["high"] < synthetic["low"]))
    assert "high >= low: holds on every real row" in hint.evidence
    assert explanation.features[0][0] in ("low", "high")
    assert explanation.worst_pairs[0].columns == ("low", "high")
    assert explanation.worst_pairs[0].trend_metric == "correlation_similarity"
    assert explanation.worst_pairs[0].accuracy < min(p.accuracy for p in explanation.worst_pairs[1:])


def test_a_fresh_sample_of_the_real_distribution_gets_no_hint():
    assert hints(REAL, table(seed=2), META) == []


def test_unseen_combinations_get_a_fixed_combinations_hint():
    found = hints(REAL, table(seed=3, breaks=("combinations",)), META)
    assert rules_of(found) == [{"kind": "fixed_combinations", "columns": ["country", "currency"]}]
    assert found[0].yaml == "- {kind: fixed_combinations, columns: [country, currency]}"
    assert found[0].synthetic_share > 0.5


def test_independent_categories_get_no_fixed_combinations_hint():
    """country x color: every combination occurs in the real rows, so a synthetic one is never unseen; and a
    sparse pair (many values, few rows) is not flagged for the unseen pairs chance gives too."""
    rng = np.random.default_rng(0)
    real, synthetic = table(seed=4), table(seed=5)
    real["color"] = rng.choice([f"c{i}" for i in range(40)], len(real))
    synthetic["color"] = rng.choice([f"c{i}" for i in range(40)], len(synthetic))
    assert hints(real, synthetic, META) == []


def test_a_broken_date_part_gets_a_derived_hint():
    found = hints(REAL, table(seed=6, breaks=("derived",)), META)
    assert rules_of(found) == [{"kind": "derived", "column": "start_month", "expression": "month(start)"}]


def test_a_sum_gets_a_derived_hint_once_and_names_columns_that_are_no_identifiers():
    meta = TableMetadata(columns=[ColumnSpec(name="net-price", kind=ColumnKind.NUMERIC),
                                  ColumnSpec(name="tax", kind=ColumnKind.NUMERIC),
                                  ColumnSpec(name="gross", kind=ColumnKind.NUMERIC)])
    rng = np.random.default_rng(0)
    real = pd.DataFrame({"net-price": rng.uniform(10, 20, 800), "tax": rng.uniform(0, 3, 800)})
    real["gross"] = real["net-price"] + real["tax"]
    synthetic = real.assign(gross=rng.permutation(real["gross"].to_numpy()))
    found = hints(real, synthetic, meta)
    # gross = net-price + tax, and not also net-price = gross - tax: the two would form a cycle
    assert rules_of(found) == [{"kind": "derived", "column": "gross", "expression": 'col("net-price") + tax'}]
    parse_rules(rules_of(found), meta)  # the line pastes as is


def test_hints_together_with_the_dataset_rules_form_a_config_the_engine_accepts():
    synthetic = table(seed=7, breaks=("inequality", "combinations", "derived"))
    found = hints(REAL, synthetic, META)
    assert {h.rule["kind"] for h in found} == {"inequality", "fixed_combinations", "derived"}
    parse_rules(rules_of(found), META)
    # a rule the dataset has already that writes `high`: a second writer is not suggested
    existing = [{"kind": "derived", "column": "high", "expression": "low + 1"}]
    assert "inequality" not in {h.rule["kind"] for h in hints(REAL, synthetic, META, rules=existing)}
    # under a privacy budget, rules that learn from the rows (the seen combinations) are not suggested
    assert "fixed_combinations" not in {h.rule["kind"] for h in hints(REAL, synthetic, META, private=True)}


def test_an_order_that_comes_from_the_ranges_alone_gets_no_inequality_hint():
    """small <= big on every real row only because their ranges do not overlap: a synthetic `big` below the
    real range breaks the order, but that is the column's range, not a relation between the rows' values."""
    meta = TableMetadata(columns=[ColumnSpec(name="small", kind=ColumnKind.NUMERIC),
                                  ColumnSpec(name="big", kind=ColumnKind.NUMERIC)])
    rng = np.random.default_rng(0)
    real = pd.DataFrame({"small": rng.uniform(0, 1, 800), "big": rng.uniform(2, 3, 800)})
    synthetic = pd.DataFrame({"small": rng.uniform(0, 1, 800), "big": rng.uniform(0, 3, 800)})
    assert hints(real, synthetic, meta) == []
    overlapping = real.assign(big=real["small"] + rng.uniform(0, 2, 800))  # now a relation between the rows
    assert rules_of(hints(overlapping, synthetic, meta)) == [{"kind": "inequality", "low": "small", "high": "big"}]
