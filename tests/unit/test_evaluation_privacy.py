"""Privacy metrics on known cases: copies of the training rows, fresh rows, hand-built tables, planted canaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthlake.evaluation import MissingContext, evaluate, get_metric
from synthlake.evaluation.gower import GowerEncoder, nearest
from synthlake.evaluation.privacy import record_distances
from synthlake.metadata import ColumnKind, ColumnSpec, PiiType, TableMetadata

META = TableMetadata(columns=[
    ColumnSpec(name="email", kind=ColumnKind.PII, pii=PiiType.EMAIL),
    ColumnSpec(name="age", kind=ColumnKind.NUMERIC, integer=True),
    ColumnSpec(name="income", kind=ColumnKind.NUMERIC),
    ColumnSpec(name="city", kind=ColumnKind.CATEGORICAL),
    ColumnSpec(name="joined", kind=ColumnKind.DATETIME),
])


def people(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10, 0.5, n)
    income[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({
        "email": [f"person{seed}-{i}@example.test" for i in range(n)],
        "age": rng.integers(18, 90, n),
        "income": income,
        "city": rng.choice(["Lyon", "Oslo", "Lima", "Pune"], n),
        "joined": pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3000 * 86400, n), unit="s"),
    })


TRAIN, HOLDOUT, FRESH = people(600, 0), people(600, 1), people(600, 2)


def value(name: str, synthetic: pd.DataFrame, real: pd.DataFrame = TRAIN, metadata: TableMetadata = META,
          **context) -> float:
    return get_metric(name).compute(real, synthetic, metadata, **context)


def test_a_copy_of_the_training_rows_leaks_on_every_record_metric():
    copy = TRAIN.assign(email="someone.else@example.test")  # PII is generated: it does not hide a copy
    assert value("exact_match_share", copy) == 1.0
    assert value("dcr_share", copy, holdout=HOLDOUT) == 1.0
    assert value("nndr", copy) == 0.0
    assert value("mia_auc", copy, holdout=HOLDOUT) == 1.0


def test_fresh_rows_from_the_same_distribution_leak_nothing():
    assert value("exact_match_share", FRESH) == 0.0
    assert value("dcr_share", FRESH, holdout=HOLDOUT) == pytest.approx(0.5, abs=0.06)
    assert value("mia_auc", FRESH, holdout=HOLDOUT) == pytest.approx(0.5, abs=0.07)
    assert value("nndr", FRESH) > 0.5


def test_half_copied_rows_show_in_proportion():
    half = pd.concat([TRAIN.iloc[:300], FRESH.iloc[300:]], ignore_index=True)
    assert value("exact_match_share", half) == 0.5
    assert value("dcr_share", half, holdout=HOLDOUT) == pytest.approx(0.75, abs=0.04)
    assert 0.6 < value("mia_auc", half, holdout=HOLDOUT) < 0.9


def test_exact_match_ignores_dtype_and_time_zone_but_not_values():
    recast = TRAIN.assign(age=TRAIN["age"].astype(float), joined=TRAIN["joined"].dt.tz_localize("UTC"))
    assert value("exact_match_share", recast) == 1.0
    nudged = TRAIN.assign(age=TRAIN["age"] + 1)
    assert value("exact_match_share", nudged) == 0.0


def test_gower_distance_on_a_hand_built_table():
    meta = TableMetadata(columns=[ColumnSpec(name="n", kind=ColumnKind.NUMERIC),
                                  ColumnSpec(name="c", kind=ColumnKind.CATEGORICAL)])
    real = pd.DataFrame({"n": [0.0, 1.0, 2.0, 3.0], "c": ["a", "a", "b", "b"]})
    rows = pd.DataFrame({"n": [0.0, 0.0, 3.0, np.nan, np.nan, 9.0], "c": ["a", "b", "a", "a", "z", "a"]})
    d = GowerEncoder(real, meta.learned_columns, rows).distances(rows, rows)
    # mid-rank CDF of 0 and 3 in [0, 1, 2, 3]: 1/8 and 7/8; two columns, so each counts half
    assert d[0, 1] == pytest.approx(0.5), "category differs"
    assert d[0, 2] == pytest.approx((7 / 8 - 1 / 8) / 2), "numeric by CDF distance"
    assert d[0, 3] == pytest.approx(0.5), "a null is 1 away from any value"
    assert d[3, 4] == pytest.approx(0.5), "a category the real data lacks is still 1 away"
    assert d[2, 5] == 0.0, "beyond the real range the CDF saturates: as close as the real maximum (pessimistic)"
    assert (np.diag(d) == 0).all() and np.allclose(d, d.T)


def naive_gower(a: pd.DataFrame, b: pd.DataFrame, real: pd.DataFrame) -> np.ndarray:
    """The definition, row by row: for a reference to compare the chunked computation with."""
    numeric = ["age", "income", "joined"]  # joined as integer nanoseconds here

    def cdf(column, v):
        """Mid-rank empirical CDF of the real values, linear in between."""
        x = np.sort(real[column].dropna().to_numpy(dtype=float))
        values = np.unique(x)
        mid_ranks = (np.searchsorted(x, values, "left") + np.searchsorted(x, values, "right")) / 2 / x.size
        return float(np.interp(v, values, mid_ranks))

    out = np.zeros((len(a), len(b)))
    for i, ra in enumerate(a.itertuples(index=False)):
        for j, rb in enumerate(b.itertuples(index=False)):
            total = 0.0
            for column in ("age", "income", "city", "joined"):
                va, vb = getattr(ra, column), getattr(rb, column)
                if pd.isna(va) or pd.isna(vb):
                    total += float(pd.isna(va) != pd.isna(vb))
                elif column in numeric:
                    total += abs(cdf(column, va) - cdf(column, vb))
                else:
                    total += float(va != vb)
            out[i, j] = total / 4
    return out


def test_nearest_distances_match_the_definition():
    real = TRAIN.iloc[:60].assign(joined=TRAIN["joined"].iloc[:60].astype("int64"))
    queries = FRESH.iloc[:25].assign(joined=FRESH["joined"].iloc[:25].astype("int64"),
                                     city=FRESH["city"].iloc[:25].where(FRESH.index[:25] % 7 != 0, None))
    meta = TableMetadata(columns=[*META.columns[1:4], ColumnSpec(name="joined", kind=ColumnKind.NUMERIC)])
    naive = naive_gower(queries, real, real)
    encoder = GowerEncoder(real, meta.learned_columns, queries)
    found, back = nearest(encoder.encode(real), encoder.encode(queries), k=2)
    assert np.allclose(found, np.sort(naive, axis=1)[:, :2])
    assert np.allclose(back, naive.min(axis=0)), "each reference row's closest query row"
    assert np.isnan(queries["income"]).any() and queries["city"].isna().any(), "nulls are exercised"


def test_dcr_distances_for_the_histogram():
    d = record_distances(TRAIN, TRAIN.iloc[:50], HOLDOUT, META)
    to_train, to_holdout = d.to_train, d.to_holdout
    assert to_train.shape == to_holdout.shape == (50,)
    assert (to_train == 0).all() and (to_holdout > 0).all()
    assert ((0 <= to_holdout) & (to_holdout <= 1)).all()


def test_dcr_share_uses_equal_train_and_holdout_samples():
    """A larger training set would be closer by sheer size; both sides are cut to the smaller one."""
    big_train = pd.concat([TRAIN, people(3000, 4)], ignore_index=True)
    assert value("dcr_share", FRESH, real=big_train, holdout=HOLDOUT) == pytest.approx(0.5, abs=0.06)


# --- group-level metrics ------------------------------------------------------------------------------------

GROUP_META = TableMetadata(columns=[
    ColumnSpec(name="zip", kind=ColumnKind.CATEGORICAL),
    ColumnSpec(name="sex", kind=ColumnKind.CATEGORICAL),
    ColumnSpec(name="age", kind=ColumnKind.NUMERIC, integer=True),
    ColumnSpec(name="disease", kind=ColumnKind.CATEGORICAL),
    ColumnSpec(name="cost", kind=ColumnKind.NUMERIC),
])
# real ages 0..99: quantile bins of width 10, so 21 and 28 share a bin and 31 does not
GROUP_REAL = pd.DataFrame({"zip": ["1"] * 100, "sex": ["F"] * 100, "age": np.arange(100),
                           "disease": ["flu"] * 100, "cost": np.arange(100.0)})
HAND = pd.DataFrame({
    "zip": ["75001"] * 3 + ["75002"] * 2 + ["75003"] * 5,
    "sex": ["F"] * 3 + ["M"] * 2 + ["F"] * 5,
    "age": [21, 28, 25, 40, 45, 61, 62, 63, 64, 65],
    "disease": ["flu", "cold", "flu", "hiv", "hiv", "flu", "cold", "flu", "cancer", "cold"],
    "cost": [0, 0, 0, 10, 10, 0, 0, 0, 0, 0.0],
})


def group_metric(name: str, synthetic: pd.DataFrame = HAND, **context) -> float:
    return get_metric(name).compute(GROUP_REAL, synthetic, GROUP_META, **context)


def test_k_anonymity_is_the_smallest_quasi_identifier_group():
    assert group_metric("k_anonymity", quasi_identifiers=["zip", "sex"]) == 2
    assert group_metric("k_anonymity", quasi_identifiers=["zip"]) == 2
    assert group_metric("k_anonymity", quasi_identifiers="sex") == 2  # a single name is fine too
    assert group_metric("k_anonymity", HAND[HAND["sex"] == "F"], quasi_identifiers=["zip"]) == 3
    # numeric quasi-identifiers are generalised into the real quantile bins: 21, 28, 25 share the 20s bin
    # (40, 45) and (61..65) share theirs too
    assert group_metric("k_anonymity", quasi_identifiers=["zip", "age"]) == 2
    assert group_metric("k_anonymity", HAND.iloc[:3], quasi_identifiers=["zip", "age"]) == 3
    assert group_metric("k_anonymity", HAND.iloc[:3].assign(age=[21, 28, 31]),
                        quasi_identifiers=["zip", "age"]) == 1
    assert group_metric("k_anonymity", HAND.assign(age=HAND["age"].replace(45, 51)),
                        quasi_identifiers=["zip", "age"]) == 1


def test_l_diversity_is_the_fewest_distinct_sensitive_values_in_a_group():
    assert group_metric("l_diversity", quasi_identifiers=["zip"], sensitive="disease") == 1  # 75002: hiv only
    diverse = HAND.assign(disease=HAND["disease"].mask(HAND["zip"] == "75002", pd.Series(["hiv", "flu"], [3, 4])))
    assert group_metric("l_diversity", diverse, quasi_identifiers=["zip"], sensitive="disease") == 2
    assert group_metric("l_diversity", HAND[HAND["zip"] == "75003"], quasi_identifiers=["zip"],
                        sensitive="disease") == 3


def test_t_closeness_categorical_is_the_largest_group_tvd():
    # overall: flu .4, cold .3, hiv .2, cancer .1; group 75002 is all hiv: TVD = 1 - .2 = .8
    assert group_metric("t_closeness", quasi_identifiers=["zip"], sensitive="disease") == pytest.approx(0.8)
    uniform = pd.DataFrame({"zip": ["a", "a", "b", "b"], "sex": "F", "age": 30, "disease": ["x", "y", "x", "y"],
                            "cost": 1.0})
    assert group_metric("t_closeness", uniform, quasi_identifiers=["zip"], sensitive="disease") == 0.0


def test_t_closeness_numeric_is_the_largest_earth_movers_distance_on_normalised_values():
    # cost is 10 in 75002, 0 elsewhere: normalised 1 vs 0; overall mass 0.2 at 1; group 75002 moves 0.8 by 1
    assert group_metric("t_closeness", quasi_identifiers=["zip"], sensitive="cost") == pytest.approx(0.8)
    assert group_metric("t_closeness", HAND.assign(cost=5.0), quasi_identifiers=["zip"], sensitive="cost") == 0.0


def test_group_metrics_need_their_columns():
    with pytest.raises(MissingContext, match="quasi_identifiers"):
        group_metric("k_anonymity")
    with pytest.raises(MissingContext, match="sensitive"):
        group_metric("l_diversity", quasi_identifiers=["zip"])


# --- canaries -----------------------------------------------------------------------------------------------

CANARY = pd.DataFrame({"email": ["canary.7f3a@example.test"], "age": [117], "city": ["Atlantis"]})
PLANTED = pd.concat([TRAIN, CANARY.assign(income=1.0, joined=pd.Timestamp("2016-06-06"))], ignore_index=True)


def test_a_planted_canary_row_is_found_in_a_copy_and_absent_from_fresh_rows():
    assert value("canary_share", PLANTED, real=PLANTED, canaries=CANARY) == 1.0
    assert value("canary_share", FRESH, real=PLANTED, canaries=CANARY) == 0.0


def test_a_canary_row_matches_on_all_of_its_columns():
    half = FRESH.assign(age=117)  # the rare age appears, but never with the canary's city and email
    assert value("canary_share", half, real=PLANTED, canaries=CANARY) == 0.0


def test_canary_values_per_column():
    canaries = {"email": ["canary.7f3a@example.test"], "age": [117, 118], "city": ["Atlantis"]}
    assert value("canary_share", PLANTED, real=PLANTED, canaries=canaries) == 0.75  # 118 was never planted
    assert value("canary_share", FRESH.assign(city="Atlantis"), real=PLANTED, canaries=canaries) == 0.25


def test_a_canary_is_not_sampled_away():
    """Bounded samples would miss a canary appearing once in many rows: the check reads every row."""
    many = pd.concat([FRESH] * 20 + [PLANTED.tail(1)], ignore_index=True)
    assert len(many) > 10_000
    result = evaluate(PLANTED, many, META, names=["canary_share", "exact_match_share"], max_rows=500,
                      canaries=CANARY)
    assert result["canary_share"] == 1.0
    assert result["exact_match_share"] < 0.01
