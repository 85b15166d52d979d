"""pipelines.records and pipelines.stages: the run folder's layout, typed records that keep the files' shape,
and one stage list that every record belongs to."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pipelines.context import StageError
from pipelines.records import LAYOUT, ProfileRecord, RunStore, TrainRecord, Verdict
from pipelines.stages import STAGE_NAMES, STAGES, writer

# profile.json as the profile stage writes it (json.dump, default=str): a numeric, a datetime and a
# categorical column, each with only its kind's statistics
PROFILE = {
    "profile_version": "0123456789abcdef", "run_id": "r1", "created_at": "2026-11-22T22:59:27.123456+00:00",
    "dataset": "shop",
    "source": {"path": "data/shop.csv", "format": "csv", "options": {"header": "true"}, "fingerprint": "sha256:ab"},
    "rows": 80,
    "columns": {
        "age": {"kind": "numeric", "type": "bigint", "null_fraction": 0.0, "distinct_approx": 40, "min": 17,
                "max": 90, "mean": 38.5, "std": 13.6, "quantiles": {"0.5": 37.0}},
        "joined": {"kind": "datetime", "type": "timestamp", "null_fraction": 0.1, "distinct_approx": 70,
                   "min": "2020-01-01 00:00:00", "max": "2024-06-30 12:00:00", "mean": 1.6e9, "std": 3.0e7,
                   "quantiles": {}},
        "email": {"kind": "categorical", "type": "string", "null_fraction": 0.0, "distinct_approx": 80,
                  "categories": {"truncated": False, "frequencies": [["a@b.c", 0.5], [None, 0.5]]},
                  "pii_suspected": "email"},
    },
    "holdout": {"fraction": 0.2, "seed": 42, "rows": 20},
}


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs" / "shop" / "r1", "r1")


def test_a_profile_file_loads_typed_and_writes_back_the_same_shape(store):
    store.path("profile").parent.mkdir(parents=True)
    store.path("profile").write_text(json.dumps(PROFILE, indent=2))
    profile = store.read(ProfileRecord)
    assert profile.holdout.rows == 20 and profile.columns["email"].categories.truncated is False
    assert profile.created_at == datetime(2026, 11, 22, 22, 59, 27, 123456, tzinfo=UTC)
    store.write(profile)
    written = json.loads(store.path("profile").read_text())
    assert written.pop("created_at").startswith("2026-11-22T22:59:27.123456")
    assert written == {k: v for k, v in PROFILE.items() if k != "created_at"}  # no key added or lost


def test_spark_datetimes_are_stored_as_their_text():
    column = {**PROFILE["columns"]["joined"], "min": datetime(2020, 1, 1), "max": datetime(2024, 6, 30, 12)}
    joined = ProfileRecord.model_validate({**PROFILE, "columns": {"joined": column}}).columns["joined"]
    assert (joined.min, joined.max) == ("2020-01-01 00:00:00", "2024-06-30 12:00:00")


def test_a_train_file_with_nan_losses_and_a_privacy_report_loads(store):
    text = json.dumps({"mlflow_run_id": "abc", "model_name": "synthlake-shop", "model_version": "3",
                       "model_uri": "models:/m-1", "training_rows": 80, "epochs": 2,
                       "final_losses": {"epoch": 1, "loss": 1.5, "val_loss": float("nan")},
                       "privacy": {"epsilon": 1.9, "delta": 1e-5, "dp_sgd": {"noise_multiplier": 1.1}}})
    store.path("train").parent.mkdir(parents=True)
    store.path("train").write_text(text)  # json.dump wrote NaN as the bare token
    trained = store.read(TrainRecord)
    assert trained.privacy.epsilon == 1.9 and trained.privacy.model_extra == {"dp_sgd": {"noise_multiplier": 1.1}}
    assert trained.final_losses["epoch"] == 1 and isinstance(trained.final_losses["epoch"], int)
    assert trained.placement is None  # written before training recorded where it ran
    store.write(trained)
    assert json.loads(store.path("train").read_text())["final_losses"]["val_loss"] is None  # valid JSON now


def test_a_record_with_a_misspelt_field_is_refused():
    with pytest.raises(ValueError, match="rowz"):
        ProfileRecord.model_validate({**PROFILE, "rowz": 1})


def test_a_missing_record_names_the_stage_that_writes_it(store):
    with pytest.raises(StageError, match=r"validation\.json is missing: run the validate stage for run id 'r1'"):
        store.read(Verdict)


def test_writes_are_atomic_and_leave_no_temporary_files(store):
    path = store.write_json("metrics", {"passed": True, "accuracy": 0.98})
    store.write_text("report", "<html></html>")
    assert json.loads(path.read_text()) == {"passed": True, "accuracy": 0.98}
    files = sorted(str(p.relative_to(store.run_dir)) for p in store.run_dir.rglob("*") if p.is_file())
    assert files == [LAYOUT["metrics"], LAYOUT["report"]]


def test_every_record_has_one_writer_that_runs_before_its_readers():
    written = [name for stage in STAGES for name in stage.writes]
    assert len(written) == len(set(written)), "a record written by two stages"
    assert set(written) <= set(LAYOUT)
    for i, stage in enumerate(STAGES):
        for name in stage.reads:
            assert STAGE_NAMES.index(writer(name)) < i, (stage.name, name)
    assert writer("verdict") == "validate"
