"""Related tables: synthlake's engine against peers on a parent table and its child table of sequences, one of two
demos (--dataset; both: one after the other, a table each, both in the JSON under "datasets"):
- storms (conf/datasets/storms.yaml): 655 storms (the parent: storm_id, name, year) and their 19,537 six-hourly
  observations (the child: a sequence per storm, keyed by storm_id, ordered by time);
- nycflights (conf/datasets/nycflights.yaml): 3,322 planes (the parent: tailnum, year, type, manufacturer, model,
  engines, seats, engine) and the 27,004 flights out of New York City in January 2013 (the child: a sequence
  per plane, keyed by tailnum, ordered by time_hour). The 4,479 flights whose tailnum is null or names no plane
  are orphans: they are dropped from the real flights before any method learns them (synthlake's
  TableModel.training_frame would drop them itself; dropping them up front makes every method learn, and every
  metric read, the same 22,525 flights). Planes without flights stay (0 children).
Tables, keys, order and column kinds come from the dataset's config; each CSV is read by its kinds
(identifiers and categories as text, nulls staying null; datetimes parsed; numbers as pandas reads them).
Each method learns both tables and generates as many parents as the real table has, with their children; the
same metrics then read every method's output.

    .venv/bin/python benchmarks/related_tables.py [--dataset storms|nycflights|both] [--epochs 40]
        [--peer-minutes 4] [--par-epochs 12] [--no-mostly] [--no-par] [--out var/bench/related.json]

Methods:
- synthlake: the engine alone (no Spark): per table a tabular_ar on TableModel's model rows (default
  hyper-parameters: 40 epochs with early stopping), RelatedSampler generating the set (synthlake.related_frames,
  synthlake.related_sampler);
- mostlyai-engine 2.7.3's TabularARGN in .venv-peer (benchmarks/peer_mostlyai_sequential.py): a flat model of
  the parent table (it generates the parents; --peer-minutes / 4, at most 1 minute) and its two-table
  sequential model (target = the child, its primary key left out, context = the parent, linked by the foreign
  key; --peer-minutes), max_epochs 100, which generates each synthetic parent's children given it;
- SDV 2.0.0's PARSynthesizer (in .venv): one sequence table, the child joined to its parent (the foreign key the
  sequence key, order_by the index, the parent's learned columns context columns), --par-epochs epochs (capped:
  its default is 128); the parents are its output's distinct sequence keys with their context. It learns no
  parent without children (the join leaves them out) and generates none.
Every method trains and samples on 2 torch threads.

Metrics (the same code for every method, on each output conformed to the real dtypes):
- accuracy and column_shapes (synthlake.evaluation) of the parent (its learned columns) and of the child (its
  learned columns);
- length similarity: 1 - KS of children per parent (synthlake.evaluation.sequences.length_similarity);
- coherence: the mean over the child's learned columns of the consecutive-pair similarity
  (sequences.coherence); lag-1 autocorrelation (sequences.autocorrelation), real beside, of the child's first two
  numeric learned columns, non-integer ones first (storms: lat and long; nycflights: dep_delay and arr_delay);
- referential integrity: the share of children whose foreign key is a generated parent's, and whether the
  parents' keys are unique;
- exact_match_share of the child (share of synthetic rows equal to a real row over the learned columns);
- privacy by entity (synthlake.evaluation.entities): entity_exact_match_share (a parent and its children, as a
  multiset, identical to a training one), entity_unique_match_share (identical to a training one that no other
  real entity equals) and entity_dcr_share against the held-out entities (--holdout of the
  parents, with their children, by synthlake.related_frames.held_out with seed 42; no method sees them; the
  other metrics compare against the training entities);
- training seconds (both tables), sampling seconds (all parents and their children), children/s.

The figures, with the command of each run, are in the README (Related tables benchmark).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.config import load_any_dataset  # noqa: E402
from synthlake.evaluation import evaluate  # noqa: E402
from synthlake.evaluation.entities import entity_dcr_share, entity_match_shares  # noqa: E402
from synthlake.evaluation.sequences import (  # noqa: E402
    autocorrelation,
    children_per_parent,
    coherence,
    length_similarity,
)
from synthlake.generators import get_generator  # noqa: E402
from synthlake.metadata import ColumnKind, TableMetadata  # noqa: E402
from synthlake.related_frames import TableModel, held_out, kept_labels  # noqa: E402
from synthlake.related_sampler import RelatedSampler  # noqa: E402

PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PEER_SCRIPT = Path(__file__).resolve().with_name("peer_mostlyai_sequential.py")
DATASETS = ("storms", "nycflights")
STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:7.1f} s] {message}", flush=True)


# ---- the data ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """A dataset's parent table and its child table of sequences, as its config names them."""

    name: str
    config: Any  # pipelines.config.RelatedDatasetConfig
    relations: Any  # its synthlake.relations.Relations
    parent: str
    child: str
    key: str  # the parent's primary key
    fk: str  # the child's foreign key to it
    order: str  # the child's order_by
    child_key: str | None  # the child's primary key (made, not learned)

    @property
    def parent_specs(self):
        return self.relations.table(self.parent).learned

    @property
    def child_specs(self):
        return self.relations.table(self.child).learned

    @property
    def lag_columns(self) -> list[str]:
        """The child's first two numeric learned columns, non-integer ones first: the lag-1 rows."""
        numeric = [c for c in self.child_specs if c.kind == ColumnKind.NUMERIC]
        return [c.name for c in sorted(numeric, key=lambda c: c.integer)[:2]]


