"""Generating related tables together: root rows, then each parent's children given the parent, a sequence one
position at a time given the row before it (synthlake.related_frames says what each table's model learned).

Keys are generated, never learned, and exact: a root row's key is its global row number (unique across blocks,
as `row_offset` says where a block starts), a child row's key is its parent's key, a dash and its position under
that parent ("17-0", "17-1", ...); every foreign key is its parent's generated key. So the same
(n, seed, row_offset) gives the same rows, wherever and in whatever order the blocks run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from synthlake.column_types import category_strings, to_float
from synthlake.conditions import Conditions
from synthlake.generators.ar_columns import CategoricalColumn
from synthlake.generators.base import Sampler, sample_conditional, to_frame
from synthlake.metadata import RARE_CATEGORY, ColumnKind
from synthlake.related_frames import (
    LENGTH,
    POSITION,
    TableModel,
    context_name,
    count_name,
    previous_name,
    step_name,
)
from synthlake.relations import Relations
from synthlake.seeding import block_seed

KEY = "__key"  # each generated row's key, while the tables are generated


class RelatedSampler:
    """The samplers of every related table, generating the set: `sample(n)` gives n root rows and all of their
    descendants, one pyarrow Table per table (its configured columns, keys as text). `max_children`: the most
    rows a parent draws in a table (under privacy the models learned each parent's first `unit_rows` only, and
    a count drawn from noisy bounds may be far larger)."""

    def __init__(self, relations: Relations, samplers: dict[str, Sampler], max_children: int | None = None):
        self.relations, self.samplers, self.max_children = relations, samplers, max_children
        self.order = relations.parents_first()
        self.models = {name: TableModel(relations, name) for name in self.order}

    def sample(self, n: int, seed: int, row_offset: int = 0) -> dict[str, pa.Table]:
        root = self.order[0]
        rows = {root: to_frame(self.samplers[root].sample_arrow(n, block_seed(seed, 0), row_offset))}
        rows[root][KEY] = [str(i) for i in range(row_offset, row_offset + n)]
        for index, name in enumerate(self.order[1:], start=1):
            parent = self.models[name].parent.name
            rows[name] = self._children(name, rows[parent], block_seed(seed, index))
        return {name: self._table(name, rows[name]) for name in self.order}

    def _children(self, name: str, parents: pd.DataFrame, seed: int) -> pd.DataFrame:
        """Each parent's rows in table `name`, as many as its drawn count, keyed and ordered."""
        model = self.models[name]
        counts = parents[count_name(name)].fillna(0).clip(0, self.max_children).astype(np.int64).to_numpy()
        context = pd.DataFrame({context_name(c.name): parents[c.name] for c in model.parent.learned})
        context[LENGTH] = counts
        if model.table.order_by is None:
            picked = np.repeat(np.arange(len(parents)), counts)
            drawn = self._draw(name, context.iloc[picked], seed, 0)
            drawn["parent"], drawn[POSITION] = picked, _positions(counts)
        else:
            drawn = self._sequences(name, context, counts, seed)
        drawn = drawn.sort_values(["parent", POSITION], kind="stable").reset_index(drop=True)
        parent_keys = parents[KEY].to_numpy()[drawn["parent"].to_numpy()]
        drawn[KEY] = [f"{k}-{p}" for k, p in zip(parent_keys, drawn[POSITION], strict=True)]
        drawn[model.table.owner.column] = parent_keys
        return drawn

    def _sequences(self, name: str, context: pd.DataFrame, counts: np.ndarray, seed: int) -> pd.DataFrame:
        """Position t of every sequence longer than t, given its parent and its row at t - 1."""
        model = self.models[name]
        learned = [c.name for c in model.table.learned]
        encodings = {c.name: c for c in self.samplers[name].columns}
        stepped = {c.name: encodings[c.name] for c in model.table.stepped}
        steps, last = [], None
        for t in range(int(counts.max(initial=0))):
            alive = np.flatnonzero(counts > t)
            seeds = context.iloc[alive].reset_index(drop=True)
            seeds[POSITION] = t
            for column in learned:
                seeds[previous_name(column)] = (last[column].iloc[alive].to_numpy() if last is not None
                                                else _nulls(model, column, len(alive)))
            step = self._draw(name, seeds, seed, t)
            if last is not None:
                for column, encoding in stepped.items():
                    step[column] = _after(last[column].iloc[alive].reset_index(drop=True), step[column],
                                          step[step_name(column)], column == model.table.order_by, encoding)
            step["parent"], step[POSITION] = alive, t
            steps.append(step)
            last = step.set_index(alive).reindex(range(len(counts)))
        if not steps:  # no parent has rows here
            steps.append(self._draw(name, context.iloc[:0], seed, 0).assign(parent=np.zeros(0, np.int64)))
        return pd.concat(steps, ignore_index=True)

    def _draw(self, name: str, seeds: pd.DataFrame, seed: int, step: int) -> pd.DataFrame:
        seeds = _known(seeds.reset_index(drop=True), self.samplers[name])
        conditions = Conditions(seed_rows=seeds)
        table = sample_conditional(self.samplers[name], len(seeds), block_seed(seed, step), 0, conditions)
        return to_frame(table)

    def _table(self, name: str, rows: pd.DataFrame) -> pa.Table:
        """The table's configured columns; its keys and identifiers are the generated keys."""
        table = self.models[name].table
        parent_keys = {fk.column for fk in table.foreign_keys}
        columns = {}
        for spec in table.columns:
            if spec.name in parent_keys:
                columns[spec.name] = pa.array(rows[spec.name], pa.string())
            elif spec.kind == ColumnKind.IDENTIFIER:
                columns[spec.name] = pa.array(rows[KEY], pa.string())
            else:
                columns[spec.name] = pa.array(rows[spec.name], from_pandas=True)
        return pa.table(columns)


