"""synthlake.dp and the tabular_ar generator under differential privacy: mechanisms, accounting, refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant

from synthlake import dp
from synthlake.generators import TrainOptions, get_generator
from synthlake.generators.autoregressive import AutoregressiveGenerator
from synthlake.metadata import RARE_CATEGORY, ColumnKind, ColumnSpec, TableMetadata

torch.set_num_threads(1)
DP_TINY = {"epochs": 2, "batch_size": 256, "hidden_dim": 16}
OUTLIER = 987654.3215


def dp_table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.5, 0.4, n)
    income[rng.random(n) < 0.1] = np.nan
    income[7] = OUTLIER  # one extreme row: never stored, never reproduced
    color = pd.Series(rng.choice(["red", "green", "blue"], n, p=[0.5, 0.3, 0.2]), dtype=object)
    color[3] = "unique-secret-colour"  # held by one row: never released
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n),
            "income": income,
            "color": color,
            "signup": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 2 * 365 * 86400, n), unit="s"),
        }
    )


def dp_metadata() -> TableMetadata:
    return TableMetadata(
        columns=[
            ColumnSpec(name="age", kind=ColumnKind.NUMERIC, integer=True),
            ColumnSpec(name="income", kind=ColumnKind.NUMERIC),
            ColumnSpec(name="color", kind=ColumnKind.CATEGORICAL),
            ColumnSpec(name="signup", kind=ColumnKind.DATETIME),
        ]
    )


def dp_model(epsilon: float = 4.0, delta: float = 1e-5, unit: dict | None = None, **hyper) -> AutoregressiveGenerator:
    privacy = {"epsilon": epsilon, "delta": delta, **(unit or {})}
    model = AutoregressiveGenerator(dp_metadata(), privacy=privacy, **{**DP_TINY, **hyper})
    model.dp_noise_seed = 11
    return model


@pytest.fixture(scope="module")
def fitted_dp() -> AutoregressiveGenerator:
    return dp_model().fit(dp_table())


# ---- mechanisms ----------------------------------------------------------------------------------------


def test_laplace_counts_have_the_laplace_scale():
    rng = np.random.default_rng(0)
    noisy = dp.laplace_counts(np.full(200_000, 10.0), epsilon=0.5, rng=rng)
    assert abs(noisy.mean() - 10) < 0.05
    assert abs(noisy.std() - math.sqrt(2) / 0.5) < 0.05  # Laplace(b): std = sqrt(2) b, b = 1/epsilon
    with pytest.raises(ValueError, match="epsilon"):
        dp.laplace_counts(np.ones(3), 0.0, rng)


def test_category_threshold_is_the_stability_threshold():
    assert dp.category_threshold(1.0, 1e-5) == pytest.approx(1 + math.log(1e5))
    # a category held by one row passes w.p. P(1 + Lap(1/eps) >= tau) = exp(-eps (tau - 1)) / 2 = delta / 2
    rng = np.random.default_rng(1)
    eps, delta = 1.0, 0.01
    passed = np.mean(1 + rng.laplace(0, 1 / eps, 400_000) >= dp.category_threshold(eps, delta))
    assert passed == pytest.approx(delta / 2, rel=0.1)


def test_dp_categories_keep_frequent_drop_rare_and_cap():
    rng = np.random.default_rng(2)
    labels = ["a"] * 5000 + ["b"] * 3000 + ["c"] * 800 + ["rare"] * 3 + [None] * 400
    found = dp.dp_categories(labels, epsilon=1.0, delta=1e-6, max_categories=10, rng=rng)
    assert found.categories == ["a", "b", "c"] and found.null
    assert found.noisy_total == pytest.approx(len(labels), rel=0.01)
    assert dp.dp_categories(labels, 1.0, 1e-6, 2, rng).categories == ["a", "b"]  # capped by noisy count
    # too little epsilon for the threshold: nothing kept (the column then generates "other" only)
    assert dp.dp_categories(labels, 1e-4, 1e-6, 10, rng).categories == []


def test_dp_bounds_hold_the_bulk_and_use_a_fixed_grid():
    rng = np.random.default_rng(3)
    x = rng.normal(5000, 500, 20_000)
    lo, hi, rows = dp.dp_bounds(x, epsilon=1.0, rng=rng)
    assert lo <= 3500 and hi >= 6500 and hi < 20_000
    assert rows == pytest.approx(len(x), rel=0.01)
    grid = dp.symexp(dp.coarse_grid())
    assert np.isclose(grid, lo).any() and np.isclose(grid, hi).any()  # edges of the data-independent grid


def test_dp_numeric_bins_are_monotone_and_within_bounds():
    rng = np.random.default_rng(4)
    x = np.r_[rng.lognormal(10, 0.5, 20_000), [np.nan] * 2000]
    out = dp.dp_numeric(x, epsilon=1.0, max_bins=50, n_knots=5, rng=rng)
    edges = np.asarray(out.edges)
    assert out.null and out.values is None and len(out.knots) == len(edges) + 1
    assert np.all(np.diff(edges) > 0) and out.lo < edges[0] and edges[-1] < out.hi
    bounds = np.r_[out.lo, edges, out.hi]
    for b, knots in enumerate(out.knots):
        assert np.all(np.diff(knots) >= 0)
        assert bounds[b] - 1e-6 <= knots[0] and knots[-1] <= bounds[b + 1] + 1e-6
    # the noisy quantile edges follow the data: the median edge is near the real median
    assert abs(np.log(edges[len(edges) // 2] / np.exp(10))) < 0.2


def test_dp_numeric_small_integer_range_keeps_every_integer():
    rng = np.random.default_rng(5)
    out = dp.dp_numeric(rng.integers(18, 90, 5000).astype(float), 1.0, 100, 5, rng, integer=True)
    assert out.values == list(range(int(out.lo), int(out.hi) + 1))
    assert out.lo <= 18 and out.hi >= 89 and not out.null


def test_split_budget_sums_to_the_whole():
    b = dp.split_budget(2.0, 1e-5, 0.25, ["a", "b", "c", "d"], ["c", "d"])
    assert sum(b.column_epsilon.values()) + b.sgd_epsilon == pytest.approx(2.0)
    assert sum(b.column_delta.values()) + b.sgd_delta == pytest.approx(1e-5)
    assert b.column_epsilon["a"] == pytest.approx(0.125) and set(b.column_delta) == {"c", "d"}
    assert dp.split_budget(2.0, 1e-5, 0.25, ["a"], []).sgd_delta == 1e-5


# ---- the generator under DP ---------------------------------------------------------------------------


def test_reported_epsilon_is_preprocessing_plus_a_fresh_accountant(fitted_dp):
    report = fitted_dp.privacy_report
    sgd = report["dp_sgd"]
    fresh = RDPAccountant()
    fresh.history = [(sgd["noise_multiplier"], sgd["sample_rate"], sgd["steps"])]
    recomputed = sum(report["preprocessing"].values()) + fresh.get_epsilon(delta=sgd["delta"])
    assert report["epsilon"] == pytest.approx(recomputed, abs=1e-6)
    assert report["epsilon"] <= 4.0 and report["epsilon"] > 3.5  # spends, within the budget
    assert report["delta"] == pytest.approx(sum(report["preprocessing_delta"].values()) + sgd["delta"])
    assert report["delta"] <= 1e-5
    assert set(report["preprocessing"]) == {"age", "income", "color", "signup"}
    assert sgd["max_grad_norm"] == 1.0 and sgd["accountant"] == "rdp"
    assert sgd["steps"] == DP_TINY["epochs"] * round(1 / sgd["sample_rate"])


def test_prv_accountant_is_accounted_too():
    model = dp_model(epsilon=2.0, dp_accountant="prv", epochs=1).fit(dp_table(1500))
    report, sgd = model.privacy_report, model.privacy_report["dp_sgd"]
    fresh = PRVAccountant()
    fresh.history = [(sgd["noise_multiplier"], sgd["sample_rate"], sgd["steps"])]
    recomputed = sum(report["preprocessing"].values()) + fresh.get_epsilon(delta=sgd["delta"])
    assert report["epsilon"] == pytest.approx(recomputed, abs=1e-6)
    assert report["epsilon"] <= 2.0


def test_history_carries_the_epsilon_spent_and_no_validation(fitted_dp):
    model = dp_model()
    history = model.train(model.prepare(dp_table(), seed=0), TrainOptions(seed=0))
    assert len(history) == DP_TINY["epochs"]  # fixed epochs, no early stopping
    assert all(math.isnan(h["val_loss"]) for h in history)
    eps = [h["epsilon"] for h in history]
    assert eps == sorted(eps) and eps[-1] == pytest.approx(model.privacy_report["epsilon"])
    assert all(isinstance(v, int | float) for h in history for v in h.values())  # flat: loggable as metrics


def test_rare_category_and_outlier_never_stored_nor_reproduced(fitted_dp, tmp_path):
    fitted_dp.save(tmp_path)
    saved = (tmp_path / "generator.json").read_text()
    assert "unique-secret-colour" not in saved
    assert "987654" not in saved and repr(OUTLIER) not in saved
    sample = fitted_dp.sample(5000, seed=1)
    assert "unique-secret-colour" not in set(sample["color"].dropna())
    assert not np.isclose(sample["income"].dropna(), OUTLIER).any()
    assert RARE_CATEGORY in set(sample["color"].dropna()) or len(fitted_dp.columns[2].categories) == 3
    assert sample["age"].dtype == np.int64  # integers still integers


def test_dp_model_saves_loads_and_samples_deterministically(fitted_dp, tmp_path):
    fitted_dp.save(tmp_path)
    state = json.loads((tmp_path / "generator.json").read_text())
    assert state["privacy"] == {"epsilon": 4.0, "delta": 1e-5}
    assert state["privacy_report"] == fitted_dp.privacy_report
    loaded = AutoregressiveGenerator.load(tmp_path)
    assert loaded.privacy == fitted_dp.privacy and loaded.privacy_report == fitted_dp.privacy_report
    pd.testing.assert_frame_equal(loaded.sample(400, seed=5), fitted_dp.sample(400, seed=5))
    pd.testing.assert_frame_equal(loaded.sample(400, seed=5), loaded.sample(400, seed=5))


def test_seeded_dp_noise_trains_reproducibly():
    a, b = dp_model(epochs=1), dp_model(epochs=1)
    a.fit(dp_table(1000))
    b.fit(dp_table(1000))
    for (name, pa), pb in zip(a.network.state_dict().items(), b.network.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_every_parameter_is_trained_under_dp_sgd():
    model = dp_model(epochs=1)
    encoded = model.prepare(dp_table(1000), seed=0)
    torch.manual_seed(0)
    initial = {k: v.clone() for k, v in model._build(model.vocabulary()).state_dict().items()}
    model.train(encoded, TrainOptions(seed=0))
    for name, value in model.network.state_dict().items():
        assert not torch.equal(value, initial[name]), f"{name} did not move"


@pytest.mark.parametrize(
    ("privacy", "needle"),
    [
        ({"epsilon": 0.0, "delta": 1e-5}, "epsilon: Input should be greater than 0"),
        ({"epsilon": -1.0, "delta": 1e-5}, "epsilon: Input should be greater than 0"),
        ({"epsilon": 1.0, "delta": 1.0}, "delta: Input should be less than 0.01"),
        ({"epsilon": 1.0, "delta": 0.0}, "delta: Input should be greater than 0"),
        ({"epsilon": float("inf"), "delta": 1e-5}, "epsilon: Input should be a finite number"),
        ({"eps": 1.0}, "eps: Extra inputs are not permitted"),
    ],
)
def test_bad_privacy_settings_are_refused(privacy, needle):
    with pytest.raises(ValueError, match=needle):
        AutoregressiveGenerator(dp_metadata(), privacy=privacy)


def test_delta_at_least_one_over_rows_is_refused():
    model = dp_model(delta=0.009)
    with pytest.raises(ValueError, match=r"delta=0.009 must be below 1/rows"):
        model.prepare(dp_table(200), seed=0)


def test_an_unreachable_epsilon_is_refused_naming_it():
    model = dp_model(epsilon=1e-4, epochs=200, batch_size=3000)
    with pytest.warns(UserWarning, match="no category"):
        encoded = model.prepare(dp_table(3000), seed=0)
    with pytest.raises(ValueError, match=r"DP-SGD cannot meet epsilon=.*delta="):
        model.train(encoded, TrainOptions(seed=0))


def test_dp_with_several_processes_is_refused(monkeypatch):
    model = dp_model()
    encoded = model.prepare(dp_table(500), seed=0)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 0)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    with pytest.raises(ValueError, match="differential privacy trains in one process: set train.num_processes: 1"):
        model.train(encoded, TrainOptions(seed=0))


def test_train_without_a_dp_prepare_is_refused():
    model = dp_model()
    model.columns = []
    with pytest.raises(RuntimeError, match="prepare"):
        model.train(np.zeros((3, 0), dtype=np.int32), TrainOptions(seed=0))


def test_ctgan_refuses_privacy():
    pytest.importorskip("ctgan")
    with pytest.raises(ValueError, match="generator 'ctgan' does not support differential privacy; use tabular_ar"):
        get_generator("ctgan")(dp_metadata(), privacy={"epsilon": 1.0, "delta": 1e-5})


def test_without_privacy_nothing_changes(tmp_path: Path):
    model = AutoregressiveGenerator(dp_metadata(), **DP_TINY).fit(dp_table(500))
    assert model.privacy is None and model.privacy_report is None
    model.save(tmp_path)
    assert json.loads((tmp_path / "generator.json").read_text())["privacy"] is None


def test_a_category_column_below_the_threshold_degrades_with_a_warning():
    model = dp_model(epsilon=0.05, dp_preprocessing_share=0.1)
    with pytest.warns(UserWarning, match="no category of column 'color'"):
        model.prepare(dp_table(3000), seed=0)
    color = model.columns[2]
    assert color.categories == [] and color.other_token == 0


# ---- a unit of privacy (a customer, a related table's entity) ------------------------------------------------


def unit_table(units: int = 240, seed: int = 1) -> pd.DataFrame:
    """`units` customers with 1..30 rows each; the customer column is the unit, not learned."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 31, units)
    table = dp_table(int(lengths.sum()), seed)
    table["customer"] = np.repeat([f"c{i}" for i in range(units)], lengths)
    return table.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # a unit's rows anywhere


