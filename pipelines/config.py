"""Loading and validating the three kinds of configuration.

- a dataset config (conf/datasets/NAME.yaml): what the table is and where its outputs go;
- params.yaml: the tunables, one source for the CLI, the jobs, DVC and the DAGs;
- an environment (conf/env/NAME.yaml, chosen by SYNTHLAKE_ENV): where things live.

Every model forbids unknown keys, so a typo is an error that names the key, not a silent default.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synthlake.metadata import ColumnSpec, PrivacyBudget, TableMetadata
from synthlake.relations import RelatedTable

CRON = r"^(@(hourly|daily|weekly|monthly|yearly)|(\S+\s+){4}\S+)$"  # a DAG's `schedule:` (cron, UTC, or a preset)


class ConfigError(ValueError):
    """A configuration file or setting is wrong; the message names the file and the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- dataset ----------------------------------------------------------------------------------------
class Source(Strict):
    path: str  # relative to the project root, or any URI Spark reads (s3a://, abfss://, ...)
    format: Literal["csv", "parquet", "delta"]
    options: dict[str, str] = Field(default_factory=dict)  # passed to Spark's reader


class Outputs(Strict):
    staging: str  # Delta table folder names under the environment's lake_dir
    published: str
    audit: str = "synthlake_audit"


def registered_model_name(dataset: str) -> str:
    """The name a dataset's models are registered under in MLflow."""
    return f"synthlake-{dataset}"


class RebalanceConfig(Strict):
    """`column` (categorical) follows `shares` (category -> share); the rest of each row is drawn given it."""

    column: str
    shares: dict[str, float]


class FairnessConfig(Strict):
    """The generated `target` independent of the `sensitive` columns (statistical parity); the validate stage
    refuses a run whose largest gap in the target's shares between sensitive groups exceeds `max_gap`."""

    target: str
    sensitive: list[str] = Field(min_length=1)
    max_gap: float = Field(0.02, ge=0.0, le=1.0)


class DatasetConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    source: Source
    columns: list[ColumnSpec]
    target: str | None = None
    generator: str = "tabular_ar"
    output: Outputs
    # privacy checks: k-anonymity, l-diversity and t-closeness group rows by the quasi-identifiers;
    # `sensitive` (default: the target) is the attribute l-diversity and t-closeness protect
    quasi_identifiers: list[str] = Field(default_factory=list)
    sensitive: str | None = None
    canaries: dict[str, list[str]] = Field(default_factory=dict)  # column -> planted values that must not leak
    # over params.yaml's validate.thresholds; the names are checked by pipelines.thresholds
    thresholds: dict[str, float | None] = Field(default_factory=dict)
    privacy: PrivacyBudget | None = None  # train with differential privacy (epsilon, delta)
    hyper: dict[str, Any] = Field(default_factory=dict)  # the generator's hyper-parameters, over params.yaml's
    # business rules that hold on every generated row by construction (synthlake.rules; README: Rules)
    rules: list[dict[str, Any]] = Field(default_factory=list)
    # what every run's rows are drawn to (synthlake.conditions; README: Conditions, rebalancing, fairness)
    rebalance: RebalanceConfig | None = None
    fairness: FairnessConfig | None = None
    # when the dataset's scheduled DAG runs (cron, UTC), besides whenever its source asset is updated; none: only
    # then (dags/synthlake_dags.py)
    schedule: str | None = Field(None, pattern=CRON)
    # a local source is polled this often by the scheduled DAG's asset watcher (pipelines.source_watch), which
    # starts a run when it changes; null: no watcher (runs start on the schedule and on asset events)
    source_poll_seconds: float | None = Field(300, gt=0)

    @model_validator(mode="after")
    def _check_metadata(self) -> DatasetConfig:
        self.metadata  # noqa: B018 - validates columns and target together
        names = {c.name for c in self.columns}
        for key, cols in (("quasi_identifiers", self.quasi_identifiers), ("sensitive", [self.sensitive or []]),
                          ("canaries", list(self.canaries))):
            unknown = [c for c in cols if c and c not in names]
            if unknown:
                raise ValueError(f"{key}: {unknown} are not configured columns")
        if self.privacy is not None and self.privacy.unit not in (None, *names):
            raise ValueError(f"privacy.unit: '{self.privacy.unit}' is not a configured column")
        rules = self.ruleset  # each rule's columns and kinds checked; the message names the rule
        if rules is not None and self.privacy is not None:
            rules.check_privacy()
        self.conditions().check(self.metadata)  # the message names the column
        return self

    def conditions(self, where: str | None = None, seed_rows=None):
        """What this dataset's runs draw their rows to (synthlake.conditions.Conditions), with a run's `where`
        and seed rows."""
        from synthlake.conditions import Conditions, Fairness, Rebalance

        return Conditions(
            where=where, seed_rows=seed_rows,
            rebalance=Rebalance(self.rebalance.column, dict(self.rebalance.shares)) if self.rebalance else None,
            fairness=Fairness(self.fairness.target, tuple(self.fairness.sensitive)) if self.fairness else None)

    @property
    def ruleset(self):
        """The dataset's rules (a synthlake.rules.RuleSet, not fitted), None without any."""
        if not self.rules:
            return None
        from synthlake.rules import parse_rules

        return parse_rules(self.rules, self.metadata)

    @property
    def sensitive_column(self) -> str | None:
        return self.sensitive or self.target

    @property
    def metadata(self) -> TableMetadata:
        return TableMetadata(columns=self.columns, target=self.target)


