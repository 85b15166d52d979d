"""What each related table's generator learns: one flat row per table row, so that any flat generator (tabular_ar)
learns it, and its conditional sampler generates a parent's children given the parent.

A table's model row holds, in this order (the context first, so it is what the rest is drawn given):
- its parent's learned columns (`parent.<column>`) and how many rows the parent has in this table (`__length`);
- for a sequence (`order_by`): the row's position (`__position`), the previous row's learned columns
  (`prev.<column>`, null at position 0) and, for the order column and those of `steps` (RelatedTable.stepped),
  its step from the previous row (`step.<column>`, seconds for a datetime): what a row is depends on the one
  before it, the time gaps are learned, and a value that moves a little each row (a storm's position) is
  generated as its step, finely;
- its own learned columns;
- for each table it owns, how many rows it has there (`__count.<child>`): a parent draws its number of children.
Keys are never learned: they are generated (synthlake.related_sampler).

Each model row also carries its entity (`__entity`: the root row's key; an entity is a root row with all of its
descendants) and whether that entity is held out (`__holdout`): neither is learned. The holdout is by entity,
so that no table's model learned anything of a holdout entity (entity-level DCR compares against them). Under
differential privacy the entity is the unit: each parent keeps its first `unit_rows` children per table
(`capped`), and each table's model is trained private per entity (synthlake.generators.ar_dp).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthlake.column_types import category_strings, to_float
from synthlake.metadata import RARE_CATEGORY, ColumnKind, ColumnSpec, TableMetadata
from synthlake.relations import RelatedTable, Relations

LENGTH = "__length"
POSITION = "__position"
ENTITY = "__entity"  # the root row's key: the entity of every row under it (the unit of privacy)
HOLDOUT = "__holdout"  # "true" on the rows of the entities held out of training (pipelines.source.split)


def context_name(column: str) -> str:
    return f"parent.{column}"


def previous_name(column: str) -> str:
    return f"prev.{column}"


def step_name(column: str) -> str:
    return f"step.{column}"


def count_name(child: str) -> str:
    return f"__count.{child}"


class TableModel:
    """The model row of one related table: its columns (`metadata`) and how to build it from real rows."""

    def __init__(self, relations: Relations, name: str):
        self.table = relations.table(name)
        self.parent: RelatedTable | None = relations.table(self.table.owner.parent) if self.table.owner else None
        self.child_tables = {t.name: t for t in relations.children(name)}
        self.children = list(self.child_tables)
        head, counts = self.context_specs + self.sequence_specs, [_integer(count_name(c)) for c in self.children]
        clash = sorted(({c.name for c in head + counts} | {ENTITY, HOLDOUT}) & set(self.table.metadata.names))
        if clash:
            raise ValueError(f"table '{name}': columns {clash} clash with the names synthlake derives for the "
                             "related tables' models; rename them")
        marks = [ColumnSpec(name=name, kind=ColumnKind.IDENTIFIER) for name in (ENTITY, HOLDOUT)]  # not learned
        self.metadata = TableMetadata(columns=head + self.own_specs + counts + marks)

    @property
    def own_specs(self) -> list[ColumnSpec]:
        """The table's learned columns and its PII (generated from fakes); keys and identifiers are generated."""
        return [c for c in self.table.columns if c.kind != ColumnKind.IDENTIFIER]

    @property
    def context_specs(self) -> list[ColumnSpec]:
        if self.parent is None:
            return []
        return [_renamed(c, context_name(c.name)) for c in self.parent.learned] + [_integer(LENGTH)]

    @property
    def sequence_specs(self) -> list[ColumnSpec]:
        if self.table.order_by is None:
            return []
        steps = [ColumnSpec(name=step_name(c.name), kind=ColumnKind.NUMERIC, integer=c.integer)
                 for c in self.table.stepped]
        return [_integer(POSITION)] + [_renamed(c, previous_name(c.name)) for c in self.table.learned] + steps

    def training_frame(self, rows: pd.DataFrame, parent_rows: pd.DataFrame | None = None,
                       children: dict[str, pd.DataFrame] | None = None,
                       parent_labels: dict[str, list[str]] | None = None) -> tuple[pd.DataFrame, int]:
        """(the model rows of the table's real `rows`, how many rows were left out because their foreign key
        names no parent row: an orphan, or null). `parent_rows` are the parent's real rows (unique keys);
        `children` each owned table's real rows; `parent_labels` the categories the parent's model keeps (see
        `kept_labels`): the others are seen as it generates them, RARE_CATEGORY."""
        parts: dict[str, pd.Series] = {}
        orphans = 0
        if self.parent is not None:
            rows, orphans = self._with_parent(rows, parent_rows)
            self._add_parent_context(parts, rows, parent_rows, parent_labels or {})
        rows = rows.reset_index(drop=True)
        for c in self.own_specs:
            parts[c.name] = rows[c.name]
        for child in self.children:
            parts[count_name(child)] = self._counts(rows, child, children[child])
        for mark in (ENTITY, HOLDOUT):  # see `with_entities`; rows without them: null (trained on)
            parts[mark] = rows[mark] if mark in rows else pd.Series([None] * len(rows), dtype=object)
        return pd.DataFrame(parts), orphans

    def _with_parent(self, rows: pd.DataFrame, parent_rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        """The rows whose parent is there, grouped by parent and, in a sequence, ordered within it."""
        fk = self.table.owner.column
        known = rows[fk].isin(parent_rows[self.parent.primary_key])
        rows = rows[known]
        order = [fk] + ([self.table.order_by] if self.table.order_by else [])
        return rows.sort_values(order, kind="stable").reset_index(drop=True), int((~known).sum())

    def _add_parent_context(self, parts: dict, rows: pd.DataFrame, parent_rows: pd.DataFrame,
                            parent_labels: dict[str, list[str]]) -> None:
        fk = self.table.owner.column
        parent = parent_rows.set_index(self.parent.primary_key).loc[rows[fk]].reset_index(drop=True)
        for c in self.parent.learned:
            values = parent[c.name]
            if c.name in parent_labels:
                labels = category_strings(values)
                values = labels.where(labels.isna() | labels.isin(parent_labels[c.name]), RARE_CATEGORY)
            parts[context_name(c.name)] = values
        groups = rows.groupby(fk, sort=False)
        parts[LENGTH] = groups[fk].transform("size")
        if self.table.order_by is None:
            return
        parts[POSITION] = groups.cumcount()
        learned = [c.name for c in self.table.learned]
        previous = groups[learned].shift(1)
        for name in learned:
            parts[previous_name(name)] = previous[name]
        for c in self.table.stepped:
            parts[step_name(c.name)] = pd.Series(to_float(rows[c.name]) - to_float(previous[c.name]))

    def _counts(self, rows: pd.DataFrame, child: str, child_rows: pd.DataFrame) -> pd.Series:
        per_parent = child_rows[self.child_tables[child].owner.column].value_counts()
        return rows[self.table.primary_key].map(per_parent).fillna(0).astype(np.int64)


def capped(real: dict[str, pd.DataFrame], relations: Relations, unit_rows: int) -> dict[str, pd.DataFrame]:
    """The real tables with each parent's first `unit_rows` rows in each child table (in `order_by` order, else
    as read), and the rows under a row left out left out too: an entity then has at most unit_rows ** depth rows
    in a table `depth` levels under the root (`entity_rows`)."""
    out = dict(real)
    for name in relations.parents_first():
        table = relations.table(name)
        if table.owner is None:
            continue
        parent = relations.table(table.owner.parent)
        rows = out[name][out[name][table.owner.column].isin(out[parent.name][parent.primary_key])]
        if table.order_by is not None:
            rows = rows.sort_values([table.owner.column, table.order_by], kind="stable")
        out[name] = rows[rows.groupby(table.owner.column, sort=False).cumcount() < unit_rows]
    return out


def entity_rows(relations: Relations, name: str, unit_rows: int) -> int:
    """The most rows one entity has in table `name` once `capped`."""
    depth, table = 0, relations.table(name)
    while table.owner is not None:
        depth, table = depth + 1, relations.table(table.owner.parent)
    return unit_rows**depth


def with_entities(real: dict[str, pd.DataFrame], relations: Relations,
                  holdout: tuple[float, int] | None = None) -> dict[str, pd.DataFrame]:
    """The tables, each row with its entity (ENTITY): the root row's key (as text), found through the foreign
    keys; with `holdout` (fraction, seed), whether its entity is held out (HOLDOUT, `held_out`). A row whose
    parent is missing (an orphan) gets none; training_frame leaves it out anyway."""
    out = {}
    for name in relations.parents_first():
        table = relations.table(name)
        rows = real[name].copy()
        if table.owner is None:
            rows[ENTITY] = rows[table.primary_key].astype(str)
        else:
            parent = relations.table(table.owner.parent)
            entities = out[parent.name].set_index(parent.primary_key)[ENTITY]
            rows[ENTITY] = rows[table.owner.column].map(entities)
        if holdout is not None:
            rows[HOLDOUT] = np.where(held_out(rows[ENTITY], *holdout), "true", "false")
        out[name] = rows
    return out


def held_out(entities: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """Whether each entity is in the holdout: a seeded hash of its key, so that train and validate agree and an
    entity's rows in every table fall on the same side."""
    hashed = pd.util.hash_array(entities.astype(str).to_numpy(dtype=object), hash_key=f"{seed:016d}"[-16:])
    return (hashed % 10_000) < round(fraction * 10_000)


def kept_labels(sampler) -> dict[str, list[str]]:
    """The categories a fitted tabular_ar keeps, by column: what its children's models see of it."""
    return {c.name: list(c.categories) for c in sampler.columns if hasattr(c, "categories")}


def _renamed(spec: ColumnSpec, name: str) -> ColumnSpec:
    return spec.model_copy(update={"name": name})


def _integer(name: str) -> ColumnSpec:
    return ColumnSpec(name=name, kind=ColumnKind.NUMERIC, integer=True)
