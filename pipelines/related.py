"""Related tables (a dataset config with `tables:`): learned, generated, validated and published together.

- train: table by table, parents first, its model rows (synthlake.related_frames: the parent's columns, the
  previous row of a sequence, the children counts) are built from the real tables and written as Parquet in the
  run folder; the flat pipeline's profile, check and train stages then learn them as a dataset of their own
  (`<dataset>-<table>`, its model registered as `synthlake-<dataset>-<table>`). A child's model is built after
  its parent's has been trained: it sees the parent's categories as the parent's model generates them.
- sample: the root table's rows come in seeded blocks; one Spark task generates a block's root rows and all
  of their descendants (synthlake.related_sampler: keys exact, the same rows on any number of partitions) and
  writes each table's Parquet files; the driver commits each table's staging partition (pipelines.delta_files).
- validate (pipelines.related_validate) and publish: every table's partition or none; the tables' models then
  become their champions, which a later run reuses where its table's model rows have not drifted.

The real tables are read into the driver's memory (`related.max_rows` rows each at most): related tables are
learned on one machine, generated on the cluster.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines.config import ConfigError, EnvConfig, Params, RelatedDatasetConfig, resolve
from pipelines.context import RunContext, StageError
from pipelines.records import (
    PrivacySpent,
    RelatedSampleRecord,
    RelatedTrainRecord,
    RunStore,
    TableModelRecord,
    TrainRecord,
)
from synthlake.related_frames import with_entities

MAX_TABLE_ROWS = 2_000_000  # rows of one real table the driver reads to learn from


@dataclass(frozen=True)
class RelatedContext:
    """A run of a related dataset: its configs, its id and its folder."""

    config_path: str
    dataset: RelatedDatasetConfig
    params: Params
    env: EnvConfig
    run_id: str

    @property
    def store(self) -> RunStore:
        return RunStore(Path(resolve(self.env.work_dir)) / "runs" / self.dataset.name / self.run_id, self.run_id)

    def table_context(self, table: str, **changes) -> RunContext:
        """Table `table` as a flat dataset's run (its own folder, MLflow model and Delta tables)."""
        return RunContext(config_path=self.config_path, dataset=self.dataset.table_dataset(table, **changes),
                          params=self.params, env=self.env, run_id=self.run_id)

    def model_context(self, table: str) -> RunContext:
        """The run that learns table `table`'s model rows (written by `train`)."""
        from synthlake.related_frames import TableModel

        privacy = self.dataset.table_privacy(table)
        model = TableModel(self.dataset.relations, table)
        source = {"path": str(self.store.run_dir / "frames" / f"{table}.parquet"), "format": "parquet"}
        return self.table_context(table, name=f"{self.dataset.name}-{table}-model", source=source,
                                  columns=[c.model_dump() for c in model.metadata.columns],
                                  privacy=privacy and privacy.model_dump())

    def table_path(self, table: str, kind: str) -> str:
        return self.table_context(table).table_path(kind)

    @property
    def holdout(self) -> tuple[float, int]:
        """The entities held out of every table's model (synthlake.related_frames.held_out): the share and seed of
        the flat holdout, by entity."""
        return self.params.profile.holdout_fraction, self.params.profile.holdout_seed


# ---- train ----------------------------------------------------------------------------------------------
def train(ctx: RelatedContext, spark) -> dict:
    relations = ctx.dataset.relations
    real = read_tables(spark, ctx)
    if ctx.dataset.privacy is not None:
        real = _capped(ctx, real)
    real = with_entities(real, relations, ctx.holdout)
    models, samplers = {}, {}
    for name in relations.parents_first():
        models[name], samplers[name] = _learn(ctx, spark, name, real, samplers)
    privacy = _spent(models) if ctx.dataset.privacy is not None else None
    ctx.store.write(RelatedTrainRecord(tables=models, privacy=privacy))
    if privacy is not None:
        print(f"[synthlake] train: differential privacy per entity: epsilon {privacy.epsilon:.3f}, delta "
              f"{privacy.delta:.1e} spent over {len(models)} tables' models", flush=True)
    return {name: f"{m.model_name} v{m.model_version}" for name, m in models.items()}


def _spent(models: dict[str, TableModelRecord]) -> PrivacySpent:
    """What the set's models spent together (basic composition: an entity is in every table's model rows)."""
    spent = [m.privacy for m in models.values()]
    if None in spent:  # a model trained without privacy: nothing of the set is private
        raise StageError(f"a related table's model was trained without privacy: {sorted(models)}")
    return PrivacySpent(epsilon=sum(p.epsilon for p in spent), delta=sum(p.delta for p in spent),
                        tables={name: {"epsilon": m.privacy.epsilon, "delta": m.privacy.delta}
                                for name, m in models.items()})


