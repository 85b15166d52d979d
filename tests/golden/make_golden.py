"""Writes the golden fixtures of tabular_ar: its sampler files and rows from a fixed seed.

Run once, before a refactor of the generators, and commit the output; tests/unit/test_golden.py then
checks that the code still reproduces them bit for bit. Rerunning it after a refactor defeats the test:
only do so on purpose, when the rows are meant to change, and say why in the commit.

    .venv/bin/python tests/golden/make_golden.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1] / "benchmarks"), str(HERE.parent / "unit")]

from adult_data import load_adult  # noqa: E402
from conftest import make_mixed_table, mixed_metadata  # noqa: E402

# Small and quick: the fixtures pin the code's arithmetic, not the model's quality.
# order_mixing 0: the fixtures pin training in the columns' own order, as it was when they were written
HYPER = {"epochs": 3, "hidden_dim": 32, "batch_size": 256, "order_mixing": 0.0}
ROWS, SEED, OFFSET = 300, 7, 1000


def cases() -> dict[str, tuple[pd.DataFrame, object]]:
    adult, _, adult_meta = load_adult()
    return {"adult": (adult.iloc[:2000].reset_index(drop=True), adult_meta),
            "mixed": (make_mixed_table(), mixed_metadata())}


def fit(table: pd.DataFrame, metadata):
    from synthlake.generators import get_generator

    torch.set_num_threads(1)  # one thread: reductions in a fixed order
    return get_generator("tabular_ar")(metadata, **HYPER).fit(table)


def main() -> None:
    for name, (table, metadata) in cases().items():
        folder = HERE / f"tabular_ar_{name}"
        model = fit(table, metadata)
        model.freeze().save(folder)
        pq.write_table(model.sample_arrow(ROWS, seed=SEED, row_offset=OFFSET), folder / "rows.parquet")
        print(f"wrote {folder}")


if __name__ == "__main__":
    main()
