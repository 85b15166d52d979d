"""Does an unedited `infer-config` draft pass the default gates on a table with business logic?

    .venv/bin/python benchmarks/draft_gates.py [--rows 20000] [--seed 42]

Writes the orders table of tests/integration/test_infer_config.py (date parts, a total, ordered dates, a
rate per date, a currency per country) with --rows rows to var/bench/orders.parquet, drafts two configs with
`synthlake infer-config` (its discovered rules, and `--no-rules`), runs `synthlake run` on each with the
project's params.yaml (the default gates), and prints per draft: the rules found, whether the run passed, the
failed checks, detection AUC, accuracy, TSTR and the staged rows breaking the discovered rules (each draft's
rows checked against the rules as the first draft's train stage fitted them). Outputs land in the project's
var/ like `make run`'s (datasets orders_rules and orders_norules).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))  # the table the infer-config test drafts from
sys.path.insert(0, str(ROOT))

from test_infer_config import orders  # noqa: E402

METRICS = ["detection_auc", "accuracy", "column_pair_trends", "tstr", "dcr_share"]


def synthlake(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "synthlake"), *args], cwd=ROOT, capture_output=True,
                          text=True)


def breaking(name: str, run_id: str, fitted: Path) -> int:
    """Staged rows of the run that break at least one of the rules saved at `fitted` (a model's rules.json)."""
    import deltalake

    from pipelines.config import load_dataset
    from synthlake.rules import RuleSet

    config = load_dataset(ROOT / "var" / "bench" / f"{name}.yaml")
    ruleset = RuleSet.from_state(json.loads(fitted.read_text()))
    staged = deltalake.DeltaTable(str(ROOT / "var" / "lake" / config.output.staging)).to_pandas(
        partitions=[("run_id", "=", run_id)])
    return int(ruleset.violations(staged.drop(columns="run_id")).any(axis=1).sum())


def draft_and_run(name: str, source: Path, seed: int, rules: bool) -> dict:
    config = ROOT / "var" / "bench" / f"{name}.yaml"
    drafted = synthlake("infer-config", str(source.relative_to(ROOT)), "--name", name, "--output", str(config),
                        "--force", *([] if rules else ["--no-rules"]))
    if drafted.returncode:
        raise SystemExit(f"infer-config failed: {drafted.stderr.strip()}")
    found = yaml.safe_load(config.read_text()).get("rules") or []
    run_id = f"draft-{int(time.time())}"
    started = time.perf_counter()
    ran = synthlake("run", str(config), "--run-id", run_id, "--seed", str(seed))
    verdict = json.loads((ROOT / "var" / "runs" / name / run_id / "validation.json").read_text())
    checks = {c["check"]: c for c in verdict["checks"]}
    return {"rules": found, "run_id": run_id, "exit": ran.returncode, "seconds": time.perf_counter() - started,
            "passed": verdict["passed"], "failed": verdict["failed_checks"],
            "metrics": {m: checks[m]["value"] for m in METRICS if m in checks}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    source = ROOT / "var" / "bench" / "orders.parquet"
    source.parent.mkdir(parents=True, exist_ok=True)
    orders(args.rows).to_parquet(source, coerce_timestamps="us")  # Spark reads no nanoseconds
    results = {name: draft_and_run(name, source, args.seed, rules) for name, rules in
               (("orders_rules", True), ("orders_norules", False))}
    fitted = ROOT / "var" / "runs" / "orders_rules" / results["orders_rules"]["run_id"] / "model" / "rules.json"
    for name, r in results.items():
        r["breaking"] = breaking(name, r["run_id"], fitted)
    print(f"\nunedited infer-config drafts of the orders table ({args.rows} rows), default gates")
    print(f"{'draft':<16} | {'rules':>5} | {'passed':>6} | " + " | ".join(f"{m:>18}" for m in METRICS)
          + " | staged rows breaking a rule | failed checks")
    for name, r in results.items():
        metrics = " | ".join(f"{r['metrics'].get(m, float('nan')):>18.4f}" for m in METRICS)
        print(f"{name:<16} | {len(r['rules']):>5} | {str(r['passed']):>6} | {metrics} | "
              f"{r['breaking']:>27} | {', '.join(r['failed']) or '-'}")
    for rule in results["orders_rules"]["rules"]:
        print(f"  discovered: {json.dumps(rule)}")


if __name__ == "__main__":
    main()
