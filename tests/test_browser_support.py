"""Shared pieces of the browser tests: the real ASGI server, the controller, Chromium.

Everything here is a real process: uvicorn serving ``config.asgi:application``,
``manage.py run_controller`` and Debian's chromium driven by Playwright, all
pointed at the suite's Redis (or a private one) and the suite's test database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import ROOT, subprocess_env
from tests.redis_plugin import suite_var_dir
from tests.servers import free_port, stop_group, wait_http_ok
from workers.collect_keys import BrokerKeys
from workers.heartbeat import count_processed, heartbeat_payload, write_heartbeat
from workers.queues import QUEUE_NAMES

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Generous: the suite must pass on a loaded 2-core machine.
WAIT_MS = 20_000
METRICS = "/superadmin/metrics/"

# Playwright's sync API keeps an event loop running in the test's thread; the
# ORM calls the tests make between page actions are still plain synchronous
# calls.  Set only while a browser runs, and never passed to a child process.
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


class Process:
    """A child process with its output in VAR_DIR, stopped with SIGTERM then SIGKILL."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.name = name
        env = {k: v for k, v in env.items() if k != ASYNC_UNSAFE}  # the server must stay strict
        self.log = suite_var_dir() / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log.open("ab"),
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        stop_group(self.process, timeout=15)


# The websocket implementation supervisord.conf runs uvicorn with (tests/test_boot.py
# checks it there), named rather than left to uvicorn's "auto", which may change.
PRODUCTION_WS = "websockets-sansio"


class WebServer(Process):
    """uvicorn serving the real ASGI application on a free loopback port.

    ``ws`` picks uvicorn's websocket implementation, by default the one
    production runs (:data:`PRODUCTION_WS`).
    """

    def __init__(self, ws: str = PRODUCTION_WS, **env_extra: str) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                   "--port", str(self.port), "--ws", ws, "--lifespan", "off", "--log-level", "warning"]
        super().__init__("uvicorn", command, subprocess_env(**env_extra))
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        wait_http_ok(self.url + "/healthz", self.alive, self.tail, "uvicorn", timeout)


class Controller(Process):
    """``manage.py run_controller --interval 1``: the real controller loop."""

    def __init__(self, interval: float = 1, **env_extra: str) -> None:
        command = [sys.executable, "manage.py", "run_controller", "--interval", str(interval)]
        super().__init__("controller", command, subprocess_env(**env_extra))


def controller_available() -> bool:
    return (ROOT / "apps/metrics/management/commands/run_controller.py").exists()


class FakeConsumers(threading.Thread):
    """A heartbeat that lists every queue, and a steady trickle of processed counts.

    The controller calls a queue without a consumer warn or critical, and a
    backlog that does not move "stalled": both would hide the threshold being
    tested.  This stands in for an idle, healthy worker without draining the
    queues the tests fill.
    """

    NAME = "pytest-fake@browser"

    def __init__(self, broker: redis.Redis) -> None:
        super().__init__(name="fake-consumers", daemon=True)
        self.broker = broker
        self.keys = BrokerKeys.from_options()
        self.stopping = threading.Event()
        self.started_at = time.time()

    def beat(self) -> None:
        write_heartbeat(self.broker, self.keys, heartbeat_payload(self.NAME, list(QUEUE_NAMES), self.started_at))
        for queue in QUEUE_NAMES:
            count_processed(self.broker, self.keys, queue)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.beat()
            except redis.RedisError:
                pass  # the broker may be restarted by a test; beat again next round
            self.stopping.wait(0.5)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
        self.broker.hdel(self.keys.workers, self.NAME)


def off_loop(function, *args) -> Any:
    """Run ``function`` in a helper thread: Playwright's sync API keeps an event
    loop running in this one, where async_to_sync refuses to work."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args).result()


def session_cookie(user, base_url: str) -> dict[str, Any]:
    """A logged-in session for ``user`` (created in the shared test database)."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return {"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base_url}


def push(broker: redis.Redis, queue: str, count: int) -> None:
    """Messages waiting in ``queue`` as kombu would store them (LPUSH onto the list)."""
    body = json.dumps({"body": "", "headers": {}, "properties": {}}).encode()
    broker.lpush(queue, *[body] * count)


def queue_row(page, queue: str):
    return page.locator(f'tr[data-queue="{queue}"]')


def wait_for_row(page, queue: str, depth: str, status: str | None = None, timeout: int = WAIT_MS) -> None:
    """Wait until the row of ``queue`` shows ``depth`` (and the ``status`` badge, if given)."""
    page.wait_for_function(
        """([queue, depth, status]) => {
            const row = document.querySelector(`tr[data-queue="${queue}"]`);
            return row && row.querySelector('[data-field="depth"]').textContent === depth
                && (status === null || row.querySelector('.badge').dataset.status === status);
        }""",
        arg=[queue, depth, status], timeout=timeout,
    )


def wait_for_indicator(page, state: str, timeout: int = WAIT_MS) -> None:
    page.wait_for_selector(f'#live-indicator[data-state="{state}"]', timeout=timeout)


def drop_queues(broker: redis.Redis, *queues: str) -> None:
    keys = BrokerKeys.from_options()
    broker.delete(*[sub for queue in queues for sub in keys.sub_queues(queue)])


@pytest.fixture(scope="module")
def chromium():
    """One browser per module: Playwright's loop must not outlive the browser tests."""
    from playwright.sync_api import sync_playwright

    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()
        playwright.stop()
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


def open_page(browser, server: WebServer, user, path: str = METRICS, before_goto=None):
    """A new context logged in as ``user``; ``before_goto(page)`` may set routes first."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    if user is not None:
        context.add_cookies([session_cookie(user, server.url)])
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    if before_goto is not None:
        before_goto(page)
    response = page.goto(server.url + path)
    return context, page, response


def docs_screenshot_path(tmp_path: Path) -> Path:
    """docs/screenshot-metrics.png when FLOWWATCH_UPDATE_SCREENSHOT=1, else a
    temporary file: a test run must not rewrite tracked files."""
    if os.environ.get("FLOWWATCH_UPDATE_SCREENSHOT") == "1":
        return ROOT / "docs" / "screenshot-metrics.png"
    return tmp_path / "screenshot-metrics.png"
