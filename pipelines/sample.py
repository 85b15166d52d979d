"""sample: generate N rows over P partitions with mapInArrow into the staging Delta table.

Rows come in fixed-size blocks, each seeded from (run seed, block index) alone, so the same run gives
the same rows whatever the number of partitions. The run's partition is replaced, never appended to.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pipelines.context import RunContext
from pipelines.source import spark_type
from synthlake.seeding import block_count


def run(ctx: RunContext, spark) -> dict:
    from pipelines import tracking

    trained = ctx.read_json("train.json", "train")
    generator = tracking.load_generator(ctx, trained["model_name"], trained["model_version"])
    with tempfile.TemporaryDirectory() as tmp:  # executors get the weights and JSON as bytes
        generator.save(tmp)
        model_files = {p.name: p.read_bytes() for p in Path(tmp).iterdir()}
    df = synthetic_frame(spark, ctx, model_files)
    path = ctx.table_path("staging")
    (df.write.format("delta").mode("overwrite").partitionBy("run_id")
       .option("replaceWhere", ctx.partition_filter).save(path))
    rows = ctx.read_partition(spark, "staging").count()
    result = {"staging_table": path, "rows": rows, "partitions": ctx.params.sample.partitions,
              "seed": ctx.params.seed, "model_version": trained["model_version"]}
    ctx.write_json("sample.json", result)
    return result


def output_schema(ctx: RunContext):
    """The staging table's Spark schema: the configured columns with their types, then run_id."""
    from pyspark.sql import types as T

    types = {"bigint": T.LongType(), "double": T.DoubleType(), "timestamp": T.TimestampType(),
             "string": T.StringType()}
    fields = [T.StructField(c.name, types[spark_type(c)]) for c in ctx.dataset.columns]
    return T.StructType(fields + [T.StructField("run_id", T.StringType(), nullable=False)])


def synthetic_frame(spark, ctx: RunContext, model_files: dict[str, bytes]):
    """A DataFrame of the run's synthetic rows, computed lazily on the executors."""
    p = ctx.params
    blocks = block_count(p.rows, p.sample.block_rows)
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = output_schema(ctx)
    generate = make_block_sampler(model_files, p.rows, p.sample.block_rows, p.seed, ctx.run_id,
                                  to_arrow_schema(schema, timezone="UTC"))
    ids = spark.range(0, blocks, 1, numPartitions=min(p.sample.partitions, blocks))
    return ids.mapInArrow(generate, schema)


def make_block_sampler(model_files: dict[str, bytes], rows: int, block_rows: int, seed: int, run_id: str,
                       arrow_schema):
    """The function each partition runs: load the model once, then sample its blocks."""

    def generate(batches):
        import pyarrow as pa
        import torch

        from synthlake.generators import Generator
        from synthlake.seeding import block_seed, block_size

        torch.set_num_threads(1)  # Spark runs one task per core already
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in model_files.items():
                (Path(tmp) / name).write_bytes(data)
            model = Generator.load(tmp)
        for batch in batches:
            for block in batch.column("id").to_pylist():
                n = block_size(rows, block_rows, block)
                table = model.sample(block_rows, seed=block_seed(seed, block), row_offset=block * block_rows)
                table = table.iloc[:n].assign(run_id=run_id)
                yield from pa.Table.from_pandas(table, schema=arrow_schema, preserve_index=False).to_batches()

    return generate
