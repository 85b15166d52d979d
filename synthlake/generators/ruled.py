"""A Sampler wrapped in a dataset's business rules (synthlake.rules): its rows hold them by construction.

The folder it saves holds sampler.json {"generator": "ruled", "inner": "inner"}, the fitted rules (rules.json)
and the inner sampler in inner/; synthlake.generators.load_sampler dispatches "ruled" here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from synthlake.column_types import storage_type
from synthlake.conditions import ConditionError, Conditions
from synthlake.generators.base import SAMPLER_FILE, Sampler, sample_conditional, to_frame, write_sampler_file
from synthlake.metadata import ColumnSpec, TableMetadata
from synthlake.rules import RULES_FILE, RuleSet

RULED = "ruled"  # sampler.json's "generator" for a RuledSampler
INNER = "inner"  # the inner sampler's folder, inside the RuledSampler's


class RuledSampler:
    """A Sampler whose rows hold the rules: the inner sampler (trained on rules.transform of the real rows)
    samples learned rows, rules.reverse turns them into rows of the table. Every rule's reverse works row by
    row (row numbers from row_offset), so the contract carries over: the same (n, seed, row_offset) gives the
    same rows, a shorter sample is a prefix of a longer one, blocks sampled apart stay unique together."""

    def __init__(self, inner: Sampler, rules: RuleSet):
        if inner.metadata != rules.learned_metadata():
            raise ValueError("the inner sampler was not trained on the rules' learned table (learned_metadata)")
        self.inner, self.rules, self.metadata = inner, rules, rules.metadata

    def sample_arrow(self, n: int, seed: int, row_offset: int = 0, conditions: Conditions | None = None) -> pa.Table:
        """`conditions` go to the inner sampler: they may name only columns that no rule produces, which the
        inner sampler learns as they are."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if conditions:
            self._check(conditions)
            learned = to_frame(sample_conditional(self.inner, n, seed, row_offset, conditions))
        else:
            learned = to_frame(self.inner.sample_arrow(n, seed, row_offset))
        return to_arrow(self.rules.reverse(learned, row_offset), self.metadata)

    def _check(self, conditions: Conditions) -> None:
        where = conditions.check(self.metadata)
        produced = {c: r for r in self.rules.rules for c in r.writes}
        for name in [*where, *(c for columns in conditions.fixed_columns().values() for c in columns)]:
            if name in produced:
                raise ConditionError(f"column {name!r} is produced by {produced[name].label}: conditions may "
                                     "name only columns that no rule produces")

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.inner.save(directory / INNER)
        (directory / RULES_FILE).write_text(json.dumps(self.rules.state(), indent=1))
        write_sampler_file(directory, RULED, {"inner": INNER})  # last: a folder with it is complete

    @classmethod
    def load(cls, directory: str | Path) -> RuledSampler:
        from synthlake.generators import load_sampler  # here: the registry will dispatch "ruled" to this module

        directory = Path(directory)
        sampler = json.loads((directory / SAMPLER_FILE).read_text())
        if sampler.get("generator") != RULED:
            raise ValueError(f"{directory} holds a {sampler.get('generator')!r} sampler, not a ruled one")
        rules = RuleSet.from_state(json.loads((directory / RULES_FILE).read_text()))
        return cls(load_sampler(directory / sampler["inner"]), rules)


def to_arrow(frame: pd.DataFrame, metadata: TableMetadata) -> pa.Table:
    """Rows as the other samplers give them: int64, float64, timestamp[us] in the column's zone, string."""
    return pa.table({spec.name: _arrow(frame[spec.name], spec) for spec in metadata.columns})


def _arrow(series: pd.Series, spec: ColumnSpec) -> pa.Array:
    kind = storage_type(spec)
    if kind == "timestamp":
        array = pa.array(series)
        return array.cast(pa.timestamp("us", array.type.tz))
    return pa.array(series, type={"bigint": pa.int64(), "double": pa.float64(), "string": pa.string()}[kind])
