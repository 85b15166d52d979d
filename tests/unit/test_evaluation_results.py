"""Metric results: each metric hands back what it computed (details), and one evaluation does shared work once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthlake.evaluation import HEADLINE, METRICS, SharedWork, evaluate, evaluate_results, get_metric, privacy, utility
from synthlake.evaluation.fidelity import association_matrix, column_shapes
from synthlake.evaluation.privacy import CanaryShare, dcr_share, record_distances
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata

META = TableMetadata(columns=[ColumnSpec(name="x", kind=ColumnKind.NUMERIC),
                              ColumnSpec(name="y", kind=ColumnKind.NUMERIC),
                              ColumnSpec(name="c", kind=ColumnKind.CATEGORICAL)], target="c")


def frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    return pd.DataFrame({"x": x, "y": x + rng.normal(0, 0.5, n), "c": np.where(x > 0, "a", rng.choice(["a", "b"], n))})


REAL, SYNTHETIC, HOLDOUT = frame(400, 1), frame(300, 2), frame(250, 3)


def result(name: str, **context):
    return get_metric(name).evaluate(REAL, SYNTHETIC, META, **context)


def test_column_shapes_carry_each_columns_shape():
    shapes = result("column_shapes")
    assert shapes.details["shapes"] == column_shapes(REAL, SYNTHETIC, META)
    assert shapes.value == pytest.approx(np.mean([s.score for s in shapes.details["shapes"]]))


def test_pair_trends_carry_the_association_matrices():
    associations = result("column_pair_trends").details["associations"]
    assert associations.columns == ["x", "y", "c"]
    assert np.array_equal(associations.real, association_matrix(REAL, META.learned_columns))
    assert np.array_equal(associations.synthetic, association_matrix(SYNTHETIC, META.learned_columns))
    assert associations.real[0, 1] > 0.8  # y follows x


def test_dcr_share_carries_the_distances_it_is_computed_from():
    dcr = result("dcr_share", holdout=HOLDOUT)
    to_train, to_holdout = dcr.details["to_train"], dcr.details["to_holdout"]
    assert to_train.shape == to_holdout.shape == (len(SYNTHETIC),)
    assert dcr.value == dcr_share(to_train, to_holdout)
    expected = record_distances(REAL, SYNTHETIC, HOLDOUT, META)
    assert np.array_equal(to_train, expected.to_train) and np.array_equal(to_holdout, expected.to_holdout)


def test_mia_reads_the_reverse_distances_of_the_same_pass():
    mia = result("mia_auc", holdout=HOLDOUT)
    members, non_members = mia.details["members"], mia.details["non_members"]
    assert len(members) == len(non_members) == len(HOLDOUT)  # as many members as non-members
    distances = record_distances(REAL, SYNTHETIC, HOLDOUT, META)
    assert members.min() == distances.to_train.min()  # the closest pair is the closest pair, seen from either side


def test_utility_metrics_report_the_scores_they_fitted():
    gap = get_metric("utility_gap", max_iter=20).evaluate(REAL, SYNTHETIC, META, holdout=HOLDOUT)
    scores = gap.details["utility"]
    assert scores.task == "classification" and scores.score == "roc_auc"
    assert gap.value == pytest.approx(scores.trtr - scores.tstr)
    tstr = get_metric("tstr", max_iter=20).evaluate(REAL, SYNTHETIC, META, holdout=HOLDOUT)
    assert tstr.value == scores.tstr and np.isnan(tstr.details["utility"].trtr)  # trtr was not fitted


def counting(monkeypatch, module, name: str) -> list:
    calls, original = [], getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_dcr_share_and_mia_share_one_pass_over_the_distances(monkeypatch):
    calls = counting(monkeypatch, privacy, "nearest")
    shared = evaluate_results(REAL, SYNTHETIC, META, names=["dcr_share", "mia_auc"], holdout=HOLDOUT)
    assert len(calls) == 2  # synthetic against the training sample, and against the holdout sample
    alone = [get_metric(n).compute(REAL, SYNTHETIC, META, holdout=HOLDOUT) for n in ("dcr_share", "mia_auc")]
    assert len(calls) == 6  # without a shared evaluation each metric makes both passes
    assert [r.value for r in shared.values()] == alone


def test_sharing_survives_bounded_samples(monkeypatch):
    """Both metrics sample the frames alike: through SharedWork they get the same sample objects."""
    calls = counting(monkeypatch, privacy, "record_distances")
    evaluate(REAL, SYNTHETIC, META, names=["dcr_share", "mia_auc"], max_rows=100, holdout=HOLDOUT)
    assert len(calls) == 1


def test_utility_metrics_fit_each_model_once(monkeypatch):
    calls = counting(monkeypatch, utility._Task, "score")
    values = evaluate(REAL, SYNTHETIC, META, names=["tstr", "trtr", "utility_gap"], holdout=HOLDOUT)
    assert len(calls) == 2  # one model on the synthetic rows, one on the real rows
    assert values["utility_gap"] == pytest.approx(values["trtr"] - values["tstr"])


def test_shared_work_is_keyed_by_inputs_and_parameters():
    shared, done = SharedWork(), []

    def work():
        done.append(1)
        return len(done)

    a, b = REAL.copy(), REAL.copy()
    assert shared.get("w", work, a, seed=1) == shared.get("w", work, a, seed=1) == 1
    assert shared.get("w", work, b, seed=1) == 2, "another object, even an equal one, is other work"
    assert shared.get("w", work, a, seed=2) == 3 and shared.get("v", work, a, seed=1) == 4


def test_every_metric_means_something_and_the_headline_names_metrics():
    assert all(METRICS[n].meaning for n in METRICS)
    assert set(HEADLINE) <= set(METRICS)


# --- canaries: one definition for the metric and the validate stage's Spark count ----------------------------

CANARY_META = TableMetadata(columns=[ColumnSpec(name="age", kind=ColumnKind.NUMERIC),
                                     ColumnSpec(name="city", kind=ColumnKind.CATEGORICAL),
                                     ColumnSpec(name="joined", kind=ColumnKind.DATETIME)])


def test_planted_canaries_are_distinct_values_compared_as_the_column_compares():
    planted = CanaryShare.planted({"age": ["117", "117.0", 118], "city": ["Atlantis", "Atlantis"],
                                   "joined": ["1970-01-02"]}, CANARY_META)
    assert planted["age"].tolist() == [117.0, 118.0]  # "117" and "117.0" are one number
    assert planted["city"].tolist() == ["Atlantis"]
    assert planted["joined"].tolist() == [86400.0]  # seconds since the epoch, UTC
    assert CanaryShare.share(1, 4) == 0.25 and np.isnan(CanaryShare.share(0, 0))


def test_a_canary_that_is_no_number_in_a_numeric_column_is_refused():
    with pytest.raises(ValueError, match="'age' must be numbers"):
        CanaryShare.planted({"age": ["old"]}, CANARY_META)


def test_the_canary_metric_counts_as_planted_says():
    synthetic = pd.DataFrame({"age": [117, 30], "city": ["Oslo", "Lima"],
                              "joined": pd.to_datetime(["1970-01-02", "2020-01-01"])})
    canaries = {"age": ["117", "117.0", "118"], "joined": ["1970-01-02"]}
    found = get_metric("canary_share").evaluate(synthetic, synthetic, CANARY_META, canaries=canaries)
    assert found.value == 2 / 3
    assert found.details["found"]["age"].tolist() == [117.0]
