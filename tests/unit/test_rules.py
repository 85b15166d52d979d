"""synthlake.rules: business rules that hold on every generated row by construction.

Per rule kind: real rows round-trip through transform and reverse; reverse of random learned values (what no
generator should give, nulls and unseen categories included) satisfies the rule on every row, which is the
proof that it holds by construction; planted violations are found; config errors name the rule. Then the
rules together around a Gaussian copula, through the Sampler contract.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synthlake.generators import Sampler, load_sampler
from synthlake.generators.gaussian_copula import GaussianCopulaGenerator
from synthlake.generators.ruled import RULED, RuledSampler
from synthlake.metadata import ColumnKind, ColumnSpec, PiiType, TableMetadata
from synthlake.rules import RuleSet, parse_rules
from synthlake.rules_expr import Expression
from synthlake.seeding import block_count, block_seed, block_size

N = ColumnKind.NUMERIC
PAIRS = [("FR", "EUR", 33), ("DE", "EUR", 49), ("US", "USD", 1), ("GB", "GBP", 44), ("CH", "CHF", 41)]


def bookings(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Hotel bookings on which every rule of RULES holds: dates, a zoned datetime, nulls, integers, floats."""
    rng = np.random.default_rng(seed)
    booked = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 700 * 86400, n), unit="s")
    checkin = booked.normalize() + pd.to_timedelta(rng.integers(1, 120, n), unit="D")  # dates
    checkout = checkin + pd.to_timedelta(rng.integers(1, 15, n), unit="D")
    cancelled = rng.random(n) < 0.3
    cancelled_at = (booked + pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s")).tz_localize("UTC")
    pick = rng.choice(len(PAIRS), n, p=[0.3, 0.3, 0.2, 0.15, 0.05])
    a, b, price = rng.integers(0, 100, n), rng.integers(0, 50, n), np.round(rng.gamma(3, 40, n), 2)
    flagged = rng.integers(0, 2, n)
    frame = pd.DataFrame({
        "booking_no": rng.permutation(n) + 1000, "ref": [f"R{i}" for i in range(n)],
        "booked_at": booked, "checkin": checkin, "checkout": checkout,
        "nights": (checkout - checkin).days.astype(np.int64),
        "status": np.where(cancelled, "cancelled", "ok").astype(object),
        "cancelled_at": pd.Series(cancelled_at.tz_convert("Europe/Paris")).where(cancelled),
        "cancel_reason": pd.Series(rng.choice(["price", "illness", "other"], n)).where(cancelled),
        "flagged": flagged, "refund": pd.Series(np.round(rng.uniform(0, 50, n), 2)).where(flagged == 1),
        "country": [PAIRS[i][0] for i in pick], "currency": [PAIRS[i][1] for i in pick],
        "country_code": np.array([PAIRS[i][2] for i in pick], dtype=np.int64),
        "a": a, "b": b, "total": a + b, "price": price, "discount": np.round(price * rng.random(n) * 0.3, 2),
        "adults": rng.integers(1, 5, n), "arrival_year": checkin.year.astype(np.int64),
        "email": [f"guest{i}@example.test" for i in range(n)],
    })
    frame["price_by_country"] = frame["country"].map(frame.groupby("country")["price"].mean())
    frame["price_by_day"] = frame["checkin"].map(frame.groupby("checkin")["price"].mean())
    return frame


def spec(name: str, kind: ColumnKind = N, **options) -> ColumnSpec:
    return ColumnSpec(name=name, kind=kind, **options)


META = TableMetadata(columns=[
    spec("booking_no", integer=True), spec("ref", ColumnKind.IDENTIFIER), spec("booked_at", ColumnKind.DATETIME),
    spec("checkin", ColumnKind.DATETIME), spec("checkout", ColumnKind.DATETIME), spec("nights", integer=True),
    spec("status", ColumnKind.CATEGORICAL), spec("cancelled_at", ColumnKind.DATETIME),
    spec("cancel_reason", ColumnKind.CATEGORICAL), spec("flagged", integer=True), spec("refund"),
    spec("country", ColumnKind.CATEGORICAL), spec("currency", ColumnKind.CATEGORICAL),
    spec("country_code", integer=True), spec("a", integer=True), spec("b", integer=True),
    spec("total", integer=True), spec("price"), spec("discount"), spec("adults", integer=True),
    spec("arrival_year", integer=True), spec("email", ColumnKind.PII, pii=PiiType.EMAIL),
    spec("price_by_country"), spec("price_by_day"),
], target="status")

CANCELLED = {"column": "status", "equals": "cancelled"}
KINDS = {  # rule kind -> rules of that kind (with what they need) that hold on bookings()
    "inequality": [{"kind": "inequality", "low": "checkin", "high": "checkout", "strict": True},
                   {"kind": "inequality", "low": "booked_at", "high": "checkin", "offset": 3600}],
    "range": [{"kind": "range", "column": "discount", "low": 0, "high": "price"},
              {"kind": "range", "column": "price", "low": 0},
              {"kind": "range", "column": "adults", "low": 1, "high": 4},
              {"kind": "range", "column": "nights", "high": 14},
              {"kind": "range", "column": "checkin", "low": "booked_at", "high": "checkout"},
              {"kind": "inequality", "low": "booked_at", "high": "checkout"}],
    "fixed_combinations": [{"kind": "fixed_combinations", "columns": ["country", "currency", "country_code"]}],
    "derived": [{"kind": "derived", "column": "total", "expression": "a + b"},
                {"kind": "derived", "column": "nights", "expression": "(checkout - checkin) // 86400"},
                {"kind": "derived", "column": "arrival_year", "expression": "year(checkin)"},
                {"kind": "derived", "column": "price_by_country", "lookup": {"by": ["country"], "value": "price"}},
                {"kind": "derived", "column": "price_by_day", "lookup": {"by": ["checkin"], "value": "price"}}],
    "presence": [{"kind": "presence", "column": "cancel_reason", "when": CANCELLED},
                 {"kind": "presence", "column": "refund", "when": {"column": "flagged", "equals": 1}},
                 {"kind": "presence", "column": "cancelled_at", "when": CANCELLED},  # on an inequality's high
                 {"kind": "inequality", "low": "booked_at", "high": "cancelled_at"}],
    "unique": [{"kind": "unique", "columns": ["booking_no"], "start": 1},
               {"kind": "unique", "columns": ["ref"]},
               {"kind": "unique", "columns": ["country", "booking_no"]}],
}
# every kind together, less the ranges on nights (derived here) and on checkin (an inequality's high here)
ALL = [*KINDS["inequality"], *KINDS["range"][:3], *KINDS["fixed_combinations"], *KINDS["derived"],
       *KINDS["presence"], *KINDS["unique"]]
GENERATED = {"unique": ["booking_no"]}  # columns that come from row numbers, not from the real values


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    return bookings()


def fitted(rules: list[dict], real: pd.DataFrame) -> RuleSet:
    return parse_rules(rules, META).fit(real)


def garbage(rules: RuleSet, real: pd.DataFrame, n: int, seed: int, row_offset: int = 0) -> pd.DataFrame:
    """Random learned rows of the right types: numbers around 0, datetimes from 1950 to 2050, seen categories,
    unseen ones and _RARE_, 10% nulls everywhere; identifiers as every generator makes them (row numbers)."""
    rng = np.random.default_rng(seed)
    seen = rules.transform(real)
    columns = {}
    for s in rules.learned_metadata().columns:
        null = rng.random(n) < 0.1
        if s.kind == ColumnKind.NUMERIC:
            x = rng.normal(0, 100, n)
            columns[s.name] = pd.array(np.where(null, None, np.round(x) if s.integer else x),
                                       dtype="Int64" if s.integer else "Float64")
        elif s.kind == ColumnKind.DATETIME:
            stamps = pd.Series(pd.to_datetime(rng.integers(-6 * 10**14, 25 * 10**14, n), unit="us"))
            columns[s.name] = stamps.where(~null)
        elif s.kind == ColumnKind.IDENTIFIER:
            columns[s.name] = [str(i) for i in range(row_offset, row_offset + n)]
        else:
            choices = [*seen[s.name].dropna().unique(), "zzz", "_RARE_"] if s.learned else ["x1", "x2"]
            columns[s.name] = pd.Series(rng.choice(choices, n), dtype=object).where(~null, None)
    return pd.DataFrame(columns)


def assert_same_rows(back: pd.DataFrame, real: pd.DataFrame, skip: list[str] = ()) -> None:
    """Exact for integers, datetimes and strings; floats to 1e-9."""
    assert list(back.columns) == list(real.columns)
    for name in real.columns.drop(list(skip)):
        if pd.api.types.is_float_dtype(real[name]):
            np.testing.assert_allclose(back[name].to_numpy(float), real[name], rtol=1e-9, err_msg=name)
        elif real[name].dtype == object:  # None and NaN are both null
            assert back[name].where(back[name].notna(), None).tolist() == real[name].where(real[name].notna(),
                                                                                           None).tolist(), name
        else:
            pd.testing.assert_series_equal(back[name], real[name], check_dtype=False, check_names=False, obj=name)


def assert_types(rows: pd.DataFrame) -> None:
    for s in META.columns:
        if s.kind == ColumnKind.DATETIME:
            assert pd.api.types.is_datetime64_any_dtype(rows[s.name]), s.name
        elif s.integer:
            assert pd.api.types.is_integer_dtype(rows[s.name]), s.name


# ---- per kind: round trip, by construction, violations -----------------------------------------------------
@pytest.mark.parametrize("kind", [*KINDS, "all"])
def test_the_real_rows_hold_every_rule(kind, real):
    assert not fitted(ALL if kind == "all" else KINDS[kind], real).violations(real).to_numpy().any()


@pytest.mark.parametrize("kind", [*KINDS, "all"])
def test_real_rows_come_back_through_transform_and_reverse(kind, real):
    rules = fitted(ALL if kind == "all" else KINDS[kind], real)
    back = rules.reverse(rules.transform(real))
    skip = sum(GENERATED.values(), []) if kind == "all" else GENERATED.get(kind, [])
    assert_same_rows(back, real, skip)
    assert_types(back)


@pytest.mark.parametrize("kind", [*KINDS, "all"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_learned_values_give_rows_that_hold_the_rules(kind, seed, real):
    """By construction: random values where the generator's output would be, and every row holds every rule."""
    rules = fitted(ALL if kind == "all" else KINDS[kind], real)
    rows = rules.reverse(garbage(rules, real, 600, seed, 5000 * seed), row_offset=5000 * seed)
    broken = rules.violations(rows)
    assert not broken.to_numpy().any(), broken.sum()[broken.sum() > 0].to_dict()
    assert list(rows.columns) == META.names
    assert_types(rows)


def test_datetimes_keep_their_resolution_and_zone(real):
    rules = fitted(KINDS["inequality"] + KINDS["presence"][2:], real)
    rows = rules.reverse(garbage(rules, real, 600, 3))
    checkout = rows["checkout"].dropna()
    assert (checkout == checkout.dt.normalize()).all()  # learned: whole days
    assert str(rows["cancelled_at"].dt.tz) == "Europe/Paris"
    assert not parse_rules([{**KINDS["inequality"][0], "unit": "hour"}], META).learning_from_rows()


def test_a_strict_inequality_steps_over_a_zero_gap(real):
    rules = fitted(KINDS["inequality"][:1], real)
    learned = rules.transform(real)
    learned["checkout__gap"] = pd.Timestamp(0)  # a gap of 0: one unit (a day) later
    rows = rules.reverse(learned)
    assert ((rows["checkout"] - rows["checkin"]) == pd.Timedelta(days=1)).all()


def test_a_combination_not_seen_becomes_the_most_frequent_one(real):
    rules = fitted(KINDS["fixed_combinations"] + KINDS["derived"][3:4], real)
    top = rules.rules[0].tuples[0]
    assert top == list(real[["country", "currency", "country_code"]].value_counts().index[0])
    learned = rules.transform(real).head(4).copy()
    learned["country__currency__country_code"] = ["_RARE_", None, '["XX", "EUR", 33]', '["US", "USD", 1]']
    rows = rules.reverse(learned)
    assert rows[["country", "currency", "country_code"]].values.tolist() == [top, top, top, ["US", "USD", 1]]
    assert rows["price_by_country"].iloc[3] == pytest.approx(real["price"][real["country"] == "US"].mean())


def test_a_lookup_key_unseen_in_the_real_rows_gets_the_overall_mean(real):
    rules = fitted(KINDS["derived"][4:], real)
    learned = rules.transform(real).head(2).assign(checkin=pd.Timestamp("1999-01-01"))
    assert rules.reverse(learned)["price_by_day"].tolist() == pytest.approx([real["price"].mean()] * 2)


def test_unique_columns_are_row_numbers_that_blocks_sampled_apart_keep_apart(real):
    rules = fitted(KINDS["unique"], real)
    learned = rules.transform(real)
    blocks = [rules.reverse(learned.iloc[:100], row_offset=100 * i) for i in range(3)]
    numbers = pd.concat(blocks)["booking_no"]
    assert numbers.tolist() == list(range(1, 301))
    assert "booking_no" not in rules.learned_metadata().names


def test_a_categorical_unique_column_is_row_numbers_as_text():
    metadata = TableMetadata(columns=[spec("code", ColumnKind.CATEGORICAL), spec("x")])
    rules = parse_rules([{"kind": "unique", "columns": ["code"]}], metadata)
    rules.fit(pd.DataFrame({"code": ["a", "b"], "x": [1.0, 2.0]}))
    assert rules.reverse(pd.DataFrame({"x": [3.0, 4.0]}), row_offset=7)["code"].tolist() == ["7", "8"]


def plants(real: pd.DataFrame) -> dict[str, list[tuple[str, int, object]]]:
    """Per kind: (column, row, value) that each break a rule of KINDS[kind]."""
    ok, cancelled, flagged = (int(np.flatnonzero(m)[0]) for m in (real["status"] == "ok",
                                                                  real["status"] == "cancelled", real["flagged"] == 1))
    return {
        "inequality": [("checkout", 3, real["checkin"][3]), ("checkin", 5, real["booked_at"][5])],
        "range": [("discount", 2, 1e6), ("discount", 4, -1.0), ("adults", 6, 5), ("nights", 8, 15),
                  ("checkin", 9, real["checkout"][9] + pd.Timedelta(days=1))],
        "fixed_combinations": [("currency", 1, "XXX"), ("country_code", 9, 7)],
        "derived": [("total", 7, -1), ("nights", 8, 99), ("arrival_year", 2, 1900), ("price_by_country", 3, 0.5),
                    ("price_by_day", 4, 0.5)],
        "presence": [("cancel_reason", ok, "price"), ("refund", flagged, None), ("cancelled_at", cancelled, None)],
        "unique": [("booking_no", 13, real["booking_no"][14])],
    }


@pytest.mark.parametrize("kind", KINDS)
def test_planted_violations_are_found_and_only_they(kind, real):
    rules, rows = fitted(KINDS[kind], real), real.copy()
    for column, row, value in plants(real)[kind]:
        rows.loc[row, column] = value
    expected = {row for _, row, _ in plants(real)[kind]} | ({14} if kind == "unique" else set())
    assert set(np.flatnonzero(rules.violations(rows).any(axis=1))) == expected


def test_nulls_break_no_inequality_range_or_uniqueness(real):
    rules = fitted(KINDS["inequality"] + KINDS["range"][:3] + KINDS["unique"][:1], real)
    rows = real.copy()
    rows.loc[:5, ["checkin", "discount", "adults"]] = None
    rows["booking_no"] = pd.array([None] * 2 + list(range(len(rows) - 2)), dtype="Int64")
    assert not rules.violations(rows).to_numpy().any()


# ---- config errors name the rule ---------------------------------------------------------------------------
@pytest.mark.parametrize("rules, message", [
    ([{"low": "a", "high": "b"}], r"rule #0: `kind` must be one of"),
    ([{"kind": "range", "column": "price", "low": 0}, {"kind": "inequality", "low": "a", "high": "b", "zz": 1}],
     r"rule #1 \(inequality\): zz: Extra inputs are not permitted"),
    ([{"kind": "inequality", "low": "a", "high": True}], r"rule #0 \(inequality\): high: Input should be"),
    ([{"kind": "range", "column": "nope", "low": 0}], r"rule #0 \(range\): bounded column 'nope' is not a column"),
    ([{"kind": "inequality", "low": "a", "high": "checkout"}], r"rule #0 \(inequality\): low 'a' is numeric and "
                                                               r"high 'checkout' datetime"),
    ([{"kind": "inequality", "low": "price", "high": "total"}], r"integer high 'total' needs an integer low"),
    ([{"kind": "inequality", "low": "a", "high": "b", "unit": "day"}], r"`unit` is for datetime columns; 'b'"),
    ([{"kind": "range", "column": "status", "low": 0}], r"rule #0 \(range\): bounded column 'status' is "
                                                        r"categorical"),
    ([{"kind": "range", "column": "price"}], r"rule #0 \(range\): .*needs `low`, `high` or both"),
    ([{"kind": "range", "column": "price", "low": 5, "high": 1}], r"low 5.0 is above high 1.0"),
    ([{"kind": "range", "column": "discount", "low": 0, "high": "price"}],
     r"rule #0 \(range\): nothing keeps 0.0 <= price on generated rows"),
    ([{"kind": "range", "column": "checkin", "low": 0}], r"datetime column 'checkin' needs column bounds"),
    ([{"kind": "range", "column": "adults", "low": 0.5}], r"integer column 'adults' needs integer bounds"),
    ([{"kind": "fixed_combinations", "columns": ["country", "checkin"]}],
     r"rule #0 \(fixed_combinations\): combined column 'checkin' is datetime"),
    ([{"kind": "fixed_combinations", "columns": ["country"]}], r"columns: List should have at least 2 items"),
    ([{"kind": "derived", "column": "total", "expression": "__import__('os').system('true')"}],
     r"rule #0 \(derived\): expression .* is not allowed"),
    ([{"kind": "derived", "column": "total", "expression": "a ** 2"}], r"'a \*\* 2' is not allowed"),
    ([{"kind": "derived", "column": "total", "expression": "a.real"}], r"'a.real' is not allowed"),
    ([{"kind": "derived", "column": "total", "expression": "year(a)"}], r"'a' is a number, a datetime is needed"),
    ([{"kind": "derived", "column": "total", "expression": "checkin + 1"}], r"gives a datetime, column 'total'"),
    ([{"kind": "derived", "column": "total", "expression": "status + 1"}], r"'status' is not a numeric or datetime"),
    ([{"kind": "derived", "column": "total", "expression": "total + 1"}], r"cannot be derived from itself"),
    ([{"kind": "derived", "column": "total", "expression": "a +"}], r"rule #0 \(derived\): expression 'a \+' does "
                                                                    r"not parse"),
    ([{"kind": "derived", "column": "status", "expression": "a"}], r"derived column 'status' is categorical"),
    ([{"kind": "derived", "column": "total", "expression": "a", "lookup": {"by": ["a"], "value": "b"}}],
     r"either `expression` or `lookup`"),
    ([{"kind": "derived", "column": "price_by_day", "lookup": {"by": ["checkin"], "value": "country"}}],
     r"lookup value column 'country' is categorical"),
    ([{"kind": "presence", "column": "refund", "when": {"column": "status", "equals": 1}}],
     r"rule #0 \(presence\): condition column 'status' is categorical: `equals` must be a string"),
    ([{"kind": "presence", "column": "status", "when": {"column": "status", "equals": "x"}}],
     r"cannot be its own condition"),
    ([{"kind": "unique", "columns": ["price"]}], r"rule #0 \(unique\): column 'price' is a float column: it cannot "
                                                 r"be made unique by construction"),
    ([{"kind": "unique", "columns": ["checkin"]}], r"column 'checkin' is datetime"),
    ([{"kind": "unique", "columns": ["country", "a"]}], r"rule #0 \(unique\): a set of columns is unique by "
                                                        r"construction only through one of its columns"),
    ([{"kind": "derived", "column": "total", "expression": "a + b"}, {"kind": "range", "column": "total", "low": 0}],
     r"column 'total' is produced by rule #0 \(derived\) and rule #1 \(range\)"),
    ([{"kind": "presence", "column": "total", "when": CANCELLED}, {"kind": "derived", "column": "total",
                                                                   "expression": "a"}],
     r"column 'total' is produced by rule #0 \(presence\) and rule #1 \(derived\)"),
    ([{"kind": "derived", "column": "a", "expression": "b + 1"}, {"kind": "derived", "column": "b",
                                                                  "expression": "a - 1"}],
     r"rules depend on each other in a cycle: rule #\d \(derived\) -> rule #\d \(derived\)"),
])
def test_config_errors_name_the_rule_and_the_column(rules, message):
    with pytest.raises(ValueError, match=message):
        parse_rules(rules, META)


def test_a_learned_column_may_not_clash_with_a_column():
    metadata = TableMetadata(columns=[*META.columns, spec("checkout__gap", ColumnKind.DATETIME)])
    with pytest.raises(ValueError, match=r"rule #0 \(inequality\): its learned column 'checkout__gap' clashes"):
        parse_rules(KINDS["inequality"][:1], metadata)


def test_rules_need_fitting_and_the_real_columns(real):
    rules = parse_rules(KINDS["fixed_combinations"], META)
    with pytest.raises(RuntimeError, match=r"rule #0 \(fixed_combinations\): not fitted"):
        rules.transform(real)
    with pytest.raises(ValueError, match=r"lack the columns \['price'\]"):
        rules.fit(real.drop(columns=["price"]))
    with pytest.raises(ValueError, match="no column for the generator to learn"):
        parse_rules([{"kind": "derived", "column": "a", "expression": "1"}],
                    TableMetadata(columns=[spec("a"), spec("id", ColumnKind.IDENTIFIER)])).learned_metadata()


# ---- the set: learned table, privacy, state ----------------------------------------------------------------
def test_the_learned_table_replaces_and_drops_columns(real):
    rules = fitted(ALL, real)
    learned = rules.learned_metadata()
    assert list(rules.transform(real).columns) == learned.names
    kinds = {s.name: (s.kind, s.integer) for s in learned.columns}
    assert kinds["checkout__gap"] == (ColumnKind.DATETIME, False) and kinds["discount__share"] == (N, False)
    assert kinds["price__gap"] == (N, False) and kinds["adults__share"] == (N, False)
    assert kinds["country__currency__country_code"] == (ColumnKind.CATEGORICAL, False)
    assert kinds["cancelled_at__gap"] == (ColumnKind.DATETIME, False)
    for gone in ("checkout", "total", "nights", "arrival_year", "price_by_country", "booking_no", "currency"):
        assert gone not in kinds, gone
    assert learned.target == "status" and "ref" in kinds and "email" in kinds


def test_rules_that_learn_from_rows_are_named_under_a_privacy_budget(real):
    rules = parse_rules(ALL, META)
    learning = {rule.label for rule in rules.learning_from_rows()}
    assert learning == {"rule #0 (inequality)", "rule #1 (inequality)", "rule #5 (fixed_combinations)",
                        "rule #9 (derived)", "rule #10 (derived)", "rule #11 (presence)", "rule #12 (presence)",
                        "rule #13 (presence)", "rule #14 (inequality)"}  # datetimes without `unit`, lookups
    with pytest.raises(ValueError, match=r"rule #5 \(fixed_combinations\) .* learns the combinations seen"):
        rules.check_privacy()
    private = parse_rules([{**rule, "unit": "day"} for rule in KINDS["inequality"][:1]]
                          + KINDS["range"][:3] + KINDS["derived"][:3] + KINDS["unique"], META)
    private.check_privacy()


def test_the_state_is_json_and_rebuilds_the_same_rules(real):
    rules = fitted(ALL, real)
    loaded = RuleSet.from_state(json.loads(json.dumps(rules.state())))
    learned = garbage(rules, real, 300, 7)
    pd.testing.assert_frame_equal(loaded.reverse(learned, 11), rules.reverse(learned, 11))
    assert loaded.describe() == rules.describe()
    assert loaded.describe()[5] == ("rule #5 (fixed_combinations): (country, currency, country_code) is one of the "
                                    "5 combinations seen in the real rows")


# ---- the expression language -------------------------------------------------------------------------------
def test_expressions_compute_date_parts_arithmetic_and_nulls():
    frame = pd.DataFrame({"t": pd.to_datetime(["2024-07-01 18:00", None, "2023-01-01 00:00"]),
                          "x y": [2.5, -2.5, 1.0], "z": [1, 0, 3]})
    evaluate = lambda text: Expression(text).evaluate(frame)  # noqa: E731
    np.testing.assert_array_equal(evaluate("year(t) * 100 + month(t)"), [202407, np.nan, 202301])
    np.testing.assert_array_equal(evaluate("weekday(t) + hour(t) / 100"), [0.18, np.nan, 6])
    np.testing.assert_allclose(evaluate("fractional_year(t)"), [2024 + (182 + 0.75) / 366, np.nan, 2023])
    np.testing.assert_array_equal(evaluate('round(col("x y")) + abs(-z)'), [4, -3, 4])  # half away from zero
    np.testing.assert_array_equal(evaluate("max(z, 2) - min(z, 2) + 7 // 2 + 7 % 2"), [5, 6, 5])
    assert np.isinf(evaluate("z / (z - z)")[0])  # a division by zero: null once in the column's type
    shifted = Expression("t + 86400").evaluate(frame)
    assert shifted.micros[0] - Expression("t").evaluate(frame).micros[0] == 86400e6


# ---- around a generator: the Sampler contract --------------------------------------------------------------
@pytest.fixture(scope="module")
def sampler(real):
    rules = fitted(ALL, real)
    model = GaussianCopulaGenerator(rules.learned_metadata()).fit(rules.transform(real))
    return RuledSampler(model.freeze(), rules)


def test_every_sampled_row_holds_every_rule(sampler, real):
    rows = sampler.sample_arrow(3000, seed=1, row_offset=500).to_pandas()
    broken = sampler.rules.violations(rows)
    assert not broken.to_numpy().any(), broken.sum()[broken.sum() > 0].to_dict()
    assert list(rows.columns) == META.names and len(rows) == 3000
    assert_types(rows)
    cancelled = rows["status"] == "cancelled"
    assert 0 < cancelled.sum() < len(rows) and rows["cancelled_at"][cancelled].notna().all()
    assert (rows["checkin"] == rows["checkin"].dt.normalize()).all()  # dates stay dates
    assert rows["booking_no"].tolist() == list(range(501, 3501))


def test_the_ruled_sampler_keeps_the_contract(sampler):
    assert isinstance(sampler, Sampler) and sampler.sample_arrow(0, seed=1).num_rows == 0
    with pytest.raises(ValueError, match="n must be"):
        sampler.sample_arrow(-1, seed=0)
    a = sampler.sample_arrow(400, seed=7, row_offset=1000)
    sampler.sample_arrow(50, seed=8)
    assert sampler.sample_arrow(400, seed=7, row_offset=1000).equals(a)
    assert sampler.sample_arrow(250, seed=7, row_offset=1000).equals(a.slice(0, 250))
    assert not sampler.sample_arrow(400, seed=8, row_offset=1000).column("total").equals(a.column("total"))


def test_blocks_sampled_apart_stay_unique_together(sampler):
    rows, block_rows = 250, 100
    blocks = [sampler.sample_arrow(block_rows, seed=block_seed(42, i), row_offset=i * block_rows).to_pandas()
              .iloc[: block_size(rows, block_rows, i)] for i in range(block_count(rows, block_rows))]
    table = pd.concat(blocks, ignore_index=True)
    assert table["booking_no"].is_unique and table["ref"].is_unique
    assert not sampler.rules.violations(table).to_numpy().any()


def test_the_ruled_sampler_saves_and_loads(sampler, tmp_path):
    sampler.save(tmp_path)
    assert json.loads((tmp_path / "sampler.json").read_text()) == {"generator": RULED, "inner": "inner"}
    assert (tmp_path / "rules.json").is_file() and (tmp_path / "inner" / "sampler.json").is_file()
    loaded = load_sampler(tmp_path)
    assert loaded.metadata == META
    assert loaded.sample_arrow(300, seed=5, row_offset=77).equals(sampler.sample_arrow(300, seed=5, row_offset=77))


def test_the_inner_sampler_must_have_learned_the_rules_table(sampler, real):
    other = fitted(KINDS["derived"][:1], real)
    with pytest.raises(ValueError, match="not trained on the rules' learned table"):
        RuledSampler(sampler.inner, other)
