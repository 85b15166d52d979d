"""spark-submit entry point of the retraining ladder (pipelines.retrain), run after a failed validate:
`spark-submit jobs/retrain_job.py CONFIG --run-id ID`."""

import sys

from jobs.common import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("retrain"))
