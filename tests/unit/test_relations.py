"""synthlake.relations: the related tables' keys and order, and the configs they refuse."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from synthlake.relations import Relations


def col(name: str, kind: str = "categorical") -> dict:
    return {"name": name, "kind": kind}


def flights(**changes) -> dict:
    """nycflights13, trimmed: planes own their flights (a sequence in time), which own their delays."""
    tables = {
        "planes": {"name": "planes", "primary_key": "tailnum", "columns": [col("tailnum", "identifier"),
                                                                          col("manufacturer"), col("year", "numeric")]},
        "flights": {"name": "flights", "primary_key": "id",
                    "columns": [col("id", "identifier"), col("tailnum", "identifier"), col("carrier"),
                                col("time_hour", "datetime"), col("dep_delay", "numeric")],
                    "foreign_keys": [{"column": "tailnum", "parent": "planes"}], "order_by": "time_hour"},
        "delays": {"name": "delays", "columns": [col("flight", "identifier"), col("minutes", "numeric")],
                   "foreign_keys": [{"column": "flight", "parent": "flights"}]},
    }
    for name, table in changes.items():
        tables[name] = {**tables[name], **table}
    return {"tables": list(tables.values())}


def test_a_tree_orders_parents_first_and_names_its_root_and_children():
    rel = Relations.model_validate(flights())
    assert rel.parents_first() == ["planes", "flights", "delays"]
    assert rel.root.name == "planes"
    assert [t.name for t in rel.children("planes")] == ["flights"] and rel.children("delays") == []
    assert rel.table("flights").owner.parent == "planes"


@pytest.mark.parametrize(("changes", "needle"), [
    ({"flights": {"foreign_keys": [{"column": "tail", "parent": "planes"}]}},
     "table 'flights': foreign key 'tail' is not one of its columns"),
    ({"flights": {"foreign_keys": [{"column": "tailnum", "parent": "aircraft"}]}},
     "points at table 'aircraft', which is not one of"),
    ({"planes": {"primary_key": None}}, "points at table 'planes', which has no primary_key"),
    ({"planes": {"primary_key": "year"}}, "primary_key 'year' must be of kind identifier"),
    ({"flights": {"foreign_keys": [{"column": "carrier", "parent": "planes"}]}},
     "foreign key 'carrier' must be of kind identifier"),
    ({"flights": {"foreign_keys": [{"column": "tailnum", "parent": "planes"}, {"column": "id", "parent": "planes"}]}},
     "a table has one parent"),
    ({"flights": {"foreign_keys": []}}, "order_by 'time_hour' needs a foreign key"),
    ({"flights": {"order_by": "carrier"}}, "order_by 'carrier' must be a numeric or datetime column"),
    ({"flights": {"steps": ["carrier"]}},
     r"steps: 'carrier' is not one of its learned numeric or datetime columns \['time_hour', 'dep_delay'\]"),
    ({"delays": {"steps": ["minutes"]}}, r"steps \['minutes'\] need an order_by"),
    ({"delays": {"foreign_keys": []}}, r"tables \['planes', 'delays'\] have no foreign key"),
    ({"planes": {"columns": [col("tailnum", "identifier"), col("last", "identifier"), col("year", "numeric")],
                 "foreign_keys": [{"column": "last", "parent": "flights"}]}},
     "foreign keys form a cycle: planes -> flights -> planes"),
])
def test_bad_key_configs_are_refused_naming_them(changes, needle):
    with pytest.raises(ValidationError, match=needle.replace("(", r"\(")):
        Relations.model_validate(flights(**changes))


def test_a_table_named_twice_is_refused():
    tables = flights()["tables"]
    with pytest.raises(ValidationError, match=r"tables named twice: \['planes'\]"):
        Relations.model_validate({"tables": [*tables, tables[0]]})
