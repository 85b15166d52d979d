"""Each served dataset's champion Sampler: loaded from the registry, reloaded when the alias moves.

The alias is looked up at most every `reload_s` seconds, on request; a load failure or a missing alias
keeps the sampler already loaded (a dataset without one is not ready). Every dataset has a counter of rows
served, so that generated identifiers continue across requests that give no offset.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from pipelines import tracking
from pipelines.config import registered_model_name

log = logging.getLogger("serving.champions")


@dataclass(frozen=True)
class Loaded:
    sampler: object  # a synthlake Sampler
    version: str


@dataclass
class Champion:
    dataset: str
    model_name: str
    loaded: Loaded | None = None  # replaced as a whole, so a request reads a sampler and its version together
    problem: str = "not loaded yet"  # why there is no sampler (when loaded is None)
    checked_at: float = float("-inf")
    next_offset: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)  # one alias check or load at a time
    offset_lock: threading.Lock = field(default_factory=threading.Lock)

    def reserve(self, rows: int, offset: int | None) -> int:
        """The request's first row number: `offset`, else one past the highest row served so far."""
        with self.offset_lock:
            start = self.next_offset if offset is None else offset
            self.next_offset = max(self.next_offset, start + rows)
            return start


class Champions:
    def __init__(self, datasets: list[str], reload_s: float):
        self.reload_s = reload_s
        self.by_dataset = {d: Champion(d, registered_model_name(d)) for d in datasets}

    def get(self, dataset: str) -> Champion | None:
        """The dataset's champion, its alias checked if the last check is older than reload_s."""
        champion = self.by_dataset.get(dataset)
        if champion is not None:
            self.refresh(champion)
        return champion

    def refresh_all(self, wait: bool = True) -> None:
        for champion in self.by_dataset.values():
            self.refresh(champion, wait)

    def not_ready(self) -> dict[str, str]:
        return {d: c.problem for d, c in self.by_dataset.items() if c.loaded is None}

    def refresh(self, champion: Champion, wait: bool = True) -> None:
        """Check the alias if due and load a new version; without `wait`, skip a dataset being checked."""
        if not champion.lock.acquire(blocking=wait):
            return
        try:
            if time.monotonic() - champion.checked_at >= self.reload_s:
                champion.checked_at = time.monotonic()
                self._check(champion)
        finally:
            champion.lock.release()

    def _check(self, champion: Champion) -> None:
        try:
            version = tracking.champion_version(champion.model_name)
            if version is None:
                champion.problem = f"model {champion.model_name} has no {tracking.CHAMPION!r} alias"
            elif champion.loaded is None or champion.loaded.version != version:
                champion.loaded = Loaded(tracking.registered_sampler(champion.model_name, version), version)
                log.info("loaded %s version %s for dataset %s", champion.model_name, version, champion.dataset)
        except Exception as exc:  # the registry unreachable or a broken model: keep what is loaded
            champion.problem = f"loading {champion.model_name} failed: {exc}"
            log.exception("dataset %s: %s", champion.dataset, champion.problem)
