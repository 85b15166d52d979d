"""spark-submit entry point of the profile stage: `spark-submit jobs/profile.py CONFIG --run-id ID`."""

import sys

from jobs.common import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("profile"))
