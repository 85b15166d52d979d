"""Business rules that hold on every generated row by construction, never by rejection.

A dataset config's `rules:` list, one mapping per rule, `kind` first:

    - {kind: inequality, low: checkin, high: checkout, strict: false, offset: 0}    offset: seconds for datetimes
    - {kind: range, column: discount, low: 0, high: price}                          a bound: a number or a column
    - {kind: fixed_combinations, columns: [country, currency]}
    - {kind: derived, column: arrival_year, expression: "year(arrival_date)"}       synthlake.rules_expr
    - {kind: derived, column: adr_by_date, lookup: {by: [arrival_date], value: adr}}
    - {kind: presence, column: cancelled_at, when: {column: status, equals: cancelled}}
    - {kind: unique, columns: [booking_no]}

Why by construction: rows are sampled in fixed-size seeded blocks (synthlake.seeding) that must not depend on
how many rows a check threw away. So each rule changes what the generator learns (`transform`), in a way that
lets `reverse` turn ANY generated values into rows on which the rule holds: a gap clipped at 0 in place of the
later datetime, a share clipped into [0, 1] in place of a bounded value, one categorical of the seen tuples in
place of several columns, nothing in place of a derived column. Each kind's docstring says how
(synthlake.rules_bounds, synthlake.rules_kinds).

What is not done, rather than done by rejection or faked:
- unique: a float, datetime or PII column is refused (no way to make it unique without changing values); an
  integer or categorical unique column is generated from row numbers, giving up its learned distribution; a
  set of columns is unique only through one of its members (an identifier or a unique column).
- one rule per column: `a <= c` and `b <= c` on the same c is refused (it would need c >= max(a, b));
  a presence rule stacks on an inequality's high, on nothing else.
- range with a column bound: refused unless another rule keeps the bounds in order (an inequality between
  them, or a range on one bound limited by the other; no longer chains); a number between two bounds comes
  back null where a bound is null.
- privacy: what rules learn from the rows (combinations, lookups, presence's fill and fallback, a datetime's
  unit when `unit:` is not given) is not differentially private: `check_privacy` refuses them under a budget.
- a generated datetime past pandas' range (the year 2262) raises rather than being clipped.

Composition: a column is written (produced by reverse) by one rule at most; a presence rule may also sit on an
inequality's high (`cancelled_at >= booked_at`, present iff cancelled). Reverse runs each rule after the rules
that write the columns it reads, transform in the opposite order, so that a rule holds at the end once it holds.
Two writers of a column, a cycle, a range whose column bounds nothing keeps in order, or a set of columns
nothing makes unique is an error naming the rule (`rule #<index in the list> (<kind>)`) and the column.

How the pipeline uses it:

    rules = parse_rules(config_rules, metadata)
    if privacy: rules.check_privacy()                   # refuses rules that learn from the rows (not DP)
    learned = rules.fit(real).transform(real)           # the table the generator learns: learned_metadata()
    model = get_generator(name)(rules.learned_metadata(), ...).fit(learned)
    RuledSampler(model.freeze(), rules).save(folder)    # synthlake.generators.ruled; load_sampler reloads it
    rules.violations(frame)                             # a boolean column per rule: checks, GX, the profile

The saved folder holds sampler.json {"generator": "ruled", "inner": "inner"}, rules.json and the inner sampler
in inner/ (synthlake.generators.ruled).
"""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
from typing import Any

import pandas as pd
from pydantic import ValidationError

from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata
from synthlake.rules_base import Rule
from synthlake.rules_bounds import Bound, Inequality, Range
from synthlake.rules_kinds import Derived, FixedCombinations, Presence, Unique

KINDS: dict[str, type[Rule]] = {"inequality": Inequality, "range": Range, "fixed_combinations": FixedCombinations,
                                "derived": Derived, "presence": Presence, "unique": Unique}
RULES_FILE = "rules.json"


def parse_rules(items: list[dict[str, Any]] | None, metadata: TableMetadata) -> RuleSet:
    """The rules of a dataset config, checked against the table: a ValueError names the rule and the column."""
    return RuleSet(metadata, [_parse(index, item, metadata) for index, item in enumerate(items or [])])