def family(name: str) -> Family:
    config = load_any_dataset(f"conf/datasets/{name}.yaml")
    child = next(t for t in config.tables if t.foreign_keys)
    parent = config.table(child.foreign_keys[0].parent)
    return Family(name=name, config=config, relations=config.relations, parent=parent.name, child=child.name,
                  key=parent.primary_key, fk=child.foreign_keys[0].column, order=child.order_by,
                  child_key=child.primary_key)


def read_table(table) -> pd.DataFrame:
    """One table's CSV as pandas reads it by the config's kinds: identifiers and categories as text (null staying
    null), datetimes parsed, numbers as pandas reads them (integers, floats where a value is missing)."""
    text = [c.name for c in table.columns if c.kind not in (ColumnKind.NUMERIC, ColumnKind.DATETIME)]
    dates = [c.name for c in table.columns if c.kind == ColumnKind.DATETIME]
    path = Path(table.source.path)
    frame = pd.read_csv(path if path.is_absolute() else ROOT / path, dtype=dict.fromkeys(text, str),
                        parse_dates=dates)
    return frame[[c.name for c in table.columns]]


def split_entities(fam: Family, real: dict[str, pd.DataFrame], fraction: float, seed: int):
    """(training, holdout) tables: `fraction` of the parents, by a seeded hash of their key, with their children
    (synthlake.related_frames.held_out, as the pipeline holds entities out)."""
    held = held_out(real[fam.parent][fam.key], fraction, seed)
    keys = real[fam.parent][fam.key][held]
    out = []
    for side in (False, True):
        parents = real[fam.parent][held == side].reset_index(drop=True)
        children = real[fam.child][real[fam.child][fam.fk].isin(keys) == side].reset_index(drop=True)
        out.append({fam.parent: parents, fam.child: children})
    return out[0], out[1]


def load_real(fam: Family) -> tuple[dict[str, pd.DataFrame], int]:
    """(both tables, the orphans dropped): child rows whose foreign key is null or names no parent row are left
    out before any method learns them."""
    parents = read_table(fam.config.table(fam.parent))
    children = read_table(fam.config.table(fam.child))
    known = children[fam.fk].isin(parents[fam.key]) & children[fam.fk].notna()
    return {fam.parent: parents, fam.child: children[known].reset_index(drop=True)}, int((~known).sum())


