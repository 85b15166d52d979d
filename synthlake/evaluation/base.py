"""The metric contract and the column encodings the metric families share.

A metric is a small class with a `name`, a `family`, a `direction` (and a `target` value for
direction "target"), a one-line `meaning` and `evaluate(real, synthetic, metadata, **context) -> MetricResult`:
the value and the details computing it produced (distances, per-column scores, association matrices), so
that nobody computes them again; `compute` is the value alone. `evaluate` is a template method: it checks the
context the metric `requires`, bounds every frame to `max_rows` rows (a seeded sample), then calls `_compute`.
`real` is always the real *training* data; the context may carry

- `holdout`: real rows the generator never saw (utility, DCR share, membership inference),
- `seed`: the seed for samples, folds and models (default: the metric's own, 0),
- `quasi_identifiers` and `sensitive`: column names for k-anonymity, l-diversity and t-closeness,
- `canaries`: planted canary rows or values for the canary check,
- `shared`: a `SharedWork` that the metrics of one evaluation share, so that work several of them need (the
  nearest-neighbour distances, the utility models, the bounded samples) is done once.

Only learned columns (numeric, categorical, datetime) are compared: identifiers and PII are generated,
never learned, so they carry no signal about the real rows (the canary check may name any column).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd

from synthlake.column_types import category_strings, is_continuous, most_frequent_first, to_float
from synthlake.metadata import ColumnSpec, TableMetadata

DEFAULT_MAX_ROWS = 20_000
MISSING = "\x00<missing>"  # the label a null categorical value gets; never a real value


class Direction(StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"
    TARGET = "target"  # the ideal is the metric's `target` value; both sides of it are worse


class MissingContext(ValueError):
    """A metric was asked for without the context it needs (a holdout, quasi-identifiers, ...)."""


@dataclass(frozen=True)
class MetricResult:
    """A metric's value and what computing it produced on the way (each metric's docstring says what)."""

    value: float
    details: Mapping[str, Any] = field(default_factory=dict)


T = TypeVar("T")


class SharedWork:
    """Work that several metrics of one evaluation need, done once: `get` keeps each result under what was
    computed, the objects it was computed from (by identity) and its parameters (by value)."""

    def __init__(self) -> None:
        self._done: dict[tuple, Any] = {}
        self._inputs: list[tuple] = []  # keeps the keyed objects alive: no other object can take their ids

    def get(self, what: str, compute: Callable[[], T], *inputs: object, **params: object) -> T:
        key = (what, *map(id, inputs), *sorted(params.items()))
        if key not in self._done:
            self._done[key] = compute()
            self._inputs.append(inputs)
        return self._done[key]

    def bounded(self, frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
        """`bounded(frame, n, seed)`, the same object for every metric that asks: work keyed on it is shared."""
        return self.get("bounded", lambda: bounded(frame, n, seed), frame, n=n, seed=seed)


class Metric(ABC):
    name: ClassVar[str]
    family: ClassVar[str]  # fidelity, utility or privacy
    direction: ClassVar[Direction]
    target: ClassVar[float | None] = None  # the ideal value, for direction "target"
    meaning: ClassVar[str]  # one line for readers who do not know the name (the report shows it)
    requires: ClassVar[tuple[str, ...]] = ()  # context keys compute() needs
    default_max_rows: ClassVar[int | None] = DEFAULT_MAX_ROWS

    def __init__(self, max_rows: int | None = -1, seed: int = 0):
        """`max_rows`: rows per frame the metric reads, a seeded sample beyond that (None: all rows)."""
        self.max_rows = self.default_max_rows if max_rows == -1 else max_rows
        self.seed = seed

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_rows={self.max_rows}, seed={self.seed})"

    @classmethod
    def missing_context(cls, metadata: TableMetadata, context: dict) -> list[str]:
        """What this metric lacks to be computed; empty when it can run."""
        return [key for key in cls.requires if context.get(key) is None]

    def compute(self, real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata, **context) -> float:
        """The value alone (see `evaluate`)."""
        return self.evaluate(real, synthetic, metadata, **context).value

    def evaluate(self, real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata,
                 **context) -> MetricResult:
        missing = self.missing_context(metadata, context)
        if missing:
            raise MissingContext(f"metric '{self.name}' needs {', '.join(missing)}")
        seed = context.pop("seed", None)
        seed = self.seed if seed is None else int(seed)
        shared = context.pop("shared", None) or SharedWork()
        for label, frame in (("real", real), ("synthetic", synthetic), ("holdout", context.get("holdout"))):
            if frame is not None:
                absent = [c.name for c in metadata.learned_columns if c.name not in frame.columns]
                if absent:
                    raise ValueError(f"metric '{self.name}': {label} data lacks columns {absent}")
        real = shared.bounded(real, self.max_rows, seed)
        synthetic = shared.bounded(synthetic, self.max_rows, seed + 1)
        if context.get("holdout") is not None:
            context["holdout"] = shared.bounded(context["holdout"], self.max_rows, seed + 2)
        result = self._compute(real, synthetic, metadata, seed=seed, shared=shared, **context)
        if isinstance(result, MetricResult):
            return MetricResult(float(result.value), result.details)
        return MetricResult(float(result))

    @abstractmethod
    def _compute(self, real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata, *, seed: int,
                 shared: SharedWork, **context) -> MetricResult | float:
        """The value, or a MetricResult when the computation produces details worth keeping."""

    @classmethod
    def passes(cls, value: float, threshold: float) -> bool:
        """A gate: maximize needs value >= threshold, minimize value <= threshold, target
        |value - target| <= threshold. An undefined value (nan) never passes."""
        if value is None or math.isnan(value):
            return False
        if cls.direction == Direction.MAXIMIZE:
            return value >= threshold
        if cls.direction == Direction.MINIMIZE:
            return value <= threshold
        return abs(value - cls.target) <= threshold


def bounded(df: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    """At most `n` rows of `df`: all of them when it is small enough, else a seeded sample without replacement."""
    if n is None or len(df) <= n:
        return df
    return df.sample(n=n, random_state=seed)


@contextmanager
def openmp_threads(n: int | None = 1) -> Iterator[None]:
    """Cap the OpenMP threads scikit-learn's gradient boosting uses (None: no cap). One thread is the default:
    the models see bounded samples, and OpenMP threads that spin-wait for each other on a machine busy with
    other processes (Spark executors, torch) run 10-20 times slower than one thread, as measured on 2 cores."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="openmp"):
        yield


