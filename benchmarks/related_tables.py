"""Related tables: synthlake's engine against peers on the storms demo (conf/datasets/storms.yaml): 655 storms
(the parent: storm_id, name, year) and their 19,537 six-hourly observations (the child: a sequence per storm,
keyed by storm_id, ordered by time). Each method learns both tables and generates 655 storms with their
observations; the same metrics then read every method's output.

    .venv/bin/python benchmarks/related_tables.py [--epochs 40] [--peer-minutes 4] [--par-epochs 12]
        [--no-mostly] [--no-par] [--out var/bench/related.json]

Methods:
- synthlake: the engine alone (no Spark): per table a tabular_ar on TableModel's model rows (default
  hyper-parameters: 40 epochs with early stopping), RelatedSampler generating the set (synthlake.related_frames,
  synthlake.related_sampler);
- mostlyai-engine 2.7.3's TabularARGN in .venv-peer (benchmarks/peer_mostlyai_sequential.py): a flat model of
  the storms (it generates the parents; --peer-minutes / 4, at most 1 minute) and its two-table sequential
  model (target = observations, context = storms, linked by storm_id; --peer-minutes), max_epochs 100, which
  generates each synthetic storm's observations given it;
- SDV 2.0.0's PARSynthesizer (in .venv): one sequence table (storm_id the sequence key, time the index, name and
  year context columns), --par-epochs epochs (capped: its default is 128); the storms are its output's
  distinct storm_id with their context.
Every method trains and samples on 2 torch threads.

Metrics (the same code for every method; keys renamed to storm_id first):
- accuracy and column_shapes (synthlake.evaluation) of storms (name, year) and of observations (its learned
  columns);
- length similarity: 1 - KS of observations per storm (synthlake.evaluation.sequences.length_similarity);
- coherence: the mean over observations' learned columns of the consecutive-pair similarity
  (sequences.coherence); lag-1 autocorrelation of lat and of wind (sequences.autocorrelation), real beside;
- referential integrity: the share of observations whose storm_id is a generated storm's, and whether the storms'
  keys are unique;
- exact_match_share of observations (share of synthetic rows equal to a real row over the learned columns). No
  DCR: that needs a holdout, and all 655 storms are trained on;
- training seconds (both tables), sampling seconds (all 655 storms and their observations), observations/s.

Measured on this machine (2 cores, CPU, another job sharing it at times), `--epochs 40 --peer-minutes 4
--par-epochs 12`, 8 min 57 s wall in all (one run, seed 0; synthlake ran all 40 epochs on observations, 28 on
storms; mostlyai-engine's parent model 12 epochs in its 1-minute cap, its sequence model 20 epochs in 4 minutes;
PAR 12 epochs, which leaves its sequences far too short):

| metric | real | synthlake | mostlyai-engine | sdv PAR |
|---|---|---|---|---|
| training s | - | 224.0 | 246.6 | 35.8 |
| sampling s | - | 1.7 | 2.2 | 10.2 |
| observations / s | - | 10,746 | 8,929 | 412 |
| storms generated | 655 | 655 | 655 | 655 |
| observations generated | 19537 | 18661 | 20040 | 4204 |
| storms accuracy | - | 0.934 | 0.909 | 0.926 |
| storms column shapes | - | 0.695 | 0.564 | 0.868 |
| observations accuracy | - | 0.844 | 0.845 | 0.516 |
| observations column shapes | - | 0.879 | 0.892 | 0.656 |
| length similarity (1 - KS) | - | 0.962 | 0.974 | 0.212 |
| coherence (mean) | - | 0.867 | 0.734 | 0.315 |
| lag-1 autocorrelation lat | 0.974 | 0.956 | 0.417 | -0.239 |
| lag-1 autocorrelation wind | 0.852 | 0.817 | 0.444 | -0.198 |
| referential integrity | - | 1.000 | 1.000 | 1.000 |
| storm keys unique | - | yes | yes | yes |
| exact match share (obs.) | - | 0.0000 | 0.0000 | 0.0000 |
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.config import load_any_dataset  # noqa: E402
from synthlake.evaluation import evaluate  # noqa: E402
from synthlake.evaluation.sequences import (  # noqa: E402
    autocorrelation,
    children_per_parent,
    coherence,
    length_similarity,
)
from synthlake.generators import get_generator  # noqa: E402
from synthlake.metadata import ColumnKind, TableMetadata  # noqa: E402
from synthlake.related_frames import TableModel, kept_labels  # noqa: E402
from synthlake.related_sampler import RelatedSampler  # noqa: E402

PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PEER_SCRIPT = Path(__file__).resolve().with_name("peer_mostlyai_sequential.py")
PARENT, CHILD, KEY, ORDER = "storms", "observations", "storm_id", "time"
STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:7.1f} s] {message}", flush=True)


# ---- the data ---------------------------------------------------------------------------------------------
def load_real(relations) -> dict[str, pd.DataFrame]:
    """Both tables as pandas reads them: time a datetime, category (Int64) a label, null staying null."""
    parents = pd.read_csv(ROOT / "data" / "storms" / "storms.csv", dtype={KEY: str, "name": str})
    children = pd.read_csv(ROOT / "data" / "storms" / "observations.csv", parse_dates=[ORDER],
                           dtype={"observation_id": str, KEY: str, "status": str})
    category = children["category"].astype("Int64")
    children["category"] = category.astype(str).where(category.notna(), None).astype(object)
    columns = {t.name: [c.name for c in t.columns] for t in relations.tables}
    return {PARENT: parents[columns[PARENT]], CHILD: children[columns[CHILD]]}


def conformed(frame: pd.DataFrame, specs) -> pd.DataFrame:
    """A method's rows with the real dtypes: floats for numbers, objects for labels, datetimes; keys as text."""
    out = {KEY: frame[KEY].astype(str)}
    for spec in specs:
        values = frame[spec.name]
        if spec.kind == ColumnKind.CATEGORICAL:
            labels = values.astype(object).where(values.notna(), None)
            out[spec.name] = labels.map(lambda v: v if v is None or isinstance(v, str) else _label(v))
        elif spec.kind == ColumnKind.DATETIME:
            out[spec.name] = pd.to_datetime(values)
        else:
            out[spec.name] = pd.to_numeric(values).astype(float)
    return pd.DataFrame(out)