def _known(context: pd.DataFrame, sampler) -> pd.DataFrame:
    """Seed values (a parent's, the previous row's) as the child's model can be given them. A category (or a null)
    generated elsewhere that this model never saw in that column (a parent with no children in training; "other",
    where the previous row's column kept every category; rows left out by the training budget) becomes the
    column's "other" token where it has one, else its most frequent category; an unseen null of a number, the
    middle of its range."""
    columns = {c.name: c for c in sampler.columns}
    out = {}
    for name, values in context.items():
        column = columns[name]
        missing = values.isna()
        if isinstance(column, CategoricalColumn):
            labels = category_strings(values)
            unknown = ~missing & ~labels.isin(column.categories)
            fallback = RARE_CATEGORY if column.rare else column.categories[0]
            values = labels.where(~unknown & (~missing | column.null), fallback)
        elif missing.any() and column.null_token is None:
            low, high = _range(column)
            middle = float(round((low + high) / 2)) if column.integer else (low + high) / 2
            if pd.api.types.is_datetime64_any_dtype(values):
                middle = pd.Timestamp(round(middle * 1e6), unit="us", tz=values.dt.tz)  # Arrow's timestamp[us]
            values = values.fillna(middle)
        out[name] = values
    return pd.DataFrame(out, index=context.index)


def _positions(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., count - 1 for each parent, concatenated."""
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(int(counts.sum())) - starts


def _nulls(model: TableModel, column: str, n: int):
    """The previous row's value at position 0: null, typed as the column is."""
    kind = model.table.spec(column).kind
    if kind == ColumnKind.DATETIME:
        return pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]")
    if kind == ColumnKind.NUMERIC:
        return np.full(n, np.nan)
    return pd.Series([None] * n, dtype=object)


def _after(previous: pd.Series, drawn: pd.Series, step: pd.Series, monotone: bool, column) -> pd.Series:
    """A stepped column after the previous row: the previous value plus the drawn step, within the values the
    column was learned on and rounded as it rounds (`column`: its encoding); where either is null, the drawn
    value (a column that turns null, or stops being so). The order column never steps back: a null step (rare
    past position 0) keeps the previous time."""
    before, own = to_float(previous), to_float(drawn)
    moved = step.to_numpy(dtype=float, na_value=np.nan)
    if monotone:
        moved = np.maximum(np.nan_to_num(moved, nan=0.0), 0.0)
    low, high = _range(column)
    x = np.clip(before + moved, low, high)
    grain = (column.resolution or 1e-6) if column.datetime else (1.0 if column.integer else None)
    if grain:
        x = np.round(x / grain) * grain
    x = np.where(np.isnan(x), own, x)
    if column.datetime:
        values = pd.to_datetime(np.round(x * 1e6), unit="us")  # whole microseconds: Arrow's timestamp[us]
        return pd.Series(values.tz_localize(drawn.dt.tz) if drawn.dt.tz else values)
    return pd.Series(x)


def _range(column) -> tuple[float, float]:
    """The smallest and largest value a fitted tabular_ar column generates (seconds for a datetime)."""
    if column.values is not None:
        return float(min(column.values)), float(max(column.values))
    return float(column.knots[0][0]), float(column.knots[-1][-1])
