"""For every test: Spark's driver JVMs (this process's, and those of the `synthlake`, spark-submit and DVC
subprocesses the integration tests start, which inherit the variable) compile with C1 only. They live seconds
to minutes on small data, where C2's compile threads compete with the work on 2 cores: about 15% off each
Spark stage. spark-submit adds SPARK_SUBMIT_OPTS to the JVM it starts."""

import os

os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1")
