"""Conditional sampling (synthlake.conditions, tabular_ar's ar_conditional): every row meets the condition by
construction, seed values are kept, rebalanced shares and statistical parity hold, and what cannot be met is
refused with an error that names the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthlake.conditions import ConditionError, Conditions, Fairness, Rebalance, parse_where, satisfied
from synthlake.generators import get_generator
from synthlake.generators.base import sample_conditional
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata


def _table(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, TableMetadata]:
    """A label that depends on sex and age, a wide float column (binned, split), a datetime, nulls."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], n, p=[0.35, 0.65])
    age = rng.integers(18, 90, n)
    income = np.round(rng.lognormal(10, 0.6, n), 2)
    rich = rng.random(n) < np.where(sex == "M", 0.35, 0.1) + (age > 50) * 0.2
    city = pd.Series(rng.choice(["Oslo", "Lima", "Pune", "Kyiv"], n), dtype=object)
    city[rng.random(n) < 0.1] = None
    frame = pd.DataFrame({"id": [f"R{i}" for i in range(n)], "sex": sex, "age": age, "income level": income,
                          "label": np.where(rich, ">50K", "<=50K"), "city": city,
                          "since": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D")})
    metadata = TableMetadata(columns=[
        ColumnSpec(name="id", kind=ColumnKind.IDENTIFIER),
        ColumnSpec(name="sex", kind=ColumnKind.CATEGORICAL),
        ColumnSpec(name="age", kind=ColumnKind.NUMERIC, integer=True),
        ColumnSpec(name="income level", kind=ColumnKind.NUMERIC),
        ColumnSpec(name="label", kind=ColumnKind.CATEGORICAL),
        ColumnSpec(name="city", kind=ColumnKind.CATEGORICAL),
        ColumnSpec(name="since", kind=ColumnKind.DATETIME),
    ], target="label")
    return frame, metadata


@pytest.fixture(scope="module")
def fitted():
    table, metadata = _table()
    model = get_generator("tabular_ar")(metadata, epochs=8, hidden_dim=32, max_bins=40, split_above=16)
    model.fit(table, seed=0)
    return model.freeze(), table, metadata


WHERES = [
    "age >= 60 AND label = '>50K'",
    "`income level` BETWEEN 20000 AND 30000",
    "`income level` > 15000.5 AND city IS NOT NULL",
    "(age < 25 OR age > 80) AND sex != 'M'",
    "city IN ('Oslo', 'Lima') AND since >= '2021-06-01' AND since < TIMESTAMP '2021-09-01'",
    "city IS NULL AND age NOT BETWEEN 30 AND 70",
]


@pytest.mark.parametrize("where", WHERES)
def test_every_row_meets_the_condition(fitted, where):
    sampler, _, metadata = fitted
    rows = sampler.sample_arrow(2000, seed=3, conditions=Conditions(where=where)).to_pandas()
    assert len(rows) == 2000
    assert satisfied(rows, parse_where(where, metadata), metadata).all()


def test_the_rows_follow_the_conditional_distribution(fitted):
    """Drawn first, the constrained column sets the others as the model learned them: the share of rich rows
    among old and among young rows is what the model's own unconditional rows show."""
    sampler, _, _ = fitted
    plain = sampler.sample_arrow(40_000, seed=9).to_pandas()
    for where, rows in (("age > 60", plain[plain.age > 60]), ("age < 30", plain[plain.age < 30])):
        conditional = sampler.sample_arrow(6000, seed=1, conditions=Conditions(where=where)).to_pandas()
        assert abs((conditional.label == ">50K").mean() - (rows.label == ">50K").mean()) < 0.04, where
    assert (plain[plain.age > 60].label == ">50K").mean() - (plain[plain.age < 30].label == ">50K").mean() > 0.05


@pytest.mark.parametrize("where, column, low, high", [
    ("age >= 53", "age", 53, 55),  # age: binned and split; 53 and 66 cut coarse tokens
    ("age >= 66", "age", 66, 68),
    ("age >= 61", "age", 61, 63),  # 62 has a bin of its own: a bin of one value is all allowed or not at all
    ("`income level` > 30000", "income level", 30000, 33000),  # 30000 cuts a bin
])
def test_values_just_inside_a_cut_are_not_favoured(fitted, where, column, low, high):
    """A token the condition cuts weighs only its allowed part: the values just inside the cut are as common
    as among the model's own rows that meet the condition (rejection, the reference)."""
    sampler, _, metadata = fitted
    plain = sampler.sample_arrow(80_000, seed=11).to_pandas()
    kept = plain[satisfied(plain, parse_where(where, metadata), metadata)]
    conditional = sampler.sample_arrow(8000, seed=12, conditions=Conditions(where=where)).to_pandas()
    share = kept[column].between(low, high).mean()
    assert 0.02 < share < 0.2 and abs(conditional[column].between(low, high).mean() - share) < 0.03


def test_conditional_rows_are_deterministic_and_blocks_match(fitted):
    sampler, _, _ = fitted
    cond = Conditions(where="age >= 40")
    whole = sampler.sample_arrow(600, seed=5, conditions=cond)
    assert whole.equals(sampler.sample_arrow(600, seed=5, conditions=cond))
    assert sampler.sample_arrow(300, seed=5, conditions=cond).equals(whole.slice(0, 300))  # a prefix


def test_seed_rows_are_kept_one_output_row_each(fitted):
    sampler, table, _ = fitted
    seeds = pd.DataFrame({"sex": ["F", "M", "F", None], "age": [19, 88, 45, 30]}).astype({"sex": object})
    seeds = seeds.iloc[:3]  # sex has no null token: the fourth would be refused
    rows = sampler.sample_arrow(3, seed=0, conditions=Conditions(seed_rows=seeds)).to_pandas()
    assert rows.sex.tolist() == ["F", "M", "F"] and rows.age.tolist() == [19, 88, 45]
    assert rows["income level"].notna().all() and rows.id.str.startswith("R").sum() == 0  # ids generated anew
    with pytest.raises(ConditionError, match="seed rows: column 'sex'"):
        sampler.sample_arrow(1, seed=0, conditions=Conditions(seed_rows=pd.DataFrame({"sex": [None]}, dtype=object)))
    with pytest.raises(ConditionError, match="2 seed rows for 5 rows"):
        sampler.sample_arrow(5, seed=0, conditions=Conditions(seed_rows=seeds.iloc[:2]))
    everything = table.drop(columns=["id"]).head(3)
    with pytest.raises(ConditionError, match="every learned column"):
        sampler.sample_arrow(3, seed=0, conditions=Conditions(seed_rows=everything))


def test_rebalance_gives_the_shares(fitted):
    sampler, table, _ = fitted
    rows = sampler.sample_arrow(20_000, seed=2, conditions=Conditions(rebalance=Rebalance("label", {">50K": 0.7})))
    share = (rows.to_pandas().label == ">50K").mean()
    assert (table.label == ">50K").mean() < 0.45 and abs(share - 0.7) < 0.015


def test_fairness_makes_the_target_independent_of_the_sensitive_column(fitted):
    sampler, table, _ = fitted
    plain = sampler.sample_arrow(20_000, seed=4).to_pandas()
    fair = sampler.sample_arrow(20_000, seed=4, conditions=Conditions(fairness=Fairness("label", ("sex",)))).to_pandas()

    def gap(frame):
        rates = frame.groupby("sex").label.apply(lambda s: (s == ">50K").mean())
        return abs(rates["M"] - rates["F"])

    assert gap(table) > 0.15 and gap(plain) > 0.1  # the model learned the dependence
    assert gap(fair) < 0.02
    assert abs((fair.label == ">50K").mean() - (plain.label == ">50K").mean()) < 0.03  # the target's marginal kept
    assert abs((fair.sex == "M").mean() - (plain.sex == "M").mean()) < 0.02


@pytest.mark.parametrize("where, message", [
    ("agee > 3", "no column 'agee'"),
    ("age > 'x'", "column 'age' is numeric"),
    ("sex > 'F'", "column 'sex' is categorical"),
    ("age > 3 OR sex = 'F'", "OR joins conditions on one column only"),
    ("age > 100", "no value the model generates for column 'age'"),
    ("sex = 'X'", "no value the model generates for column 'sex'"),
    ("age > 50 AND age < 40", "no value of column 'age' satisfies"),
    ("income level > 3", "go in backticks|no column 'income'"),
    ("id = 'R1'", "column 'id' is generated"),
    ("since > 5", "column 'since' is a datetime"),
    ("age >", "expected a value for column 'age'"),
])
def test_what_cannot_be_met_is_refused_naming_the_column(fitted, where, message):
    sampler, _, _ = fitted
    with pytest.raises(ConditionError, match=message):
        sampler.sample_arrow(10, seed=0, conditions=Conditions(where=where))


def test_refusals_of_rebalance_and_overlaps(fitted):
    sampler, _, _ = fitted
    with pytest.raises(ConditionError, match="no categories \\['rich'\\]"):
        sampler.sample_arrow(10, seed=0, conditions=Conditions(rebalance=Rebalance("label", {"rich": 0.5})))
    with pytest.raises(ConditionError, match="only a categorical column"):
        sampler.sample_arrow(10, seed=0, conditions=Conditions(rebalance=Rebalance("age", {"30": 0.5})))
    with pytest.raises(ConditionError, match="more than one of"):
        sampler.sample_arrow(10, seed=0, conditions=Conditions(where="label = '>50K'",
                                                               rebalance=Rebalance("label", {">50K": 0.5})))


def test_a_model_trained_in_one_order_and_other_generators_refuse(fitted):
    table, metadata = _table(400)
    fixed = get_generator("tabular_ar")(metadata, epochs=1, hidden_dim=8, order_mixing=0.0).fit(table).freeze()
    assert len(fixed.sample_arrow(5, seed=0)) == 5
    with pytest.raises(ConditionError, match="order_mixing"):
        fixed.sample_arrow(5, seed=0, conditions=Conditions(where="age > 30"))
    copula = get_generator("gaussian_copula")(metadata).fit(table).freeze()
    with pytest.raises(ConditionError, match="cannot meet conditions"):
        sample_conditional(copula, 5, 0, 0, Conditions(where="age > 30"))
