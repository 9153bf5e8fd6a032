"""The real stack, started the way an operator starts it: `python boot.py up`.

Each test runs its own stack in its own VAR_DIR on free ports (never the
suite's Redis), talks to it over HTTP, Redis and supervisorctl, stops it with
SIGTERM as Ctrl-C or a service manager would, and checks that no process of
it is left.  Every process of a stack carries the test's VAR_DIR in its
environment, which is how leftovers are found (and killed, on failure).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

import boot
from tests.servers import RedisServer, free_port
from workers.queues import QUEUE_NAMES, worker_groups

pytestmark = pytest.mark.stack

ROOT = Path(boot.__file__).resolve().parent
SUPERVISORCTL = str(Path(sys.executable).parent / "supervisorctl")
WORKER_STOPWAITSECS = 60  # supervisord.conf / boot.WORKER_PROGRAM: the longest stop allowed


def stack_processes(var_dir: Path) -> dict[int, str]:
    """pid -> command line of every process started for the stack in ``var_dir``.

    Found by the VAR_DIR in its environment or command line, or by a working
    directory inside VAR_DIR: redis-server overwrites its environment block
    with its process title, but runs in VAR_DIR/run (supervisord.conf).
    """
    marker = f"\0VAR_DIR={var_dir}\0".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = b"\0" + (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone meanwhile, or a zombie
            continue
        if marker in environ or str(var_dir).encode() in cmdline or Path(cwd).is_relative_to(var_dir):
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


class Stack:
    """One `boot.py up` in its own session, VAR_DIR and ports."""

    def __init__(self, tmp_path: Path, **extra: str) -> None:
        self.var_dir = tmp_path / "var"
        self.web_port = free_port()
        self.redis_port = free_port()
        ours = set(boot.VARIABLES) | {f"{name}_FILE" for name in boot.VARIABLES}
        self.env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("FW_")}
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.env.update(VAR_DIR=str(self.var_dir), WEB_HOST="127.0.0.1", WEB_PORT=str(self.web_port),
                        REDIS_LOCAL_PORT=str(self.redis_port), WORKER_CONCURRENCY="1")
        self.env.update(extra)
        self.output = tmp_path / "boot.out"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Stack":
        with self.output.open("wb") as out:
            self.process = subprocess.Popen([sys.executable, "boot.py", "up"], cwd=ROOT, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def boot_output(self) -> str:
        return self.output.read_text(errors="replace")

    def diagnostics(self) -> str:
        logs = sorted((self.var_dir / "log").glob("*.log")) if (self.var_dir / "log").exists() else []
        tails = [f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}" for log in logs]
        return "\n".join([f"--- boot.py up\n{self.boot_output()[-3000:]}", *tails])

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.web_port}/healthz"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"boot.py up exited with {self.process.returncode}\n{self.diagnostics()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        pytest.fail(f"/healthz did not answer within {timeout}s\n{self.diagnostics()}")

    def run(self, *command: str, timeout: float = 90, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=ROOT, env={**self.env, **extra}, capture_output=True, text=True,
                              timeout=timeout)

    def manage(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "manage.py", *args, DJANGO_SETTINGS_MODULE="config.settings", **extra)

    def status(self) -> dict[str, str]:
        """supervisorctl status as an operator runs it: program -> state."""
        done = self.run(SUPERVISORCTL, "-c", "supervisord.conf", "status", timeout=30)
        return {line.split()[0]: line.split()[1] for line in done.stdout.splitlines() if line.strip()}

    def wait_running(self, expected: set[str], timeout: float = 60.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            states = self.status()
            if set(states) == expected and set(states.values()) == {"RUNNING"}:
                return states
            if time.monotonic() > deadline:
                pytest.fail(f"supervisorctl status: {states}, expected {sorted(expected)} RUNNING\n"
                            f"{self.diagnostics()}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM to supervisord (boot.py exec'd it), as Ctrl-C or a service manager does."""
        os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=WORKER_STOPWAITSECS + 30)

    def kill_everything(self) -> None:
        """Cleanup, even after a failure: no process of this stack survives the test."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid in stack_processes(self.var_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def make_stack(tmp_path):
    stacks: list[Stack] = []

    def make(**extra: str) -> Stack:
        stack = Stack(tmp_path, **extra)
        stacks.append(stack)
        return stack.start()

    yield make
    for stack in stacks:
        stack.kill_everything()


def worker_programs() -> set[str]:
    return {f"workers:worker-{group}" for group in worker_groups()}


def assert_stops_cleanly(stack: Stack, programs: set[str]) -> None:
    running = stack_processes(stack.var_dir)
    # The leftover check below must be able to see the stack: it sees it now.
    assert stack.process.pid in running and "supervisord" in running[stack.process.pid]
    assert len(running) > len(programs), running
    stack.stop()
    # Every program ended on TERM: supervisord never had to escalate to SIGKILL.
    supervisord_log = (stack.var_dir / "log" / "supervisord.log").read_text()
    assert "SIGKILL" not in supervisord_log, stack.diagnostics()
    assert stack.process.returncode == 0, stack.diagnostics()
    assert stack_processes(stack.var_dir) == {}


def test_the_whole_stack_starts_routes_every_queue_and_stops_without_leftovers(make_stack):
    stack = make_stack(FLOWWATCH_ADMIN_USER="ops")
    stack.wait_healthy()

    # The bundled Redis really runs without persistence, on loopback only.
    bundled = redis.Redis(host="127.0.0.1", port=stack.redis_port, socket_timeout=5)
    assert bundled.config_get("save") == {"save": ""}
    assert bundled.config_get("appendonly") == {"appendonly": "no"}
    assert bundled.config_get("stop-writes-on-bgsave-error") == {"stop-writes-on-bgsave-error": "no"}
    assert bundled.config_get("bind") == {"bind": "127.0.0.1"}

    # Every declared queue is consumed, each by the worker of its group.
    done = stack.manage("probe_queues", "--timeout", "30", "--json")
    assert done.returncode == 0, done.stdout + done.stderr + stack.diagnostics()
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert [q["queue"] for q in report["queues"]] == list(QUEUE_NAMES)
    group_of = {queue: group for group, queues in worker_groups().items() for queue in queues}
    for answer in report["queues"]:
        assert answer["worker"].startswith(f"{group_of[answer['queue']]}@"), answer

    expected = {"redis", "web", "beat"} | worker_programs() | {"controller"}
    stack.wait_running(expected)
    commands = stack_processes(stack.var_dir).values()
    assert any(f"127.0.0.1:{stack.redis_port}" in command for command in commands)  # the bundled Redis is seen

    # VAR_DIR is private; the superadmin password is stored, never printed.
    assert stat.S_IMODE(stack.var_dir.stat().st_mode) == 0o700
    password_file = stack.var_dir / "superadmin-password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    printed = stack.boot_output()
    assert password not in printed
    assert f"as 'ops'; superadmin created, its password is in {password_file}" in printed
    assert f"http://127.0.0.1:{stack.web_port}/" in printed
    # django-axes throttles logins per request: authenticate as a login POST would.
    login = stack.manage("shell", "-c", "import os; from django.contrib.auth import authenticate; "
                         "from django.test import RequestFactory; "
                         "u = authenticate(RequestFactory().post('/accounts/login/'), username='ops', "
                         "password=os.environ['PW']); print(bool(u and u.is_superuser))", PW=password)
    assert login.stdout.strip().endswith("True"), login.stderr

    assert_stops_cleanly(stack, expected)


def test_boot_roles_web_and_workers_start_neither_beat_nor_redis(make_stack):
    # The bundled Redis of this host runs elsewhere (another host's BOOT_ROLES=redis).
    with RedisServer() as elsewhere:
        stack = make_stack(BOOT_ROLES="web,workers", REDIS_LOCAL="true", REDIS_LOCAL_PORT=str(elsewhere.port))
        stack.wait_healthy()
        expected = {"web"} | worker_programs()
        stack.wait_running(expected)
        commands = " ".join(stack_processes(stack.var_dir).values())
        assert "uvicorn" in commands and " worker " in commands
        assert " beat " not in commands
        assert "redis-server" not in commands and "valkey-server" not in commands
        assert_stops_cleanly(stack, expected)


def test_stopping_the_stack_lets_a_running_task_finish(make_stack):
    stack = make_stack()
    stack.wait_healthy()
    stack.wait_running({"redis", "web", "beat"} | worker_programs() | {"controller"})
    log = stack.var_dir / "log" / "worker-background.log"
    sent = stack.manage("shell", "-c", "from workers.probe import probe; "
                        "print(probe.apply_async(args=('ai', 0.0, 4.0), queue='ai').id)")
    task_id = sent.stdout.strip().splitlines()[-1]
    deadline = time.monotonic() + 60
    while f"probe[{task_id}] received" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, stack.diagnostics()
        time.sleep(0.1)

    stack.stop()  # TERM while the task still holds its worker for ~4 s

    assert f"probe[{task_id}] succeeded" in log.read_text(), log.read_text()[-3000:]
    assert stack_processes(stack.var_dir) == {}
