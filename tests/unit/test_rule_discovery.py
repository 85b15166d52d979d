"""synthlake.rule_discovery: which relations of a table become rules, and the evidence written with them.

The whole chain runs in pandas here (candidates from a sample, measure over all rows, decide, rules_yaml); the
Spark measure is tested in tests/integration/test_infer_config.py. Thresholds are tested at their boundary on
hand-made statistics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from synthlake.inference import infer_columns
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata
from synthlake.rule_discovery import (
    Formula,
    Lookup,
    LookupStats,
    Order,
    Pair,
    Plan,
    Stats,
    allowed_violations,
    candidates,
    decide,
    measure,
    row_counts,
    rules_yaml,
)
from synthlake.rules import parse_rules

COUNTRIES = [("FR", "EUR", "EU"), ("DE", "EUR", "EU"), ("IT", "EUR", "EU"), ("US", "USD", "NA"),
             ("CA", "CAD", "NA"), ("GB", "GBP", "EU"), ("JP", "JPY", "AS"), ("MX", "MXN", "NA")]


def shop(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A table with planted logic and columns without any: date parts (a date and the datetime it was placed at,
    seconds later), a sum
    and a product (one column name not an identifier), ordered dates, a rate per day, a price per country's
    mean, (country, currency, region), and `fee` below `price` on the first 400 rows only."""
    rng = np.random.default_rng(seed)
    day = rng.integers(0, 80, n)
    ordered = pd.Timestamp("2020-01-01") + pd.to_timedelta(day * 15, unit="D")  # 80 dates over 3+ years
    placed = ordered + pd.to_timedelta(rng.integers(0, 86400, n), unit="s")
    shipped = ordered + pd.to_timedelta(rng.integers(0, 20, n), unit="D")
    delivered = shipped + pd.to_timedelta(rng.integers(1, 10, n), unit="D")
    pick = rng.choice(len(COUNTRIES), n, p=[0.2, 0.2, 0.1, 0.2, 0.1, 0.1, 0.05, 0.05])
    a, b, qty = rng.integers(0, 400, n), rng.integers(0, 100, n), rng.integers(1, 6, n)
    price = np.round(rng.gamma(2, 40, n), 2)
    fee = np.round(price * rng.uniform(0, 1, n), 2)
    fee[400:] = np.round(price[400:] * rng.uniform(0, 1.3, n - 400), 2)
    frame = pd.DataFrame({
        "order_no": [f"N{i}" for i in range(n)],
        "ordered": ordered, "placed": placed, "year": ordered.year.astype("int64"),
        "hour_placed": placed.hour.astype("int64"), "shipped": shipped, "delivered": delivered,
        "day_rate": np.round(rng.uniform(1, 2, 80), 3)[day],
        "a": a, "b": b, "total": a + b, "qty": qty, "unit price": price, "amount": np.round(qty * price, 2),
        "fee": fee, "country": [COUNTRIES[i][0] for i in pick], "currency": [COUNTRIES[i][1] for i in pick],
        "region": [COUNTRIES[i][2] for i in pick], "channel": rng.choice(["web", "shop", "phone"], n),
        "age": rng.integers(18, 80, n), "income": np.round(rng.gamma(3, 20_000, n), 0),
    })
    frame["price_by_country"] = frame["country"].map(frame.groupby("country")["unit price"].mean())
    return frame


EXPECTED = [
    {"kind": "derived", "column": "year", "expression": "year(ordered)"},
    {"kind": "derived", "column": "hour_placed", "expression": "hour(placed)"},
    {"kind": "derived", "column": "total", "expression": "a + b"},
    {"kind": "derived", "column": "amount", "expression": 'qty * col("unit price")'},
    {"kind": "derived", "column": "day_rate", "lookup": {"by": ["ordered"], "value": "day_rate"}},
    {"kind": "derived", "column": "price_by_country", "lookup": {"by": ["country"], "value": "unit price"}},
    {"kind": "fixed_combinations", "columns": ["country", "currency", "region"]},
    {"kind": "inequality", "low": "ordered", "high": "placed", "strict": True, "unit": "second"},
    {"kind": "inequality", "low": "ordered", "high": "shipped", "unit": "day"},
    {"kind": "inequality", "low": "shipped", "high": "delivered", "strict": True, "unit": "day"},
]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return shop()


