"""synthlake.relations: the related tables' keys and order, and the configs they refuse."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from synthlake.relations import Relations


def col(name: str, kind: str = "categorical") -> dict:
    return {"name": name, "kind": kind}


def flights(**changes) -> dict:
    """nycflights13's star, trimmed: planes own their flights (a sequence in time), airlines are a lookup."""
    tables = {
        "airlines": {"name": "airlines", "primary_key": "carrier", "columns": [col("carrier", "identifier"),
                                                                              col("name")]},
        "planes": {"name": "planes", "primary_key": "tailnum", "columns": [col("tailnum", "identifier"),
                                                                          col("manufacturer"), col("year", "numeric")]},
        "flights": {"name": "flights", "columns": [col("tailnum", "identifier"), col("carrier", "identifier"),
                                                   col("time_hour", "datetime"), col("dep_delay", "numeric")],
                    "foreign_keys": [{"column": "tailnum", "parent": "planes"},
                                     {"column": "carrier", "parent": "airlines", "lookup": True}],
                    "order_by": "time_hour"},
    }
    for name, table in changes.items():
        tables[name] = {**tables[name], **table}
    return {"tables": list(tables.values())}


def test_a_star_schema_orders_parents_first_and_names_owners():
    rel = Relations.model_validate(flights())
    order = rel.parents_first()
    assert order.index("planes") < order.index("flights") and order.index("airlines") < order.index("flights")
    assert [t.name for t in rel.children("planes")] == ["flights"] and rel.children("airlines") == []
    assert rel.table("flights").owner.parent == "planes"


@pytest.mark.parametrize(("changes", "needle"), [
    ({"flights": {"foreign_keys": [{"column": "tail", "parent": "planes"}]}},
     "table 'flights': foreign key 'tail' is not one of its columns"),
    ({"flights": {"foreign_keys": [{"column": "tailnum", "parent": "aircraft"}]}},
     "points at table 'aircraft', which is not one of"),
    ({"planes": {"primary_key": None}}, "points at table 'planes', which has no primary_key"),
    ({"planes": {"primary_key": "year"}}, "primary_key 'year' must be of kind identifier"),
    ({"flights": {"foreign_keys": [{"column": "tailnum", "parent": "planes"},
                                   {"column": "carrier", "parent": "airlines"}]}}, "are both owners"),
    ({"flights": {"foreign_keys": [{"column": "carrier", "parent": "airlines", "lookup": True}]}},
     "order_by 'time_hour' needs an owning foreign key"),
    ({"flights": {"order_by": "carrier"}}, "order_by 'carrier' must be a numeric or datetime column"),
    ({"airlines": {"columns": [col("carrier", "identifier"), col("hub", "identifier")],
                   "foreign_keys": [{"column": "hub", "parent": "planes"}]},
      "planes": {"columns": [col("tailnum", "identifier"), col("owner", "identifier"), col("year", "numeric")],
                 "foreign_keys": [{"column": "owner", "parent": "airlines"}]}},
     "foreign keys form a cycle: airlines -> planes -> airlines"),
])
def test_bad_key_configs_are_refused_naming_them(changes, needle):
    with pytest.raises(ValidationError, match=needle.replace("(", r"\(")):
        Relations.model_validate(flights(**changes))


def test_a_table_named_twice_is_refused():
    tables = flights()["tables"]
    with pytest.raises(ValidationError, match=r"tables named twice: \['planes'\]"):
        Relations.model_validate({"tables": [*tables, tables[1]]})
