"""Drift scores (synthlake.drift) and the check stage's decision (pipelines.check.decide), without Spark."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.check import category_bins, decide
from pipelines.context import StageError
from pipelines.records import Champion, ProfileRecord
from synthlake.drift import Thresholds, column_drift, js_distance, ks_at_edges, psi

LIMITS = Thresholds(psi=0.2, js=0.1, ks=0.1)


def test_identical_shares_score_zero_and_scores_grow_with_the_shift():
    ref = [0.1, 0.2, 0.4, 0.2, 0.1]
    assert psi(ref, ref) == pytest.approx(0) and js_distance(ref, ref) == pytest.approx(0)
    assert ks_at_edges(ref, ref) == pytest.approx(0)
    small, large = [0.12, 0.2, 0.38, 0.2, 0.1], [0.4, 0.3, 0.2, 0.05, 0.05]
    assert 0 < psi(ref, small) < psi(ref, large)
    assert 0 < js_distance(ref, small) < js_distance(ref, large) <= 1
    assert ks_at_edges(ref, large) == pytest.approx(0.4)  # cumulative 0.7 against 0.3 after three bins


def test_psi_matches_its_formula_and_survives_an_empty_bin():
    ref, cur = np.array([0.5, 0.3, 0.2]), np.array([0.4, 0.4, 0.2])
    assert psi(ref, cur) == pytest.approx(float(np.sum((cur - ref) * np.log(cur / ref))), rel=1e-3)
    assert np.isfinite(psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]))
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint: the largest distance


def test_a_column_drifts_when_any_score_passes_its_threshold():
    ref = [0.25] * 4
    assert column_drift(ref, ref, True, LIMITS) == {"psi": 0.0, "ks": 0.0, "drifted": False}
    shifted = column_drift(ref, [0.05, 0.15, 0.3, 0.5], True, LIMITS)
    assert shifted["drifted"] and shifted["ks"] > 0.1
    # the same values, but many more nulls: PSI sees the null bin
    nulls = column_drift(ref, ref, True, LIMITS, nulls=(0.0, 0.5))
    assert nulls["ks"] == 0 and nulls["psi"] > 0.2 and nulls["drifted"]
    categories = column_drift([0.5, 0.5, 0.0], [0.9, 0.1, 0.0], False, LIMITS)
    assert set(categories) == {"psi", "js", "drifted"} and categories["drifted"]


def test_category_bins_map_the_current_values_onto_the_reference_and_pool_the_rest():
    ref, cur = category_bins([["a", 0.6], ["b", 0.3], [None, 0.05]], [["b", 0.5], ["c", 0.4], ["a", 0.1]])
    assert ref == pytest.approx([0.6, 0.3, 0.05, 0.05])
    assert cur == pytest.approx([0.1, 0.5, 0.0, 0.4])  # "c" is new: it joins the rest


def _profile(fingerprint: str, holdout_seed: int = 42) -> ProfileRecord:
    return ProfileRecord.model_validate({
        "profile_version": "v", "run_id": "r", "created_at": "2026-12-05T00:00:00Z", "dataset": "d",
        "source": {"path": "x.csv", "format": "csv", "fingerprint": fingerprint}, "rows": 10, "columns": {},
        "holdout": {"fraction": 0.2, "seed": holdout_seed, "rows": 2}})


CHAMPION = Champion(model_name="synthlake-d", model_version="3", mlflow_run_id="abc", source_fingerprint="f1",
                    profile_version="v")
STABLE = {"age": {"psi": 0.01, "ks": 0.02, "drifted": False}, "job": {"psi": 0.03, "js": 0.04, "drifted": False}}
DRIFTED = {**STABLE, "age": {"psi": 0.9, "ks": 0.3, "drifted": True}}


@pytest.mark.parametrize(("policy", "champion", "same_key", "old", "drift", "expected", "says"), [
    ("auto", None, False, None, {}, "train", "no champion"),
    ("auto", CHAMPION, False, _profile("f1"), {}, "train", "settings a model depends on"),
    ("auto", CHAMPION, True, _profile("f1", holdout_seed=1), {}, "train", "holdout split"),
    ("auto", CHAMPION, True, _profile("f2"), {}, "reuse", "source is unchanged"),
    ("auto", CHAMPION, True, _profile("f1"), STABLE, "reuse", "learned it (largest PSI 0.030, job)"),
    ("auto", CHAMPION, True, _profile("f1"), DRIFTED, "train", "1 of 2 columns drifted since the champion "
                                                               "(version 3) learned the source: age (PSI 0.900"),
    ("auto", CHAMPION, True, _profile("f1"), {}, "train", "predates drift scores"),
    ("always", CHAMPION, True, _profile("f2"), {}, "train", "retrain is always"),
    ("never", CHAMPION, True, _profile("f1"), DRIFTED, "reuse", "retrain is never"),
])
def test_the_decision_and_its_reason(policy, champion, same_key, old, drift, expected, says):
    current = _profile("f2")
    decision, reason = decide(policy, champion, same_key, old, current, drift)
    assert decision == expected and says in reason


@pytest.mark.parametrize(("champion", "same_key", "says"), [
    (None, False, "no champion"), (CHAMPION, False, "settings a model depends on")])
def test_never_refuses_when_the_champion_cannot_serve(champion, same_key, says):
    with pytest.raises(StageError, match=f"retrain is never, but .*{says}.*--retrain auto"):
        decide("never", champion, same_key, _profile("f1"), _profile("f2"), {})
