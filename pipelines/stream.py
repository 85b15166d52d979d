"""stream: a Spark Structured Streaming query that appends the champion's synthetic rows to a Delta table.

Micro-batch b holds `rows_per_batch` rows in seeded blocks (seeding.BlockLayout: block g seeded from (seed, g),
as the sample stage seeds its blocks, identifiers numbered from row b * rows_per_batch), so a batch's rows
depend only on (model, seed, b). The query's checkpoint numbers the batches, and each batch is written with
Delta's idempotent-write options (txnAppId = the stream's name, txnVersion = b): a batch replayed after a crash
between its Delta commit and the checkpoint's commit is skipped. Restarted, the stream neither loses nor
repeats a batch.
"""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from pipelines import tracking
from pipelines.config import ConfigError, DatasetConfig, EnvConfig, Params, registered_model_name, resolve
from pipelines.context import StageError
from pipelines.sample import block_frame, make_block_sampler, sampler_files
from pipelines.source import spark_schema
from pipelines.spark import delta_options
from synthlake.seeding import BlockLayout

NAME_CHARS = "letters, digits, _ and -"


@dataclass(frozen=True)
class StreamSpec:
    dataset: DatasetConfig
    params: Params
    env: EnvConfig
    rows_per_second: float
    batch_seconds: float = 1.0
    name: str | None = None  # default: <dataset>; names the checkpoint and the Delta writes' txnAppId
    max_batches: int | None = None  # stop after this many micro-batches (default: until stopped)

    def __post_init__(self):
        if not self.rows_per_second > 0:
            raise ConfigError(f"--rows-per-second {self.rows_per_second}: must be more than 0")
        if not self.batch_seconds > 0:
            raise ConfigError(f"--batch-seconds {self.batch_seconds}: must be more than 0")
        if self.max_batches is not None and self.max_batches < 1:
            raise ConfigError(f"--max-batches {self.max_batches}: must be at least 1")
        if not self.stream_name.replace("_", "a").replace("-", "a").isalnum():
            raise ConfigError(f"--name {self.stream_name!r}: use {NAME_CHARS}")

    @property
    def stream_name(self) -> str:
        return self.name or self.dataset.name

    @property
    def rows_per_batch(self) -> int:
        return max(1, round(self.rows_per_second * self.batch_seconds))

    @property
    def table_path(self) -> str:
        """<published>_stream, or <published>_stream_<name> for a stream given its own --name."""
        suffix = "" if self.stream_name == self.dataset.name else f"_{self.stream_name}"
        return self.env.table_path(f"{self.dataset.output.published}_stream{suffix}")

    @property
    def folder(self) -> Path:
        return Path(resolve(self.env.work_dir)) / "streams" / self.stream_name

    @property
    def checkpoint(self) -> str:
        return str(self.folder / "checkpoint")

    def check_restart(self) -> None:
        """A restarted stream must number its rows as before: the same rows per batch, block size and seed
        (else identifiers would repeat, or seeds mix), recorded beside its checkpoint when it first started."""
        settings = {"rows_per_batch": self.rows_per_batch, "block_rows": self.layout().block_rows,
                    "seed": self.params.seed}
        recorded = self.folder / "settings.json"
        if recorded.is_file():
            before = json.loads(recorded.read_text())
            if before != settings:
                raise ConfigError(f"stream {self.stream_name!r} was started with {before}, not {settings}: restart "
                                  "it with the same --rows-per-second x --batch-seconds, seed and sample.block_rows, "
                                  "or give it another --name")
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        recorded.write_text(json.dumps(settings))

    def layout(self) -> BlockLayout:
        return BlockLayout(self.rows_per_batch, min(self.rows_per_batch, self.params.sample.block_rows))


def output_schema(dataset: DatasetConfig):
    """The configured columns, then the micro-batch and the model version that generated each row."""
    from pyspark.sql import types as T

    return (spark_schema(dataset.columns)
            .add(T.StructField("batch_id", T.LongType(), nullable=False))
            .add(T.StructField("model_version", T.StringType(), nullable=False)))


def champion_files(env: EnvConfig, dataset: str) -> tuple[str, dict[str, bytes]]:
    """The champion's version and its Sampler's files (what the executors load)."""
    tracking.use_store(env)
    name = registered_model_name(dataset)
    version = tracking.champion_version(name)
    if version is None:
        raise StageError(f"model {name} has no {tracking.CHAMPION!r} alias: publish a run of dataset "
                         f"{dataset!r} first")
    return version, sampler_files(tracking.registered_sampler(name, version))


def run(spec: StreamSpec, spark, version: str, files: dict[str, bytes]) -> int:
    """Run the query with the Sampler `files` of model `version` until `max_batches` micro-batches are
    written, or SIGTERM/SIGINT; return the number of micro-batches this process wrote (a replayed one too)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = output_schema(spec.dataset)
    arrow_schema = to_arrow_schema(schema, timezone="UTC")
    layout = spec.layout()
    written = threading.Event()
    count = [0]

    def write_batch(_, batch_id: int) -> None:
        generate = make_block_sampler(files, layout, spec.params.seed,
                                      {"batch_id": batch_id, "model_version": version}, arrow_schema)
        (block_frame(spark, layout.blocks(batch_id), spec.params.sample.partitions)
         .mapInArrow(generate, schema)
         .write.format("delta").mode("append")
         .option("txnAppId", spec.stream_name).option("txnVersion", batch_id)
         .options(**delta_options(schema.fieldNames())).save(spec.table_path))
        count[0] += 1
        print(f"[synthlake] stream {spec.stream_name}: batch {batch_id}, {layout.batch_rows} rows "
              f"(model version {version}) -> {spec.table_path}", flush=True)
        if spec.max_batches is not None and count[0] >= spec.max_batches:
            written.set()

    query = (spark.readStream.format("rate-micro-batch").option("rowsPerBatch", 1).option("numPartitions", 1)
             .load().writeStream.queryName(f"synthlake-stream-{spec.stream_name}")
             .foreachBatch(write_batch).option("checkpointLocation", spec.checkpoint)
             .trigger(processingTime=f"{spec.batch_seconds} seconds").start())
    with _stopped_by_signals(written):
        while query.isActive and not written.is_set():
            query.awaitTermination(0.5)
    query.stop()
    query.awaitTermination()  # re-raises the query's own failure, if any
    return count[0]


class _stopped_by_signals:
    """SIGTERM and SIGINT set `event` (the query stops between batches) instead of killing the driver."""

    def __init__(self, event: threading.Event):
        self.event, self.previous = event, {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, lambda *_: self.event.set())

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