@pytest.fixture(scope="module")
def metadata(table) -> TableMetadata:
    return TableMetadata(columns=infer_columns(table))


def distinct_tuples(frame: pd.DataFrame):
    return lambda columns: len(frame[columns].drop_duplicates())


def discover(frame: pd.DataFrame, metadata: TableMetadata, sample: pd.DataFrame | None = None, share=0.01):
    plan = candidates(frame if sample is None else sample, metadata)
    stats = measure(frame, plan, metadata)
    return decide(plan, stats, metadata, share, distinct_tuples(frame)), stats


# ---- the whole chain ----------------------------------------------------------------------------------------
def test_the_planted_rules_are_found_and_nothing_else(table, metadata):
    discovery, _ = discover(table, metadata, sample=table.head(300))
    assert sorted(map(repr, (f.rule for f in discovery.found))) == sorted(map(repr, EXPECTED))
    # in the order they are tried (expressions, lookups, combinations, inequalities)
    assert [f.rule["kind"] for f in discovery.found] == [r["kind"] for r in EXPECTED]


def test_the_rules_found_hold_on_every_row(table, metadata):
    discovery, _ = discover(table, metadata)
    rules = parse_rules([f.rule for f in discovery.found], metadata).fit(table)
    broken = rules.violations(table).sum()
    assert len(broken) == len(EXPECTED) and (broken == 0).all(), broken.to_dict()


def test_every_row_decides_not_the_sample(table, metadata):
    """fee <= price holds on the first 400 rows: a candidate from a sample of them, refused over all rows."""
    def fee(discovery) -> list[dict]:
        return [f.rule for f in discovery.found if "fee" in (f.rule.get("low"), f.rule.get("high"))]

    head = table.head(400)
    on_head, _ = discover(head, metadata)
    assert fee(on_head) == [{"kind": "inequality", "low": "fee", "high": "unit price", "strict": True}]
    on_all, stats = discover(table, metadata, sample=head)
    assert fee(on_all) == [] and stats.rows == len(table)


def test_the_implied_inequality_and_the_one_the_ranges_keep_are_left_out(table, metadata):
    plan = candidates(table, metadata)
    stats = measure(table, plan, metadata)
    holds = {(o.x, o.y) for i, o in enumerate(plan.orders)
             if stats.counts[f"o{i}_support"] == stats.counts[f"o{i}_le"]}
    assert ("ordered", "delivered") in holds  # holds, but ordered <= shipped < delivered implies it
    assert ("age", "income") in holds  # holds, but ages are never near incomes
    found = [f.rule for f in decide(plan, stats, metadata).found if f.rule["kind"] == "inequality"]
    assert {(r["low"], r["high"]) for r in found} == {("ordered", "placed"), ("ordered", "shipped"),
                                                      ("shipped", "delivered")}


def test_row_counts_add_up_over_any_split_of_the_rows(table, metadata):
    """The contract the Spark side relies on: summed per Arrow batch, the counts are those of the whole."""
    plan = candidates(table, metadata)
    whole = row_counts(table, plan, metadata)
    parts = [row_counts(part, plan, metadata) for part in (table.iloc[:700], table.iloc[700:700], table.iloc[700:])]
    assert {k: sum(p[k] for p in parts) for k in whole} == whole
    assert whole["rows"] == len(table) and any(v for k, v in whole.items() if k.endswith("_violations"))


# ---- deciding, at the thresholds ------------------------------------------------------------------------------
NUMS = TableMetadata(columns=[ColumnSpec(name=n, kind=ColumnKind.NUMERIC, integer=True) for n in "abcd"])


@pytest.mark.parametrize(("broken", "proposed"), [(15, True), (16, False)])
def test_a_rule_may_break_on_half_the_share_train_allows(broken, proposed):
    assert allowed_violations(3000, 0.01) == 15
    plan = Plan(formulas=[Formula("c", "add", ("a", "b"))])
    stats = Stats(rows=3000, counts={"f0_support": 3000, "f0_violations": broken})
    found = decide(plan, stats, NUMS, 0.01).found
    assert bool(found) == proposed
    if proposed:
        assert found[0].evidence == "c = a + b: holds on 2,985 of 3,000 rows (15 violations, 0.50%)"


