"""check: train a new model, or sample from the champion?

Compares the source the profile stage just read with the one the dataset's champion model learned: the
source's fingerprint, then each column's drift, counted with Spark over this run's training rows in the bins of
the champion's profile (synthlake.drift: PSI, and Jensen-Shannon for categories, KS for continuous columns;
thresholds in params.yaml `check:`). Under `retrain: auto` (the default; CLI --retrain) a run trains when the
dataset has no champion, when the settings a model depends on changed (training_key), when the holdout split
changed, or when a column drifted; otherwise the train stage reuses the champion. The decision, its reason and
the scores go to check.json, to the run's MLflow run (which training then logs into), to the report and to the
audit row.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from pipelines.context import RunContext, StageError
from pipelines.records import Champion, CheckRecord, ColumnDrift, ProfileRecord
from synthlake.column_types import is_continuous
from synthlake.drift import Thresholds, column_drift
from synthlake.metadata import ColumnKind

STALE = ("verdict", "attempts")  # a new decision: an earlier pass's verdict and attempts no longer hold


def run(ctx: RunContext, spark) -> dict:
    import mlflow

    from pipelines import tracking

    store = ctx.store
    for name in STALE:
        store.path(name).unlink(missing_ok=True)
    profile = store.read(ProfileRecord)
    experiment = tracking.setup(ctx)
    champion, champion_profile, champion_key = find_champion(ctx.model_name)
    key = training_key(ctx)
    drift = {}
    if champion_profile is not None and champion_profile.source.fingerprint != profile.source.fingerprint \
            and same_holdout(profile, champion_profile):
        drift = measure_drift(spark, ctx, profile, champion_profile)
    decision, reason = decide(ctx.params.retrain, champion, champion_key == key, champion_profile, profile, drift)
    print(f"[synthlake] check: {decision}: {reason}", flush=True)
    drifted = [c for c, d in drift.items() if d["drifted"]]
    with mlflow.start_run(experiment_id=experiment, run_name=f"{ctx.dataset.name}-{ctx.run_id}") as run:
        mlflow.set_tags({"synthlake.run_id": ctx.run_id, "synthlake.dataset": ctx.dataset.name,
                         "synthlake.profile_version": profile.profile_version, "synthlake.training_key": key,
                         "synthlake.check.decision": decision, "synthlake.check.reason": reason[:4000]})
        mlflow.log_metrics({f"drift.{score}.{tracking.metric_name(col)}": value for col, d in drift.items()
                            for score, value in d.items() if score != "drifted"}
                           | {"drift.drifted_columns": len(drifted)})
    record = CheckRecord(decision=decision, reason=reason, retrain=ctx.params.retrain,
                         source_fingerprint=profile.source.fingerprint, training_key=key, champion=champion,
                         drift={c: ColumnDrift(**d) for c, d in drift.items()}, drifted_columns=drifted,
                         thresholds=ctx.params.check.model_dump(), mlflow_run_id=run.info.run_id,
                         checked_at=datetime.now(UTC))
    path = store.write(record)
    return {"check": str(path), "decision": decision, "reason": reason, "drifted_columns": drifted}


def decide(policy: str, champion: Champion | None, same_key: bool, champion_profile: ProfileRecord | None,
           profile: ProfileRecord, drift: dict[str, dict]) -> tuple[str, str]:
    """("train" or "reuse", why). Under `never` a run that cannot reuse the champion is refused."""
    if champion is None:
        return _or_refuse(policy, "the dataset has no champion model yet")
    version = f"the champion (version {champion.model_version})"
    if not same_key:
        return _or_refuse(policy, f"the settings a model depends on (generator, hyper-parameters, columns, rules, "
                                  f"privacy, training rows) changed since {version} was trained")
    if champion_profile is not None and not same_holdout(profile, champion_profile):
        return _or_refuse(policy, f"the holdout split (profile.holdout_fraction, profile.holdout_seed) differs "
                                  f"from {version}'s, which may have learned this run's holdout rows")
    if policy == "never":
        return "reuse", f"retrain is never: sampling from {version}"
    if policy == "always":
        return "train", "retrain is always"
    if champion_profile is None:
        return "train", f"{version} has no profile to compare with"
    if champion_profile.source.fingerprint == profile.source.fingerprint:
        return "reuse", f"the source is unchanged since {version} learned it"
    if not drift:
        return "train", f"the source changed and {version}'s profile predates drift scores"
    drifted = {c: d for c, d in drift.items() if d["drifted"]}
    if drifted:
        shown = ", ".join(f"{c} ({_scores(d)})" for c, d in list(drifted.items())[:5])
        more = f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""
        return "train", f"{len(drifted)} of {len(drift)} columns drifted since {version} learned the source: " \
                        f"{shown}{more}"
    worst = max(drift, key=lambda c: drift[c]["psi"])
    return "reuse", (f"the source changed but no column drifted since {version} learned it (largest PSI "
                     f"{drift[worst]['psi']:.3f}, {worst})")


def _or_refuse(policy: str, reason: str) -> tuple[str, str]:
    if policy == "never":
        raise StageError(f"retrain is never, but {reason}: run with --retrain auto (or always)")
    return "train", reason


def _scores(d: dict) -> str:
    return ", ".join(f"{k.upper()} {v:.3f}" for k, v in d.items() if k != "drifted" and v is not None)


def same_holdout(a: ProfileRecord, b: ProfileRecord) -> bool:
    return (a.holdout.fraction, a.holdout.seed) == (b.holdout.fraction, b.holdout.seed)


def training_key(ctx: RunContext) -> str:
    """A hash of what a trained model depends on: the dataset's learned columns, target, generator, hyper-parameters
    (params.yaml's and the config's; not a ladder step's), rules and privacy budget, the training-rows bound and
    the holdout split. Not the seed: a reused champion serves other seeds."""
    from pipelines.train import hyper_settings

    d = ctx.dataset
    settings = {"columns": [c.model_dump(mode="json") for c in d.columns], "target": d.target,
                "generator": d.generator, "hyper": hyper_settings(ctx, step={}), "rules": d.rules,
                "privacy": d.privacy and d.privacy.model_dump(mode="json"), "max_rows": ctx.params.train.max_rows,
                "holdout": ctx.params.profile.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_champion(model_name: str) -> tuple[Champion | None, ProfileRecord | None, str | None]:
    """The champion version, the profile its training run logged (None if absent or unreadable) and its
    training_key tag; (None, None, None) without a champion. MLflow must point at the environment's store."""
    from mlflow import MlflowClient

    from pipelines import tracking

    version = tracking.champion_version(model_name)
    if version is None:
        return None, None, None
    client = MlflowClient()
    run_id = client.get_model_version(model_name, version).run_id
    tags = client.get_run(run_id).data.tags
    profile = tracking.logged_profile(run_id)
    champion = Champion(model_name=model_name, model_version=version, mlflow_run_id=run_id,
                        source_fingerprint=profile and profile.source.fingerprint,
                        profile_version=profile and profile.profile_version)
    return champion, profile, tags.get("synthlake.training_key")


def measure_drift(spark, ctx: RunContext, profile: ProfileRecord, reference: ProfileRecord) -> dict[str, dict]:
    """Each column both profiles describe: its scores against the reference (the champion's profile). Categories
    compare the profiles' value shares (the reference's values, the rest as one bin); continuous columns are
    counted with Spark over this run's training rows in the reference's histogram bins."""
    from pipelines.profile import histogram_shares
    from pipelines.source import read_real

    limits = Thresholds(**ctx.params.check.model_dump())
    specs = [c for c in ctx.dataset.columns if c.name in reference.columns and c.name in profile.columns]
    continuous = {c.name: reference.columns[c.name].histogram.edges for c in specs
                  if is_continuous(c) and reference.columns[c.name].histogram is not None}
    current = histogram_shares(read_real(spark, ctx, "train", profile), specs, continuous) if continuous else {}
    drift = {}
    for c in specs:
        ref, now = reference.columns[c.name], profile.columns[c.name]
        if c.name in continuous:
            drift[c.name] = column_drift(ref.histogram.shares, current[c.name], True, limits,
                                         (ref.null_fraction, now.null_fraction))
        elif c.kind == ColumnKind.CATEGORICAL and ref.categories and now.categories:
            drift[c.name] = column_drift(*category_bins(ref.categories.frequencies, now.categories.frequencies),
                                         False, limits)
    return drift


def category_bins(reference: list, current: list) -> tuple[list[float], list[float]]:
    """Shares over the reference's values (null included) and one bin for every other value."""
    now = {value: share for value, share in current}
    ref_shares = [share for _, share in reference]
    cur_shares = [now.get(value, 0.0) for value, _ in reference]
    return ref_shares + [max(0.0, 1 - sum(ref_shares))], cur_shares + [max(0.0, 1 - sum(cur_shares))]

