"""The validate stage runs GX's expectations in a thread while the metrics run in the main one. Two threads
importing modules of one package at once can fail (`_DeadlockError`: it once failed a nightly DAG run, GX's altair
and the metrics' sklearn meeting in narwhals), so the stage imports what either would import lazily first."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# a fresh interpreter: the imports of this pytest process would hide what the stage imports
CHECK = textwrap.dedent(
    """
    import sys
    import numpy as np, pandas as pd
    from pipelines.validate import _import_before_threads
    from synthlake.evaluation import evaluate
    from synthlake.metadata import ColumnKind, ColumnSpec, TableMetadata

    _import_before_threads()
    before = set(sys.modules)
    rng = np.random.default_rng(0)
    def rows(n):
        return pd.DataFrame({"age": rng.integers(18, 90, n).astype(float), "job": rng.choice(["a", "b"], n),
                             "label": rng.choice(["yes", "no"], n)})
    metadata = TableMetadata(columns=[ColumnSpec(name="age", kind=ColumnKind.NUMERIC),
                                      ColumnSpec(name="job", kind=ColumnKind.CATEGORICAL),
                                      ColumnSpec(name="label", kind=ColumnKind.CATEGORICAL)], target="label")
    evaluate(rows(200), rows(200), metadata, holdout=rows(200), quasi_identifiers=["age"], sensitive="job")
    import great_expectations
    from great_expectations.data_context.types.base import ProgressBarsConfig
    new = sorted(m for m in set(sys.modules) - before if not m.startswith("synthlake"))
    print("\\n".join(new))
    """
)


def test_the_threads_of_validate_import_nothing_after_they_start():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [], "imported while the threads run: " + ", ".join(proc.stdout.split()[:20])
