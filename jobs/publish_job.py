"""spark-submit entry point of the publish stage (not jobs/publish.py: that would shadow a stdlib module): `spark-submit jobs/publish_job.py CONFIG --run-id ID`."""

import sys

from jobs.common import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("publish"))
