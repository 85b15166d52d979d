"""Where the data lives: Spark, Delta Lake, MLflow and Great Expectations around the engine.

Each stage module exposes `run(ctx) -> dict`, idempotent for one run id.
"""
