"""The peer for benchmarks/related_tables.py: mostlyai-engine's TabularARGN on two related tables, run in its own
virtual environment (.venv-peer, see benchmarks/peer_mostlyai.py for why).

    .venv-peer/bin/python benchmarks/peer_mostlyai_sequential.py JOB.json RESULT.json

mostlyai-engine's two-table mode learns a target table of sequences given a context table: TabularARGN(
tgt_context_key=..., ctx_data=..., ctx_primary_key=...). It generates the sequences of the context rows it is
given; it does not generate the context table itself (sample() without ctx_data reuses the real training
context). So, as MOSTLY AI's platform does for a subject table and its linked table, this trains two models:
a flat TabularARGN on the parent table's columns (without its key), which generates the synthetic parents, and
the sequential one, which generates each synthetic parent's sequence given it. Nothing of synthlake is imported
here: rows come and go as Parquet.

JOB.json: {"parents": rows.parquet, "children": rows.parquet (ordered within each parent), "parent_key",
"child_key" (the children's foreign key), "child_primary_key" or null, "workspace": a fresh folder, "seed": 0,
"parent_minutes", "max_training_time" (minutes, the sequential model), "max_epochs": 100, "train_threads": 2,
"sample_threads": 2, "n": parent rows to generate, "parents_out", "children_out": rows.parquet}.

RESULT.json: {"version", "train_s" (both models), "parent_train_s", "child_train_s", "sample_s" (both),
"parent_sample_s", "child_sample_s", "parent_epochs", "child_epochs", "parents", "children" (rows generated)}.
Generated parents get keys "0".."n-1"; the children's foreign keys are those.
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import torch
from peer_mostlyai import trained_epochs  # this folder is first on sys.path (run as a script)


def main(job_path: str, result_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    from mostlyai.engine import TabularARGN

    seed, workspace = job.get("seed", 0), Path(job["workspace"])
    parent_key, child_key = job["parent_key"], job["child_key"]
    parents, children = pd.read_parquet(job["parents"]), pd.read_parquet(job["children"])
    torch.set_num_threads(job.get("train_threads", 2))

    # the parent table: flat, its key left out (keys are made, not learned)
    flat = TabularARGN(max_training_time=job["parent_minutes"], max_epochs=job.get("max_epochs", 100),
                       workspace_dir=workspace / "parents", random_state=seed, verbose=0)
    started = time.perf_counter()
    flat.fit(parents.drop(columns=[parent_key]))
    parent_train_s = time.perf_counter() - started
    print(f"[peer] parent model trained in {parent_train_s:.1f} s", flush=True)

    # the child table: sequences given their parent row
    sequential = TabularARGN(max_training_time=job["max_training_time"], max_epochs=job.get("max_epochs", 100),
                             tgt_context_key=child_key, tgt_primary_key=job.get("child_primary_key"),
                             ctx_data=parents, ctx_primary_key=parent_key,
                             workspace_dir=workspace / "children", random_state=seed, verbose=0)
    started = time.perf_counter()
    sequential.fit(children)
    child_train_s = time.perf_counter() - started
    print(f"[peer] sequence model trained in {child_train_s:.1f} s", flush=True)

    torch.set_num_threads(job.get("sample_threads", 2))
    n = job["n"]
    started = time.perf_counter()
    synthetic_parents = flat.sample(n_samples=n).reset_index(drop=True)
    parent_sample_s = time.perf_counter() - started
    synthetic_parents.insert(0, parent_key, [str(i) for i in range(len(synthetic_parents))])
    started = time.perf_counter()
    synthetic_children = sequential.sample(ctx_data=synthetic_parents)
    child_sample_s = time.perf_counter() - started
    print(f"[peer] sampled {len(synthetic_parents)} parents in {parent_sample_s:.1f} s and "
          f"{len(synthetic_children)} children in {child_sample_s:.1f} s", flush=True)

    synthetic_parents.to_parquet(job["parents_out"])
    synthetic_children.to_parquet(job["children_out"])
    result = {"version": version("mostlyai-engine"), "train_s": parent_train_s + child_train_s,
              "parent_train_s": parent_train_s, "child_train_s": child_train_s,
              "sample_s": parent_sample_s + child_sample_s, "parent_sample_s": parent_sample_s,
              "child_sample_s": child_sample_s, "parent_epochs": trained_epochs(workspace / "parents"),
              "child_epochs": trained_epochs(workspace / "children"), "train_threads": job.get("train_threads", 2),
              "parents": len(synthetic_parents), "children": len(synthetic_children)}
    Path(result_path).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
