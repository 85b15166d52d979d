"""A run's context: its configs, its id and where its outputs live."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.config import (
    ConfigError,
    DatasetConfig,
    EnvConfig,
    Params,
    load_dataset,
    load_env,
    load_params,
    registered_model_name,
    resolve,
)

if TYPE_CHECKING:
    from pipelines.records import RunStore

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}$")


class StageError(RuntimeError):
    """A stage cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class RunContext:
    config_path: str
    dataset: DatasetConfig
    params: Params
    env: EnvConfig
    run_id: str
    params_path: str | None = None  # None: the project's params.yaml
    attempt: int = 1  # the training attempt (pipelines.retrain tries the ladder's steps after a failed gate)
    hyper_step: dict[str, Any] = field(default_factory=dict)  # that attempt's hyper-parameters, over the others

    @classmethod
    def open(cls, config_path: str, run_id: str, params_path: str | None = None,
             env_name: str | None = None, **overrides: Any) -> RunContext:
        """Load and validate everything a stage needs; `overrides` are top-level params (rows, seed)."""
        if not RUN_ID_PATTERN.match(run_id):
            raise ConfigError(f"run id {run_id!r} must be 1-128 of letters, digits and _.:+- "
                             "and start with a letter or digit")
        return cls(
            config_path=str(config_path),
            dataset=load_dataset(config_path),
            params=load_params(params_path, overrides),
            env=load_env(env_name),
            run_id=run_id,
            params_path=None if params_path is None else str(params_path),
        )

    def for_attempt(self, attempt: int, hyper_step: dict[str, Any]) -> RunContext:
        return replace(self, attempt=attempt, hyper_step=dict(hyper_step))

    # ---- where things live -------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return Path(resolve(self.env.work_dir)) / "runs" / self.dataset.name / self.run_id

    def table_path(self, kind: str) -> str:
        return self.env.table_path(getattr(self.dataset.output, kind))

    @property
    def partition_filter(self) -> str:
        """The SQL predicate of this run's partition (safe to inline: run ids are validated above)."""
        return f"run_id = '{self.run_id}'"

    def read_partition(self, spark, kind: str, version: int | None = None):
        """This run's rows of a Delta output table ("staging" or "published"), run_id column included; as of
        table `version` if given (one snapshot for every job on the result), else the latest."""
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.table_path(kind)).where(self.partition_filter)

    @property
    def model_name(self) -> str:
        return registered_model_name(self.dataset.name)

    # ---- stage records -----------------------------------------------------------------------------
    @property
    def store(self) -> RunStore:
        """The run folder's files and records."""
        from pipelines.records import RunStore  # records imports StageError from here

        return RunStore(self.run_dir, self.run_id)