# --- column encodings --------------------------------------------------------------------------------------

def to_labels(values: pd.Series) -> pd.Series:
    """Categorical values as strings, nulls as the MISSING label (so that a null is a category of its own)."""
    return category_strings(values, MISSING)


def normalized(frame: pd.DataFrame, specs: Iterable[ColumnSpec]) -> pd.DataFrame:
    """The columns as comparable values: floats for numeric and datetime, strings for the rest."""
    return pd.DataFrame({s.name: to_float(frame[s.name]) if is_continuous(s) else to_labels(frame[s.name])
                         for s in specs}, index=frame.index)


def row_hashes(frame: pd.DataFrame, specs: Iterable[ColumnSpec]) -> np.ndarray:
    """One 64-bit hash per row over the normalized columns: equal rows, equal hashes."""
    return pd.util.hash_pandas_object(normalized(frame, specs), index=False).to_numpy()


def tvd(a_codes: np.ndarray, b_codes: np.ndarray) -> float:
    """Total variation distance between the distributions of two arrays of non-negative integer codes."""
    if a_codes.size == 0 or b_codes.size == 0:
        return float(a_codes.size != b_codes.size)
    size = int(max(a_codes.max(), b_codes.max())) + 1
    p = np.bincount(a_codes, minlength=size) / a_codes.size
    q = np.bincount(b_codes, minlength=size) / b_codes.size
    return float(min(1.0, 0.5 * np.abs(p - q).sum()))  # rounding can pass 1 when no value is shared


