"""spark-submit entry point of the check stage: `spark-submit jobs/check_job.py CONFIG --run-id ID`."""

import sys

from jobs.common import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("check"))