def test_the_category_threshold_grows_with_the_rows_a_unit_adds():
    assert dp.category_threshold(1.0, 1e-5, 1) == pytest.approx(1 + math.log(1e5))
    k = 10
    tau = dp.category_threshold(1.0, 1e-5, k)
    assert tau == pytest.approx(k * (1 + math.log(k / 1e-5)))
    # a unit's k rows of one category pass the threshold with probability <= delta / 2k (noise Laplace(k/eps))
    assert 0.5 * math.exp(-(tau - k) * 1.0 / k) <= 1e-5 / (2 * k) * (1 + 1e-9)


def test_a_unit_is_sampled_clipped_and_accounted_as_one():
    table = unit_table()
    model = dp_model(epsilon=4.0, batch_size=32, unit={"unit": "customer", "unit_rows": 10})
    with pytest.warns(UserWarning, match=r"privacy unit 'customer': \d+ rows beyond the first 10"):
        encoded = model.prepare(table, seed=0)
    kept = table.groupby("customer").size().clip(upper=10)
    assert len(encoded) == kept.sum()  # at most unit_rows of a unit are learned
    model.train(encoded, TrainOptions(seed=0))
    report, sgd = model.privacy_report, model.privacy_report["dp_sgd"]
    assert report["unit"]["unit_rows"] == 10
    # q is over units: batch_size / a noisy count of the 240 units (Laplace at the count's epsilon), reported
    noisy_units = report["unit"]["noisy_units"]
    assert noisy_units != 240 and abs(noisy_units - 240) < 20 / report["unit"]["count_epsilon"]
    assert sgd["sample_rate"] == pytest.approx(32 / noisy_units, rel=0.01)
    fresh = RDPAccountant()
    fresh.history = [(sgd["noise_multiplier"], sgd["sample_rate"], sgd["steps"])]
    spent = sum(report["preprocessing"].values()) + report["unit"]["count_epsilon"] + fresh.get_epsilon(sgd["delta"])
    assert report["epsilon"] == pytest.approx(spent, abs=1e-6) and 3.5 < report["epsilon"] <= 4.0
    assert "customer" not in report["preprocessing"]  # the unit is not learned


