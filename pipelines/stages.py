"""The pipeline's stages, declared once, in order.

The `synthlake` subcommands, the Airflow DAGs' task chain and the records a missing-record error tells
you to produce follow this list; tests check that dvc.yaml's stages, outs and record deps and the
jobs/<stage>_job.py entry points match it. Each stage's code is `pipelines.<name>.run(ctx, spark)`.

Plain Python without imports: the DAG file reads it at parse time.
"""

from __future__ import annotations

from typing import NamedTuple


class Stage(NamedTuple):
    name: str
    writes: tuple[str, ...]  # what it leaves in the run folder (names of pipelines.records.LAYOUT)
    reads: tuple[str, ...]  # what earlier stages left that it needs
    # what it reads and writes outside the run folder (pipelines.lineage names them as OpenLineage datasets):
    # "source" (the dataset's source), the Delta tables "staging", "published" and "audit", and
    # "registered_model" (the dataset's model in the MLflow registry)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


STAGES = (
    Stage("profile", writes=("profile",), reads=(), inputs=("source",)),
    Stage("train", writes=("train", "model"), reads=("profile",), inputs=("source",),
          outputs=("registered_model",)),
    Stage("sample", writes=("sample",), reads=("train", "model"), inputs=("registered_model",),
          outputs=("staging",)),
    Stage("validate", writes=("gx_result", "verdict", "report", "metrics", "column_shapes", "dcr"),
          reads=("profile", "train", "sample"), inputs=("source", "staging")),
    # the champion alias it sets points at the registered model version it read
    Stage("publish", writes=("publish",), reads=("profile", "train", "sample", "verdict"),
          inputs=("staging", "registered_model"), outputs=("published", "audit")),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def writer(record: str) -> str:
    """The stage that writes `record`."""
    return next(s.name for s in STAGES if record in s.writes)
