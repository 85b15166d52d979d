"""`synthlake serve`: synthetic rows over HTTP from each dataset's champion Sampler (FastAPI under uvicorn).

Imports synthlake and the MLflow registry lookup (pipelines.tracking) only, never Spark; no pipeline stage
imports this package.
"""