def unit_dpsgd(network: torch.nn.Module, units: np.ndarray, batch_size: int):
    from synthlake.generators import ar_dp

    hyper = {"batch_size": batch_size, "epochs": 1, "dp_accountant": "rdp", "max_grad_norm": 1.0}
    budget = dp.split_budget(2.0, 1e-5, 0.1, ["x"], [], units=True)
    return ar_dp.DPSGD(network, torch.optim.SGD(network.parameters(), lr=0.1), budget, 3.0, hyper,
                       lambda i: np.random.default_rng(i), "cpu", units)


def test_a_batch_of_units_comes_in_chunks_of_whole_units_stepped_once():
    network = torch.nn.Linear(3, 1)
    units = np.array([2, 0, 1, 0, 2, 2])
    private = unit_dpsgd(network, units, batch_size=3)  # q = 1: every unit; chunks of about 3 rows
    data = torch.arange(18, dtype=torch.float32).reshape(6, 3)
    chunks, skipped = [], []
    for chunk in private.poisson_batches(data):
        private.optimizer.zero_grad(set_to_none=True)
        private.model(chunk).sum().backward()
        private.before_step()
        skipped.append(private.optimizer._check_skip_next_step(pop_next=False))
        private.optimizer.step()
        chunks.append({int(row[0]) // 3 for row in chunk})  # the rows in the chunk
    assert sorted(set().union(*chunks)) == list(range(6)) and sum(map(len, chunks)) == 6
    for rows in chunks:  # no unit split over two chunks
        assert all({r for r in range(6) if units[r] == units[row]} <= rows for row in rows)
    assert len(chunks) == 2 and skipped == [True, False]  # one step per batch: the last chunk's
    assert len(private.accountant.history) == 1  # the accountant counts one step
    private.close()


def test_per_unit_gradients_are_the_mean_of_their_rows_before_clipping():
    network = torch.nn.Linear(3, 1)
    units = np.array([0, 0, 1, 2, 2, 2])
    private = unit_dpsgd(network, units, batch_size=6)
    assert private.q == 1.0  # every unit in every batch: 6 / 3 units
    data = torch.arange(18, dtype=torch.float32).reshape(6, 3)
    batch = next(private.poisson_batches(data))
    private.model(batch).sum().backward()
    rows = network.weight.grad_sample.clone()
    private.before_step()
    per_unit = network.weight.grad_sample
    assert per_unit.shape[0] == 3  # one gradient per unit: what the optimizer clips and counts
    for unit in range(3):
        torch.testing.assert_close(per_unit[unit], rows[torch.from_numpy(units == unit)].mean(0))
    private.close()


def test_a_unit_column_missing_from_the_rows_is_refused():
    model = dp_model(unit={"unit": "customer", "unit_rows": 5})
    with pytest.raises(ValueError, match="privacy unit 'customer' is not a column of the training rows"):
        model.prepare(dp_table(500), seed=0)


def test_a_dp_datetime_column_keeps_to_what_timestamps_hold_at_any_epsilon():
    from synthlake.generators.ar_columns import DATETIME_SECONDS, NumericColumn

    seconds = dp_table(300)["signup"].astype("int64").to_numpy() / 1e9
    spec = ColumnSpec(name="signup", kind=ColumnKind.DATETIME)
    hyper = {"max_bins": 20, "bin_knots": 4}
    for seed in range(20):  # at this epsilon the noisy bounds land anywhere on the symlog grid
        column, _ = NumericColumn.fit_dp(spec, None, dp.ArrayHistograms(seconds), 1e-4, hyper,
                                         np.random.default_rng(seed))
        spans = [*(column.values or []), *(column.edges or []), *(k for ks in column.knots or [] for k in ks)]
        assert DATETIME_SECONDS[0] <= min(spans) and max(spans) <= DATETIME_SECONDS[1]
        column.decode(np.arange(column.vocab), np.random.default_rng(0).random(column.vocab))  # every token decodes