def conformed(frame: pd.DataFrame, key: str, specs) -> pd.DataFrame:
    """A method's rows with the real dtypes: floats for numbers, objects for labels, datetimes; `key` as text."""
    out = {key: frame[key].astype(str)}
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
def run_synthlake(fam: Family, real: dict[str, pd.DataFrame], epochs: int, n: int, seed: int) -> dict:
    samplers, epochs_run = {}, {}
    started = time.perf_counter()
    for name in fam.relations.parents_first():
        model = TableModel(fam.relations, name)
        parent = real[model.parent.name] if model.parent else None
        labels = (kept_labels(samplers[model.parent.name]) or None) if model.parent else None
        frame, orphans = model.training_frame(real[name], parent, {c: real[c] for c in model.children}, labels)
        generator = get_generator("tabular_ar")(model.metadata, epochs=epochs).fit(frame, seed=seed)
        epochs_run[name] = (getattr(generator, "training", None) or {}).get("epochs_run")
        samplers[name] = generator.freeze()
        log(f"synthlake: {name} learned ({len(frame)} model rows, {orphans} orphans, "
            f"{epochs_run[name]} epochs)")
    train_s = time.perf_counter() - started
    sampler = RelatedSampler(fam.relations, samplers)
    started = time.perf_counter()
    tables = sampler.sample(n, seed=seed, row_offset=0)
    sample_s = time.perf_counter() - started
    return {"parents": tables[fam.parent].to_pandas(), "children": tables[fam.child].to_pandas(),
            "train_s": train_s, "sample_s": sample_s, "epochs_run": epochs_run,
            "notes": f"tabular_ar, epochs {epochs} with early stopping (ran {epochs_run})"}


