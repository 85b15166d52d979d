"""Conditional sampling, rebalancing, fairness and rules of tabular_ar, against mostlyai-engine in the same run.

    make peer-env                                   # once: .venv-peer with mostlyai-engine 2.7.3 (the peer)
    .venv/bin/python benchmarks/conditions.py [--quick] [--no-peer] [--peer-minutes 5] [--threads 2] [--json out.json]

About 16 minutes on 2 cores, 8 of them the peer's training (--quick: a few minutes, small models, a smoke
run). Trains on Adult (adult.data, 32,561 rows; adult.test is the holdout) tabular_ar with order_mixing 0.5
(the default) and 0, and with the lookup rule that rule discovery proposes (education-num by education); on a
rule-heavy bookings table of this script's own (--bookings-rows rows; a second draw is its holdout) tabular_ar
with and without its 8 rules (synthlake.rules.parse_rules + RuledSampler, as pipelines/train.py's sampler_of wraps
them). The peer, mostlyai-engine's TabularARGN (flexible generation on, its default), trains on the same Adult
rows and the same bookings rows, on the same threads, with --peer-minutes of training each (its
max_training_time; it stops early before that if its validation loss stops improving). It runs in
benchmarks/peer_mostlyai.py under .venv-peer (its pins would change .venv: psutil<6, transformers,
torchvision), fed and read back through Parquet. Torch trains on --threads threads; every sampler samples on
one thread (torch.set_num_threads(1); tabular_ar's compiled loop is single-threaded), warm, best of 3, the
rows into pandas.

Prints one table per section:
1. sampling speed on Adult: rows/s unconditional, under two `where` conditions of different selectivity (and
   what rejection sampling would give: the unconditional rate times the share of rows that meet them), with
   seed rows (age and education of adult.test rows, one output row each), rebalanced (income >50K at 0.5),
   fair (income independent of sex); each engine's ratio to its own unconditional rate;
2. fidelity: what flexible orders cost (order_mixing 0 vs 0.5, the peer beside them: accuracy, column shapes
   and pair trends, TSTR AUC), and conditional fidelity: the rows a condition asks for against the real
   training rows meeting it, for `where`, for seed rows (conditioned columns of adult.test rows meeting the
   condition, the way the peer conditions), for unconditional rows filtered by the condition (the rejection
   reference) and for the peer seeded alike; adult.test's own rows meeting it are the ceiling;
3. rebalancing: a classifier (gradient boosting, as the tstr metric) trained on the rows, tested on adult.test:
   recall of >50K at the 0.5 threshold, balanced accuracy, AUC, with and without rebalancing;
4. fairness (target income, sensitive sex): parity gap in the rows, TSTR AUC (the utility cost) and the gap
   between women and men in the classifier's predicted >50K rate on adult.test;
5. rules: on the bookings table, fidelity and the share of rows breaking each rule with and without rules
   (and the peer's, which has no rules); on Adult, the discovered lookup rule.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from adult_data import ROOT, load_adult  # benchmarks/ is on sys.path when a script in it runs

from synthlake import rule_discovery
from synthlake.conditions import Conditions, Fairness, Rebalance, parity_gap, parse_where, rebalanced, satisfied
from synthlake.evaluation import evaluate, evaluate_results
from synthlake.evaluation.base import FeatureEncoder, openmp_threads, to_labels
from synthlake.generators import get_generator
from synthlake.generators.ruled import RuledSampler
from synthlake.metadata import ColumnKind, TableMetadata
from synthlake.rules import RuleSet, parse_rules

PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
PEER_SCRIPT = Path(__file__).resolve().with_name("peer_mostlyai.py")
POSITIVE = ">50K"
WHERES = ["age >= 50", "age >= 60 AND income = '>50K'"]  # a wide and a narrow condition
REBALANCE = Rebalance("income", {POSITIVE: 0.5})
FAIRNESS = Fairness("income", ("sex",))
SEED_COLUMNS = ["age", "education"]  # the seed rows' columns (section 1)
FIDELITY = ["accuracy", "column_shapes", "column_pair_trends", "tstr"]
BOOKING_METRICS = ["accuracy", "column_pair_trends", "detection_auc", "tstr"]  # tstr: room, on a second draw


# ---- the rule-heavy table --------------------------------------------------------------------------------
BOOKING_COLUMNS = [
    {"name": "booked_at", "kind": "datetime"}, {"name": "checkin", "kind": "datetime"},
    {"name": "nights", "kind": "numeric", "integer": True}, {"name": "country", "kind": "categorical"},
    {"name": "currency", "kind": "categorical"}, {"name": "room", "kind": "categorical"},
    {"name": "price", "kind": "numeric"}, {"name": "discount", "kind": "numeric"},
    {"name": "total", "kind": "numeric"}, {"name": "arrival_year", "kind": "numeric", "integer": True},
    {"name": "status", "kind": "categorical"}, {"name": "cancelled_at", "kind": "datetime"}]
BOOKING_RULES = [
    {"kind": "inequality", "low": "booked_at", "high": "checkin", "unit": "day"},
    {"kind": "inequality", "low": "booked_at", "high": "cancelled_at", "unit": "day"},
    {"kind": "range", "column": "price", "low": 0},
    {"kind": "range", "column": "discount", "low": 0, "high": "price"},
    {"kind": "fixed_combinations", "columns": ["country", "currency"]},
    {"kind": "derived", "column": "total", "expression": "price - discount"},
    {"kind": "derived", "column": "arrival_year", "expression": "year(checkin)"},
    {"kind": "presence", "column": "cancelled_at", "when": {"column": "status", "equals": "cancelled"}},
]
BOOKING_WHERE = "status = 'cancelled' AND room = 'suite'"  # conditions through the ruled sampler


def bookings(n: int, seed: int) -> pd.DataFrame:
    """Hotel bookings on which every BOOKING_RULES rule holds, with correlations for the model to learn:
    six markets (country, currency, price level), lead time longer for the US, cancellations likelier for long
    leads, price from room, nights and market, 40% without discount."""
    rng = np.random.default_rng(seed)
    markets = [("FR", "EUR", 0.24, 1.0), ("DE", "EUR", 0.2, 0.95), ("ES", "EUR", 0.1, 0.8), ("US", "USD", 0.24, 1.3),
               ("GB", "GBP", 0.16, 1.1), ("CH", "CHF", 0.06, 1.6)]
    pick = rng.choice(len(markets), n, p=[m[2] for m in markets])
    country = np.array([m[0] for m in markets])[pick]
    currency = np.array([m[1] for m in markets])[pick]
    level = np.array([m[3] for m in markets])[pick]
    booked = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 730, n), unit="D")
    lead = np.floor(rng.gamma(1.5, 20 * np.where(country == "US", 1.5, 1.0))).astype(int)
    checkin = booked + pd.to_timedelta(lead, unit="D")
    nights = 1 + rng.poisson(np.where(country == "US", 3.0, 1.5))
    room = rng.choice(["standard", "superior", "suite"], n, p=[0.6, 0.3, 0.1])
    rate = np.select([room == "standard", room == "superior"], [90.0, 130.0], 220.0) * level
    price = np.round(rate * nights * rng.lognormal(0, 0.15, n), 2)
    discount = np.where(rng.random(n) < 0.4, 0.0, np.round(price * rng.beta(1.5, 8, n), 2))
    cancelled = rng.random(n) < 0.1 + 0.4 * (lead > 45)
    cancelled_at = pd.Series(booked + pd.to_timedelta(np.floor(rng.random(n) * (lead + 1)).astype(int), unit="D"))
    return pd.DataFrame({
        "booked_at": booked, "checkin": checkin, "nights": nights, "country": country, "currency": currency,
        "room": room, "price": price, "discount": discount, "total": price - discount,
        "arrival_year": checkin.year.astype(np.int64), "status": np.where(cancelled, "cancelled", "ok"),
        "cancelled_at": cancelled_at.where(cancelled)})


# ---- helpers ----------------------------------------------------------------------------------------------
def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def fit_ar(metadata: TableMetadata, frame: pd.DataFrame, seed: int, **hyper) -> tuple[object, float, int]:
    """A fitted tabular_ar, its training seconds (encodings included) and the epochs it ran."""
    model = get_generator("tabular_ar")(metadata, **hyper)
    started = time.perf_counter()
    model.fit(frame, seed=seed)
    return model, time.perf_counter() - started, model.training.get("epochs_run", 0)


def draw(sampler, n: int, seed: int, conditions: Conditions | None = None) -> pd.DataFrame:
    if conditions:
        return sampler.sample_arrow(n, seed, conditions=conditions).to_pandas()
    return sampler.sample_arrow(n, seed).to_pandas()


def best_rate(fn: Callable[[], object], rows: int, repeats: int) -> float:
    """rows/s of the best of `repeats` calls (noise only ever slows a call down)."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return rows / min(seconds)


