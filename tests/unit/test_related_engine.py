"""Related tables in the engine: the model rows each table learns (synthlake.related_frames) and the set generated
from them with exact keys (synthlake.related_sampler), on a slice of the storms demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from synthlake.generators import get_generator
from synthlake.related_frames import TableModel, kept_labels
from synthlake.related_sampler import RelatedSampler
from synthlake.relations import Relations

STORMS = Path(__file__).parents[2] / "data" / "storms"


def col(name: str, kind: str = "categorical", **options) -> dict:
    return {"name": name, "kind": kind, **options}


def relations(**observation_changes) -> Relations:
    observations = {"name": "observations", "primary_key": "observation_id", "order_by": "time",
                    "foreign_keys": [{"column": "storm_id", "parent": "storms"}],
                    "columns": [col("observation_id", "identifier"), col("storm_id", "identifier"),
                                col("time", "datetime"), col("lat", "numeric"), col("status"),
                                col("wind", "numeric", integer=True)]}
    return Relations.model_validate({"tables": [
        {"name": "storms", "primary_key": "storm_id",
         "columns": [col("storm_id", "identifier"), col("name"), col("year", "numeric", integer=True)]},
        {**observations, **observation_changes}]})


def real_tables(storms: int = 120) -> dict[str, pd.DataFrame]:
    parents = pd.read_csv(STORMS / "storms.csv").head(storms)
    children = pd.read_csv(STORMS / "observations.csv", parse_dates=["time"])
    children = children[children["storm_id"].isin(parents["storm_id"])]
    return {"storms": parents, "observations": children[["observation_id", "storm_id", "time", "lat", "status",
                                                         "wind"]]}


def fit(rel: Relations, real: dict[str, pd.DataFrame]) -> RelatedSampler:
    samplers = {}
    for name in rel.parents_first():
        model = TableModel(rel, name)
        parent = real[model.parent.name] if model.parent else None
        labels = kept_labels(samplers[model.parent.name]) if model.parent else None
        frame, _ = model.training_frame(real[name], parent, {c: real[c] for c in model.children}, labels)
        generator = get_generator("tabular_ar")(model.metadata, epochs=3, hidden_dim=32, batch_size=256)
        samplers[name] = generator.fit(frame, seed=0).freeze()
    return RelatedSampler(rel, samplers)


@pytest.fixture(scope="module")
def sampler() -> RelatedSampler:
    return fit(relations(), real_tables())


def test_a_sequence_learns_its_parent_position_previous_row_and_steps():
    rows = pd.DataFrame({"observation_id": ["a", "b", "c", "d"], "storm_id": ["s2", "s1", "s1", "gone"],
                         "time": pd.to_datetime(["2000-01-01 06:00", "2000-01-01 06:00", "2000-01-01 00:00",
                                                 "2000-01-01 00:00"]),
                         "lat": [10.0, 21.5, 20.0, 0.0], "status": ["x", "y", "x", "x"], "wind": [30, 45, 40, 0]})
    parents = pd.DataFrame({"storm_id": ["s1", "s2"], "name": ["Amy", "Bob"], "year": [2000, 2001]})
    frame, orphans = TableModel(relations(), "observations").training_frame(rows, parents)
    assert orphans == 1  # "gone" names no storm: left out, and counted
    assert frame["parent.name"].tolist() == ["Amy", "Amy", "Bob"] and frame["__length"].tolist() == [2, 2, 1]
    assert frame["__position"].tolist() == [0, 1, 0]  # s1's rows in time order, then s2's
    assert frame["lat"].tolist() == [20.0, 21.5, 10.0] and frame["prev.lat"].iloc[1] == 20.0
    assert frame["prev.status"].iloc[1] == "x" and frame["prev.status"].isna().tolist() == [True, False, True]
    assert frame["step.time"].iloc[1] == 6 * 3600 and frame["step.wind"].iloc[1] == 5
    counts, _ = TableModel(relations(), "storms").training_frame(parents, children={"observations": rows})
    assert counts["__count.observations"].tolist() == [2, 1]
    only_lat, _ = TableModel(relations(steps=["lat"]), "observations").training_frame(rows, parents)
    assert [c for c in only_lat if c.startswith("step.")] == ["step.time", "step.lat"]  # wind: drawn as itself


def test_keys_are_unique_and_every_child_points_at_a_generated_parent(sampler):
    tables = sampler.sample(40, seed=3, row_offset=1000)
    storms, observations = tables["storms"].to_pandas(), tables["observations"].to_pandas()
    assert storms["storm_id"].tolist() == [str(i) for i in range(1000, 1040)]
    assert observations["observation_id"].is_unique and len(observations) > 40
    assert observations["storm_id"].isin(storms["storm_id"]).all()
    positions = observations.groupby("storm_id").cumcount().astype(str)
    assert (observations["observation_id"] == observations["storm_id"] + "-" + positions).all()
    assert list(observations.columns) == ["observation_id", "storm_id", "time", "lat", "status", "wind"]


def test_each_sequence_runs_forward_in_time_within_the_learned_range(sampler):
    observations = sampler.sample(40, seed=4)["observations"].to_pandas()
    gaps = observations.groupby("storm_id")["time"].diff().dropna()
    assert (gaps >= pd.Timedelta(0)).all() and gaps.median() == pd.Timedelta(hours=6)
    real = real_tables()["observations"]
    assert observations["lat"].between(real["lat"].min(), real["lat"].max()).all()
    lengths = observations.groupby("storm_id").size()
    assert lengths.max() <= real.groupby("storm_id").size().max()


def test_the_same_block_gives_the_same_rows_and_another_block_other_keys(sampler):
    first, again = sampler.sample(20, seed=5, row_offset=0), sampler.sample(20, seed=5, row_offset=0)
    assert all(first[name].equals(again[name]) for name in first)
    other = sampler.sample(20, seed=6, row_offset=20)
    assert not set(other["observations"]["observation_id"].to_pylist()) & set(
        first["observations"]["observation_id"].to_pylist())


def test_a_column_named_like_a_derived_one_is_refused():
    rel = relations(columns=[col("observation_id", "identifier"), col("storm_id", "identifier"),
                             col("time", "datetime"), col("prev.time", "datetime")])
    with pytest.raises(ValueError, match=r"table 'observations': columns \['prev.time'\] clash"):
        TableModel(rel, "observations")


def test_no_root_rows_give_empty_tables_with_their_columns(sampler):
    tables = sampler.sample(0, seed=1)
    assert tables["storms"].num_rows == 0 and tables["observations"].num_rows == 0
    assert tables["observations"].column_names == ["observation_id", "storm_id", "time", "lat", "status", "wind"]


def test_a_parent_value_the_childs_model_never_saw_is_given_as_one_it_knows(sampler):
    from synthlake.metadata import RARE_CATEGORY
    from synthlake.related_sampler import _known

    child = sampler.samplers["observations"]
    columns = {c.name: c for c in child.columns}
    context = pd.DataFrame({"parent.name": ["No such storm", columns["parent.name"].categories[-1]],
                            "parent.year": [1990.0, float("nan")]})
    known = _known(context, child)
    name = columns["parent.name"]
    assert known["parent.name"].iloc[0] == (RARE_CATEGORY if name.rare else name.categories[0])
    assert known["parent.name"].iloc[1] == context["parent.name"].iloc[1]  # a known one stays
    assert known["parent.year"].notna().all() and known["parent.year"].iloc[0] == 1990.0  # no null year seen
    for column in ("parent.name", "parent.year"):
        columns[column].encode(known[column])  # no "not seen when fitting"


def test_an_unseen_null_becomes_the_middle_of_its_range_as_its_column_holds_values():
    from types import SimpleNamespace

    from synthlake.generators.ar_columns import NumericColumn
    from synthlake.related_sampler import _known

    # a DP encoding keeps no null token and knots at fractions of a second
    time = NumericColumn("prev.time", datetime=True, resolution=1.0, edges=[0.0, 1.0],
                         knots=[[1e9 + 0.1234567, 1e9 + 7.0000001]])
    context = pd.DataFrame({"prev.time": pd.Series([pd.NaT, pd.Timestamp("2001-09-09 01:46:41")])})
    known = _known(context, SimpleNamespace(columns=[time]))
    middle = known["prev.time"].iloc[0]
    assert middle.value % 1000 == 0 and abs(middle.value / 1e9 - (2e9 + 7.1234568) / 2) < 1e-6
    pa.array(known["prev.time"], pa.timestamp("us"))  # castable without losing data
    wind = NumericColumn("prev.wind", integer=True, edges=[0.0, 1.0], knots=[[10.0, 25.0]])
    filled = _known(pd.DataFrame({"prev.wind": [np.nan, 12.0]}), SimpleNamespace(columns=[wind]))["prev.wind"]
    assert filled.tolist() == [18.0, 12.0]  # an integer column's middle is a whole number


def test_a_stepped_value_rounds_as_its_column_and_the_order_never_steps_back():
    from synthlake.generators.ar_columns import NumericColumn
    from synthlake.related_sampler import _after

    hourly = NumericColumn("time_hour", datetime=True, resolution=3600.0, edges=[],
                           knots=[[1.3569e9, 1.3595e9]])
    previous = pd.Series(pd.to_datetime(["2013-01-01 10:00", "2013-01-02 00:00", "2013-01-03 00:00"]))
    drawn = pd.Series(pd.to_datetime(["2013-01-05", "2013-01-05", "2013-01-01"]))
    steps = pd.Series([3599.7, -7200.0, np.nan])  # not whole hours; backwards; null
    after = _after(previous, drawn, steps, True, hourly)
    assert after.tolist() == [pd.Timestamp("2013-01-01 11:00"), pd.Timestamp("2013-01-02 00:00"),
                              pd.Timestamp("2013-01-03 00:00")]
    assert pa.array(after).cast(pa.timestamp("us")).null_count == 0  # whole microseconds: castable
    wind = NumericColumn("wind", integer=True, values=[10.0, 20.0, 160.0])
    assert _after(pd.Series([150.0, 40.0]), pd.Series([20.0, 20.0]), pd.Series([15.2, np.nan]), False,
                  wind).tolist() == [160.0, 20.0]  # clipped to the learned range; a null step: the drawn value


def test_column_names_with_spaces_dots_quotes_and_unicode_survive_the_set():
    parents = pd.DataFrame({"key id": [f"p{i}" for i in range(60)], "type.kind": ["a", "b", "c"] * 20})
    rng = np.random.default_rng(0)
    rows = [(f"p{i}", t, float(rng.normal())) for i in range(60) for t in range(i % 4 + 1)]
    children = pd.DataFrame(rows, columns=["parent's key", "tìme", "wind speed"])
    children["tìme"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(children["tìme"] * 6, unit="h")
    rel = Relations.model_validate({"tables": [
        {"name": "parents", "primary_key": "key id", "columns": [col("key id", "identifier"), col("type.kind")]},
        {"name": "children", "foreign_keys": [{"column": "parent's key", "parent": "parents"}], "order_by": "tìme",
         "columns": [col("parent's key", "identifier"), col("tìme", "datetime"), col("wind speed", "numeric")]}]})
    tables = fit(rel, {"parents": parents, "children": children}).sample(30, seed=1)
    out = tables["children"].to_pandas()
    assert list(out.columns) == ["parent's key", "tìme", "wind speed"]
    assert out["parent's key"].isin(tables["parents"].to_pandas()["key id"]).all() and len(out) > 30


def test_max_children_bounds_every_parents_rows(sampler):
    from synthlake.related_sampler import RelatedSampler

    free = sampler.sample(40, seed=3)["observations"].column("storm_id").value_counts()
    assert max(v["counts"].as_py() for v in free) > 2  # the model draws more
    bounded = RelatedSampler(sampler.relations, sampler.samplers, max_children=2).sample(40, seed=3)
    counts = bounded["observations"].column("storm_id").value_counts()
    assert max(v["counts"].as_py() for v in counts) <= 2
