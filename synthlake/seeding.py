"""Seeds that make sampling independent of how the work is partitioned.

Rows are generated in fixed-size blocks; block i is seeded from (run seed, i) alone. A partition
generates whole blocks, so 1 or 100 partitions produce the same rows in the same blocks.
"""

from __future__ import annotations

import numpy as np


def block_seed(run_seed: int, block_index: int) -> int:
    """A 31-bit seed for one block, statistically independent of its neighbours' seeds."""
    state = np.random.SeedSequence([run_seed, block_index]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF


def block_count(rows: int, block_rows: int) -> int:
    return -(-rows // block_rows)


def block_size(rows: int, block_rows: int, block_index: int) -> int:
    """Rows in block `block_index`: full blocks, the last one holding the remainder."""
    return min(block_rows, rows - block_index * block_rows)


class BlockLayout:
    """Where each block's rows go when rows come in batches of `batch_rows` (a run is one batch; a stream's
    micro-batch b is batch b): batch b holds blocks b * per_batch ... b * per_batch + per_batch - 1, full
    blocks of `block_rows` then the remainder, numbered from row b * batch_rows."""

    def __init__(self, batch_rows: int, block_rows: int):
        self.batch_rows, self.block_rows = batch_rows, block_rows
        self.per_batch = block_count(batch_rows, block_rows)

    def blocks(self, batch: int = 0) -> range:
        return range(batch * self.per_batch, (batch + 1) * self.per_batch)

    def size(self, block: int) -> int:
        return block_size(self.batch_rows, self.block_rows, block % self.per_batch)

    def row_offset(self, block: int) -> int:
        batch, index = divmod(block, self.per_batch)
        return batch * self.batch_rows + index * self.block_rows
