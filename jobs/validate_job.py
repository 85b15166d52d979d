"""spark-submit entry point of the validate stage: `spark-submit jobs/validate_job.py CONFIG --run-id ID`.

(Not jobs/validate.py: Python puts a script's folder first on sys.path, where such a name can shadow a stdlib module.)
"""

import sys

from jobs.common import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("validate"))
