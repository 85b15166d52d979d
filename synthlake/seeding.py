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
