"""synthlake's engine: table metadata, column encodings, generators, seeding and metrics.

Pure Python, pandas and torch: no Spark, Airflow, MLflow or Great Expectations here.
"""

__version__ = "0.1.0"
