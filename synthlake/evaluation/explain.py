"""Why synthetic rows can be told apart from real ones: what the metrics point at, and rules that would help.

    explanation = explain(real, synthetic, metadata, results, rules=dataset_rules)
    explanation.features       # detection_auc's detector: (column, AUC drop when it is shuffled > 0), top first
    explanation.worst_columns  # lowest univariate accuracy, with the column shape
    explanation.worst_pairs    # lowest bivariate accuracy, with the column pair trend
    explanation.hints          # rules every real row holds and synthetic rows break, as config lines

The first three are read from the metric results, nothing is measured again. Hints come from checks on the two
frames, never from canned advice. Each is a rule of synthlake.rules that every real row holds (all but
REAL_TOLERANCE of them) and at least MIN_SHARE of the synthetic rows break, both counted by the rule's own
`violations`, the count the validate stage makes for a configured rule; and the hints together with the
dataset's own rules form a config that `parse_rules` accepts (a hint that would clash is left out). Candidates:

- inequality: two numeric, or two datetime, columns with low <= high on the real rows and real ranges that
  overlap (else the order comes from the ranges, not from the rows, and a rule would add nothing);
- derived: a numeric column equal on the real rows to a date part of a datetime column (year, month, day,
  weekday, hour), to another numeric column, or to the sum or difference of two;
- fixed_combinations: two categorical (or integer, at most MAX_LEVELS values) columns whose synthetic rows pair
  values the real rows hold, but never together, FACTOR times as often as real rows do against the other half
  of the real rows (the chance of meeting an unseen pair in a sample of that size).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import yaml

from synthlake.evaluation.base import MetricResult, to_labels
from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata
from synthlake.rules import parse_rules
from synthlake.rules_base import values
from synthlake.rules_expr import column_ref

TOP = 5  # features, columns and pairs named
MAX_HINTS = 10
MIN_SHARE = 0.01  # a hint's rule is broken by at least this share of the synthetic rows
REAL_TOLERANCE = 0.001  # ... and by at most this share of the real rows (the train stage allows 1%)
MAX_LEVELS = 50  # an integer column with at most this many real values is a candidate for fixed_combinations
FACTOR = 5.0  # unseen pairs: synthetic share at least this many times the real half-vs-half share
DATE_PARTS = ("year", "month", "day", "weekday", "hour")
SCREEN_ROWS = 200  # derived candidates are screened on this many real rows before the rule checks them all


@dataclass(frozen=True)
class ColumnScore:
    column: str
    accuracy: float | None  # accuracy_univariate's score
    shape: float | None  # column_shapes' KS / TV complement


@dataclass(frozen=True)
class PairScore:
    columns: tuple[str, str]
    accuracy: float | None  # accuracy_bivariate's score
    trend: float | None  # column_pair_trends' score
    trend_metric: str | None  # correlation_similarity or contingency_similarity


@dataclass(frozen=True)
class Hint:
    """A rule that the real rows hold and the synthetic rows break: `rule` as a dataset config writes it."""

    rule: dict[str, Any]
    evidence: str  # what was measured, in words
    real_share: float  # share of the real rows that break the rule
    synthetic_share: float  # share of the synthetic rows that break it

    @property
    def yaml(self) -> str:
        """The line to paste under the dataset config's `rules:`."""
        return "- " + yaml.safe_dump(self.rule, default_flow_style=True, sort_keys=False, width=10**6).strip()


@dataclass(frozen=True)
class Explanation:
    features: list[tuple[str, float]]
    worst_columns: list[ColumnScore]
    worst_pairs: list[PairScore]
    hints: list[Hint]


def explain(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata,
            results: Mapping[str, MetricResult], rules: Sequence[dict[str, Any]] = (), private: bool = False,
            seed: int = 0) -> Explanation:
    """What gives synthetic rows away, from the metric `results` of these frames, and the rule hints (`rules`:
    the dataset config's own; `private`: the dataset has a privacy budget, so no hint may learn from rows)."""
    detection = results.get("detection_auc")
    ranked = detection.details.get("features", []) if detection is not None else []
    features = [(column, drop) for column, drop in ranked if drop > 0][:TOP]  # <= 0: the detector does not use it
    return Explanation(features, worst_columns(results), worst_pairs(results),
                       hints(real, synthetic, metadata, rules, private, seed))