def run_mostly(fam: Family, real: dict[str, pd.DataFrame], minutes: float, n: int, seed: int,
               work: Path) -> dict:
    folder = work / f"mostly-{fam.name}"
    folder.mkdir()
    real[fam.parent].to_parquet(folder / "parents.parquet")
    children = real[fam.child].drop(columns=[fam.child_key] if fam.child_key else [])
    children = children.sort_values([fam.fk, fam.order], kind="stable").reset_index(drop=True)
    children.to_parquet(folder / "children.parquet")
    parent_minutes = max(0.2, min(1.0, minutes / 4))
    job = {"parents": str(folder / "parents.parquet"), "children": str(folder / "children.parquet"),
           "parent_key": fam.key, "child_key": fam.fk, "child_primary_key": None, "workspace": str(folder / "ws"),
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


SDTYPES = {ColumnKind.CATEGORICAL: "categorical", ColumnKind.NUMERIC: "numerical", ColumnKind.DATETIME: "datetime"}


def par_metadata(fam: Family):
    """SDV metadata of PAR's one table: the child's learned columns and its parent's, keyed by the foreign key."""
    from sdv.metadata import Metadata

    columns = {fam.fk: {"sdtype": "id"}}
    columns.update({c.name: {"sdtype": SDTYPES[c.kind]} for c in fam.parent_specs + fam.child_specs})
    return Metadata.load_from_dict({"tables": {fam.child: {"columns": columns, "sequence_key": fam.fk,
                                                           "sequence_index": fam.order}}})


def run_par(fam: Family, real: dict[str, pd.DataFrame], epochs: int, n: int, seed: int) -> dict:
    from sdv.sequential import PARSynthesizer

    parent_cols = [c.name for c in fam.parent_specs]
    parents = real[fam.parent][[fam.key] + parent_cols].rename(columns={fam.key: fam.fk})
    data = real[fam.child][[fam.fk] + [c.name for c in fam.child_specs]].merge(parents, on=fam.fk, how="inner")
    np.random.seed(seed)
    torch.manual_seed(seed)
    synthesizer = PARSynthesizer(par_metadata(fam), context_columns=parent_cols, epochs=epochs, cuda=False,
                                 verbose=False)
    started = time.perf_counter()
    synthesizer.fit({fam.child: data})
    train_s = time.perf_counter() - started
    log(f"PAR: fitted in {train_s:.1f} s")
    started = time.perf_counter()
    out = synthesizer.sample_sequences(num_sequences=n)
    sample_s = time.perf_counter() - started
    rows = next(iter(out.values())) if isinstance(out, dict) else out
    rows = rows.assign(**{fam.fk: rows[fam.fk].astype(str)})
    parents = rows.groupby(fam.fk, sort=False, as_index=False)[parent_cols].first().rename(columns={fam.fk: fam.key})
    return {"parents": parents, "children": rows.drop(columns=parent_cols), "train_s": train_s,
            "sample_s": sample_s, "notes": f"sdv PARSynthesizer, epochs capped at {epochs} (default 128); "
                                           f"{fam.parent} = distinct {fam.fk} of its output with their context"}


# ---- the metrics ------------------------------------------------------------------------------------------
def metrics(fam: Family, real: dict[str, pd.DataFrame], holdout: dict[str, pd.DataFrame], parents: pd.DataFrame,
            children: pd.DataFrame, seed: int) -> dict:
    parents, children = conformed(parents, fam.key, fam.parent_specs), conformed(children, fam.fk, fam.child_specs)
    real_parents = conformed(real[fam.parent], fam.key, fam.parent_specs)
    real_children = conformed(real[fam.child], fam.fk, fam.child_specs)
    train_set = {fam.parent: real_parents, fam.child: real_children}
    holdout_set = {fam.parent: conformed(holdout[fam.parent], fam.key, fam.parent_specs),
                   fam.child: conformed(holdout[fam.child], fam.fk, fam.child_specs)}
    synthetic_set = {fam.parent: parents, fam.child: children}
    two = fam.relations.model_copy(update={"tables": [fam.relations.table(fam.parent),
                                                      fam.relations.table(fam.child)]})
    top = evaluate(real_parents, parents, TableMetadata(columns=fam.parent_specs),
                   names=["accuracy", "column_shapes"], seed=seed)
    seq = evaluate(real_children, children, TableMetadata(columns=fam.child_specs),
                   names=["accuracy", "column_shapes", "exact_match_share"], seed=seed)
    lengths = length_similarity(children_per_parent(real_parents[fam.key], real_children[fam.fk]),
                                children_per_parent(parents[fam.key], children[fam.fk]))
    pairs = coherence(real_children, children, fam.fk, fam.order, fam.child_specs)
    return {"parents": len(parents), "children": len(children),
            "parent_accuracy": top["accuracy"], "parent_column_shapes": top["column_shapes"],
            "child_accuracy": seq["accuracy"], "child_column_shapes": seq["column_shapes"],
            "length_similarity": lengths, "coherence": float(np.nanmean(list(pairs.values()))),
            "coherence_by_column": pairs, **lags(fam, children),
            "referential_integrity": float(children[fam.fk].isin(parents[fam.key]).mean()) if len(children) else None,
            "parent_keys_unique": bool(parents[fam.key].is_unique),
            "exact_match_share": seq["exact_match_share"],
            **entity_match_shares(two, train_set, holdout_set, synthetic_set),
            "entity_dcr_share": entity_dcr_share(two, train_set, holdout_set, synthetic_set, seed)}


def lags(fam: Family, children: pd.DataFrame) -> dict[str, float]:
    """The lag-1 autocorrelation of each of fam.lag_columns in `children` (conformed), as lag1_<column>."""
    return {f"lag1_{c}": autocorrelation(children, fam.fk, fam.order, c) for c in fam.lag_columns}


def rows(fam: Family) -> list[tuple[str, str, str]]:
    """The table's rows: (label, key in a method's results, format)."""
    p, c = fam.parent, fam.child
    return [("training s", "train_s", ".1f"), ("sampling s", "sample_s", ".1f"), (f"{c} / s", "rows_per_s", ",.0f"),
            (f"{p} generated", "parents", "d"), (f"{c} generated", "children", "d"),
            (f"{p} accuracy", "parent_accuracy", ".3f"), (f"{p} column shapes", "parent_column_shapes", ".3f"),
            (f"{c} accuracy", "child_accuracy", ".3f"), (f"{c} column shapes", "child_column_shapes", ".3f"),
            ("length similarity (1 - KS)", "length_similarity", ".3f"), ("coherence (mean)", "coherence", ".3f")] \
        + [(f"lag-1 autocorrelation {x}", f"lag1_{x}", ".3f") for x in fam.lag_columns] \
        + [("referential integrity", "referential_integrity", ".3f"), (f"{p} keys unique", "parent_keys_unique", ""),
           (f"exact match share ({c})", "exact_match_share", ".4f"),
           ("entity exact match share", "entity_exact_match_share", ".4f"),
           ("entity unique match share", "entity_unique_match_share", ".4f"),
           ("entity DCR share (0.5 ideal)", "entity_dcr_share", ".3f")]


def table(fam: Family, results: dict) -> str:
    names = list(results["methods"])
    lines = ["| metric | real | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for label, key, spec in rows(fam):
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


# ---- the run ----------------------------------------------------------------------------------------------
def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=[*DATASETS, "both"], default="storms",
                        help="conf/datasets/NAME.yaml; both: storms, then nycflights")
    parser.add_argument("--epochs", type=int, default=40, help="tabular_ar's most epochs (early stopping on)")
    parser.add_argument("--peer-minutes", type=float, default=4.0,
                        help="mostlyai-engine's max_training_time of its sequential model, minutes")
    parser.add_argument("--par-epochs", type=int, default=12, help="PARSynthesizer's epochs (its default is 128)")
    parser.add_argument("--no-mostly", action="store_true", help="leave mostlyai-engine out")
    parser.add_argument("--no-par", action="store_true", help="leave SDV's PARSynthesizer out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout", type=float, default=0.2,
                        help="the share of parents held out, with their children, for entity DCR (seed 42)")
    parser.add_argument("--out", default="var/bench/related.json", help="the results JSON")
    return parser.parse_args()


def run_dataset(name: str, args: argparse.Namespace) -> dict:
    """One dataset: every method's output measured; its table printed."""
    started = time.perf_counter()
    fam = family(name)
    real, orphans = load_real(fam)
    real, holdout = split_entities(fam, real, args.holdout, 42)
    n = len(real[fam.parent])
    log(f"{name}: {n} {fam.parent}, {len(real[fam.child])} {fam.child} ({orphans} orphans dropped); held out "
        f"{len(holdout[fam.parent])} {fam.parent} with {len(holdout[fam.child])} {fam.child}")
    real_children = conformed(real[fam.child], fam.fk, fam.child_specs)
    results = {"real": {"parents": n, "children": len(real[fam.child]), "orphans_dropped": orphans,
                        **lags(fam, real_children)}, "methods": {}}
    for method, run in methods(fam, real, n, args):
        results["methods"][method] = scored(fam, real, holdout, method, run, args.seed)
    results["wall_s"] = time.perf_counter() - started
    print(f"\n{name}:\n\n{table(fam, results)}\n", flush=True)
    return results


def methods(fam: Family, real: dict[str, pd.DataFrame], n: int, args: argparse.Namespace):
    """(name, a callable returning its output, or a dict of notes where it is left out) of each method."""
    yield "synthlake", lambda: run_synthlake(fam, real, args.epochs, n, args.seed)
    if args.no_mostly:
        log("mostlyai-engine left out (--no-mostly)")
    elif not mostly_available():
        log(f"mostlyai-engine left out: {PEER_PYTHON} with mostlyai-engine is missing (make peer-env)")
        yield "mostlyai-engine", {"notes": "not installed (.venv-peer)"}
    else:
        with tempfile.TemporaryDirectory(prefix="related-bench-") as work:
            yield "mostlyai-engine", lambda: run_mostly(fam, real, args.peer_minutes, n, args.seed, Path(work))
    if args.no_par:
        log("PARSynthesizer left out (--no-par)")
    elif importlib.util.find_spec("sdv") is None:
        log("PARSynthesizer left out: sdv is not installed in .venv")
        yield "sdv PAR", {"notes": "not installed (sdv missing from .venv)"}
    else:
        yield "sdv PAR", lambda: run_par(fam, real, args.par_epochs, n, args.seed)


def scored(fam: Family, real: dict[str, pd.DataFrame], holdout: dict[str, pd.DataFrame], name: str, run,
           seed: int) -> dict:
    """A method's timings, notes and metrics; its error where it failed (a peer failing is a result)."""
    if isinstance(run, dict):
        return run
    log(f"{fam.name} {name}: start")
    try:
        out = run()
    except Exception as error:
        log(f"{name}: failed: {type(error).__name__}: {error}")
        return {"error": f"{type(error).__name__}: {error}",
                "notes": f"failed: {type(error).__name__}: {str(error)[:200]}"}
    log(f"{name}: trained in {out['train_s']:.1f} s, sampled {len(out['parents'])} {fam.parent} and "
        f"{len(out['children'])} {fam.child} in {out['sample_s']:.1f} s; scoring")
    row = {k: v for k, v in out.items() if k not in ("parents", "children")}
    row["rows_per_s"] = len(out["children"]) / out["sample_s"] if out["sample_s"] > 0 else None
    row.update(metrics(fam, real, holdout, out["parents"], out["children"], seed))
    return row


def main() -> None:
    args = arguments()
    torch.set_num_threads(2)
    names = DATASETS if args.dataset == "both" else (args.dataset,)
    results = {"config": vars(args), "torch_threads": 2, "cores": os.cpu_count(),
               "datasets": {name: run_dataset(name, args) for name in names}}
    results["wall_s"] = time.perf_counter() - STARTED
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
