"""`synthlake serve`: settings checked, then the app under uvicorn."""

from __future__ import annotations

import importlib.abc
import logging
import os
import signal
import sys

from pipelines.config import ConfigError, dataset_configs, is_loopback, load_env

TOKENS_VARIABLE = "SYNTHLAKE_SERVE_TOKENS"


def serve(host: str, port: int, env_name: str | None, datasets: list[str] | None, max_rows: int,
          reload_s: float) -> None:
    tokens = tokens_from_environment()
    check_settings(host, port, tokens, max_rows, reload_s)
    names = dataset_names(datasets)
    env = load_env(env_name)
    keep_spark_out()
    _configure_logging()

    from serving.app import create_app

    run_until_stopped(create_app(env, names, tokens, max_rows, reload_s), host, port)


class Stopped(Exception):
    pass


def _stop(signum, frame):
    raise Stopped


def run_until_stopped(app, host: str, port: int) -> None:
    """uvicorn until SIGINT or SIGTERM: it shuts down gracefully, then raises the signal again, which ends
    here instead of killing the process (exit 0, atexit handlers run)."""
    import uvicorn

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        uvicorn.run(app, host=host, port=port, access_log=False, log_config=None)
    except (KeyboardInterrupt, Stopped):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def tokens_from_environment() -> tuple[str, ...]:
    return tuple(t.strip() for t in os.environ.get(TOKENS_VARIABLE, "").split(",") if t.strip())


def check_settings(host: str, port: int, tokens: tuple[str, ...], max_rows: int, reload_s: float) -> None:
    if not tokens and not is_loopback(host):
        raise ConfigError(f"serving on {host} needs bearer tokens: set {TOKENS_VARIABLE} (comma-separated), "
                          "or serve on a loopback host such as 127.0.0.1")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: must be 0..65535")
    if max_rows < 1:
        raise ConfigError(f"--max-rows {max_rows}: must be at least 1")
    if reload_s < 0:
        raise ConfigError(f"--reload-interval {reload_s}: must be >= 0")


def dataset_names(names: list[str] | None) -> list[str]:
    return [d.name for d in dataset_configs(names)]


class _NoSpark(importlib.abc.MetaPathFinder):
    """MLflow imports pyspark when it is installed only to offer Spark schema types; serving needs none."""

    def find_spec(self, name, path, target=None):
        if name == "pyspark" or name.startswith("pyspark."):
            raise ModuleNotFoundError(f"{name}: synthlake serve runs without Spark", name=name)
        return None


def keep_spark_out() -> None:
    if not any(isinstance(f, _NoSpark) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoSpark())


def _configure_logging() -> None:
    """uvicorn's and our lines to stderr; the access log is one JSON object a line, nothing else."""
    plain = logging.StreamHandler()
    plain.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[plain])
    access = logging.getLogger("serving.access")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.addHandler(handler)
    access.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