@pytest.mark.parametrize(("support", "proposed"), [(30, True), (29, False)])
def test_a_rule_needs_rows_with_its_columns_present(support, proposed):
    plan = Plan(formulas=[Formula("c", "add", ("a", "b"))])
    stats = Stats(rows=3000, counts={"f0_support": support, "f0_violations": 0})  # 1% of 3,000
    assert bool(decide(plan, stats, NUMS).found) == proposed


def test_for_one_column_equality_comes_before_a_sum():
    plan = Plan(formulas=[Formula("c", "add", ("a", "b")), Formula("c", "same", ("a",))])
    stats = Stats(rows=100, counts={"f0_support": 100, "f0_violations": 0, "f1_support": 100, "f1_violations": 0})
    assert [f.rule["expression"] for f in decide(plan, stats, NUMS).found] == ["a"]


def order_stats(rows: int, pairs: dict[tuple[str, str], tuple[int, int]], quantiles: dict) -> tuple[Plan, Stats]:
    """(x, y) -> (rows with x <= y, rows with x >= y), every row with both present."""
    plan = Plan(orders=[Order(x, y) for x, y in pairs])
    counts = {}
    for i, (le, ge) in enumerate(pairs.values()):
        counts |= {f"o{i}_support": rows, f"o{i}_le": le, f"o{i}_ge": ge}
    return plan, Stats(rows=rows, counts=counts, quantiles=quantiles)


def test_an_inequality_is_strict_only_when_no_row_is_equal_and_one_low_per_high():
    spread = {"a": [1.0, 2.0, 3.0], "b": [1.5, 2.5, 3.5], "c": [2.0, 3.0, 4.0]}
    plan, stats = order_stats(100, {("a", "c"): (100, 0), ("b", "c"): (100, 3), ("a", "b"): (60, 40)}, spread)
    found = decide(plan, stats, NUMS).found
    # a and b both below c, not ordered themselves: one rule onto c, from the highest low
    assert [f.rule for f in found] == [{"kind": "inequality", "low": "b", "high": "c"}]
    assert "3 equal" in found[0].evidence
    plan, stats = order_stats(100, {("a", "c"): (100, 0)}, spread)
    assert decide(plan, stats, NUMS).found[0].rule == {"kind": "inequality", "low": "a", "high": "c", "strict": True}


def test_columns_equal_on_most_rows_get_no_inequality():
    spread = {"a": [1.0, 2.0], "b": [1.0, 2.0]}
    plan, stats = order_stats(1000, {("a", "b"): (999, 996)}, spread)  # both ways within the 5 rows allowed
    assert decide(plan, stats, NUMS).found == []


def pair_stats(counts: dict[tuple, int]) -> tuple[Plan, Stats]:
    plan = Plan(pairs=[Pair("x", "y")])
    return plan, Stats(rows=sum(counts.values()), counts={}, pairs={plan.pairs[0]: counts})


CATS = TableMetadata(columns=[ColumnSpec(name=n, kind=ColumnKind.CATEGORICAL) for n in "xyz"])


def test_a_combination_rule_needs_far_fewer_combinations_than_independence():
    fixed = {(f"c{i}", f"k{i % 4}"): 50 for i in range(12)}  # y fixed by x: 12 of the 48 pairs
    assert decide(*pair_stats(fixed), CATS).found[0].rule == {"kind": "fixed_combinations", "columns": ["x", "y"]}
    independent = {(f"c{i}", f"k{j}"): 10 for i in range(12) for j in range(4)}
    assert decide(*pair_stats(independent), CATS).found == []
    rng = np.random.default_rng(0)  # 40 x 40 values on 300 rows: few of the 1,600 combinations, as by chance
    few = pd.Series(list(zip(rng.integers(0, 40, 300), rng.integers(0, 40, 300), strict=True))).value_counts()
    assert decide(*pair_stats({(str(x), str(y)): int(n) for (x, y), n in few.items()}), CATS).found == []