def _label(value) -> str:
    """A number generated for a label column (category 3.0) as the real label reads ("3")."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


# ---- the methods ------------------------------------------------------------------------------------------
def run_synthlake(relations, real: dict[str, pd.DataFrame], epochs: int, n: int, seed: int) -> dict:
    samplers, epochs_run = {}, {}
    started = time.perf_counter()
    for name in relations.parents_first():
        model = TableModel(relations, name)
        parent = real[model.parent.name] if model.parent else None
        labels = (kept_labels(samplers[model.parent.name]) or None) if model.parent else None
        frame, orphans = model.training_frame(real[name], parent, {c: real[c] for c in model.children}, labels)
        generator = get_generator("tabular_ar")(model.metadata, epochs=epochs).fit(frame, seed=seed)
        epochs_run[name] = (getattr(generator, "training", None) or {}).get("epochs_run")
        samplers[name] = generator.freeze()
        log(f"synthlake: {name} learned ({len(frame)} model rows, {orphans} orphans, "
            f"{epochs_run[name]} epochs)")
    train_s = time.perf_counter() - started
    sampler = RelatedSampler(relations, samplers)
    started = time.perf_counter()
    tables = sampler.sample(n, seed=seed, row_offset=0)
    sample_s = time.perf_counter() - started
    return {"parents": tables[PARENT].to_pandas(), "children": tables[CHILD].to_pandas(), "train_s": train_s,
            "sample_s": sample_s, "notes": f"tabular_ar, epochs {epochs} with early stopping (ran {epochs_run})",
            "epochs_run": epochs_run}


def run_mostly(real: dict[str, pd.DataFrame], minutes: float, n: int, seed: int, work: Path) -> dict:
    folder = work / "mostly"
    folder.mkdir()
    real[PARENT].to_parquet(folder / "parents.parquet")
    children = real[CHILD].drop(columns=["observation_id"]).sort_values([KEY, ORDER], kind="stable")
    children.reset_index(drop=True).to_parquet(folder / "children.parquet")
    parent_minutes = max(0.2, min(1.0, minutes / 4))
    job = {"parents": str(folder / "parents.parquet"), "children": str(folder / "children.parquet"),
           "parent_key": KEY, "child_key": KEY, "child_primary_key": None, "workspace": str(folder / "ws"),
           "seed": seed, "parent_minutes": parent_minutes, "max_training_time": minutes, "max_epochs": 100,
           "train_threads": 2, "sample_threads": 2, "n": n, "parents_out": str(folder / "synthetic-parents.parquet"),
           "children_out": str(folder / "synthetic-children.parquet")}
    (folder / "job.json").write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([str(PEER_PYTHON), str(PEER_SCRIPT), str(folder / "job.json"), str(folder / "result.json")],
                   check=True, env=env)
    result = json.loads((folder / "result.json").read_text())
    return {"parents": pd.read_parquet(job["parents_out"]), "children": pd.read_parquet(job["children_out"]),
            "train_s": result["train_s"], "sample_s": result["sample_s"], "peer": result,
            "notes": f"mostlyai-engine {result['version']}: flat parent model ({parent_minutes:g} min cap, "
                     f"{result['parent_epochs']} epochs) + sequential model ({minutes:g} min cap, "
                     f"{result['child_epochs']} epochs), max_epochs 100"}


def mostly_available() -> bool:
    return PEER_PYTHON.exists() and subprocess.run(
        [str(PEER_PYTHON), "-c", "import mostlyai.engine"], capture_output=True).returncode == 0


def run_par(relations, real: dict[str, pd.DataFrame], epochs: int, n: int, seed: int) -> dict:
    from sdv.metadata import Metadata
    from sdv.sequential import PARSynthesizer

    parent_cols = [c.name for c in relations.table(PARENT).learned]
    data = real[CHILD].drop(columns=["observation_id"]).merge(real[PARENT], on=KEY, how="inner")
    sdtypes = {ColumnKind.CATEGORICAL: "categorical", ColumnKind.NUMERIC: "numerical",
               ColumnKind.DATETIME: "datetime"}
    columns = {KEY: {"sdtype": "id"}}
    for table in (PARENT, CHILD):
        for spec in relations.table(table).learned:
            columns[spec.name] = {"sdtype": sdtypes[spec.kind]}
    metadata = Metadata.load_from_dict({"tables": {CHILD: {"columns": columns, "sequence_key": KEY,
                                                           "sequence_index": ORDER}}})
    np.random.seed(seed)
    torch.manual_seed(seed)
    synthesizer = PARSynthesizer(metadata, context_columns=parent_cols, epochs=epochs, cuda=False, verbose=False)
    started = time.perf_counter()
    synthesizer.fit({CHILD: data})
    train_s = time.perf_counter() - started
    log(f"PAR: fitted in {train_s:.1f} s")
    started = time.perf_counter()
    out = synthesizer.sample_sequences(num_sequences=n)
    sample_s = time.perf_counter() - started
    rows = next(iter(out.values())) if isinstance(out, dict) else out
    rows = rows.assign(**{KEY: rows[KEY].astype(str)})
    parents = rows.groupby(KEY, sort=False, as_index=False)[parent_cols].first()
    return {"parents": parents, "children": rows.drop(columns=parent_cols), "train_s": train_s,
            "sample_s": sample_s, "notes": f"sdv PARSynthesizer, epochs capped at {epochs} (default 128); storms "
                                           "= distinct storm_id of its output with their context columns"}


# ---- the metrics ------------------------------------------------------------------------------------------
def metrics(relations, real: dict[str, pd.DataFrame], parents: pd.DataFrame, children: pd.DataFrame,
            seed: int) -> dict:
    parent_specs, child_specs = relations.table(PARENT).learned, relations.table(CHILD).learned
    parents, children = conformed(parents, parent_specs), conformed(children, child_specs)
    real_parents, real_children = conformed(real[PARENT], parent_specs), conformed(real[CHILD], child_specs)
    storms = evaluate(real_parents, parents, TableMetadata(columns=parent_specs),
                      names=["accuracy", "column_shapes"], seed=seed)
    observations = evaluate(real_children, children, TableMetadata(columns=child_specs),
                            names=["accuracy", "column_shapes", "exact_match_share"], seed=seed)
    lengths = length_similarity(children_per_parent(real_parents[KEY], real_children[KEY]),
                                children_per_parent(parents[KEY], children[KEY]))
    pairs = coherence(real_children, children, KEY, ORDER, child_specs)
    return {"parents": len(parents), "children": len(children),
            "storms_accuracy": storms["accuracy"], "storms_column_shapes": storms["column_shapes"],
            "observations_accuracy": observations["accuracy"],
            "observations_column_shapes": observations["column_shapes"],
            "length_similarity": lengths, "coherence": float(np.nanmean(list(pairs.values()))),
            "coherence_by_column": pairs,
            "lag1_lat": autocorrelation(children, KEY, ORDER, "lat"),
            "lag1_wind": autocorrelation(children, KEY, ORDER, "wind"),
            "referential_integrity": float(children[KEY].isin(parents[KEY]).mean()) if len(children) else None,
            "parent_keys_unique": bool(parents[KEY].is_unique),
            "exact_match_share": observations["exact_match_share"]}


ROWS = [("training s", "train_s", ".1f"), ("sampling s", "sample_s", ".1f"),
        ("observations / s", "rows_per_s", ",.0f"), ("storms generated", "parents", "d"),
        ("observations generated", "children", "d"), ("storms accuracy", "storms_accuracy", ".3f"),
        ("storms column shapes", "storms_column_shapes", ".3f"),
        ("observations accuracy", "observations_accuracy", ".3f"),
        ("observations column shapes", "observations_column_shapes", ".3f"),
        ("length similarity (1 - KS)", "length_similarity", ".3f"), ("coherence (mean)", "coherence", ".3f"),
        ("lag-1 autocorrelation lat", "lag1_lat", ".3f"), ("lag-1 autocorrelation wind", "lag1_wind", ".3f"),
        ("referential integrity", "referential_integrity", ".3f"), ("storm keys unique", "parent_keys_unique", ""),
        ("exact match share (obs.)", "exact_match_share", ".4f")]


def table(results: dict) -> str:
    names = list(results["methods"])
    lines = ["| metric | real | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for label, key, spec in ROWS:
        cells = [_cell(results["real"].get(key), spec)]
        cells += [_cell(results["methods"][m].get(key), spec) for m in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for m in names:
        lines.append(f"- {m}: {results['methods'][m].get('notes', '')}")
    return "\n".join(lines)


def _cell(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40, help="tabular_ar's most epochs (early stopping on)")
    parser.add_argument("--peer-minutes", type=float, default=4.0,
                        help="mostlyai-engine's max_training_time of its sequential model, minutes")
    parser.add_argument("--par-epochs", type=int, default=12, help="PARSynthesizer's epochs (its default is 128)")
    parser.add_argument("--no-mostly", action="store_true", help="leave mostlyai-engine out")
    parser.add_argument("--no-par", action="store_true", help="leave SDV's PARSynthesizer out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="var/bench/related.json", help="the results JSON")
    args = parser.parse_args()

    torch.set_num_threads(2)
    relations = load_any_dataset("conf/datasets/storms.yaml").relations
    real = load_real(relations)
    n = len(real[PARENT])
    log(f"real: {n} storms, {len(real[CHILD])} observations")
    child_specs = relations.table(CHILD).learned
    real_children = conformed(real[CHILD], child_specs)
    results = {"config": vars(args), "torch_threads": 2, "cores": os.cpu_count(),
               "real": {"parents": n, "children": len(real[CHILD]),
                        "lag1_lat": autocorrelation(real_children, KEY, ORDER, "lat"),
                        "lag1_wind": autocorrelation(real_children, KEY, ORDER, "wind")},
               "methods": {}}

    def record(name: str, run) -> None:
        log(f"{name}: start")
        try:
            out = run()
        except Exception as error:  # a peer failing is a result, not the end of the run
            log(f"{name}: failed: {type(error).__name__}: {error}")
            results["methods"][name] = {"error": f"{type(error).__name__}: {error}",
                                        "notes": f"failed: {type(error).__name__}: {str(error)[:200]}"}
            return
        log(f"{name}: trained in {out['train_s']:.1f} s, sampled {len(out['parents'])} storms and "
            f"{len(out['children'])} observations in {out['sample_s']:.1f} s; scoring")
        row = {k: v for k, v in out.items() if k not in ("parents", "children")}
        row["rows_per_s"] = len(out["children"]) / out["sample_s"] if out["sample_s"] > 0 else None
        row.update(metrics(relations, real, out["parents"], out["children"], args.seed))
        results["methods"][name] = row

    record("synthlake", lambda: run_synthlake(relations, real, args.epochs, n, args.seed))
    with tempfile.TemporaryDirectory(prefix="related-bench-") as work:
        if args.no_mostly:
            log("mostlyai-engine left out (--no-mostly)")
        elif not mostly_available():
            log(f"mostlyai-engine left out: {PEER_PYTHON} with mostlyai-engine is missing (make peer-env)")
            results["methods"]["mostlyai-engine"] = {"notes": "not installed (.venv-peer)"}
        else:
            record("mostlyai-engine", lambda: run_mostly(real, args.peer_minutes, n, args.seed, Path(work)))
    if args.no_par:
        log("PARSynthesizer left out (--no-par)")
    else:
        try:
            import sdv  # noqa: F401
        except ImportError:
            log("PARSynthesizer left out: sdv is not installed in .venv")
            results["methods"]["sdv PAR"] = {"notes": "not installed (sdv missing from .venv)"}
        else:
            record("sdv PAR", lambda: run_par(relations, real, args.par_epochs, n, args.seed))

    results["wall_s"] = time.perf_counter() - STARTED
    print()
    print(table(results))
    out = ROOT / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=_json))
    log(f"wrote {out}")


def _json(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.bool_):
        return bool(value)
    return str(value)


if __name__ == "__main__":
    main()
