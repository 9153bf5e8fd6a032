"""Starts the suite's Redis before Django reads its settings.

Loaded with ``-p tests.redis_plugin`` (pytest.ini), so its
``pytest_load_initial_conftests`` runs before pytest-django's: the settings
module then resolves all four roles to this private server, exactly as a
real installation resolves them from the environment.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.servers import RedisServer

_state: dict[str, object] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    if "server" not in _state:
        _start()
    server, var_dir = suite_server(), suite_var_dir()
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_CACHE_URL", "CHANNELS_REDIS_URL",
                 "REDIS_CA_CERTS", "REDIS_TLS_INSECURE", "DATABASE_URL", "METRICS_API_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(
        REDIS_LOCAL="false",
        REDIS_LOCAL_PORT=str(server.port),
        VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="config.settings",
    )


def _start() -> None:
    """One server per process, kept across pytest sessions in it.

    mutmut runs pytest several times in one process (and in forks of it);
    Django reads its settings once per process, so every session must find
    the Redis of the first one.
    """
    _state.update(server=RedisServer().start(), var_dir=Path(tempfile.mkdtemp(prefix="fw-test-var-")),
                  owner=os.getpid())
    atexit.register(_stop)


def _stop() -> None:
    if _state.get("owner") != os.getpid():
        return  # a fork of the owner: the server and folder are the owner's
    server = _state.pop("server", None)
    if server is not None:
        server.close()
    var_dir = _state.pop("var_dir", None)
    if var_dir is not None:
        shutil.rmtree(var_dir, ignore_errors=True)


def suite_server() -> RedisServer:
    return _state["server"]  # type: ignore[return-value]


def suite_var_dir() -> Path:
    return _state["var_dir"]  # type: ignore[return-value]
