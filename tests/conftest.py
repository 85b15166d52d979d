"""For every test: Spark's driver JVMs compile with C1 only, and the longest modules run first.

C1 only: this process's JVM, and those of the `synthlake`, spark-submit and DVC subprocesses the integration
tests start (they inherit the variable), live seconds to minutes on small data, where C2's compile threads
compete with the work on 2 cores: about 15% off each Spark stage. spark-submit adds SPARK_SUBMIT_OPTS to the
JVM it starts.

Longest first: `make test` hands whole modules to two processes in collection order (pytest-xdist's loadfile),
so a long module collected last would run alone at the end. Measured on 2 cores, README: Tests.
"""

import os

os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1")

LONGEST_FIRST = ["test_dags.py", "test_dvc.py", "test_related.py", "test_cluster.py", "test_stages.py",
                 "test_bad_input.py", "test_export.py", "test_lineage.py", "test_serve.py"]


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a module, and of the other modules, is kept