def _worst(scores: dict, top: int) -> list:
    """Keys by their lowest score (None and nan left out), the lowest first."""
    def low(key) -> float:
        present = [s for s in scores[key] if s is not None and not np.isnan(s)]
        return min(present) if present else np.inf
    return sorted((k for k in scores if np.isfinite(low(k))), key=low)[:top]


def worst_columns(results: Mapping[str, MetricResult], top: int = TOP) -> list[ColumnScore]:
    accuracy = results["accuracy_univariate"].details["columns"] if "accuracy_univariate" in results else {}
    shapes = {s.column: s.score for s in results["column_shapes"].details["shapes"]} \
        if "column_shapes" in results else {}
    scores = {c: (accuracy.get(c), shapes.get(c)) for c in dict.fromkeys([*accuracy, *shapes])}
    return [ColumnScore(c, *scores[c]) for c in _worst(scores, top)]


def worst_pairs(results: Mapping[str, MetricResult], top: int = TOP) -> list[PairScore]:
    accuracy = results["accuracy_bivariate"].details["pairs"] if "accuracy_bivariate" in results else {}
    trends = {(t.column_1, t.column_2): t for t in results["column_pair_trends"].details["trends"]} \
        if "column_pair_trends" in results else {}
    scores = {p: (accuracy.get(p), trends[p].score if p in trends else None)
              for p in dict.fromkeys([*accuracy, *trends])}
    return [PairScore(p, scores[p][0], scores[p][1], trends[p].metric if p in trends else None)
            for p in _worst(scores, top)]


# --- hints -------------------------------------------------------------------------------------------------


def hints(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata,
          rules: Sequence[dict[str, Any]] = (), private: bool = False, seed: int = 0) -> list[Hint]:
    """Rules the real rows hold and the synthetic rows break, most broken first (see the module docstring)."""
    specs = [s for s in metadata.learned_columns if s.name in real.columns and s.name in synthetic.columns]
    if real.empty or synthetic.empty:
        return []
    candidates = [*_inequalities(real, synthetic, specs), *_derived(real, specs),
                  *_combinations(real, synthetic, specs, seed)]
    found = [hint for item, note in candidates if (hint := _confirmed(item, note, real, synthetic, metadata))]
    found.sort(key=lambda h: -h.synthetic_share)  # stable: ties keep the candidates' order
    accepted: list[Hint] = []
    for hint in found:
        if len(accepted) < MAX_HINTS and _accepted([*rules, *(h.rule for h in accepted), hint.rule], metadata,
                                                   private):
            accepted.append(hint)
    return accepted


def _confirmed(item: dict[str, Any], note: str, real: pd.DataFrame, synthetic: pd.DataFrame,
               metadata: TableMetadata) -> Hint | None:
    """The candidate as a Hint when the rule, fitted on the real rows, holds on them and the synthetic rows break
    it (the rule's own `violations`)."""
    try:
        rule = parse_rules([item], metadata).rules[0]
    except ValueError:
        return None
    rule.fit(real)
    real_share = float(rule.violations(real).mean())
    synthetic_share = float(rule.violations(synthetic).mean())
    if real_share > REAL_TOLERANCE or synthetic_share < MIN_SHARE:
        return None
    held = "every real row" if real_share == 0 else f"all but {real_share:.2%} of the real rows"
    return Hint(item, f"{rule.describe()}: holds on {held}, broken on {synthetic_share:.1%} of the synthetic "
                      f"rows{note}", real_share, synthetic_share)


def _accepted(items: list[dict[str, Any]], metadata: TableMetadata, private: bool) -> bool:
    try:
        ruleset = parse_rules(items, metadata)
        if private:
            ruleset.check_privacy()
    except ValueError:
        return False
    return True


def _numbers(frame: pd.DataFrame, spec: ColumnSpec) -> np.ndarray:
    return values(frame[spec.name], spec)  # floats; datetimes in microseconds; NaN for null


