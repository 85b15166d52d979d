"""Related tables' figures (synthlake.evaluation.sequences) and their report (synthlake.related_report), on the
storms demo's observations against themselves and against a copy whose rows are shuffled across storms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthlake.evaluation.sequences import autocorrelation, children_per_parent, coherence, length_similarity
from synthlake.metadata import ColumnSpec
from synthlake.related_report import Family, render_related_report

STORMS = Path(__file__).parents[2] / "data" / "storms"
SPECS = [ColumnSpec(name="status", kind="categorical"), ColumnSpec(name="lat", kind="numeric"),
         ColumnSpec(name="wind", kind="numeric", integer=True)]


@pytest.fixture(scope="module")
def observations() -> pd.DataFrame:
    return pd.read_csv(STORMS / "observations.csv", parse_dates=["time"])


def shuffled(rows: pd.DataFrame) -> pd.DataFrame:
    """The same values per column, each column's rows in another order: sequences lose their coherence."""
    out = rows.copy()
    for i, spec in enumerate(SPECS):
        out[spec.name] = rows[spec.name].sample(frac=1, random_state=i).to_numpy()
    return out


def test_sequences_coherent_with_themselves_score_one_and_shuffled_ones_far_less(observations):
    same = coherence(observations, observations, "storm_id", "time", SPECS)
    assert same == pytest.approx(dict.fromkeys(["status", "lat", "wind"], 1.0))
    mixed = coherence(observations, shuffled(observations), "storm_id", "time", SPECS)
    assert max(mixed.values()) < 0.7  # the marginals are identical: only the transitions differ
    assert autocorrelation(observations, "storm_id", "time", "lat") > 0.9
    assert abs(autocorrelation(shuffled(observations), "storm_id", "time", "lat")) < 0.2


def test_length_similarity_is_one_minus_the_ks_distance_of_children_per_parent():
    parents = pd.Series(["a", "b", "c", "d"])
    real = children_per_parent(parents, pd.Series(["a", "a", "b", "c", "c", "c"]))
    assert real.tolist() == [2, 1, 3, 0]  # d has none
    assert length_similarity(real, real) == 1.0
    assert length_similarity(real, real + 10) == 0.0
    assert length_similarity(np.array([1.0, 2.0]), np.array([1.0, 1.0])) == 0.5


def test_the_report_draws_lengths_sequences_and_transitions(observations):
    lengths = observations.groupby("storm_id").size().to_numpy(dtype=float)
    family = Family("observations", "storm_id", "time", SPECS, lengths, lengths, observations,
                    shuffled(observations))
    checks = [{"check": "coherence:observations", "family": "sequences", "value": 0.41, "threshold": 0.5,
               "op": ">=", "passed": False}]
    html = render_related_report(dataset="storms", run_id="r<1>", passed=False, checks=checks, families=[family])
    assert "FAILED" in html and "coherence:observations" in html and "r&lt;1&gt;" in html
    for section in ("Children per parent", "Sequences, real and synthetic", "Transitions"):
        assert section in html
    assert html.count("<img") == 3


def test_parent_child_trends_are_one_on_the_real_families_and_lower_when_children_change_parents(observations):
    from synthlake.evaluation.sequences import parent_child_trends

    storms = pd.read_csv(STORMS / "storms.csv")
    storms["reported"] = storms["storm_id"].map(observations["storm_id"].value_counts())  # goes with the count
    parent_specs = [ColumnSpec(name="reported", kind="numeric", integer=True)]
    real = (storms, observations)
    assert parent_child_trends(real, real, "storm_id", "storm_id", "time", parent_specs, SPECS) == pytest.approx(1.0)
    moved = observations.copy()
    moved["storm_id"] = moved["storm_id"].sample(frac=1, random_state=0).to_numpy()  # other storms' rows
    assert parent_child_trends(real, (storms, moved), "storm_id", "storm_id", "time", parent_specs, SPECS) < 0.9


