"""An Airflow asset watcher's trigger: polls a dataset's local source and fires when it changes.

The scheduled DAG's source asset carries it (dags/synthlake_dags.py), so that a run starts when the source
changes even where no upstream job sends an asset event. Airflow's triggerer runs it (`airflow triggerer`, or
`airflow standalone`). What it compares is cheap to read: a Delta table's latest log version (the name of its
newest `_delta_log/*.json` commit), else the names, sizes and modification times of the source's files. The
check stage then decides on the content (pipelines.check). The first poll sets the baseline, kept in memory: a
change while the triggerer is down becomes the next baseline, not an event (the nightly schedule covers it).
Remote sources (s3://, abfss://...) are not polled: their upstream job sends the asset event.

Light on purpose: the DAG file imports it at parse time (no pandas, Spark or project modules but
pipelines.source_files).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from pipelines.source_files import data_files

DELTA_COMMIT = re.compile(r"^(\d{20})\.json$")


def quick_fingerprint(path: str) -> str | None:
    """"delta@v<version>" for a Delta table, "stat:<hash>" of the source's files (pipelines.source_files), None
    where nothing is there."""
    root = Path(path)
    log = root / "_delta_log"
    if log.is_dir():
        versions = [int(m.group(1)) for p in log.iterdir() if (m := DELTA_COMMIT.match(p.name))]
        return f"delta@v{max(versions)}" if versions else None
    if not root.exists():
        return None
    digest = hashlib.sha256()
    for f in data_files(root):
        stat = f.stat()
        digest.update(f"{f.relative_to(root.parent).as_posix()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return f"stat:{digest.hexdigest()[:32]}"


class SourceChangeTrigger(BaseEventTrigger):
    """Fires (payload: path, previous and new fingerprint) each time the source at `path` changes."""

    def __init__(self, path: str, poll_interval: float = 300.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {"path": self.path,
                                                                       "poll_interval": self.poll_interval}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        seen = await asyncio.to_thread(quick_fingerprint, self.path)
        while True:
            await asyncio.sleep(self.poll_interval)
            now = await asyncio.to_thread(quick_fingerprint, self.path)
            if now is not None and now != seen:
                self.log.info("source %s changed: %s -> %s", self.path, seen, now)
                yield TriggerEvent({"path": self.path, "previous": seen, "fingerprint": now})
            seen = now if now is not None else seen