def _parse(index: int, item: Any, metadata: TableMetadata) -> Rule:
    kind = item.get("kind") if isinstance(item, dict) else None
    if kind not in KINDS:
        raise ValueError(f"rule #{index}: `kind` must be one of {sorted(KINDS)}, got {item!r}")
    klass = KINDS[kind]
    try:
        config = klass.Config.model_validate(item)
    except ValidationError as exc:
        raise ValueError(f"rule #{index} ({kind}): {_problems(exc)}") from None
    return klass(index, config, metadata)


def _problems(exc: ValidationError) -> str:
    """One message per field: a union's alternatives (float | str) are folded into one."""
    by_field: dict[str, list[str]] = {}
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"] if p not in ("float", "str", "int", "bool"))
        by_field.setdefault(field or "rule", []).append(err["msg"].removeprefix("Value error, "))
    return "; ".join(f"{field}: {' or '.join(dict.fromkeys(msgs))}" for field, msgs in by_field.items())


class RuleSet:
    """The rules of one table, in config order, and the order their reverses run in (`order`)."""

    def __init__(self, metadata: TableMetadata, rules: list[Rule]):
        self.metadata, self.rules = metadata, rules
        writers = self._writers()
        self._stack(writers)
        self.order = self._order(writers)
        self._check_new_columns()
        self._check_ranges()
        self._check_unique_sets()

    # ---- checks ------------------------------------------------------------------------------------------
    def _writers(self) -> dict[str, list[Rule]]:
        writers: dict[str, list[Rule]] = {}
        for rule in self.rules:
            for column in rule.writes:
                writers.setdefault(column, []).append(rule)
        for column, rules in writers.items():
            if len(rules) > 1 and not _stacked(rules):
                named = " and ".join(r.label for r in rules)
                raise ValueError(f"column {column!r} is produced by {named}: one rule per column (only a presence "
                                 "rule may also sit on an inequality's high)")
        return writers

    def _stack(self, writers: dict[str, list[Rule]]) -> None:
        """A presence rule on an inequality's high acts on the gap the inequality learns in its place."""
        for presence, inequality in _pairs(writers):
            presence.stack(next(s for s in inequality.learned_specs(self.metadata.columns)
                                if s.name == inequality.gap))

    def _order(self, writers: dict[str, list[Rule]]) -> list[Rule]:
        """Reverse order: the writers of what a rule reads before it; a stacked presence before its inequality."""
        after: dict[int, set[int]] = {rule.index: set() for rule in self.rules}
        for rule in self.rules:
            for column in rule.reads:
                after[rule.index] |= {w.index for w in writers.get(column, [])}
        for presence, inequality in _pairs(writers):
            after[inequality.index].add(presence.index)
        try:
            return [self.rules[i] for i in TopologicalSorter(after).static_order()]
        except CycleError as exc:
            cycle = " -> ".join(self.rules[i].label for i in exc.args[1])
            raise ValueError(f"rules depend on each other in a cycle: {cycle}") from None

    def _check_new_columns(self) -> None:
        taken = set(self.metadata.names)
        for rule in self.rules:
            for name in rule.new_columns():
                if name in taken:
                    raise rule.error(f"its learned column {name!r} clashes with a column of the table or another rule")
                taken.add(name)

    def _check_ranges(self) -> None:
        """A range between two bounds, one of them a column, holds only if they come out in order."""
        for rule in self.rules:
            if not isinstance(rule, Range) or None in (rule.config.low, rule.config.high):
                continue
            low, high = rule.config.low, rule.config.high
            if not self._ordered(low, high):
                raise rule.error(f"nothing keeps {low} <= {high} on generated rows; add a rule that does (an "
                                 f"inequality {low} <= {high}, or a range on one bound limited by the other)")

    def _ordered(self, low: Bound, high: Bound) -> bool:
        if isinstance(low, float) and isinstance(high, float):
            return low <= high
        for rule in self.rules:
            c = rule.config
            if isinstance(rule, Inequality) and (c.low, c.high) == (low, high) and c.offset >= 0:
                return True
            if isinstance(rule, Range) and (c.column == high and _at_most(low, c.low)
                                            or c.column == low and _at_most(c.high, high)):
                return True
        return False

    def _check_unique_sets(self) -> None:
        alone = {r.config.columns[0] for r in self.rules if isinstance(r, Unique) and len(r.config.columns) == 1}
        for rule in self.rules:
            columns = getattr(rule.config, "columns", [])
            if isinstance(rule, Unique) and len(columns) > 1 and not any(
                    c in alone or self.metadata.column(c).kind == ColumnKind.IDENTIFIER for c in columns):
                raise rule.error(f"a set of columns is unique by construction only through one of its columns: "
                                 f"make one of {columns} an identifier or give it a unique rule of its own")

    # ---- the rules together --------------------------------------------------------------------------------
    def learned_metadata(self) -> TableMetadata:
        """The table the generator learns: the rules' transforms applied to the columns (a target a rule
        replaces is dropped as target). No argument: a RuleSet is parsed against, and holds, its table."""
        specs: list[ColumnSpec] = list(self.metadata.columns)
        for rule in reversed(self.order):
            specs = rule.learned_specs(specs)
        target = self.metadata.target if self.metadata.target in [s.name for s in specs] else None
        if not any(s.learned for s in specs):
            raise ValueError("the rules leave no column for the generator to learn")
        return TableMetadata(columns=specs, target=target)

    def fit(self, frame: pd.DataFrame) -> RuleSet:
        """Learns what each rule needs from the real rows (each after the transforms before it)."""
        frame = self._columns(frame)
        for rule in reversed(self.order):
            rule.fit(frame)
            frame = rule.transform(frame)
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Real rows as the generator learns them (the columns of learned_metadata)."""
        self._check_fitted()
        frame = self._columns(frame)
        for rule in reversed(self.order):
            frame = rule.transform(frame)
        return frame

    def reverse(self, frame: pd.DataFrame, row_offset: int = 0) -> pd.DataFrame:
        """Generated learned rows, numbered from `row_offset`, as rows of the table on which every rule holds."""
        self._check_fitted()
        frame = frame.reset_index(drop=True)
        for rule in self.order:
            frame = rule.reverse(frame, row_offset)
        return frame[self.metadata.names]

    def violations(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One boolean column per rule (its label): True on the rows of `frame` that break it."""
        self._check_fitted()
        return pd.DataFrame({rule.label: rule.violations(frame) for rule in self.rules}, index=frame.index)

    def describe(self) -> list[str]:
        return [f"{rule.label}: {rule.describe()}" for rule in self.rules]

    def learning_from_rows(self) -> list[Rule]:
        return [rule for rule in self.rules if rule.learns_from_rows]

    def check_privacy(self) -> None:
        """Under a privacy budget: a ValueError naming every rule that would learn from the rows without
        differential privacy, and what each learns."""
        learning = self.learning_from_rows()
        if learning:
            named = "; ".join(f"{rule.label} ({rule.describe()}) learns {rule.why_learns()}" for rule in learning)
            raise ValueError(f"under a privacy budget, these rules would learn from the rows without differential "
                             f"privacy: {named}. Remove them, or the budget")

    def state(self) -> dict[str, Any]:
        return {"metadata": self.metadata.model_dump(mode="json"), "rules": [rule.state() for rule in self.rules]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RuleSet:
        rules = parse_rules([r["config"] for r in state["rules"]], TableMetadata.model_validate(state["metadata"]))
        for rule, saved in zip(rules.rules, state["rules"], strict=True):
            rule.load_learned(saved["learned"])
        return rules

    def _columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [name for name in self.metadata.names if name not in frame.columns]
        if missing:
            raise ValueError(f"the rows lack the columns {missing}")
        return frame[self.metadata.names].reset_index(drop=True)

    def _check_fitted(self) -> None:
        for rule in self.rules:
            rule.check_fitted()


def _stacked(rules: list[Rule]) -> bool:
    return len(rules) == 2 and {type(r) for r in rules} == {Inequality, Presence}


def _pairs(writers: dict[str, list[Rule]]) -> list[tuple[Presence, Inequality]]:
    """(presence, inequality) of each column both write (the only two writers _writers lets through)."""
    return [tuple(sorted(rules, key=lambda r: not isinstance(r, Presence))) for rules in writers.values()
            if len(rules) == 2]


def _at_most(a: Bound | None, b: Bound | None) -> bool:
    """a <= b for sure: the same column, or two constants in order."""
    if a is None or b is None:
        return False
    return a == b or (isinstance(a, float) and isinstance(b, float) and a <= b)


__all__ = ["KINDS", "RULES_FILE", "RuleSet", "parse_rules"]