def normalized(frame: pd.DataFrame, metadata: TableMetadata) -> pd.DataFrame:
    """The peer's rows (nullable Int64, string dtypes) as ours come: floats for numbers, objects for labels."""
    out = {}
    for spec in metadata.columns:
        values = frame[spec.name]
        if spec.kind == ColumnKind.CATEGORICAL:
            out[spec.name] = values.astype(object).where(values.notna(), None)
        elif spec.kind == ColumnKind.DATETIME:
            out[spec.name] = pd.to_datetime(values)
        else:
            out[spec.name] = pd.to_numeric(values).astype(float)
    return pd.DataFrame(out)


def fidelity(real: pd.DataFrame, synthetic: pd.DataFrame, metadata: TableMetadata, names: list[str],
             seed: int, holdout: pd.DataFrame | None = None) -> dict[str, float]:
    context = {"holdout": holdout} if holdout is not None else {}
    return evaluate(real, synthetic, metadata, names=names, seed=seed, **context)


class Classifier:
    """TSTR with the tstr metric's model (HistGradientBoosting, 100 iterations, the encoding learned from the
    real training rows), scored on adult.test: AUC, and at the 0.5 threshold the minority class's recall and
    the balanced accuracy; also the predicted positive rate's parity gap over `sensitive`."""

    def __init__(self, real: pd.DataFrame, holdout: pd.DataFrame, metadata: TableMetadata, seed: int,
                 threads: int):
        self.target = metadata.target
        self.features = [s for s in metadata.learned_columns if s.name != self.target]
        self.encoder = FeatureEncoder(real, self.features)
        self.holdout = holdout.reset_index(drop=True)
        self.x_test = self.encoder.transform(self.holdout)
        self.y_test = (to_labels(self.holdout[self.target]) == POSITIVE).to_numpy()
        self.seed, self.threads = seed, threads

    def score(self, train: pd.DataFrame, sensitive: str = "sex") -> dict[str, float]:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

        y = (to_labels(train[self.target]) == POSITIVE).to_numpy()
        with openmp_threads(self.threads):
            model = HistGradientBoostingClassifier(max_iter=100, early_stopping=False, random_state=self.seed,
                                                   categorical_features=self.encoder.categorical_mask)
            model.fit(self.encoder.transform(train), y)
            proba = model.predict_proba(self.x_test)[:, list(model.classes_).index(True)]
        predicted = proba >= 0.5
        counts = (self.holdout[[sensitive]].assign(pred=np.where(predicted, POSITIVE, "<=50K"))
                  .value_counts().rename("count").reset_index())
        return {"positive_share": float(y.mean()), "recall": float(recall_score(self.y_test, predicted)),
                "balanced_accuracy": float(balanced_accuracy_score(self.y_test, predicted)),
                "auc": float(roc_auc_score(self.y_test, proba)),
                "prediction_gap": parity_gap(counts, "pred", [sensitive])}


