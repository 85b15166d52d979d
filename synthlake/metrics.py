"""Column-shape fidelity scores, kept importable here; they live in `synthlake.evaluation.fidelity` with the
rest of the metrics (pair trends, accuracy, detection, utility, privacy)."""

from synthlake.evaluation.fidelity import ColumnShape, column_shapes, ks_complement, tv_complement

__all__ = ["ColumnShape", "column_shapes", "ks_complement", "tv_complement"]
