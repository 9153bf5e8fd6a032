"""The tenant simulator as a real process (``python -m simulator``) on a free loopback port.

``simulator`` (the pytest fixture, registered in tests/conftest.py) gives each test a
running simulator with the suite's defaults; a test that restarts it with other
options gets the defaults back afterwards. The process is shared by the session,
since starting it costs about a second.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.servers import die_with_parent, free_port, stop_group

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "flowwatch-test"
CLIENT_SECRET = "simulator-test-secret-5b1f"
DEFAULTS: dict[str, str] = {
    "SIMULATOR_SEED": "7",
    "SIMULATOR_MESSAGES_PER_MINUTE": "120",
    "SIMULATOR_FAILURE_RATIO": "0.05",
    "SIMULATOR_HISTORY_DAYS": "1",
    "SIMULATOR_RATE_LIMIT": "0",
    "SIMULATOR_TOKEN_TTL": "3600",
    "SIMULATOR_CLIENT_ID": CLIENT_ID,
    "SIMULATOR_CLIENT_SECRET": CLIENT_SECRET,
}


class SimulatorProcess:
    def __init__(self, **options: Any) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fw-simulator-"))
        self.log = self.dir / "simulator.log"
        self.options = self._merge(options)
        self.process: subprocess.Popen | None = None
        self.changed = False      # set by a control call that a restart undoes

    @staticmethod
    def _merge(options: dict[str, Any]) -> dict[str, str]:
        """``seed=3`` or ``SIMULATOR_SEED="3"``, over the suite's defaults."""
        merged = dict(DEFAULTS)
        for name, value in options.items():
            merged[name if name.startswith("SIMULATOR_") else "SIMULATOR_" + name.upper()] = str(value)
        return merged

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/api/v1"

    @property
    def token_url(self) -> str:
        return f"{self.base}/oauth/token"

    @property
    def client_id(self) -> str:
        return self.options["SIMULATOR_CLIENT_ID"]

    @property
    def client_secret(self) -> str:
        return self.options["SIMULATOR_CLIENT_SECRET"]

    def start(self) -> "SimulatorProcess":
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **self.options,
               "SIMULATOR_HOST": "127.0.0.1", "SIMULATOR_PORT": str(self.port)}
        self.process = subprocess.Popen([sys.executable, "-m", "simulator"], cwd=ROOT, env=env,
                                        stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                        start_new_session=True, preexec_fn=die_with_parent)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"simulator exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/_sim/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"simulator not ready within {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        stop_group(self.process, timeout=10)
        self.process = None

    def restart(self, **options: Any) -> "SimulatorProcess":
        """Stop, then start on the same port with ``options`` over the suite's defaults."""
        self.stop()
        self.options = self._merge(options)
        self.changed = False
        return self.start()

    def config(self, auth: str = "oauth", **overrides: Any):
        from apps.tenants.client import TenantConfig

        fields = dict(name="simulator", api_url=self.url, auth=auth,
                      token_url=self.token_url if auth == "oauth" else "",
                      client_id=self.client_id, client_secret=self.client_secret)
        return TenantConfig(**{**fields, **overrides})

    # -- control endpoints --------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.base}/_sim/stats", timeout=5).json()

    def expire_tokens(self) -> int:
        return self._control("/_sim/expire-tokens")["expired"]

    def set_rate_limit(self, per_second: int) -> None:
        self.changed = True
        self._control(f"/_sim/rate-limit?per_second={per_second}")

    def _control(self, path: str) -> dict[str, Any]:
        response = httpx.post(self.base + path, auth=(self.client_id, self.client_secret), timeout=5)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="session")
def simulator_process() -> Iterator[SimulatorProcess]:
    process = SimulatorProcess().start()
    yield process
    process.stop()


@pytest.fixture
def simulator(simulator_process: SimulatorProcess) -> Iterator[SimulatorProcess]:
    """A running simulator with the suite's defaults (see DEFAULTS)."""
    if simulator_process.process is None:
        simulator_process.restart()
    yield simulator_process
    if simulator_process.options != SimulatorProcess._merge({}) or simulator_process.changed:
        simulator_process.restart()
