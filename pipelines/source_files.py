"""The files that make up a local source: one home for the rule, shared by the content fingerprint the stages
compare (pipelines.source) and the cheap one the Airflow source watcher polls (pipelines.source_watch).

Plain Python without imports beyond the standard library: the DAG file imports it at parse time.
"""

from __future__ import annotations

from pathlib import Path


def data_files(root: Path) -> list[Path]:
    """`root` itself if it is a file, else the files under it, sorted, leaving out hidden and _ files (checksums,
    _SUCCESS markers, a Delta log) as Spark's readers do."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
