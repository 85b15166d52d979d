"""spark-submit entry point of the publish stage: `spark-submit jobs/publish_job.py CONFIG --run-id ID`.

(Not jobs/publish.py: Python puts a script's folder first on sys.path, where such a name can shadow a stdlib module.)
"""

import sys

from jobs.common import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("publish"))
