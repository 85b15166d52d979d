"""Related tables: the tables of one dataset, their primary keys, the foreign keys between them and a child's
order (its rows under one parent form a sequence). The contract between a multi-table config and the generators.

What is supported, and how:
- a tree with one root table (the entity: a storm, a plane, a customer): every other table has one foreign key,
  to its parent, whose children are generated with it, conditioned on its row, in the same Spark task;
- several children tables under one parent (a customer's orders and its tickets), and grandchildren;
- `order_by` on a child: its rows under one parent are a sequence in that order; `steps`: which of its columns
  are generated as their step from the previous row (the order column always is).
Not yet: a child with a second parent (a star schema's lookup, e.g. flights -> airlines); keep such a column
categorical in the child.

Refused, naming the table and column: a key or order column that is not a column; a key column that is not an
identifier; a foreign key to a table that is not there or that has no primary key; two foreign keys; no root
or two roots; a cycle of foreign keys.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from synthlake.metadata import ColumnKind, ColumnSpec, Strict, TableMetadata


class ForeignKey(Strict):
    column: str  # in the child
    parent: str  # the parent table's name; the key is the parent's primary key


class RelatedTable(Strict):
    name: str
    columns: list[ColumnSpec]
    primary_key: str | None = None
    foreign_keys: list[ForeignKey] = Field(default_factory=list)
    order_by: str | None = None  # a numeric or datetime column: the owner's children form a sequence in it
    # the numeric and datetime columns a sequence generates as their step from the previous row, besides order_by:
    # those that move a little each row (a storm's position); None: every one of them
    steps: list[str] | None = None

    @model_validator(mode="after")
    def _check_keys(self) -> RelatedTable:
        names = [c.name for c in self.columns]
        where = f"table '{self.name}'"
        for what, column in [("primary_key", self.primary_key), ("order_by", self.order_by),
                             *[("foreign key", fk.column) for fk in self.foreign_keys]]:
            if column is not None and column not in names:
                raise ValueError(f"{where}: {what} '{column}' is not one of its columns {names}")
        keys = [("primary_key", self.primary_key), *[("foreign key", fk.column) for fk in self.foreign_keys]]
        for what, column in keys:
            if column is not None and self.spec(column).kind != ColumnKind.IDENTIFIER:
                raise ValueError(f"{where}: {what} '{column}' must be of kind identifier (keys are generated, "
                                 "never learned)")
        if len(self.foreign_keys) > 1:
            raise ValueError(f"{where}: foreign keys to {[fk.parent for fk in self.foreign_keys]}: a table has one "
                             "parent (a second one, a star schema's lookup, is not supported yet: keep that "
                             "column categorical)")
        if self.order_by is not None:
            if not self.foreign_keys:
                raise ValueError(f"{where}: order_by '{self.order_by}' needs a foreign key (the parent whose "
                                 "children form the sequence)")
            if self.spec(self.order_by).kind not in (ColumnKind.NUMERIC, ColumnKind.DATETIME):
                raise ValueError(f"{where}: order_by '{self.order_by}' must be a numeric or datetime column")
        if self.steps is not None:
            if self.order_by is None:
                raise ValueError(f"{where}: steps {self.steps} need an order_by (the sequence they step along)")
            steppable = [c.name for c in self.steppable]
            for name in self.steps:
                if name not in steppable:
                    raise ValueError(f"{where}: steps: '{name}' is not one of its learned numeric or datetime "
                                     f"columns {steppable}")
        return self

    def spec(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)

    @property
    def owner(self) -> ForeignKey | None:
        """The foreign key to this table's parent (None: the root)."""
        return self.foreign_keys[0] if self.foreign_keys else None

    @property
    def learned(self) -> list[ColumnSpec]:
        return [c for c in self.columns if c.learned]

    @property
    def steppable(self) -> list[ColumnSpec]:
        return [c for c in self.learned if c.kind in (ColumnKind.NUMERIC, ColumnKind.DATETIME)]

    @property
    def stepped(self) -> list[ColumnSpec]:
        """The columns a sequence generates as their step from the previous row: order_by and `steps`."""
        if self.order_by is None:
            return []
        return [c for c in self.steppable if self.steps is None or c.name in {self.order_by, *self.steps}]

    @property
    def metadata(self) -> TableMetadata:
        """The table's own columns, keys included (generated: identifiers are never learned)."""
        return TableMetadata(columns=self.columns)


class Relations(Strict):
    tables: list[RelatedTable]

    @model_validator(mode="after")
    def _check_graph(self) -> Relations:
        names = [t.name for t in self.tables]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"tables named twice: {twice}")
        by_name = {t.name: t for t in self.tables}
        for table in self.tables:
            for fk in table.foreign_keys:
                parent = by_name.get(fk.parent)
                if parent is None:
                    raise ValueError(f"table '{table.name}': foreign key '{fk.column}' points at table "
                                     f"'{fk.parent}', which is not one of {names}")
                if parent.primary_key is None:
                    raise ValueError(f"table '{table.name}': foreign key '{fk.column}' points at table "
                                     f"'{fk.parent}', which has no primary_key")
        self.parents_first()  # refuses a cycle
        roots = [t.name for t in self.tables if t.owner is None]  # at least one: there is no cycle
        if len(roots) > 1:
            raise ValueError(f"tables {roots} have no foreign key: a dataset has one root table (the entity the "
                             "others belong to)")
        return self

    @property
    def root(self) -> RelatedTable:
        return next(t for t in self.tables if t.owner is None)

    def table(self, name: str) -> RelatedTable:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"unknown table '{name}'")

    def children(self, name: str) -> list[RelatedTable]:
        """The tables `name` owns."""
        return [t for t in self.tables if t.owner is not None and t.owner.parent == name]

    def parents_first(self) -> list[str]:
        """The tables in an order where every table comes after each table it has a foreign key to."""
        done: list[str] = []
        visiting: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            if name in visiting:
                cycle = visiting[visiting.index(name):] + [name]
                raise ValueError(f"foreign keys form a cycle: {' -> '.join(cycle)}")
            visiting.append(name)
            for fk in self.table(name).foreign_keys:
                visit(fk.parent)
            visiting.pop()
            done.append(name)

        for t in self.tables:
            visit(t.name)
        return done
