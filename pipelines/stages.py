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
    # train the generator anew, or reuse the champion? (pipelines.check); it also starts the run's MLflow run
    Stage("check", writes=("check",), reads=("profile",), inputs=("source",)),
    # a new version, or the champion's when the check reused it
    Stage("train", writes=("train", "model"), reads=("profile", "check"), inputs=("source",),
          outputs=("registered_model",)),
    Stage("sample", writes=("sample",), reads=("train", "model"), inputs=("registered_model",),
          outputs=("staging",)),
    Stage("validate", writes=("gx_result", "verdict", "report", "metrics", "column_shapes", "dcr"),
          reads=("profile", "check", "train", "sample"), inputs=("source", "staging")),
    # the champion alias it sets points at the registered model version it read
    Stage("publish", writes=("publish",), reads=("profile", "check", "train", "sample", "verdict"),
          inputs=("staging", "registered_model"), outputs=("published", "audit")),
)
STAGE_NAMES = tuple(s.name for s in STAGES)

# Not in the chain: run only when validate fails (pipelines.retrain), it trains, samples and validates again.
RETRAIN = Stage("retrain", writes=("attempts", "train", "model", "sample", "gx_result", "verdict", "report",
                                   "metrics", "column_shapes", "dcr"),
                reads=("profile", "check", "train", "verdict"), inputs=("source", "staging"),
                outputs=("registered_model", "staging"))


# A dataset of related tables (pipelines.related): train learns every table's model (each through the stages
# above, in a run folder of its own), sample generates the set, validate and publish judge and publish it whole.
RELATED_STAGES = (
    Stage("train", writes=("related_train",), reads=(), inputs=("source",), outputs=("registered_model",)),
    Stage("sample", writes=("related_sample",), reads=("related_train",), inputs=("registered_model",),
          outputs=("staging",)),
    Stage("validate", writes=("related_verdict", "related_figures", "related_report"), reads=("related_sample",),
          inputs=("source", "staging")),
    Stage("publish", writes=("related_publish",), reads=("related_sample", "related_verdict"),
          inputs=("staging",), outputs=("published",)),
)
RELATED_STAGE_NAMES = tuple(s.name for s in RELATED_STAGES)


def declared(name: str) -> Stage:
    """The stage named `name`, retrain included."""
    return next(s for s in (*STAGES, RETRAIN) if s.name == name)


def writer(record: str) -> str:
    """The stage that writes `record` (the first, where retrain writes it again)."""
    return next(s.name for s in (*STAGES, RETRAIN, *RELATED_STAGES) if record in s.writes)
