"""spark-submit entry points (one per stage) and the `synthlake` command line."""
