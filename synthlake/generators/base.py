"""The generator interface: fit a table, sample rows from a seed, save and load as weights plus JSON."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from synthlake.metadata import TableMetadata

METADATA_FILE = "generator.json"


class Generator(ABC):
    """Template methods: `fit` checks the table then calls `_fit`; `sample` calls `_sample`."""

    name: ClassVar[str]

    def __init__(self, metadata: TableMetadata, **hyper: Any):
        self.metadata = metadata
        self.hyper = hyper

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

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "generator": self.name,
            "metadata": self.metadata.model_dump(mode="json"),
            "hyper": self.hyper,
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
        model = klass(TableMetadata.model_validate(state["metadata"]), **state["hyper"])
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
