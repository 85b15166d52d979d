"""Encoding on Spark (pipelines.encode) against the engine's own fit on the driver, with real Spark: the same
encodings (quantiles aside, which are approximate), the same encoded rows, split over the ranks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from project_fixture import make_project, spark_session

from pipelines import encode
from pipelines.config import load_dataset
from synthlake.generators import get_generator
from synthlake.generators.ar_columns import fit_columns
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("project"))
    mp = pytest.MonkeyPatch()
    mp.setenv("SYNTHLAKE_HOME", str(root))
    session = spark_session("synthlake-encode-tests")
    yield session
    session.stop()
    mp.undo()


@pytest.fixture(scope="module")
def adult(spark):
    from pipelines.source import read_source

    dataset = load_dataset("conf/datasets/adult.yaml")
    return read_source(spark, dataset).repartition(3), dataset.metadata


def fitted_both_ways(spark, rows, metadata, work, **hyper):
    model = get_generator("tabular_ar")(metadata, **hyper)
    count = encode.fit_and_encode(spark, rows, model, work)
    table = rows.toPandas()
    return model, fit_columns(metadata, table, model.hyper), table, count


def test_adult_encodings_match_the_driver_fit(spark, adult, tmp_path):
    rows, metadata = adult
    model, expected, table, count = fitted_both_ways(spark, rows, metadata, tmp_path)
    assert count == len(table) == rows.count()
    for got, want in zip(model.columns, expected, strict=True):
        if want.to_json()["type"] == "categorical" or want.values is not None:
            assert got == want, got.name  # categories and exact values: identical
            continue
        assert got.values is None and got.null == want.null, got.name
        x = np.sort(table[got.name].dropna().to_numpy(dtype=float))
        level = np.searchsorted(x, got.edges, side="right") / len(x)
        wanted = np.searchsorted(x, want.edges, side="right") / len(x)
        assert len(got.edges) == len(want.edges) and np.abs(level - wanted).max() < 2e-3, got.name
        assert all(k[0] <= k[-1] for k in got.knots) and got.knots[0][0] == x[0] and got.knots[-1][-1] == x[-1]


def test_the_shards_hold_the_encoded_rows_and_each_rank_reads_its_own(spark, adult, tmp_path):
    rows, metadata = adult
    model, _, table, count = fitted_both_ways(spark, rows, metadata, tmp_path)
    shards = tmp_path / encode.SHARDS
    assert len(list(shards.glob("part-*.parquet"))) == 3  # one per partition, written by the executors
    ranks = [encode.rank_rows(shards, r, 2) for r in range(2)]
    assert [len(r) for r in ranks] == [(count + 1) // 2, count // 2]
    together = np.concatenate(ranks)
    assert together.dtype == np.int32 and together.shape[1] == len(model.vocabulary())

    def ordered(m):
        return m[np.lexsort(m.T[::-1])]

    np.testing.assert_array_equal(ordered(together), ordered(model.encoder()(table)))
    np.testing.assert_array_equal(encode.rank_rows(shards, 1, 2), encode.rank_rows(shards, 1, 2))  # same rows


def test_nulls_datetimes_and_awkward_names(spark, tmp_path):
    rng = np.random.default_rng(0)
    n = 2000
    frame = pd.DataFrame({
        "when it.happened": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 500, n), unit="h"),
        "`kind`": rng.choice(["a", "b", "c", None, "rare"], n, p=[0.4, 0.3, 0.2, 0.0995, 0.0005]),
        "amount": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(3, 1, n)),
    })
    frame.loc[::7, "when it.happened"] = pd.NaT
    metadata = TableMetadata(columns=[ColumnSpec(name="when it.happened", kind=ColumnKind.DATETIME),
                                      ColumnSpec(name="`kind`", kind=ColumnKind.CATEGORICAL),
                                      ColumnSpec(name="amount", kind=ColumnKind.NUMERIC)])
    rows = spark.createDataFrame(frame).repartition(2)
    model, expected, table, count = fitted_both_ways(spark, rows, metadata, tmp_path, max_bins=20)
    when, kind, amount = model.columns
    assert (when.resolution, when.null, when.tz) == (expected[0].resolution, True, None) and when.resolution == 3600
    assert kind == expected[1] and kind.null and kind.rare  # "rare" is under min_category_count
    assert amount.null and len(amount.edges) == len(expected[2].edges) == 19
    assert count == n and len(encode.rank_rows(tmp_path / encode.SHARDS, 0, 1)) == n


def test_dp_encodings_from_spark_counts_are_the_driver_fits(spark, adult, tmp_path):
    """Under privacy the executors count (labels, histogram buckets, with the engine's own bucket functions)
    and the engine noises the counts: with the same noise seed, the encodings, the budget and the noisy row
    count are the driver's, and so are the encoded rows (nulls without a token filled the same way)."""
    rows, metadata = adult
    privacy = {"epsilon": 2.0, "delta": 1e-6}
    on_spark, on_driver = (get_generator("tabular_ar")(metadata, privacy=privacy) for _ in range(2))
    on_spark.dp_noise_seed = on_driver.dp_noise_seed = 7  # tests only: the same noise on both sides
    count = encode.fit_and_encode(spark, rows, on_spark, tmp_path)
    table = rows.toPandas()
    encoded = on_driver.prepare(table)
    assert on_spark.columns == on_driver.columns and on_spark._dp == on_driver._dp
    assert count == len(table)
    together = encode.rank_rows(tmp_path / encode.SHARDS, 0, 1)
    np.testing.assert_array_equal(together[np.lexsort(together.T[::-1])], encoded[np.lexsort(encoded.T[::-1])])