def _inequalities(real, synthetic, specs):
    """low <= high on (nearly) every real row, low < high on some, overlapping real ranges, and synthetic rows
    with low > high."""
    cont = [s for s in specs if s.kind in (ColumnKind.NUMERIC, ColumnKind.DATETIME)]
    r = {s.name: _numbers(real, s) for s in cont}
    x = {s.name: _numbers(synthetic, s) for s in cont}
    for low, high in itertools.permutations(cont, 2):
        a, b = r[low.name], r[high.name]
        if low.kind != high.kind or np.isnan(a).all() or np.isnan(b).all():
            continue
        if (np.mean(a > b) <= REAL_TOLERANCE and np.any(a < b) and np.nanmax(a) > np.nanmin(b)
                and np.mean(x[low.name] > x[high.name]) >= MIN_SHARE):
            yield {"kind": "inequality", "low": low.name, "high": high.name}, ""


def _derived(real, specs):
    """A numeric column equal to a date part, a copy, a sum or a difference of other columns on the real rows:
    screened on SCREEN_ROWS rows here, then checked on all rows by the rule (_confirmed)."""
    head = real.head(SCREEN_ROWS)
    numeric = [s for s in specs if s.kind == ColumnKind.NUMERIC]
    targets = [s for s in numeric if real[s.name].nunique() > 1]
    if not targets:
        return
    wanted = np.stack([_numbers(head, s) for s in targets], axis=1)
    for text, computed in _candidates(head, specs, numeric):
        # every target at once: a column from itself is refused by the rule (_confirmed)
        equal = np.isclose(wanted, computed[:, None], rtol=1e-9, atol=0, equal_nan=True).all(axis=0)
        for i in np.flatnonzero(equal):
            yield {"kind": "derived", "column": targets[i].name, "expression": text}, ""


def _candidates(head, specs, numeric):
    """(expression, its values on `head`) for each date part, copy, sum and difference _derived tries: the
    arithmetic in numpy (a wide table has thousands of pairs), as synthlake.rules_expr computes it."""
    from synthlake.rules_expr import Expression

    for s in specs:
        if s.kind == ColumnKind.DATETIME:
            for part in DATE_PARTS:
                text = f"{part}({column_ref(s.name)})"
                yield text, np.asarray(Expression(text).evaluate(head), dtype=float)
    numbers = {s.name: _numbers(head, s) for s in numeric}
    yield from ((column_ref(s.name), numbers[s.name]) for s in numeric)
    for a, b in itertools.combinations(numeric, 2):
        x, y, ra, rb = numbers[a.name], numbers[b.name], column_ref(a.name), column_ref(b.name)
        yield from ((f"{ra} + {rb}", x + y), (f"{ra} - {rb}", x - y), (f"{rb} - {ra}", y - x))


def _combinations(real, synthetic, specs, seed):
    """Pairs of few-valued columns whose synthetic rows combine seen values in unseen ways, FACTOR times as
    often as one half of the real rows does against the other."""
    discrete = [s for s in specs if s.kind == ColumnKind.CATEGORICAL
                or s.kind == ColumnKind.NUMERIC and s.integer and real[s.name].nunique() <= MAX_LEVELS]
    codes = {}
    for s in discrete:
        both = pd.concat([to_labels(real[s.name]), to_labels(synthetic[s.name])], ignore_index=True)
        c = pd.factorize(both)[0].astype(np.int64)
        codes[s.name] = (c[:len(real)], c[len(real):])
    half = np.random.default_rng(seed).permutation(len(real)) < len(real) // 2
    for a, b in itertools.combinations(discrete, 2):
        (ra, sa), (rb, sb) = codes[a.name], codes[b.name]
        baseline = _unseen(ra[half], rb[half], ra[~half], rb[~half])
        share = _unseen(ra, rb, sa, sb)
        if share >= MIN_SHARE and share >= FACTOR * baseline:
            yield ({"kind": "fixed_combinations", "columns": [a.name, b.name]},
                   f" (by chance, one half of the real rows against the other: {baseline:.2%})")


def _unseen(ref_a: np.ndarray, ref_b: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """The share of rows (a, b) whose values each occur in the reference rows but never together."""
    width = int(max(ref_b.max(initial=0), b.max(initial=0))) + 1
    seen = np.isin(a, ref_a) & np.isin(b, ref_b)
    return float(np.mean(seen & ~np.isin(a * width + b, ref_a * width + ref_b))) if a.size else 0.0
