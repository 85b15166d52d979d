"""A run's folder and the records its stages leave there, typed.

`ctx.store` (a RunStore) names every file and folder of a run. A stage reads what the stages before it
recorded with `store.read(ProfileRecord)` and writes its own with `store.write(record)`, atomically. The
models keep the JSON shape the stages have always written, so existing files load as they are.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import ConfigDict, Field, field_validator

from pipelines.config import Source, Strict
from pipelines.context import StageError
from pipelines.stages import writer
from synthlake.metadata import ColumnKind

# Every file and folder of a run, relative to its folder; pipelines.stages names them by these keys.
LAYOUT = {
    "profile": "profile.json",
    "check": "check.json",
    "train": "train.json",
    "model": "model",  # the trained generator (a folder); the MLflow registry holds a copy
    "train_work": "train_work",  # encoded rows the training processes share; removed after training
    "train_checkpoints": "train_checkpoints",  # survive a killed attempt so that a retry resumes
    "sample": "sample.json",
    "gx_result": "gx_result.json",  # Great Expectations' own result document
    "verdict": "validation.json",
    "metrics": "metrics.json",  # the headline figures (`dvc metrics`)
    "report": "report/report.html",
    "column_shapes": "report/column_shapes.csv",  # plot data (`dvc plots`)
    "dcr": "report/dcr.csv",
    "attempts": "attempts.json",  # each training attempt of the run and its verdict (pipelines.retrain)
    "publish": "publish.json",
    # a run of related tables (pipelines.related) keeps these; each table's model has a run folder of its own
    "related_train": "related_train.json",
    "related_sample": "related_sample.json",
    "related_verdict": "related_validation.json",
    "related_figures": "related_figures.json",  # the validation's figures, by table
    "related_report": "related_report.html",
    "related_publish": "related_publish.json",
}


class Record(Strict):
    name: ClassVar[str]  # its key in LAYOUT


# ---- profile ----------------------------------------------------------------------------------------
class Categories(Strict):
    truncated: bool  # more values than the profile keeps: no category set can be enforced
    frequencies: list[tuple[str | None, float]]  # the most frequent values (None: null) and their shares


class Histogram(Strict):
    edges: list[float]  # the column's ventiles (distinct), as doubles (a datetime in Unix seconds)
    shares: list[float]  # of the non-null values in (-inf, e1], (e1, e2], ... (ek, inf): one more than edges


class ColumnProfile(Strict):
    """Unset fields stay out of the file: min to quantiles exist for numeric and datetime columns only,
    categories for categorical ones, pii_suspected when the values look like PII."""

    kind: ColumnKind
    type: Literal["bigint", "double", "timestamp", "string"]
    null_fraction: float
    distinct_approx: int
    min: int | float | str | None = None
    max: int | float | str | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] | None = None
    categories: Categories | None = None
    histogram: Histogram | None = None  # what drift is measured against (pipelines.check); older profiles lack it
    pii_suspected: str | None = None

    @field_validator("min", "max", mode="before")
    @classmethod
    def _datetime_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, datetime) else value  # as the files have always held it


class ProfiledSource(Source):
    fingerprint: str


class Holdout(Strict):
    fraction: float
    seed: int
    rows: int


class ProfileRecord(Record):
    name = "profile"
    profile_version: str  # a hash of everything below but run_id and created_at
    run_id: str
    created_at: datetime
    dataset: str
    source: ProfiledSource
    rows: int  # training rows (the holdout excluded)
    columns: dict[str, ColumnProfile]
    holdout: Holdout
    rules: dict[str, float] = Field(default_factory=dict)  # rule label -> share of the training rows breaking it


# ---- check ------------------------------------------------------------------------------------------
class Champion(Strict):
    model_name: str
    model_version: str
    mlflow_run_id: str  # the run that trained it
    source_fingerprint: str | None  # of the source it learned; None: its profile was not found
    profile_version: str | None


class ColumnDrift(Strict):
    psi: float
    js: float | None = None  # categorical columns
    ks: float | None = None  # continuous columns
    drifted: bool


class CheckRecord(Record):
    name = "check"
    decision: Literal["train", "reuse"]
    reason: str  # one sentence: why
    retrain: Literal["auto", "always", "never"]  # the policy it applied
    source_fingerprint: str
    training_key: str  # a hash of the settings a model depends on; a champion with another key is not reused
    champion: Champion | None  # None: the dataset has no champion yet
    drift: dict[str, ColumnDrift] = Field(default_factory=dict)  # per column, where a champion's profile exists
    drifted_columns: list[str] = Field(default_factory=list)
    thresholds: dict[str, float] = Field(default_factory=dict)
    mlflow_run_id: str  # the run's MLflow run: the decision, its reason and the scores; training logs into it
    checked_at: datetime


# ---- train ------------------------------------------------------------------------------------------
class PrivacySpent(Strict):
    model_config = ConfigDict(extra="allow")  # the generator's accounting details (dp_sgd, preprocessing)
    epsilon: float
    delta: float


class TrainPlacement(Strict):
    """Where the training processes ran (pipelines.train): on the driver's machine, or one per Spark barrier task
    on the executors (the environment's train_on); rank 0's host and working directory (an executor's lies under
    its worker's work dir)."""

    train_on: Literal["driver", "executors"]
    processes: int
    rank0_host: str
    rank0_working_dir: str


class TrainRecord(Record):
    name = "train"
    mlflow_run_id: str
    model_name: str
    model_version: str
    model_uri: str
    training_rows: int
    epochs: int
    final_losses: dict[str, int | float | None] | None  # the last epoch's figures; None: no epoch ran
    privacy: PrivacySpent | None  # spent by a run with a privacy budget
    reused: bool = False  # the champion, reused as the check stage decided (nothing trained)
    attempt: int = 1  # the training attempt (pipelines.retrain)
    hyper_step: dict[str, Any] = Field(default_factory=dict)  # the ladder's hyper-parameters of this attempt
    placement: TrainPlacement | None = None  # None: nothing trained (the champion reused), or an older record


# ---- sample -----------------------------------------------------------------------------------------
class SampleRecord(Record):
    name = "sample"
    staging_table: str
    rows: int  # rows staged: publish checks that the staging table still holds them
    partitions: int
    seed: int
    model_version: str
    writer: Literal["arrow", "spark"]
    where: str | None = None  # the condition every row meets (validate compares them with the real rows that do)
    seed_table: str | None = None  # the seed table whose partial rows the rows keep


# ---- validate ---------------------------------------------------------------------------------------
class Check(Strict):
    check: str  # e.g. "accuracy", "column_shape:age", "gx:expect_column_to_exist:age"
    family: str
    value: Any  # a metric's value, or whatever an expectation observed
    threshold: float | None
    op: str | None
    passed: bool | None  # None: measured and reported, not a gate


def check(name: str, family: str, value, threshold, op: str | None, passed: bool | None) -> dict:
    """One check as the verdict lists it (a Check's fields)."""
    return {"check": name, "family": family, "value": value, "threshold": threshold, "op": op, "passed": passed}


class Verdict(Record):
    name = "verdict"
    run_id: str
    passed: bool
    failed_checks: list[str]
    checks: list[Check]
    skipped_metrics: dict[str, str]  # metric -> what the dataset config lacks for it
    gx_success: bool
    metrics: dict[str, float | None]
    rows: dict[str, int]  # rows per side the metrics ran on: real, holdout, synthetic
    validated_at: datetime


class Attempt(Strict):
    attempt: int
    reused: bool
    hyper_step: dict[str, Any]
    model_version: str
    mlflow_run_id: str
    passed: bool
    failed_checks: list[str]


class AttemptsRecord(Record):
    name = "attempts"
    attempts: list[Attempt]


# ---- publish ----------------------------------------------------------------------------------------
class PublishRecord(Record):
    name = "publish"
    published_table: str
    rows: int
    model_version: str
    alias: str
    audit_table: str


# ---- related tables -----------------------------------------------------------------------------------
class TableModelRecord(Strict):
    model_name: str
    model_version: str
    mlflow_run_id: str
    rows: int  # model rows learned
    orphans: int  # real rows left out: their foreign key named no parent row
    privacy: PrivacySpent | None = None  # the model's privacy accounting, under privacy


class RelatedTrainRecord(Record):
    name = "related_train"
    tables: dict[str, TableModelRecord]
    privacy: PrivacySpent | None = None  # under privacy: epsilon and delta spent, summed over the tables' models


class RelatedSampleRecord(Record):
    name = "related_sample"
    tables: dict[str, str]  # table -> its staging Delta table
    rows: dict[str, int]
    seed: int
    partitions: int


class RelatedVerdict(Record):
    name = "related_verdict"
    run_id: str
    passed: bool
    failed_checks: list[str]
    checks: list[Check]
    validated_at: datetime


class RelatedPublishRecord(Record):
    name = "related_publish"
    tables: dict[str, str]  # table -> its published Delta table
    rows: dict[str, int]


# ---- the store --------------------------------------------------------------------------------------
R = TypeVar("R", bound=Record)


class RunStore:
    """Where each file of one run lives, and its records read and written."""

    def __init__(self, run_dir: Path, run_id: str) -> None:
        self.run_dir = run_dir
        self.run_id = run_id

    def path(self, name: str) -> Path:
        return self.run_dir / LAYOUT[name]

    def read(self, record: type[R]) -> R:
        path = self.path(record.name)
        if not path.is_file():
            raise StageError(f"{path} is missing: run the {writer(record.name)} stage for run id "
                             f"{self.run_id!r} first")
        return record.model_validate_json(path.read_text())

    def write(self, record: Record) -> Path:
        # exclude_unset: a column profile's kind-specific fields stay out where they do not apply;
        # fallback=str: values JSON lacks (numpy integers an expectation observed) as text, as ever
        return self.write_text(record.name, record.model_dump_json(indent=2, exclude_unset=True, fallback=str))

    def write_json(self, name: str, data: Any) -> Path:
        """A document of someone else's shape: GX's result, the headline metrics."""
        return self.write_text(name, json.dumps(data, indent=2, default=str))

    def write_text(self, name: str, text: str) -> Path:
        """Atomically (temp file, then rename), so a killed stage leaves no half-written file."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
        return path
