"""The engine contract: what every generator and every sampler provides, declared once.

The pipeline drives a generator in two steps, so that encoding happens once on the driver and training runs
in several processes:

    model = get_generator(name)(metadata, privacy=None, **hyper)   # hyper checked by the generator's Hyper
    encoded = model.prepare(table, seed)                            # fit the column encodings, encode the rows
    history = model.train(encoded, TrainOptions(seed=..., device=..., on_epoch=..., checkpoint_dir=...))
    model.save(folder); model.freeze().save(folder)                 # the whole model, then its Sampler

A `Sampler` is all the sample stage, the MLflow pyfunc and any service need: `sample_arrow(n, seed,
row_offset)`, `save`, `load`. A generator whose sampler needs no torch (tabular_ar) declares its own sampler
class in the registry; the others are sampled through `GeneratorSampler`, which wraps the whole generator.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, get_args, get_origin, runtime_checkable

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError

from synthlake.metadata import TableMetadata

METADATA_FILE = "generator.json"
SAMPLER_FILE = "sampler.json"  # names the generator; load_sampler picks the sampler class from it
EpochCallback = Callable[[dict[str, float]], None]  # called with each epoch's history record (on rank 0)


class HyperParams(BaseModel):
    """A generator's hyper-parameters: one pydantic model per generator, each field with its default, its
    bounds (ge/le), its unit in the name or the description, and a description (`synthlake generators`
    prints them). Strict: an int field takes no float or bool, a float field takes an int."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @classmethod
    def check(cls, owner: str, values: dict[str, Any]) -> dict[str, Any]:
        """Every declared parameter, the defaults filled in; a ValueError names each bad one and its value."""
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise ValueError(f"{owner}: unknown hyper-parameters {unknown}; known: {sorted(cls.model_fields)}")
        try:
            return cls.model_validate(values).model_dump()
        except ValidationError as exc:
            raise ValueError("; ".join(_describe(owner, values, err) for err in exc.errors())) from None

    @classmethod
    def describe(cls) -> list[tuple[str, Any, str, str]]:
        """(name, default, bounds, description) per parameter."""
        return [(name, field.default, _bounds(field.annotation, field.metadata), field.description or "")
                for name, field in cls.model_fields.items()]


def _bounds(annotation: Any, metadata: list) -> str:
    """"[low, high]" of a number (of each item of a list), or the choices of a Literal."""
    if get_origin(annotation) is Literal:
        return f"one of {list(get_args(annotation))}"
    if get_origin(annotation) is list:  # list[Annotated[int, Field(ge=..., le=...)]]
        item = get_args(annotation)[0]
        return "each " + _bounds(get_args(item)[0], list(get_args(item)[1:])) if get_args(item) else ""
    metadata = [b for m in metadata for b in getattr(m, "metadata", [m])]  # a FieldInfo holds Ge and Le
    bounds = {type(m).__name__: m for m in metadata}
    low, high = getattr(bounds.get("Ge"), "ge", ""), getattr(bounds.get("Le"), "le", "")
    return f"[{low}, {high}]"


def _describe(owner: str, values: dict[str, Any], err: dict) -> str:
    if not err["loc"]:  # a check across parameters: its message names them
        return f"{owner}: {err['msg'].removeprefix('Value error, ')}"
    name = err["loc"][0]
    return f"{owner}: hyper-parameter {name!r} = {values.get(name)!r}: {err['msg']}"


@dataclass(frozen=True)
class TrainOptions:
    """How one training process trains: its seed, its device, a callback per epoch (rank 0) and, for a
    resumable generator, the folder it checkpoints every epoch into and resumes from."""

    seed: int = 0
    device: str = "cpu"
    on_epoch: EpochCallback | None = None
    checkpoint_dir: str | Path | None = None
    sharded: bool = False  # the encoded rows are this process's own shard (generators that declare `shards`)


@runtime_checkable
class Sampler(Protocol):
    """A fitted model, ready to sample: the same (n, seed, row_offset) gives the same rows, a shorter sample
    is a prefix of a longer one, and row_offset numbers generated identifiers (blocks sampled apart stay
    unique together). Saved with `save`, rebuilt by synthlake.generators.load_sampler."""

    metadata: TableMetadata

    def sample_arrow(self, n: int, seed: int, row_offset: int = 0) -> pa.Table: ...

    def save(self, directory: str | Path) -> None: ...


