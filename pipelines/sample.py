"""sample: generate N rows over P partitions with mapInArrow into the staging Delta table.

Rows come in fixed-size blocks, each seeded from (run seed, block index) alone, so the same run gives
the same rows whatever the number of partitions. The run's partition is replaced, never appended to.
A run's conditions (synthlake.conditions: `--where`, `--seed-table`, the dataset's rebalance and fairness)
are met by the sampler itself; a seed table's rows travel with the blocks they seed, and the run has one
row per seed row.
With `sample.writer: arrow` (the default) the executors write Parquet with pyarrow and the driver commits
the files in one Delta transaction (pipelines.delta_files); `spark` uses Spark's Delta writer instead.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from pipelines import delta_files
from pipelines.context import RunContext
from pipelines.records import SampleRecord, TrainRecord
from pipelines.source import spark_schema
from pipelines.spark import delta_options
from synthlake.conditions import Conditions
from synthlake.seeding import BlockLayout


def run(ctx: RunContext, spark) -> dict:
    from pipelines import tracking

    trained = ctx.store.read(TrainRecord)
    ctx.store.path("verdict").unlink(missing_ok=True)  # judged other rows: publish must wait for a new one
    sampler = tracking.load_sampler(ctx, trained.model_name, trained.model_version)
    conditions = run_conditions(spark, ctx, sampler)
    path = ctx.table_path("staging")
    write_staging(spark, ctx, sampler_files(sampler), path, conditions)
    rows = ctx.read_partition(spark, "staging").count()
    result = SampleRecord(staging_table=path, rows=rows, partitions=ctx.params.sample.partitions,
                          seed=ctx.params.seed, model_version=trained.model_version,
                          writer=ctx.params.sample.writer, where=ctx.params.where,
                          seed_table=ctx.params.seed_table)
    ctx.store.write(result)
    return result.model_dump()


def run_conditions(spark, ctx: RunContext, sampler) -> Conditions:
    """The run's conditions, checked against the sampler on one row before any task starts (a condition it
    cannot meet is a ConfigError naming the column)."""
    from pipelines.config import ConfigError
    from pipelines.source import read_seed_table
    from synthlake.conditions import ConditionError
    from synthlake.generators.base import sample_conditional

    seeds = read_seed_table(spark, ctx.dataset, ctx.params.seed_table) if ctx.params.seed_table else None
    conditions = ctx.dataset.conditions(ctx.params.where, seeds)
    if not conditions:
        return conditions
    try:
        sample_conditional(sampler, 1, ctx.params.seed, 0, conditions.slice(0, 1))
    except ConditionError as exc:
        raise ConfigError(str(exc)) from None
    return conditions


def sampler_files(sampler) -> dict[str, bytes]:
    """A Sampler's saved files (path relative to its folder -> bytes): what executors load it from."""
    with tempfile.TemporaryDirectory() as tmp:
        sampler.save(tmp)
        return {str(p.relative_to(tmp)): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()}


def output_schema(ctx: RunContext):
    """The staging table's Spark schema: the configured columns with their types, then run_id."""
    from pyspark.sql import types as T

    schema = spark_schema(ctx.dataset.columns)
    return schema.add(T.StructField("run_id", T.StringType(), nullable=False))


def synthetic_frame(spark, ctx: RunContext, model_files: dict[str, bytes], conditions: Conditions | None = None):
    """A DataFrame of the run's synthetic rows, computed lazily on the executors."""
    schema = output_schema(ctx)
    layout = _layout(ctx, conditions)
    return _block_ids(spark, ctx, layout).mapInArrow(_block_sampler(ctx, model_files, schema, layout, conditions),
                                                     schema)


def write_staging(spark, ctx: RunContext, model_files: dict[str, bytes], path: str,
                  conditions: Conditions | None = None) -> None:
    """Replace the run's partition of the Delta table at `path` with its synthetic rows."""
    if ctx.params.sample.writer == "arrow":
        write_with_arrow(spark, ctx, model_files, path, conditions)
    else:
        frame = synthetic_frame(spark, ctx, model_files, conditions)
        (frame.write.format("delta").mode("overwrite").partitionBy("run_id")
         .option("replaceWhere", ctx.partition_filter).options(**delta_options(frame.columns)).save(path))


def write_with_arrow(spark, ctx: RunContext, model_files: dict[str, bytes], path: str,
                     conditions: Conditions | None = None) -> None:
    """Each task writes its blocks as Parquet files; the driver commits all of them in one transaction."""
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = output_schema(ctx)
    partition = ("run_id", ctx.run_id)
    layout = _layout(ctx, conditions)
    write = delta_files.file_writer(_block_sampler(ctx, model_files, schema, layout, conditions), path, partition)
    files = [row.asDict() for row in _block_ids(spark, ctx, layout).mapInArrow(write, delta_files.FILE_FIELDS)
             .collect()]
    delta_files.commit(path, files, to_arrow_schema(schema, timezone="UTC"), partition)


def _block_ids(spark, ctx: RunContext, layout: BlockLayout):
    return block_frame(spark, layout.blocks(), ctx.params.sample.partitions)


def block_frame(spark, blocks: range, partitions: int):
    """One row per block index (column `id`), spread over at most `partitions` tasks."""
    return spark.range(blocks.start, blocks.stop, 1, numPartitions=min(partitions, len(blocks)))


def _layout(ctx: RunContext, conditions: Conditions | None) -> BlockLayout:
    seeds = conditions.seed_rows if conditions else None
    return BlockLayout(ctx.params.rows if seeds is None else len(seeds), ctx.params.sample.block_rows)


def _block_sampler(ctx: RunContext, model_files: dict[str, bytes], schema, layout: BlockLayout,
                   conditions: Conditions | None):
    from pyspark.sql.pandas.types import to_arrow_schema

    return make_block_sampler(model_files, layout, ctx.params.seed, {"run_id": ctx.run_id},
                              to_arrow_schema(schema, timezone="UTC"), conditions)


def make_block_sampler(model_files: dict[str, bytes], layout: BlockLayout, seed: int, constants: dict,
                       arrow_schema, conditions: Conditions | None = None):
    """The function each partition runs: load the model once, then sample its blocks (block i seeded from
    (seed, i) alone), each row followed by the `constants` columns; under `conditions`, block i's rows meet
    them (and take seed rows row_offset(i) onwards)."""

    def generate(batches):
        import pyarrow as pa

        from synthlake.generators import load_sampler
        from synthlake.generators.base import sample_conditional
        from synthlake.seeding import block_seed

        with tempfile.TemporaryDirectory() as tmp:
            for name, data in model_files.items():
                (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)  # a RuledSampler's inner/
                (Path(tmp) / name).write_bytes(data)
            model = load_sampler(tmp)
        if "torch" in sys.modules:  # a sampler that needs torch: Spark runs one task per core already
            sys.modules["torch"].set_num_threads(1)
        for batch in batches:
            for block in batch.column("id").to_pylist():
                n, offset = layout.size(block), layout.row_offset(block)
                if conditions:  # a shorter conditional sample is a prefix of a longer one too
                    table = sample_conditional(model, n, block_seed(seed, block), offset,
                                               conditions.slice(offset, offset + n))
                else:
                    table = model.sample_arrow(layout.block_rows, seed=block_seed(seed, block),
                                               row_offset=offset).slice(0, n)
                for name, value in constants.items():
                    table = table.append_column(name, pa.repeat(pa.scalar(value), n))
                yield from table.cast(arrow_schema).to_batches()

    return generate
