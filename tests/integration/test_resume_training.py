"""The driver killed mid-train: `synthlake run` is killed with SIGKILL (its whole process group, the training
process with it, as when its machine dies) once the flagship has checkpointed a few epochs (its rows encoded by
the executors, each of the two training processes on its own shard). Running the train stage
again for the same run id resumes after the last checkpointed epoch and finishes; the model then samples.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest
from project_fixture import VENV_BIN, make_project, project_env

from pipelines.context import RunContext
from pipelines.records import TrainRecord
from synthlake.generators.training import CHECKPOINT_FILE

pytestmark = pytest.mark.slow
EPOCHS = 10
RUN = "resume-1"


def synthlake(project, *args: str) -> list[str]:
    return [str(VENV_BIN / "synthlake"), *args, "conf/datasets/adult.yaml", "--run-id", RUN]


def test_a_killed_training_resumes_from_its_last_checkpoint(tmp_path):
    # patience past the epochs: no early stop, so every epoch is trained (or resumed) and counted
    # driver_encode_rows 0: encoded by the executors, each training process reads its own shard
    project = make_project(tmp_path, params={"train": {"max_rows": 1000, "driver_encode_rows": 0, "hyper": {
        "tabular_ar": {"epochs": EPOCHS, "patience": EPOCHS + 1}}}})
    env = project_env(project)
    checkpoint = project / "var" / "runs" / "adult" / RUN / "train_checkpoints" / CHECKPOINT_FILE
    first = subprocess.Popen(synthlake(project, "run"), cwd=project, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        saves, seen, deadline = 0, None, time.monotonic() + 420
        while saves < 3 and first.poll() is None and time.monotonic() < deadline:  # three epochs checkpointed
            stamp = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
            saves += stamp is not None and stamp != seen
            seen = stamp
            time.sleep(0.05)
        assert first.poll() is None, f"the run ended (exit {first.returncode}) before it could be killed"
        assert saves >= 3, "no three checkpoints in time"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert checkpoint.exists() and not (project / "var" / "runs" / "adult" / RUN / "model").exists()

    again = subprocess.run(synthlake(project, "train"), cwd=project, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    epochs = [int(n) for n in re.findall(rf"train: epoch (\d+)/{EPOCHS}", again.stdout)]
    assert epochs and epochs[0] >= 4 and epochs[-1] == EPOCHS, epochs  # resumed after the third epoch at least
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHLAKE_HOME", str(project))
        record = RunContext.open(str(project / "conf/datasets/adult.yaml"), RUN).store.read(TrainRecord)
    assert record.epochs == EPOCHS and not checkpoint.exists()  # the history runs across both; checkpoints gone
    sampled = subprocess.run(synthlake(project, "sample"), cwd=project, env=env, capture_output=True, text=True,
                             timeout=600)
    assert sampled.returncode == 0, sampled.stderr[-3000:]
