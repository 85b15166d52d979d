"""sample: generate N rows over P partitions with mapInArrow into the staging Delta table.

Rows come in fixed-size blocks, each seeded from (run seed, block index) alone, so the same run gives
the same rows whatever the number of partitions. The run's partition is replaced, never appended to.
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
from synthlake.seeding import block_count


def run(ctx: RunContext, spark) -> dict:
    from pipelines import tracking

    trained = ctx.store.read(TrainRecord)
    sampler = tracking.load_sampler(ctx, trained.model_name, trained.model_version)
    with tempfile.TemporaryDirectory() as tmp:  # executors get the sampler's files as bytes
        sampler.save(tmp)
        model_files = {p.name: p.read_bytes() for p in Path(tmp).iterdir()}
    path = ctx.table_path("staging")
    write_staging(spark, ctx, model_files, path)
    rows = ctx.read_partition(spark, "staging").count()
    result = SampleRecord(staging_table=path, rows=rows, partitions=ctx.params.sample.partitions,
                          seed=ctx.params.seed, model_version=trained.model_version,
                          writer=ctx.params.sample.writer)
    ctx.store.write(result)
    return result.model_dump()


def output_schema(ctx: RunContext):
    """The staging table's Spark schema: the configured columns with their types, then run_id."""
    from pyspark.sql import types as T

    schema = spark_schema(ctx.dataset.columns)
    return schema.add(T.StructField("run_id", T.StringType(), nullable=False))


def synthetic_frame(spark, ctx: RunContext, model_files: dict[str, bytes]):
    """A DataFrame of the run's synthetic rows, computed lazily on the executors."""
    schema = output_schema(ctx)
    return _block_ids(spark, ctx).mapInArrow(_block_sampler(ctx, model_files, schema), schema)


def write_staging(spark, ctx: RunContext, model_files: dict[str, bytes], path: str) -> None:
    """Replace the run's partition of the Delta table at `path` with its synthetic rows."""
    if ctx.params.sample.writer == "arrow":
        write_with_arrow(spark, ctx, model_files, path)
    else:
        (synthetic_frame(spark, ctx, model_files).write.format("delta").mode("overwrite").partitionBy("run_id")
           .option("replaceWhere", ctx.partition_filter).save(path))


def write_with_arrow(spark, ctx: RunContext, model_files: dict[str, bytes], path: str) -> None:
    """Each task writes its blocks as Parquet files; the driver commits all of them in one transaction."""
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = output_schema(ctx)
    partition = ("run_id", ctx.run_id)
    write = delta_files.file_writer(_block_sampler(ctx, model_files, schema), path, partition)
    files = [row.asDict() for row in _block_ids(spark, ctx).mapInArrow(write, delta_files.FILE_FIELDS).collect()]
    delta_files.commit(path, files, to_arrow_schema(schema, timezone="UTC"), partition)


def _block_ids(spark, ctx: RunContext):
    blocks = block_count(ctx.params.rows, ctx.params.sample.block_rows)
    return spark.range(0, blocks, 1, numPartitions=min(ctx.params.sample.partitions, blocks))


def _block_sampler(ctx: RunContext, model_files: dict[str, bytes], schema):
    from pyspark.sql.pandas.types import to_arrow_schema

    p = ctx.params
    return make_block_sampler(model_files, p.rows, p.sample.block_rows, p.seed, ctx.run_id,
                              to_arrow_schema(schema, timezone="UTC"))


def make_block_sampler(model_files: dict[str, bytes], rows: int, block_rows: int, seed: int, run_id: str,
                       arrow_schema):
    """The function each partition runs: load the model once, then sample its blocks."""

    def generate(batches):
        import pyarrow as pa

        from synthlake.generators import load_sampler
        from synthlake.seeding import block_seed, block_size

        with tempfile.TemporaryDirectory() as tmp:
            for name, data in model_files.items():
                (Path(tmp) / name).write_bytes(data)
            model = load_sampler(tmp)
        if "torch" in sys.modules:  # a sampler that needs torch: Spark runs one task per core already
            sys.modules["torch"].set_num_threads(1)
        for batch in batches:
            for block in batch.column("id").to_pylist():
                n = block_size(rows, block_rows, block)
                table = model.sample_arrow(block_rows, seed=block_seed(seed, block), row_offset=block * block_rows)
                table = table.slice(0, n).append_column("run_id", pa.repeat(pa.scalar(run_id), n))
                yield from table.cast(arrow_schema).to_batches()

    return generate