class Generator(ABC):
    """Learns a table. `fit` = `prepare` + `train`; `sample` and `sample_arrow` check their arguments, then
    call `_sample` / `_sample_arrow`; `save` and `load` keep weights plus JSON (no pickles)."""

    name: ClassVar[str]
    Hyper: ClassVar[type[HyperParams]] = HyperParams
    supports_privacy: ClassVar[bool] = False  # trains under differential privacy (`privacy=`)
    resumable: ClassVar[bool] = False  # train() checkpoints every epoch into options.checkpoint_dir and resumes
    # its encodings can be fitted apart (use_columns), rows encoded by a torch-free `encoder()`, and train()
    # takes each process's own shard (options.sharded): the train stage then encodes on Spark's executors
    shards: ClassVar[bool] = False

    def __init__(self, metadata: TableMetadata, privacy: dict[str, float] | None = None, **hyper: Any):
        """`privacy`: {"epsilon": ..., "delta": ...} to train with differential privacy, None for none."""
        from synthlake.dp import check_privacy

        if privacy is not None and not self.supports_privacy:
            raise ValueError(f"generator {self.name!r} does not support differential privacy; use tabular_ar")
        self.privacy = check_privacy(privacy)
        self.metadata = metadata
        self.hyper = self.Hyper.check(self.name, hyper)
        self.privacy_report: dict[str, Any] | None = None  # how the budget was spent, after DP training

    # ---- learning ----------------------------------------------------------------------------------
    @abstractmethod
    def prepare(self, table: pd.DataFrame, seed: int = 0) -> Any:
        """Fit the column encodings (once, before any training process starts); return the encoded rows that
        every training process reads (an array of one row per table row)."""

    @abstractmethod
    def train(self, encoded: Any, options: TrainOptions) -> list[dict[str, float]]:
        """Train on `encoded` (under torch.distributed, each process on its shard); return one history record
        per epoch."""

    def fit(self, table: pd.DataFrame, seed: int = 0) -> Generator:
        missing = [c for c in self.metadata.names if c not in table.columns]
        if missing:
            raise ValueError(f"table lacks configured columns: {missing}")
        if table.empty:
            raise ValueError("cannot fit a generator on an empty table")
        self.train(self.prepare(table, seed), TrainOptions(seed=seed))
        return self

    def freeze(self) -> Sampler:
        """The fitted model as a Sampler; generators with a lighter one (no torch) override this."""
        return GeneratorSampler(self)

    # ---- sampling ----------------------------------------------------------------------------------
    def sample(self, n: int, seed: int, row_offset: int = 0) -> pd.DataFrame:
        """n rows in the metadata's column order (pandas dtypes: Int64 for integers with nulls)."""
        _check_n(n)
        return self._sample(n, seed, row_offset)[self.metadata.names]

    def sample_arrow(self, n: int, seed: int, row_offset: int = 0) -> pa.Table:
        """sample() as a pyarrow Table."""
        _check_n(n)
        return self._sample_arrow(n, seed, row_offset).select(self.metadata.names)

    def _sample_arrow(self, n: int, seed: int, row_offset: int) -> pa.Table:
        return self.freeze().sample_arrow(n, seed, row_offset)

    def _sample(self, n: int, seed: int, row_offset: int) -> pd.DataFrame:
        """Generators without a Sampler of their own override this (GeneratorSampler calls it)."""
        return to_frame(self._sample_arrow(n, seed, row_offset))

    # ---- persistence -------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {"generator": self.name, "metadata": self.metadata.model_dump(mode="json"), "hyper": self.hyper,
                 "privacy": self.privacy, "privacy_report": self.privacy_report, "state": self._save(directory)}
        (directory / METADATA_FILE).write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> Generator:
        from synthlake.generators import get_generator

        directory = Path(directory)
        state = json.loads((directory / METADATA_FILE).read_text())
        klass = get_generator(state["generator"])
        if cls is not Generator and klass is not cls:
            raise ValueError(f"{directory} holds a {state['generator']!r} model, not {cls.name!r}")
        model = klass(TableMetadata.model_validate(state["metadata"]), privacy=state.get("privacy"),
                      **state["hyper"])
        model.privacy_report = state.get("privacy_report")
        model._load(directory, state["state"])
        return model

    @abstractmethod
    def _save(self, directory: Path) -> dict[str, Any]:
        """Write weights into `directory`; return the JSON-able state needed to load them."""

    @abstractmethod
    def _load(self, directory: Path, state: dict[str, Any]) -> None: ...


class GeneratorSampler:
    """The Sampler of a generator without a lighter one: the whole generator, saved as it saves itself."""

    def __init__(self, generator: Generator):
        self.generator = generator
        self.metadata = generator.metadata

    def sample_arrow(self, n: int, seed: int, row_offset: int = 0) -> pa.Table:
        if type(self.generator)._sample is Generator._sample:
            raise NotImplementedError(f"generator {self.generator.name!r} implements neither freeze() nor _sample()")
        _check_n(n)
        frame = self.generator._sample(n, seed, row_offset)[self.metadata.names]
        return pa.Table.from_pandas(frame, preserve_index=False)

    def save(self, directory: str | Path) -> None:
        self.generator.save(directory)
        write_sampler_file(directory, self.generator.name, {})

    @classmethod
    def load(cls, directory: str | Path) -> GeneratorSampler:
        return cls(Generator.load(directory))


def sample_conditional(sampler: Sampler, n: int, seed: int, row_offset: int, conditions) -> pa.Table:
    """`sampler`'s rows under `conditions` (synthlake.conditions), if it can meet them by construction; a
    ConditionError says which generator to use otherwise."""
    from synthlake.conditions import ConditionError

    if not conditions:
        return sampler.sample_arrow(n, seed, row_offset)
    if "conditions" not in inspect.signature(sampler.sample_arrow).parameters:
        name = getattr(getattr(sampler, "generator", None), "name", type(sampler).__name__)
        raise ConditionError(f"the {name} sampler cannot meet conditions (where, seed rows, rebalance, fairness); "
                             "train tabular_ar")
    return sampler.sample_arrow(n, seed, row_offset, conditions=conditions)


def write_sampler_file(directory: str | Path, generator: str, state: dict[str, Any]) -> None:
    """SAMPLER_FILE: the generator's name (which picks the sampler class on load) and the sampler's state."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SAMPLER_FILE).write_text(json.dumps({"generator": generator, **state}))


def to_frame(table: pa.Table) -> pd.DataFrame:
    """pandas as the other generators give it: integers with nulls as Int64, timestamps in nanoseconds."""
    return pd.DataFrame({name: _to_series(table.column(name)) for name in table.column_names})


def _to_series(values: pa.ChunkedArray) -> pd.Series:
    if pa.types.is_integer(values.type) and values.null_count:
        array = values.combine_chunks()
        data = array.fill_null(0).to_numpy()
        return pd.Series(pd.arrays.IntegerArray(data, array.is_null().to_numpy(zero_copy_only=False)))
    return values.to_pandas(coerce_temporal_nanoseconds=True)


def _check_n(n: int) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
