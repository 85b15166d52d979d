"""The catalog's names and lineage text, and the SQL server's settings: no Spark needed."""

from __future__ import annotations

import socket

import pytest

from pipelines.catalog import lineage_properties, sql_string
from pipelines.config import ConfigError
from pipelines.spark import quoted
from pipelines.sql_server import check_settings

AUDIT = {"dataset": "adult", "run_id": "r-1", "model_name": "synthlake-adult", "model_version": "3",
         "source_fingerprint": "abc123", "epsilon": None, "delta": None, "verdict": "passed"}


def test_lineage_names_the_run_the_model_the_source_and_the_privacy_spent():
    plain = lineage_properties(AUDIT)
    assert ("Latest: run r-1, model synthlake-adult version 3, source fingerprint abc123, no differential privacy, "
            "verdict passed.") in plain["comment"]
    assert plain["synthlake.epsilon"] == "none" and plain["synthlake.model"] == "synthlake-adult version 3"
    private = lineage_properties({**AUDIT, "epsilon": 2.5, "delta": 1e-6})
    assert "differential privacy epsilon 2.5, delta 1e-06" in private["comment"]
    assert private["synthlake.epsilon"] == "2.5"


def test_identifiers_and_strings_are_quoted_for_spark_sql():
    assert quoted("we`ird.name é") == "`we``ird.name é`"
    assert sql_string("it's a \\ path") == "'it\\'s a \\\\ path'"


def test_sql_server_listens_on_loopback_only_and_on_a_free_port():
    with pytest.raises(ConfigError, match=r"--host 0\.0\.0\.0: the SQL server has no authentication"):
        check_settings("0.0.0.0", 10000, 10)
    with pytest.raises(ConfigError, match="--sync-interval 0: must be more than 0"):
        check_settings("127.0.0.1", 10000, 0)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"--port {port}: cannot listen on 127.0.0.1:{port}"):
            check_settings("127.0.0.1", port, 10)
