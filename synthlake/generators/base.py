"""The generator interface: fit a table, sample rows from a seed, save and load as weights plus JSON."""

from __future__ import annotations

import copy
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from synthlake.metadata import TableMetadata

METADATA_FILE = "generator.json"
SAMPLER_FILE = "sampler.json"  # written by save_sampler where a generator has a light sampler
EpochCallback = Callable[[dict[str, float]], None]  # called with each epoch's history record (on rank 0)


@dataclass(frozen=True)
class HyperParam:
    """A declared hyper-parameter: its default and the values it may take.

    `low` and `high` are inclusive bounds on a number (on each element of a list value); `choices` lists the
    allowed values. A parameter whose default is an int takes ints only; one whose default is a float takes
    ints or floats; a list default takes a non-empty list.
    """

    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def check(self, owner: str, name: str, value: Any) -> None:
        """Raise ValueError naming the parameter, the value and what it may be."""
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"{owner}: hyper-parameter {name!r} = {value!r} is not one of {list(self.choices)}")
            return
        if isinstance(self.default, list | tuple):
            if not isinstance(value, list | tuple) or not value:
                raise ValueError(f"{owner}: hyper-parameter {name!r} = {value!r} must be a non-empty list")
            items = list(value)
            example = self.default[0] if self.default else None
        else:
            items, example = [value], self.default
        for item in items:
            self._check_number(owner, name, value, item, example)

    def _check_number(self, owner: str, name: str, value: Any, item: Any, example: Any) -> None:
        if isinstance(example, bool):
            if not isinstance(item, bool):
                raise ValueError(f"{owner}: hyper-parameter {name!r} = {value!r} must be a bool")
            return
        if isinstance(example, int):
            ok = isinstance(item, int) and not isinstance(item, bool)
            kind = "an int"
        elif isinstance(example, float):
            ok = isinstance(item, int | float) and not isinstance(item, bool) and not math.isnan(item)
            kind = "a number"
        else:
            return
        if not ok:
            raise ValueError(f"{owner}: hyper-parameter {name!r} = {value!r} must be {kind}")
        if (self.low is not None and item < self.low) or (self.high is not None and item > self.high):
            bounds = f"[{'-inf' if self.low is None else self.low}, {'inf' if self.high is None else self.high}]"
            raise ValueError(f"{owner}: hyper-parameter {name!r} = {value!r} is out of bounds {bounds}")


class Generator(ABC):
    """Template methods: `fit` checks the table then calls `_fit`; `sample` calls `_sample`.

    A subclass declares its hyper-parameters in `hyper_params`; the constructor refuses unknown names and
    out-of-bounds values, and fills in the defaults, so `self.hyper` always holds every declared parameter.
    """

    name: ClassVar[str]
    hyper_params: ClassVar[dict[str, HyperParam]] = {}
    supports_privacy: ClassVar[bool] = False  # can train under differential privacy (`privacy=`)
    resumable: ClassVar[bool] = False  # train(..., checkpoint_dir=) checkpoints each epoch and resumes

    def __init__(self, metadata: TableMetadata, privacy: dict[str, float] | None = None, **hyper: Any):
        """`privacy`: {"epsilon": ..., "delta": ...} to train with differential privacy, None for none."""
        from synthlake.dp import check_privacy

        if privacy is not None and not self.supports_privacy:
            raise ValueError(f"generator {self.name!r} does not support differential privacy; use tabular_ar")
        self.privacy = check_privacy(privacy)
        declared = self.hyper_params
        unknown = sorted(set(hyper) - set(declared))
        if unknown:
            raise ValueError(f"{self.name}: unknown hyper-parameters {unknown}; known: {sorted(declared)}")
        for key, value in hyper.items():
            declared[key].check(self.name, key, value)
        self.metadata = metadata
        self.hyper = {key: copy.deepcopy(hyper.get(key, param.default)) for key, param in declared.items()}

    def fit(self, table: pd.DataFrame) -> Generator:
        missing = [c for c in self.metadata.names if c not in table.columns]
        if missing:
            raise ValueError(f"table lacks configured columns: {missing}")
        if table.empty:
            raise ValueError("cannot fit a generator on an empty table")
        self._fit(table)
        return self

    def sample(self, n: int, seed: int, row_offset: int = 0) -> pd.DataFrame:
        """n rows in the metadata's column order; the same (n, seed, row_offset) gives the same rows.

        row_offset numbers generated identifiers, so blocks sampled apart stay unique together.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return self._sample(n, seed, row_offset)[self.metadata.names]

    def sample_arrow(self, n: int, seed: int, row_offset: int = 0):
        """sample() as a pyarrow Table, the sample stage's path: a generator that builds Arrow columns itself
        (tabular_ar) skips the round trip through pandas."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return self._sample_arrow(n, seed, row_offset).select(self.metadata.names)

    def _sample_arrow(self, n: int, seed: int, row_offset: int):
        import pyarrow as pa

        return pa.Table.from_pandas(self._sample(n, seed, row_offset), preserve_index=False)

    def save_sampler(self, directory: str | Path) -> None:
        """Write what synthlake.generators.load_sampler rebuilds a sampler from, for the sample stage's
        executors; a generator with a lighter sampler (no torch, no training code) writes that instead."""
        self.save(directory)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "generator": self.name,
            "metadata": self.metadata.model_dump(mode="json"),
            "hyper": self.hyper,
            "privacy": self.privacy,
            "state": self._save(directory),
        }
        (directory / METADATA_FILE).write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> Generator:
        from synthlake.generators import get_generator

        directory = Path(directory)
        state = json.loads((directory / METADATA_FILE).read_text())
        klass = get_generator(state["generator"])
        if cls is not Generator and klass is not cls:
            raise ValueError(f"{directory} holds a {state['generator']!r} model, not {cls.name!r}")
        model = klass(
            TableMetadata.model_validate(state["metadata"]), privacy=state.get("privacy"), **state["hyper"]
        )
        model._load(directory, state["state"])
        return model

    @abstractmethod
    def _fit(self, table: pd.DataFrame) -> None: ...

    @abstractmethod
    def _sample(self, n: int, seed: int, row_offset: int) -> pd.DataFrame: ...

    @abstractmethod
    def _save(self, directory: Path) -> dict[str, Any]:
        """Write weights into `directory`; return the JSON-able state needed to load them."""

    @abstractmethod
    def _load(self, directory: Path, state: dict[str, Any]) -> None: ...