# ---- privacy by entity ---------------------------------------------------------------------------------------
def entity_sets():
    from test_related_engine import real_tables, relations

    from synthlake.related_frames import ENTITY, HOLDOUT, with_entities

    rel = relations()
    marked = with_entities(real_tables(200), rel, (0.5, 7))
    sides = {side: {n: t[t[HOLDOUT] == flag].drop(columns=[ENTITY, HOLDOUT]) for n, t in marked.items()}
             for side, flag in (("train", "false"), ("holdout", "true"))}
    return rel, sides["train"], sides["holdout"]


def test_entities_are_held_out_whole_and_by_a_seeded_hash():
    from test_related_engine import real_tables, relations

    from synthlake.related_frames import ENTITY, HOLDOUT, held_out, with_entities

    marked = with_entities(real_tables(200), relations(), (0.3, 7))
    sides = marked["observations"].groupby(ENTITY)[HOLDOUT].nunique()
    assert (sides == 1).all()  # every row of an entity on its entity's side
    storms = marked["storms"]
    assert 0.2 < (storms[HOLDOUT] == "true").mean() < 0.4
    again = held_out(storms[ENTITY], 0.3, 7)
    assert (again == (storms[HOLDOUT] == "true")).all() and not (again == held_out(storms[ENTITY], 0.3, 8)).all()


def test_an_entity_copied_whole_is_an_exact_match_and_one_changed_row_is_not():
    from synthlake.evaluation.entities import entity_match_shares

    rel, train, holdout = entity_sets()
    storms, observations = train["storms"], train["observations"]
    copied = storms.head(4)
    synthetic = {"storms": copied, "observations": observations[observations["storm_id"].isin(copied["storm_id"])]}
    assert entity_match_shares(rel, train, holdout, synthetic)["entity_exact_match_share"] == 1.0
    changed = synthetic["observations"].copy()
    changed.loc[changed.index[0], "wind"] += 5  # one observation of the first storm differs
    shuffled = changed.sample(frac=1.0, random_state=0)  # the rows' order does not matter
    assert entity_match_shares(rel, train, holdout, {"storms": copied, "observations": shuffled})[
        "entity_exact_match_share"] == 0.75


def test_a_copy_counts_as_unique_only_when_no_other_real_entity_equals_it():
    from synthlake.evaluation.entities import entity_match_shares

    def shares(holdout, synthetic):
        found = entity_match_shares(rel, train, holdout, synthetic)
        return found["entity_exact_match_share"], found["entity_unique_match_share"]

    rel, train, holdout = entity_sets()
    copied = train["storms"].head(4)
    synthetic = {"storms": copied, "observations": train["observations"][train["observations"]["storm_id"]
                                                                         .isin(copied["storm_id"])]}
    assert shares(holdout, synthetic) == (1.0, 1.0)
    # a held-out twin of the first storm: the same content under another key, so its copy singles out no one
    twin_storm = copied.head(1).assign(storm_id="twin")
    twin_rows = synthetic["observations"][synthetic["observations"]["storm_id"] == copied["storm_id"].iloc[0]]
    holdout = {"storms": pd.concat([holdout["storms"], twin_storm]),
               "observations": pd.concat([holdout["observations"], twin_rows.assign(storm_id="twin")])}
    assert shares(holdout, synthetic) == (1.0, 0.75)
    assert shares(holdout, holdout)[1] == 0.0


def test_entity_dcr_is_one_on_copies_of_training_entities_and_low_on_holdout_ones():
    from synthlake.evaluation.entities import entity_dcr_share

    rel, train, holdout = entity_sets()
    assert entity_dcr_share(rel, train, holdout, train) == pytest.approx(1.0, abs=0.05)
    # the larger side is sampled down to equal numbers: a holdout entity left out may sit nearer a training one
    assert entity_dcr_share(rel, train, holdout, holdout) < 0.2