def _capped(ctx: RelatedContext, real: dict) -> dict:
    """Under privacy: each parent's first `privacy.unit_rows` children per table."""
    from synthlake.related_frames import capped

    relations, limit = ctx.dataset.relations, ctx.dataset.privacy.unit_rows
    kept = capped(real, relations, limit)
    for name in relations.parents_first():
        if dropped := len(real[name]) - len(kept[name]):
            print(f"[synthlake] train: table '{name}': {dropped} rows beyond a parent's first {limit} (or under such "
                  "a row, or orphans) left out under privacy (privacy.unit_rows)", flush=True)
    return kept


def _learn(ctx: RelatedContext, spark, name: str, real: dict, samplers: dict):
    """(record, sampler) of table `name`'s model: its model rows written, then profiled, checked and trained
    (or the champion reused) as a flat dataset's rows are. `samplers`: the models of the tables before it."""
    from pipelines import check, profile, tracking
    from pipelines import train as train_stage
    from synthlake.related_frames import TableModel, kept_labels

    model = TableModel(ctx.dataset.relations, name)
    parent = model.parent.name if model.parent else None
    frame, orphans = model.training_frame(real[name], real.get(parent), {c: real[c] for c in model.children},
                                          kept_labels(samplers[parent]) if parent else None)
    if orphans:
        print(f"[synthlake] train: table '{name}': {orphans} rows name no '{parent}' row (orphans, or a null "
              "key): left out of its model", flush=True)
    table_ctx = ctx.model_context(name)
    path = Path(table_ctx.dataset.source.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    print(f"[synthlake] train: table '{name}': {len(frame)} model rows of {len(model.metadata.columns)} "
          "columns; profile, check, train", flush=True)
    for stage in (profile, check, train_stage):
        stage.run(table_ctx, spark)
    trained = table_ctx.store.read(TrainRecord)
    record = TableModelRecord(model_name=trained.model_name, model_version=trained.model_version,
                              mlflow_run_id=trained.mlflow_run_id, rows=len(frame), orphans=orphans,
                              privacy=trained.privacy)
    return record, tracking.load_sampler(table_ctx, trained.model_name, trained.model_version)


def read_tables(spark, ctx: RelatedContext) -> dict[str, pd.DataFrame]:
    """Every table's real rows, its primary key checked: unique and never null (else a StageError naming it)."""
    from pipelines.source import read_source
    from pipelines.spark import column

    tables = {}
    for table in ctx.dataset.tables:
        df = read_source(spark, ctx.dataset.table_dataset(table.name))
        rows = df.count()
        if rows > MAX_TABLE_ROWS:
            raise StageError(f"table '{table.name}': {rows} rows; related tables are learned from at most "
                             f"{MAX_TABLE_ROWS} rows each (on the driver)")
        if table.primary_key is not None:
            key = column(table.primary_key)
            nulls = df.where(key.isNull()).count()
            twice = df.groupBy(key).count().where("count > 1").count()
            if nulls or twice:
                raise StageError(f"table '{table.name}': primary_key '{table.primary_key}' is not a key of the "
                                 f"source: {twice} values appear more than once, {nulls} rows are null")
        tables[table.name] = df.toPandas()
    return tables


# ---- sample ---------------------------------------------------------------------------------------------
def sample(ctx: RelatedContext, spark) -> dict:
    """`params.rows` root rows and their descendants into each table's staging partition."""
    from pyspark.sql.pandas.types import to_arrow_schema

    from pipelines import delta_files, tracking
    from pipelines.sample import block_frame, output_schema, sampler_files
    from synthlake.seeding import BlockLayout

    trained = ctx.store.read(RelatedTrainRecord)
    ctx.store.path("related_verdict").unlink(missing_ok=True)  # judged other rows: publish must wait
    files = {}
    for name, m in trained.tables.items():
        files[name] = sampler_files(tracking.load_sampler(ctx.model_context(name), m.model_name, m.model_version))
    layout = BlockLayout(ctx.params.rows, ctx.params.sample.root_block_rows)
    schemas = {t.name: to_arrow_schema(output_schema(ctx.table_context(t.name)), timezone="UTC")
               for t in ctx.dataset.tables}
    paths = {t.name: ctx.table_path(t.name, "staging") for t in ctx.dataset.tables}
    privacy = ctx.dataset.privacy
    write = _set_writer(ctx.dataset.relations.model_dump(), files, layout, ctx.params.seed, ctx.run_id, paths,
                        schemas, privacy and privacy.unit_rows)
    written = [row.asDict() for row in block_frame(spark, layout.blocks(), ctx.params.sample.partitions)
               .mapInArrow(write, f"table string, {delta_files.FILE_FIELDS}").collect()]
    rows = {}
    for name, path in paths.items():
        mine = [f for f in written if f["table"] == name]
        delta_files.commit(path, mine, schemas[name], ("run_id", ctx.run_id))
        rows[name] = sum(f["rows"] for f in mine)
    record = RelatedSampleRecord(tables=paths, rows=rows, seed=ctx.params.seed,
                                 partitions=ctx.params.sample.partitions)
    ctx.store.write(record)
    return {"rows": rows}


def _set_writer(relations: dict, files: dict[str, dict[str, bytes]], layout, seed: int, run_id: str,
                paths: dict[str, str], schemas: dict, max_children: int | None):
    """The function each task runs: its blocks' root rows and descendants, each table into its own files;
    one FILE_FIELDS row (and the table's name) per file. A task that fails removes its files."""

    def write(batches):
        import pyarrow as pa

        from pipelines.delta_files import PartFiles, file_schema
        from synthlake.generators import load_sampler
        from synthlake.related_sampler import RelatedSampler
        from synthlake.relations import Relations
        from synthlake.seeding import block_seed

        samplers = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name, table_files in files.items():
                for file, data in table_files.items():
                    (Path(tmp) / name / file).parent.mkdir(parents=True, exist_ok=True)
                    (Path(tmp) / name / file).write_bytes(data)
                samplers[name] = load_sampler(Path(tmp) / name)
        generator = RelatedSampler(Relations.model_validate(relations), samplers, max_children)
        writers = {name: PartFiles(path, ("run_id", run_id)) for name, path in paths.items()}
        try:
            for batch in batches:
                for block in batch.column("id").to_pylist():
                    tables = generator.sample(layout.size(block), block_seed(seed, block), layout.row_offset(block))
                    for name, table in tables.items():
                        table = table.append_column("run_id", pa.repeat(pa.scalar(run_id), table.num_rows))
                        for part in table.cast(schemas[name]).to_batches():
                            writers[name].write(part)
            written = [{"table": name, **f} for name, w in writers.items() for f in w.close()]
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        schema = file_schema().insert(0, pa.field("table", pa.string()))
        yield pa.RecordBatch.from_pylist([{k: f[k] for k in schema.names} for f in written], schema=schema)

    return write


# ---- publish --------------------------------------------------------------------------------------------
def publish(ctx: RelatedContext, spark) -> dict:
    """Every table's staged partition replaces its published one, or none does: a failure part way removes the
    partitions already replaced, so readers who join the tables on a run id find all of them or none."""
    from pipelines.publish import set_champion
    from pipelines.records import RelatedPublishRecord, RelatedVerdict
    from pipelines.validate import GateFailed

    verdict = ctx.store.read(RelatedVerdict)
    if not verdict.passed:
        raise GateFailed(f"run {ctx.run_id!r} failed validation, not publishing: {', '.join(verdict.failed_checks)}")
    sampled = ctx.store.read(RelatedSampleRecord)
    done = []
    try:
        for table in ctx.dataset.relations.parents_first():
            _publish_table(spark, ctx.table_context(table), sampled.rows[table])
            done.append(table)
    except BaseException:
        _withdraw(spark, ctx, done)
        raise
    for table in done:  # the published set's models become the champions a later run may reuse (pipelines.check)
        model_ctx = ctx.model_context(table)
        set_champion(model_ctx, model_ctx.store.read(TrainRecord))
    record = RelatedPublishRecord(tables={t: ctx.table_path(t, "published") for t in done}, rows=sampled.rows)
    ctx.store.write(record)
    return record.model_dump()


def _publish_table(spark, table_ctx: RunContext, rows: int) -> None:
    """The table's staged partition replaces its published one (its rows checked against the sample stage's)."""
    from pipelines.publish import retry_conflicts, with_column_comments
    from pipelines.spark import delta_options

    staged = table_ctx.read_partition(spark, "staging")
    if (found := staged.count()) != rows:
        raise StageError(f"{table_ctx.table_path('staging')} holds {found} rows for run {table_ctx.run_id!r}, the "
                         f"sample stage wrote {rows}: run sample and validate again")
    retry_conflicts(table_ctx.table_path("published"), lambda: (
        with_column_comments(staged, table_ctx).write.format("delta").mode("overwrite").partitionBy("run_id")
        .option("replaceWhere", table_ctx.partition_filter).options(**delta_options(staged.columns))
        .save(table_ctx.table_path("published"))))


def _withdraw(spark, ctx: RelatedContext, tables: list[str]) -> None:
    from delta.tables import DeltaTable

    for table in tables:
        table_ctx = ctx.table_context(table)
        DeltaTable.forPath(spark, table_ctx.table_path("published")).delete(table_ctx.partition_filter)
        print(f"[synthlake] publish: withdrew run {ctx.run_id}'s partition of table '{table}'", flush=True)


def open_context(config_path: str, run_id: str, params_path: str | None = None, env_name: str | None = None,
                 **overrides) -> RelatedContext:
    from pipelines.config import load_any_dataset, load_env, load_params
    from pipelines.context import RUN_ID_PATTERN

    if not RUN_ID_PATTERN.match(run_id):
        raise ConfigError(f"run id {run_id!r} must be 1-128 of letters, digits and _.:+- and start with a letter "
                          "or digit")
    dataset = load_any_dataset(config_path)
    if not isinstance(dataset, RelatedDatasetConfig):
        raise ConfigError(f"{config_path}: dataset '{dataset.name}' has one table, not related tables")
    return RelatedContext(str(config_path), dataset, load_params(params_path, overrides), load_env(env_name), run_id)