def gap_of(frame: pd.DataFrame, fairness: Fairness) -> float:
    columns = [*fairness.sensitive, fairness.target]
    counts = frame[columns].astype(object).fillna("<null>").value_counts().rename("count").reset_index()
    return parity_gap(counts, fairness.target, list(fairness.sensitive))


def table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """A markdown table under its title."""
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")


def f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def rate_text(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


# ---- the peer ---------------------------------------------------------------------------------------------
class Peer:
    """mostlyai-engine in .venv-peer, one subprocess per training table (see peer_mostlyai.py)."""

    def __init__(self, work: Path, minutes: float, threads: int, seed: int):
        self.work, self.minutes, self.threads, self.seed = work, minutes, threads, seed

    @staticmethod
    def available() -> bool:
        return PEER_PYTHON.exists() and subprocess.run(
            [str(PEER_PYTHON), "-c", "import mostlyai.engine"], capture_output=True).returncode == 0

    def run(self, name: str, train: pd.DataFrame, tasks: list[dict]) -> tuple[dict, dict[str, pd.DataFrame]]:
        folder = self.work / f"peer-{name}"
        folder.mkdir()
        train.to_parquet(folder / "train.parquet")
        for task in tasks:
            task["out"] = str(folder / f"{task['name']}.parquet")
            if isinstance(task.get("seed_data"), pd.DataFrame):
                path = folder / f"{task['name']}-seed.parquet"
                task["seed_data"].to_parquet(path)
                task["seed_data"] = str(path)
        job = {"train": str(folder / "train.parquet"), "workspace": str(folder / "ws"), "seed": self.seed,
               "max_training_time": self.minutes, "max_epochs": 100, "train_threads": self.threads,
               "sample_threads": 1, "tasks": tasks}
        (folder / "job.json").write_text(json.dumps(job))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        subprocess.run([str(PEER_PYTHON), str(PEER_SCRIPT), str(folder / "job.json"), str(folder / "result.json")],
                       check=True, env=env)
        result = json.loads((folder / "result.json").read_text())
        return result, {t["name"]: pd.read_parquet(t["out"]) for t in tasks}


def peer_rate(result: dict | None, name: str) -> float | None:
    if result is None:
        return None
    task = result["tasks"][name]
    return task["rows"] / min(task["seconds"])


# ---- the run ----------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 epochs, fewer rows, 0.5 min peer")
    parser.add_argument("--no-peer", action="store_true", help="leave mostlyai-engine out")
    parser.add_argument("--peer-minutes", type=float, default=None, help="the peer's max_training_time (default 5)")
    parser.add_argument("--epochs", type=int, default=None, help="tabular_ar's epochs (default: its own, 40)")
    parser.add_argument("--rows", type=int, default=None, help="rows per sample (default: as many as adult.data)")
    parser.add_argument("--bookings-rows", type=int, default=None, help="rows of the bookings table (20,000)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training (both engines)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per sampler (the best counts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    quick = args.quick
    epochs = args.epochs or (3 if quick else None)
    hyper = {"epochs": epochs} if epochs else {}
    peer_minutes = args.peer_minutes or (0.5 if quick else 5.0)
    booking_rows = args.bookings_rows or (4_000 if quick else 20_000)
    seed = args.seed
    results: dict = {"quick": quick, "threads": args.threads, "hyper": hyper, "peer_minutes": peer_minutes}

    real, holdout, metadata = load_adult()
    real, holdout = real.reset_index(drop=True), holdout.reset_index(drop=True)
    n = args.rows or (8_000 if quick else len(real))
    rng = np.random.default_rng(seed)
    seed_rows = holdout[SEED_COLUMNS].iloc[rng.integers(0, len(holdout), n)].reset_index(drop=True)
    wheres = {w: parse_where(w, metadata) for w in WHERES}
    real_cond = {w: real[satisfied(real, p, metadata)].reset_index(drop=True) for w, p in wheres.items()}
    test_cond = {w: holdout[satisfied(holdout, p, metadata)].reset_index(drop=True) for w, p in wheres.items()}
    cond_columns = {w: list(p) for w, p in wheres.items()}
    # seeds for conditional fidelity: the conditioned columns of adult.test rows meeting the condition, as many
    # as the training rows meeting it (the rows compared with)
    cond_seeds = {w: test_cond[w][cond_columns[w]].iloc[rng.integers(0, len(test_cond[w]), len(real_cond[w]))]
                  .reset_index(drop=True) for w in WHERES}

    discovery_plan = rule_discovery.candidates(real.sample(min(len(real), 5000), random_state=seed), metadata)
    discovery = rule_discovery.decide(discovery_plan, rule_discovery.measure(real, discovery_plan, metadata),
                                      metadata)
    adult_rules = [found.rule for found in discovery.found if found.rule.get("column") == "education-num"]

    booking_metadata = TableMetadata(columns=BOOKING_COLUMNS, target="room")
    booking_real = bookings(booking_rows, seed + 1)
    booking_holdout = bookings(booking_rows, seed + 2)

    # ---- the peer first: its own process, nothing else running ---------------------------------------
    peer_result = peer_rows = booking_peer = booking_peer_rows = None
    if args.no_peer:
        log("peer left out (--no-peer)")
    elif not Peer.available():
        log(f"peer left out: {PEER_PYTHON} with mostlyai-engine is missing (make peer-env)")
    else:
        work = Path(tempfile.mkdtemp(prefix="synthlake-bench-conditions-"))
        peer = Peer(work, peer_minutes, args.threads, seed)
        repeats = args.repeats
        log(f"peer: mostlyai-engine on Adult ({peer_minutes} min of training at most)")
        peer_result, peer_rows = peer.run("adult", real, [
            {"name": "plain", "n": n, "repeats": repeats},
            {"name": "seeded", "n": n, "seed_data": seed_rows, "repeats": repeats},
            {"name": "rebalance", "n": n, "repeats": repeats,
             "rebalancing": {"column": REBALANCE.column, "probabilities": REBALANCE.shares}},
            {"name": "fairness", "n": n, "repeats": repeats,
             "fairness": {"target_column": FAIRNESS.target, "sensitive_columns": list(FAIRNESS.sensitive)}},
            *({"name": f"where{i}", "n": len(cond_seeds[w]), "seed_data": cond_seeds[w], "repeats": 1}
              for i, w in enumerate(WHERES))])
        peer_rows = {k: normalized(v, metadata) for k, v in peer_rows.items()}
        log(f"peer: mostlyai-engine on bookings ({peer_minutes} min of training at most)")
        booking_peer, booking_peer_rows = peer.run("bookings", booking_real, [
            {"name": "plain", "n": len(booking_real), "repeats": repeats}])
        booking_peer_rows = normalized(booking_peer_rows["plain"], booking_metadata)
        shutil.rmtree(work, ignore_errors=True)  # the peer's workspaces and Parquet files: all read by now
        results["peer"] = {"adult": peer_result, "bookings": booking_peer}

    # ---- ours ----------------------------------------------------------------------------------------
    torch.set_num_threads(args.threads)
    log("tabular_ar on Adult, order_mixing 0.5 (default)")
    flexible, flexible_s, flexible_epochs = fit_ar(metadata, real, seed, **hyper)
    log("tabular_ar on Adult, order_mixing 0")
    fixed, fixed_s, fixed_epochs = fit_ar(metadata, real, seed, order_mixing=0.0, **hyper)
    ruleset = parse_rules(adult_rules, metadata).fit(real) if adult_rules else None
    if ruleset is not None:
        log(f"tabular_ar on Adult with the discovered rule(s) {adult_rules}")
        ruled, ruled_s, ruled_epochs = fit_ar(ruleset.learned_metadata(), ruleset.transform(real), seed, **hyper)
    log("tabular_ar on bookings without rules, then with its rules")
    booking_plain, booking_plain_s, booking_plain_epochs = fit_ar(booking_metadata, booking_real, seed, **hyper)
    booking_rules = parse_rules(BOOKING_RULES, booking_metadata).fit(booking_real)
    booking_ruled, booking_ruled_s, booking_ruled_epochs = fit_ar(
        booking_rules.learned_metadata(), booking_rules.transform(booking_real), seed, **hyper)
    torch.set_num_threads(1)

    sampler = flexible.freeze()
    requests = {"unconditional": None,
                **{f"where {w}": Conditions(where=w) for w in WHERES},
                f"seed rows ({n:,} x {', '.join(SEED_COLUMNS)} of adult.test)": Conditions(seed_rows=seed_rows),
                "rebalance income >50K: 0.5": Conditions(rebalance=REBALANCE),
                "fairness income vs sex": Conditions(fairness=FAIRNESS)}
    log("section 1: sampling speed")
    for conditions in requests.values():
        draw(sampler, min(n, 1000) if conditions is None or conditions.seed_rows is None else n, seed + 99,
             conditions)  # warm-up (the compiled loop, lazy set-up)
    rates = {name: best_rate(lambda c=c: draw(sampler, n, seed + 1, c), n, args.repeats)
             for name, c in requests.items()}
    plain = draw(sampler, n, seed + 1)
    share = {w: float(satisfied(plain, p, metadata).mean()) for w, p in wheres.items()}
    base = rates["unconditional"]
    peer_names = {"unconditional": "plain", f"seed rows ({n:,} x {', '.join(SEED_COLUMNS)} of adult.test)":
                  "seeded", "rebalance income >50K: 0.5": "rebalance", "fairness income vs sex": "fairness"}
    rows1 = []
    for name, value in rates.items():
        note = ""
        if name.startswith("where "):
            w = name.removeprefix("where ")
            note = (f"{share[w]:.1%} of unconditional rows meet it: rejection would give "
                    f"{base * share[w]:,.0f} rows/s")
        peer_value = peer_rate(peer_result, peer_names[name]) if name in peer_names else None
        rows1.append([name, rate_text(value), f"{value / base:.2f}x", rate_text(peer_value),
                      "-" if peer_value is None else f"{peer_value / peer_rate(peer_result, 'plain'):.2f}x",
                      "-" if peer_value is None else f"{value / peer_value:.1f}x", note])
    if peer_result is None:
        rows1.append(["(mostlyai-engine not run)", "", "", "", "", "", ""])
    results["speed"] = {"rows": n, "rates": rates, "where_share": share,
                        "peer": {k: peer_rate(peer_result, v) for k, v in peer_names.items()} if peer_result else None}

    log("section 2: fidelity")
    flexible_rows, fixed_rows = plain, draw(fixed.freeze(), n, seed + 1)
    scores2 = {"tabular_ar order_mixing 0 (fixed order)": (fixed_s, fixed_epochs,
                                                            fidelity(real, fixed_rows, metadata, FIDELITY, seed,
                                                                     holdout)),
               "tabular_ar order_mixing 0.5 (default)": (flexible_s, flexible_epochs,
                                                         fidelity(real, flexible_rows, metadata, FIDELITY, seed,
                                                                  holdout))}
    if peer_result is not None:
        scores2[f"mostlyai-engine {peer_result['version']} (flexible generation)"] = (
            peer_result["train_s"], peer_result["epochs"],
            fidelity(real, peer_rows["plain"], metadata, FIDELITY, seed, holdout))
    rows2 = [[name, f"{s:.0f}", "-" if e is None else f"{e:g}", *(f(v[m]) for m in FIDELITY)]
             for name, (s, e, v) in scores2.items()]
    results["flexible_cost"] = {k: {"train_s": s, "epochs": e, **v} for k, (s, e, v) in scores2.items()}

    rows2b, results["conditional_fidelity"] = [], {}
    big = draw(sampler, 4 * n, seed + 5)  # unconditional rows to filter (the rejection reference)
    big_fixed = draw(fixed.freeze(), 4 * n, seed + 5)
    for i, w in enumerate(WHERES):
        target, k = real_cond[w], len(real_cond[w])
        candidates = {
            "adult.test rows meeting it (ceiling)": test_cond[w],
            "tabular_ar where (by construction)": draw(sampler, k, seed + 7, Conditions(where=w)),
            "tabular_ar seeded with adult.test's " + ", ".join(cond_columns[w]):
                draw(sampler, k, seed + 8, Conditions(seed_rows=cond_seeds[w])),
            "tabular_ar unconditional, filtered (rejection)": big[satisfied(big, wheres[w], metadata)].head(k),
            "tabular_ar order_mixing 0, filtered (rejection)":
                big_fixed[satisfied(big_fixed, wheres[w], metadata)].head(k),
        }
        if peer_rows is not None:
            peer_name = "mostlyai-engine seeded with adult.test's " + ", ".join(cond_columns[w])
            candidates[peer_name] = peer_rows[f"where{i}"]
        for name, rows in candidates.items():
            scores = evaluate_results(target, rows, metadata, ["accuracy", "column_pair_trends",
                                                               "accuracy_univariate"], seed=seed)
            columns = scores.pop("accuracy_univariate").details["columns"]
            worst = min(columns, key=columns.get)
            scores = {k: v.value for k, v in scores.items()}
            meets = satisfied(rows, wheres[w], metadata).mean()
            rows2b.append([w, name, f"{len(rows):,}", f"{meets:.3f}", f(scores["accuracy"]),
                           f(scores["column_pair_trends"]), f"{worst} {columns[worst]:.3f}"])
            results["conditional_fidelity"][f"{w} | {name}"] = {"rows": len(rows), "meets": meets, **scores,
                                                                "columns": columns}

    log("section 3: rebalancing")
    classifier = Classifier(real, holdout, metadata, seed, args.threads)
    balanced = draw(sampler, n, seed + 11, Conditions(rebalance=REBALANCE))
    trainsets3 = {"real adult.data (TRTR)": real, "real adult.data, resampled to >50K: 0.5": rebalanced(
                      real, REBALANCE, seed),
                  "tabular_ar": flexible_rows, "tabular_ar, rebalance >50K: 0.5": balanced}
    if peer_rows is not None:
        trainsets3 |= {"mostlyai-engine": peer_rows["plain"], "mostlyai-engine, rebalancing >50K: 0.5":
                       peer_rows["rebalance"]}
    scores3 = {name: classifier.score(rows) for name, rows in trainsets3.items()}
    rows3 = [[name, f"{len(trainsets3[name]):,}", f(s["positive_share"], 3), f(s["recall"]),
              f(s["balanced_accuracy"]), f(s["auc"])] for name, s in scores3.items()]
    results["rebalance"] = scores3

    log("section 4: fairness")
    fair = draw(sampler, n, seed + 13, Conditions(fairness=FAIRNESS))
    trainsets4 = {"real adult.data": real, "tabular_ar": flexible_rows, "tabular_ar, fairness": fair}
    if peer_rows is not None:
        trainsets4 |= {"mostlyai-engine": peer_rows["plain"], "mostlyai-engine, fairness": peer_rows["fairness"]}
    rows4, results["fairness"] = [], {}
    for name, rows in trainsets4.items():
        s = scores3.get(name) or classifier.score(rows)
        gap = gap_of(rows, FAIRNESS)
        shares = rows.assign(y=to_labels(rows["income"]) == POSITIVE).groupby("sex")["y"].mean()
        rows4.append([name, f(gap), f"{shares.get('Female', np.nan):.3f} / {shares.get('Male', np.nan):.3f}",
                      f(s["auc"]), f(s["recall"]), f(s["balanced_accuracy"]), f(s["prediction_gap"])])
        results["fairness"][name] = {"parity_gap": gap, **s}

    log("section 5: rules")
    booking_samplers = {"tabular_ar, no rules": booking_plain.freeze(),
                        "tabular_ar, 8 rules": RuledSampler(booking_ruled.freeze(),
                                                            RuleSet.from_state(booking_rules.state()))}
    booking_rows_out, booking_rates = {}, {}
    for name, s in booking_samplers.items():
        draw(s, 1000, seed + 99)
        booking_rates[name] = best_rate(lambda s=s: draw(s, len(booking_real), seed + 1), len(booking_real),
                                        args.repeats)
        booking_rows_out[name] = draw(s, len(booking_real), seed + 1)
    ruled_sampler = booking_samplers["tabular_ar, 8 rules"]
    conditional_rules = Conditions(where=BOOKING_WHERE)
    draw(ruled_sampler, 1000, seed + 99, conditional_rules)
    name_where = f"tabular_ar, 8 rules, where {BOOKING_WHERE}"
    booking_rates[name_where] = best_rate(
        lambda: draw(ruled_sampler, len(booking_real), seed + 1, conditional_rules), len(booking_real), args.repeats)
    booking_rows_out[name_where] = draw(ruled_sampler, len(booking_real), seed + 1, conditional_rules)
    if booking_peer_rows is not None:
        booking_rows_out["mostlyai-engine (no rules)"] = booking_peer_rows
        booking_rates["mostlyai-engine (no rules)"] = peer_rate(booking_peer, "plain")
    booking_where = parse_where(BOOKING_WHERE, booking_metadata)
    rule_labels = [r.label for r in booking_rules.rules]
    rows5, results["rules_bookings"] = [], {}
    for name, rows in booking_rows_out.items():
        reference = booking_real
        if name == name_where:
            reference = booking_real[satisfied(booking_real, booking_where, booking_metadata)]
        scores = fidelity(reference, rows, booking_metadata, BOOKING_METRICS, seed, booking_holdout)
        violations = booking_rules.violations(rows)
        broken, any_rule = violations.mean(), float(violations.any(axis=1).mean())
        rows5.append([name, rate_text(booking_rates[name]), *(f(scores[m]) for m in BOOKING_METRICS),
                      *(f"{broken[label]:.2%}" for label in rule_labels),
                      f"{any_rule:.2%}"])
        results["rules_bookings"][name] = {"rows_per_s": booking_rates[name], **scores,
                                           "broken": broken.to_dict(), "any_rule": any_rule}
    train_rows5 = [["tabular_ar, no rules", f"{booking_plain_s:.0f}", booking_plain_epochs],
                   ["tabular_ar, 8 rules", f"{booking_ruled_s:.0f}", booking_ruled_epochs]]
    if booking_peer is not None:
        train_rows5.append(["mostlyai-engine", f"{booking_peer['train_s']:.0f}", booking_peer["epochs"]])

    rows5b, results["rules_adult"] = [], {}
    if ruleset is not None:
        ruled_rows = draw(RuledSampler(ruled.freeze(), RuleSet.from_state(ruleset.state())), n, seed + 1)
        adult_sets = {"tabular_ar, no rules": (flexible_s, flexible_rows), "tabular_ar, the lookup rule":
                      (ruled_s, ruled_rows)}
        if peer_rows is not None:
            adult_sets["mostlyai-engine (no rules)"] = (peer_result["train_s"], peer_rows["plain"])
        for name, (seconds, rows) in adult_sets.items():
            scores = fidelity(real, rows, metadata, FIDELITY, seed, holdout)
            broken = float(ruleset.violations(rows).any(axis=1).mean())
            rows5b.append([name, f"{seconds:.0f}", *(f(scores[m]) for m in FIDELITY), f"{broken:.2%}"])
            results["rules_adult"][name] = {"train_s": seconds, **scores, "broken": broken}

    # ---- the tables ----------------------------------------------------------------------------------
    peer_text = (f"mostlyai-engine {peer_result['version']}, {peer_minutes:g} min training budget "
                 f"({peer_result['train_s']:.0f} s, {peer_result['epochs']} epochs)" if peer_result else "no peer")
    print(f"\nAdult: {len(real):,} training rows, adult.test {len(holdout):,} rows; torch {args.threads} threads "
          f"for training, 1 for sampling; tabular_ar {hyper or 'defaults'} (order_mixing 0.5: {flexible_s:.0f} s, "
          f"{flexible_epochs} epochs); {peer_text}")
    table(f"1. Sampling speed on Adult ({n:,} rows per call into pandas, one thread, warm, best of "
          f"{args.repeats})", ["request", "tabular_ar rows/s", "vs unconditional", "mostlyai rows/s",
                               "mostlyai vs its unconditional", "tabular_ar vs mostlyai", "note"], rows1)
    table("2a. What flexible column orders cost (unconditional rows vs adult.data; TSTR AUC on adult.test)",
          ["model", "train s", "epochs", *FIDELITY], rows2)
    table("2b. Conditional fidelity: the rows a condition asks for, against the adult.data rows meeting it "
          f"({', '.join(f'{w}: {len(real_cond[w]):,} rows' for w in WHERES)})",
          ["condition", "rows", "n", "share meeting it", "accuracy", "column_pair_trends",
           "worst column (its accuracy)"], rows2b)
    table("3. Rebalancing: a classifier trained on the rows, tested on adult.test (>50K recall and balanced "
          "accuracy at the 0.5 threshold)", ["training rows", "n", ">50K share", ">50K recall",
                                             "balanced accuracy", "AUC"], rows3)
    table("4. Fairness, income vs sex: parity gap in the rows (largest difference in a label's share between "
          "women and men), TSTR on adult.test (as in 3), and the gap in predicted >50K rate between women and "
          "men on adult.test",
          ["rows", "parity gap", ">50K share women / men", "TSTR AUC", ">50K recall", "balanced accuracy",
           "prediction gap on adult.test"], rows4)
    table(f"5a. Rules on a bookings table ({len(booking_real):,} rows; training s and epochs: "
          + "; ".join(f"{r[0]} {r[1]} s, {r[2]} epochs" for r in train_rows5)
          + "): fidelity against its rows (the where row: against those meeting it; detection AUC 0.5 ideal; "
            "TSTR AUC of room on a second draw of the table) and the share of rows breaking each rule",
          ["sampler", "rows/s", *BOOKING_METRICS,
           *(label.replace(" (", " ").rstrip(")") for label in rule_labels), "any rule"], rows5)
    print("\nrules: " + "; ".join(booking_rules.describe()))
    if rows5b:
        table(f"5b. Adult with the rule discovery proposes ({'; '.join(ruleset.describe())}); rows breaking it",
              ["model", "train s", *FIDELITY, "rows breaking it"], rows5b)
    else:
        print("\n5b. rule discovery proposed no rule for education-num on Adult")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
