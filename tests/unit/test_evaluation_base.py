"""The metric contract: a registry by name, directions and gates, bounded samples, the context a metric needs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthlake.evaluation import METRICS, Direction, Metric, MissingContext, bounded, evaluate, get_metric
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata

META = TableMetadata(columns=[ColumnSpec(name="x", kind=ColumnKind.NUMERIC),
                              ColumnSpec(name="c", kind=ColumnKind.CATEGORICAL)], target="c")


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(0, 1, n), "c": rng.choice(["a", "b"], n)})


def test_every_metric_of_the_issue_is_registered():
    assert set(METRICS) == {
        "column_shapes", "column_pair_trends", "accuracy_univariate", "accuracy_bivariate", "accuracy",
        "detection_auc", "tstr", "trtr", "utility_gap", "exact_match_share", "dcr_share", "nndr", "mia_auc",
        "k_anonymity", "l_diversity", "t_closeness", "canary_share"}


@pytest.mark.parametrize("name", sorted(METRICS))
def test_each_metric_declares_itself(name):
    metric = METRICS[name]
    assert metric.name == name
    assert metric.family in ("fidelity", "utility", "privacy")
    assert isinstance(metric.direction, Direction)
    assert (metric.target is not None) == (metric.direction == Direction.TARGET)


def test_target_metrics_aim_at_one_half():
    assert {n for n, m in METRICS.items() if m.direction == Direction.TARGET} == {"detection_auc", "dcr_share",
                                                                                  "mia_auc"}
    assert all(METRICS[n].target == 0.5 for n in ("detection_auc", "dcr_share", "mia_auc"))


def test_unknown_metric_names_the_known_ones():
    with pytest.raises(KeyError, match="column_shapes"):
        get_metric("no_such_metric")


def test_passes_follows_the_direction():
    shapes, exact, dcr = METRICS["column_shapes"], METRICS["exact_match_share"], METRICS["dcr_share"]
    assert shapes.passes(0.8, 0.75) and not shapes.passes(0.7, 0.75)
    assert exact.passes(0.0, 0.01) and not exact.passes(0.05, 0.01)
    assert dcr.passes(0.47, 0.05) and dcr.passes(0.53, 0.05) and not dcr.passes(0.6, 0.05)
    assert not shapes.passes(float("nan"), 0.0), "an undefined value never passes a gate"


def test_bounded_keeps_small_frames_and_samples_large_ones_reproducibly():
    small, large = frame(10), frame(1000)
    assert bounded(small, 100) is small and bounded(large, None) is large
    sample = bounded(large, 100, seed=3)
    assert len(sample) == 100 and sample.index.is_unique and sample.index.isin(large.index).all()
    assert sample.equals(bounded(large, 100, seed=3))
    assert not sample.index.equals(bounded(large, 100, seed=4).index)


class _Sizes(Metric):
    """Records what _compute was handed."""

    name, family, direction = "sizes", "fidelity", Direction.MAXIMIZE
    seen: dict = {}

    def _compute(self, real, synthetic, metadata, *, seed, **context):
        _Sizes.seen = {"real": len(real), "synthetic": len(synthetic), "seed": seed,
                       "holdout": len(context["holdout"]) if "holdout" in context else None}
        return 1.0


def test_compute_bounds_every_frame_and_passes_the_seed():
    _Sizes(max_rows=50).compute(frame(300), frame(80), META, holdout=frame(500), seed=9)
    assert _Sizes.seen == {"real": 50, "synthetic": 50, "seed": 9, "holdout": 50}
    _Sizes(max_rows=None).compute(frame(300), frame(80), META)
    assert _Sizes.seen == {"real": 300, "synthetic": 80, "seed": 0, "holdout": None}


def test_compute_refuses_a_table_without_a_learned_column():
    with pytest.raises(ValueError, match=r"synthetic data lacks columns \['c'\]"):
        get_metric("column_shapes").compute(frame(50), frame(50)[["x"]], META)


def test_sampled_metrics_are_reproducible_by_seed():
    real, syn = frame(3000, 1), frame(3000, 2)
    metric = get_metric("column_shapes", max_rows=200)
    assert metric.compute(real, syn, META, seed=1) == metric.compute(real, syn, META, seed=1)
    assert metric.compute(real, syn, META, seed=1) != metric.compute(real, syn, META, seed=2)


def test_evaluate_runs_what_the_context_allows():
    real, syn = frame(300, 1), frame(300, 2)
    without = evaluate(real, syn, META)
    assert "column_shapes" in without and "exact_match_share" in without
    assert not {"tstr", "dcr_share", "mia_auc", "k_anonymity", "canary_share"} & set(without)
    full = evaluate(real, syn, META, holdout=frame(300, 3), quasi_identifiers=["c"], sensitive="x",
                    canaries={"c": ["zzz"]})
    assert set(full) == set(METRICS)
    assert all(isinstance(v, float) for v in full.values())
    assert full["canary_share"] == 0.0 and full["exact_match_share"] == 0.0
    with pytest.raises(MissingContext, match="holdout"):
        evaluate(real, syn, META, names=["dcr_share"])