# ---- related tables ---------------------------------------------------------------------------------
class RelatedTableConfig(RelatedTable):
    """One table of a related dataset: synthlake.relations.RelatedTable (columns, keys, order) and its source."""

    source: Source


class RelatedDatasetConfig(Strict):
    """A dataset of related tables (conf/datasets/NAME.yaml with `tables:`): learned, generated, validated and
    published together (pipelines.related). Each table's outputs are Delta tables named `<name>_<table>` and
    `<name>_<table>_staging`."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    tables: list[RelatedTableConfig] = Field(min_length=2)
    generator: Literal["tabular_ar"] = "tabular_ar"  # the related tables' models are sampled conditionally
    hyper: dict[str, Any] = Field(default_factory=dict)  # over params.yaml's, for every table's model
    audit: str = "synthlake_audit"
    min_column_shape: float | None = Field(None, ge=0, le=1)  # over params.yaml's validate.min_column_shape
    # as a flat dataset's: the scheduled DAG's cron, and how often its asset watcher polls each table's source
    schedule: str | None = Field(None, pattern=CRON)
    source_poll_seconds: float | None = Field(300, gt=0)
    # differential privacy per entity (a root row with all of its descendants): the budget split evenly over the
    # tables' models; `unit_rows`: the children per parent and table learned (the first, in order_by order)
    privacy: PrivacyBudget | None = None

    @model_validator(mode="after")
    def _check_relations(self) -> RelatedDatasetConfig:
        from synthlake.related_frames import TableModel

        for table in self.tables:
            if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", table.name):
                raise ValueError(f"table '{table.name}': a name of letters, digits and _ (it names Delta tables)")
        if self.privacy is not None and self.privacy.unit is not None:
            raise ValueError(f"privacy.unit '{self.privacy.unit}': the unit of related tables is their root table's "
                             "entity (a row with all of its descendants); leave unit out")
        relations = self.relations
        for table in self.tables:
            TableModel(relations, table.name)  # refuses a column named like a derived one
        return self

    def table_privacy(self, table: str) -> PrivacyBudget | None:
        """Table `table`'s model's share of the budget: its entity the unit, its rows per entity bounded."""
        if self.privacy is None:
            return None
        from synthlake.related_frames import ENTITY, entity_rows

        share = len(self.tables)
        return PrivacyBudget(epsilon=self.privacy.epsilon / share, delta=self.privacy.delta / share, unit=ENTITY,
                             unit_rows=entity_rows(self.relations, table, self.privacy.unit_rows))

    @property
    def relations(self):
        from synthlake.relations import Relations

        return Relations(tables=[RelatedTable(**t.model_dump(exclude={"source"})) for t in self.tables])

    def table(self, name: str) -> RelatedTableConfig:
        return next(t for t in self.tables if t.name == name)

    def table_dataset(self, table_name: str, **changes: Any) -> DatasetConfig:
        """Table `table_name` as a flat dataset (its own columns and source, its Delta tables), with `changes`."""
        table = self.table(table_name)
        data = {"name": f"{self.name}-{table_name}", "source": table.source.model_dump(),
                "columns": [c.model_dump() for c in table.columns], "hyper": self.hyper, "schedule": None,
                "source_poll_seconds": None,
                "output": {"staging": f"{self.name}_{table_name}_staging", "published": f"{self.name}_{table_name}",
                           "audit": self.audit}}
        return DatasetConfig.model_validate({**data, **changes})


# ---- params -----------------------------------------------------------------------------------------
class TrainParams(Strict):
    num_processes: int = Field(2, ge=1, le=64)  # TorchDistributor processes (DDP)
    use_gpu: Literal["auto", "true", "false"] = "auto"
    max_rows: int = Field(200_000, ge=100)  # training reads at most this many source rows
    # up to this many training rows are encoded on the driver (one collect: the fastest for small tables); more,
    # or any when training on the executors, are encoded by the executors (pipelines.encode)
    driver_encode_rows: int = Field(500_000, ge=0)
    # generator name -> hyper-parameters; those not set take the generator's defaults. Names, defaults and
    # bounds: `synthlake generators`. Checked against the generator when the train stage starts.
    hyper: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # the share of training rows that may break a dataset rule (beyond it, train refuses, naming the rule)
    max_rule_violations: float = Field(0.01, ge=0.0, le=1.0)
    # generator name -> hyper-parameters of each further attempt when a trained model fails its gate, on top of
    # `hyper` (pipelines.retrain); at most max_attempts trainings per run
    ladder: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    max_attempts: int = Field(3, ge=1, le=20)


class SampleParams(Strict):
    partitions: int = Field(4, ge=1, le=100_000)
    block_rows: int = Field(20_000, ge=1)  # rows per seeded block; changing it changes the rows
    # related tables: root rows per seeded block, generated with all of their descendants in one task
    root_block_rows: int = Field(1_000, ge=1)
    # arrow: executors write Parquet with pyarrow, the driver commits with delta-rs (fast); spark: Spark's
    # Delta writer (for lakes that pyarrow and delta-rs cannot reach)
    writer: Literal["arrow", "spark"] = "arrow"


class ProfileParams(Strict):
    holdout_fraction: float = Field(0.2, gt=0, lt=1)  # real rows set aside for validation, never trained on
    # the split's seed, apart from the run's: every run of a dataset holds out the same rows, so a champion reused
    # by a later run (pipelines.check) never learned that run's holdout
    holdout_seed: int = Field(42, ge=0, lt=2**31)


class CheckParams(Strict):
    """When a run trains a new model or reuses the champion (pipelines.check): a column drifted when its PSI, or
    its Jensen-Shannon distance (categories) or KS statistic (continuous columns), exceeds these."""

    psi: float = Field(0.2, gt=0)
    js: float = Field(0.1, gt=0, le=1)
    ks: float = Field(0.1, gt=0, le=1)


class ValidateParams(Strict):
    max_rows: int = Field(20_000, ge=100)  # metrics run on at most this many rows per side
    min_column_shape: float = Field(0.5, ge=0, le=1)  # every column's KS/TV complement
    # with a privacy budget the generator never sees the real min and max nor which columns lack nulls: this
    # share of a column's values must lie in the real range, and be non-null where the source has no nulls
    # (without a budget: all of them)
    dp_mostly: float = Field(0.95, gt=0, le=1)
    # metric name -> threshold (>= for higher-is-better metrics, <= for lower-is-better ones, the largest
    # distance from the ideal for metrics with an ideal value); null: measured and reported, not a gate.
    # The names are checked by pipelines.thresholds, which imports the metric registry.
    thresholds: dict[str, float | None] = Field(default_factory=dict)


class Params(Strict):
    seed: int = Field(42, ge=0, lt=2**31)
    rows: int = Field(10_000, ge=1)
    # a run's request (CLI --where / --seed-table, the on-demand DAG's params), not tunables: every row meets
    # `where` (Spark SQL on learned columns); a seed table's partial rows are kept, one output row each
    where: str | None = None
    seed_table: str | None = None
    # auto: train when the dataset has no champion, its training settings changed or its source drifted, else
    # sample from the champion; always: train; never: sample from the champion (refused without one)
    retrain: Literal["auto", "always", "never"] = "auto"
    profile: ProfileParams = Field(default_factory=ProfileParams)
    check: CheckParams = Field(default_factory=CheckParams)
    train: TrainParams = Field(default_factory=TrainParams)
    sample: SampleParams = Field(default_factory=SampleParams)
    validate_: ValidateParams = Field(default_factory=ValidateParams, alias="validate")


# ---- environment ------------------------------------------------------------------------------------
class SparkEnv(Strict):
    master: str = "local[2]"
    conf: dict[str, str] = Field(default_factory=dict)


class MlflowEnv(Strict):
    tracking_uri: str = "sqlite:///var/mlflow.db"
    artifact_location: str = "var/mlartifacts"
    experiment: str = "synthlake"


class OpenLineageEnv(Strict):
    """Where the stages' OpenLineage events go (pipelines.lineage): appended to files under `path`, or POSTed to
    an OpenLineage HTTP endpoint such as Marquez."""

    enabled: bool = True
    namespace: str = Field("synthlake", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,255}$")  # of the jobs
    transport: Literal["file", "http"] = "file"
    path: str = "var/lineage"  # file: the folder of the event files (one JSON event a line, appended)
    url: str | None = None  # http: the endpoint's base URL, e.g. http://marquez:5000
    endpoint: str = "api/v1/lineage"  # http: the path under `url`
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # http: env var of a bearer key
    timeout_s: float = Field(5.0, gt=0, le=300)  # http: per request
    spark_listener: bool = False  # also Spark's own events (the openlineage-spark listener): one per action

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return url

    @model_validator(mode="after")
    def _transport_settings(self) -> OpenLineageEnv:
        if self.transport == "http" and not self.url:
            raise ValueError("transport http needs url")
        if self.transport == "file" and (self.url or self.api_key_env):
            raise ValueError("url and api_key_env are settings of transport http, not file")
        return self


class CatalogEnv(Strict):
    """Where the published and audit tables are registered by name (pipelines.catalog)."""

    database: str = Field("synthetic", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    metastore_dir: str = "var/metastore"  # `synthlake sql`'s embedded metastore (Derby) and warehouse
    register_on_publish: bool = False  # with a shared metastore (spark.sql.catalogImplementation=hive)


class EnvConfig(Strict):
    work_dir: str = "var"  # run folders (profiles, models, verdicts); shared storage on a cluster
    lake_dir: str = "var/lake"  # Delta tables
    ivy_dir: str = "var/ivy"  # Spark's Ivy cache for the Delta jar (resolved from Maven Central once)
    # where the training processes run (pipelines.train): driver, TorchDistributor's local mode on the driver's
    # machine; executors, one process per Spark barrier task (train.num_processes task slots at once, work_dir
    # shared with the driver)
    train_on: Literal["driver", "executors"] = "driver"
    spark: SparkEnv = Field(default_factory=SparkEnv)
    mlflow: MlflowEnv = Field(default_factory=MlflowEnv)
    catalog: CatalogEnv = Field(default_factory=CatalogEnv)
    openlineage: OpenLineageEnv = Field(default_factory=OpenLineageEnv)

    def table_path(self, name: str) -> str:
        """The Delta table folder `name` under lake_dir."""
        return f"{resolve(self.lake_dir).rstrip('/')}/{name}"


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine's loopback (where a server may go without auth)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---- loading ----------------------------------------------------------------------------------------
def project_root() -> Path:
    """Relative paths in configs resolve against SYNTHLAKE_HOME, else the working directory."""
    return Path(os.environ.get("SYNTHLAKE_HOME") or os.getcwd()).resolve()


def resolve(path: str) -> str:
    """A path relative to the project root becomes absolute; URIs (scheme://) pass through."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path):
        return path
    return str((project_root() / path).resolve())


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return _expand_env(data)


def _expand_env(value: Any) -> Any:
    """${VAR} in strings comes from the environment, so secrets and endpoints stay out of files."""
    if isinstance(value, dict):
        return {k: _expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v) for v in value]
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}", lambda m: _env_var(m.group(1)), value)
    return value