def pair_tvd(real_a: np.ndarray, real_b: np.ndarray, syn_a: np.ndarray, syn_b: np.ndarray) -> float:
    """Total variation distance between two 2-D contingency tables of non-negative integer codes."""
    width = int(max(real_b.max(initial=0), syn_b.max(initial=0))) + 1
    return tvd(real_a.astype(np.int64) * width + real_b, syn_a.astype(np.int64) * width + syn_b)


def joint_codes(real: pd.Series, synthetic: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes for categorical values, one shared code book for both sides (nulls a category)."""
    codes, _ = pd.factorize(pd.concat([to_labels(real), to_labels(synthetic)], ignore_index=True))
    return codes[: len(real)].astype(np.int64), codes[len(real):].astype(np.int64)


class FeatureEncoder:
    """A numeric matrix for gradient boosting: numeric and datetime columns as floats (nan kept), categorical
    ones as codes of the real categories by frequency (at most `max_categories`, the rest one "other" code,
    nulls nan); `categorical_mask` tells the model which columns are categorical."""

    def __init__(self, real: pd.DataFrame, specs: Iterable[ColumnSpec], max_categories: int = 250):
        self.specs = list(specs)
        self.categories = {s.name: Discretizer(real, [s], top=max_categories).categories[s.name]
                           for s in self.specs if not is_continuous(s)}
        self.categorical_mask = np.array([not is_continuous(s) for s in self.specs], dtype=bool)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        columns = []
        for spec in self.specs:
            if is_continuous(spec):
                columns.append(to_float(frame[spec.name]))
                continue
            cats, labels = self.categories[spec.name], to_labels(frame[spec.name])
            codes = cats.get_indexer(labels).astype(float)
            codes[codes < 0] = len(cats)
            codes[(labels == MISSING).to_numpy()] = np.nan
            columns.append(codes)
        return np.column_stack(columns) if columns else np.empty((len(frame), 0))


class Discretizer:
    """Integer bins learned from the real training data, applied alike to any frame.

    numeric and datetime: `bins` quantile bins (edges at the real deciles for 10; tied edges merge), plus a
    bin for nulls; categorical: the `top` most frequent real categories, one "other" bin, one bin for nulls.
    With `quantiles=False`, numeric bins are `bins` equal-width bins over the real range with open outer
    edges, as SDMetrics discretises a numeric column for contingency similarity.
    """

    def __init__(self, real: pd.DataFrame, specs: Iterable[ColumnSpec], bins: int = 10, top: int = 10,
                 quantiles: bool = True):
        self.specs = list(specs)
        self.edges: dict[str, np.ndarray] = {}
        self.categories: dict[str, pd.Index] = {}
        for spec in self.specs:
            if is_continuous(spec):
                x = to_float(real[spec.name])
                x = x[~np.isnan(x)]
                if x.size == 0:
                    self.edges[spec.name] = np.array([])
                elif quantiles:
                    self.edges[spec.name] = np.unique(np.quantile(x, np.arange(1, bins) / bins))
                else:
                    # equal widths, as np.histogram_bin_edges, which refuses a range too narrow for
                    # float64 at the values' magnitude (integers near 2**60)
                    self.edges[spec.name] = np.unique(np.linspace(x.min(), x.max(), bins + 1)[1:-1])
            else:
                counts = to_labels(real[spec.name])
                counts = counts[counts != MISSING].value_counts(sort=False)
                order = most_frequent_first(counts.items())
                self.categories[spec.name] = pd.Index([v for v, _ in order[:top]])

    def codes(self, frame: pd.DataFrame, column: str) -> np.ndarray:
        if column in self.edges:
            edges = self.edges[column]
            x = to_float(frame[column])
            out = np.searchsorted(edges, x, side="right")  # bin i holds edges[i-1] <= x < edges[i]
            out[np.isnan(x)] = edges.size + 1
            return out.astype(np.int64)
        cats = self.categories[column]
        labels = to_labels(frame[column])
        out = cats.get_indexer(labels)
        out[out < 0] = len(cats)  # other
        out[(labels == MISSING).to_numpy()] = len(cats) + 1
        return out.astype(np.int64)
