"""synthlake.seeding: per-block seeds and block sizes that make sampling independent of partitioning."""

from __future__ import annotations

import pytest

from synthlake.seeding import block_count, block_seed, block_size


def test_block_seed_is_deterministic():
    assert [block_seed(42, i) for i in range(50)] == [block_seed(42, i) for i in range(50)]


def test_block_seeds_differ_across_blocks():
    seeds = [block_seed(42, i) for i in range(2000)]
    assert len(set(seeds)) == len(seeds)


def test_block_seeds_differ_across_runs():
    for i in range(200):
        assert block_seed(42, i) != block_seed(43, i)


def test_block_seed_is_not_symmetric_in_run_and_block():
    """(run 1, block 2) and (run 2, block 1) must not share rows: no seed = run + block shortcuts."""
    pairs = [(a, b) for a in range(20) for b in range(20) if a != b]
    assert all(block_seed(a, b) != block_seed(b, a) for a, b in pairs)
    assert len({block_seed(r, b) for r in range(30) for b in range(30)}) == 900


def test_block_seed_fits_in_31_bits():
    for run in (0, 1, 2**31 - 1):
        for i in (0, 1, 10**6):
            assert 0 <= block_seed(run, i) < 2**31


@pytest.mark.parametrize("rows,block_rows", [(1, 1), (1, 1000), (10, 3), (999, 1000), (1000, 1000),
                                             (1001, 1000), (10_000, 1000), (12_345, 100), (7, 7)])
def test_blocks_cover_exactly_the_rows(rows, block_rows):
    count = block_count(rows, block_rows)
    sizes = [block_size(rows, block_rows, i) for i in range(count)]
    assert sum(sizes) == rows
    assert all(1 <= s <= block_rows for s in sizes)
    assert all(s == block_rows for s in sizes[:-1]), "only the last block may be short"
    assert count == 1 or (count - 1) * block_rows < rows <= count * block_rows


def test_block_layout_numbers_batches_of_blocks():
    """A run is batch 0 of its layout; a stream's batch b starts at row b * batch_rows, block b * per_batch."""
    from synthlake.seeding import BlockLayout

    layout = BlockLayout(batch_rows=250, block_rows=100)
    assert layout.per_batch == 3 and list(layout.blocks(2)) == [6, 7, 8]
    assert [layout.size(b) for b in layout.blocks(2)] == [100, 100, 50]
    assert [layout.row_offset(b) for b in layout.blocks(2)] == [500, 600, 700]
    run = BlockLayout(batch_rows=1000, block_rows=300)
    assert [(run.size(b), run.row_offset(b)) for b in run.blocks()] == [(300, 0), (300, 300), (300, 600), (100, 900)]