def _env_var(name: str) -> str:
    if name not in os.environ:
        raise ConfigError(f"environment variable {name} is referenced in a config but not set")
    return os.environ[name]


def _validate(model: type[BaseModel], data: dict[str, Any], path: Path) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise ConfigError(f"{path}: invalid configuration\n" + "\n".join(lines)) from None


def load_dataset(path: str | Path) -> DatasetConfig:
    """A relative path is looked up in the working directory, then in the project root."""
    config = load_any_dataset(path)
    if isinstance(config, RelatedDatasetConfig):
        raise ConfigError(f"{path}: dataset '{config.name}' has related tables; this command takes one table "
                          "(`synthlake run` runs related tables)")
    return config


def load_any_dataset(path: str | Path) -> DatasetConfig | RelatedDatasetConfig:
    """A dataset config: of one table, or of related tables (with `tables:`)."""
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = project_root() / path
    data = _read_yaml(path)
    return _validate(RelatedDatasetConfig if "tables" in data else DatasetConfig, data, path)


def params_file(path: str | Path | None = None) -> Path:
    """The params file: `path`, else the project's params.yaml."""
    return Path(path) if path else project_root() / "params.yaml"


def load_params(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Params:
    """params.yaml (default: the project's), with `overrides` such as {"rows": 100} on top."""
    path = params_file(path)
    data = _read_yaml(path) if path.exists() else {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _validate(Params, data, path)


def dataset_configs(names: list[str] | None = None) -> list[DatasetConfig]:
    """The named datasets' configs (conf/datasets/NAME.yaml), else every config of one table in conf/datasets
    (served and exported one table at a time; related tables are not yet)."""
    folder = project_root() / "conf" / "datasets"
    paths = [folder / f"{n}.yaml" for n in names] if names else sorted(folder.glob("*.yaml"))
    if not paths:
        raise ConfigError(f"{folder}: no dataset configs")
    if names:
        return [load_dataset(p) for p in paths]
    return [c for c in map(load_any_dataset, paths) if isinstance(c, DatasetConfig)]


def load_env(name: str | None = None) -> EnvConfig:
    name = name or os.environ.get("SYNTHLAKE_ENV", "local")
    path = project_root() / "conf" / "env" / f"{name}.yaml"
    return _validate(EnvConfig, _read_yaml(path), path)