def test_pairs_sharing_a_column_merge_when_their_tuples_stay_few(table, metadata):
    plan = Plan(pairs=[Pair("country", "currency"), Pair("country", "region")])
    stats = measure(table, plan, metadata)
    merged = decide(plan, stats, metadata, count_tuples=distinct_tuples(table)).found
    assert [f.rule["columns"] for f in merged] == [["country", "currency", "region"]]
    apart = decide(plan, stats, metadata, count_tuples=lambda columns: 10_000).found  # tuples grow: pairs apart
    assert len(apart) == 1 and len(apart[0].rule["columns"]) == 2


def test_a_lookup_needs_repeated_keys_and_prefers_another_columns_mean():
    meta = TableMetadata(columns=[ColumnSpec(name="k", kind=ColumnKind.CATEGORICAL),
                                  ColumnSpec(name="c", kind=ColumnKind.NUMERIC),
                                  ColumnSpec(name="v", kind=ColumnKind.NUMERIC)])
    lookup = Lookup("c", "k", ("v", "c"))
    plan = Plan(lookups=[lookup])

    def found(keys: int, violations: dict[str, int]) -> list[dict]:
        stats = Stats(rows=1000, counts={}, lookups={lookup: LookupStats(keys, 1000, violations)})
        return [f.rule for f in decide(plan, stats, meta).found]

    assert found(200, {"v": 0, "c": 0}) == [{"kind": "derived", "column": "c", "lookup": {"by": ["k"], "value": "v"}}]
    assert found(200, {"v": 400, "c": 0}) == [{"kind": "derived", "column": "c", "lookup": {"by": ["k"], "value": "c"}}]
    assert found(201, {"v": 0, "c": 0}) == []  # under 5 rows per key: a near-unique key fixes anything


def test_a_relation_on_a_column_another_rule_computes_is_left_out():
    """x and y fix each other (a 1:1 pair): a lookup each way would be a cycle; the second is refused."""
    meta = TableMetadata(columns=[ColumnSpec(name=n, kind=ColumnKind.NUMERIC, integer=True) for n in "xy"])
    frame = pd.DataFrame({"x": np.repeat(np.arange(10), 20), "y": np.repeat(np.arange(10) * 7, 20)})
    discovery, _ = discover(frame, meta)
    assert len(discovery.found) == 1 and discovery.found[0].rule["kind"] == "derived"
    assert discovery.skipped and "cycle" in discovery.skipped[0][1]


# ---- writing --------------------------------------------------------------------------------------------------
def test_the_rules_block_loads_with_each_rule_after_its_evidence(table, metadata):
    discovery, stats = discover(table, metadata)
    text = rules_yaml(discovery, stats.rows, 0.01)
    lines = text.splitlines()
    assert lines[0].startswith(f"# Rules found by `synthlake infer-config` over all {len(table):,} rows")
    assert "refused under a `privacy:` budget" in text
    evidence = []
    for line in lines[lines.index("rules:") + 1:]:
        if line.startswith("  - "):  # a rule, after the comment lines of its evidence
            assert evidence and evidence[0].startswith("  # ") and len(evidence[0]) <= 120
            assert " ".join(e.removeprefix("  #").strip() for e in evidence) in [f.evidence for f in discovery.found]
            evidence = []
        else:
            evidence.append(line)
    loaded = yaml.safe_load(text)["rules"]
    assert loaded == [f.rule for f in discovery.found]
    parse_rules(loaded, metadata)  # col("unit price") and all


def test_without_rules_the_block_is_only_comments():
    text = rules_yaml(decide(Plan(), Stats(rows=10, counts={}), NUMS), 10)
    assert yaml.safe_load(text) is None and "None found" in text


# ---- the engine: a lookup of a column's own value per key -------------------------------------------------------
def test_a_column_fixed_by_its_key_is_a_lookup_of_its_own_value(table, metadata):
    rule = {"kind": "derived", "column": "day_rate", "lookup": {"by": ["ordered"], "value": "day_rate"}}
    rules = parse_rules([rule], metadata).fit(table)
    assert not rules.violations(table).to_numpy().any()
    learned = rules.transform(table)
    assert "day_rate" not in learned.columns
    back = rules.reverse(learned)
    np.testing.assert_allclose(back["day_rate"], table["day_rate"], rtol=1e-12)
    with pytest.raises(ValueError, match="cannot be its own lookup key"):
        parse_rules([{**rule, "lookup": {"by": ["day_rate"], "value": "a"}}], metadata)
