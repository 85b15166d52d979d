"""spark-submit entry point of the validate stage: `spark-submit jobs/validate.py CONFIG --run-id ID`."""

import sys

from jobs.common import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("validate"))
