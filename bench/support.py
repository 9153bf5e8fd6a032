"""What the benchmarks share: a private Redis and VAR_DIR, child processes, supervisor's commands.

Every benchmark starts what it measures on free loopback ports and stops it at
the end (a killed benchmark's children get SIGTERM through PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import RedisServer, die_with_parent, env_for, free_port, stop_group  # noqa: E402,F401


@contextmanager
def private_stack(**extra: str) -> Iterator[tuple[RedisServer, Path, dict[str, str]]]:
    """A Redis of its own, a VAR_DIR under /tmp, and the environment that points Flowwatch at both."""
    var_dir = Path(tempfile.mkdtemp(prefix="fw-bench-"))
    with RedisServer() as server:
        env = env_for(server, var_dir, LOG_LEVEL="WARNING", **extra)
        try:
            yield server, var_dir, env
        finally:
            shutil.rmtree(var_dir, ignore_errors=True)


def start(command: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """A child in its own session (so its whole group can be stopped), output to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(command, cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent)


def stop(process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    stop_group(process, timeout)


def wait_port(port: int, process: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the process for port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def manage(env: Mapping[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=dict(env), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def supervisor_command(program: str, values: Mapping[str, str]) -> list[str]:
    """The command of ``[program:<program>]`` in supervisord.conf, its %(ENV_X)s filled from ``values``."""
    parser = configparser.RawConfigParser(inline_comment_prefixes=None)
    parser.read(ROOT / "supervisord.conf")
    raw = parser.get(f"program:{program}", "command")
    filled = re.sub(r"%\(ENV_(\w+)\)s", lambda m: values[m.group(1)], raw).replace("%%", "%")
    return shlex.split(filled)


def python_env(env: Mapping[str, str]) -> dict[str, str]:
    return {**env, "FW_PYTHON": sys.executable, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


def pss_kib(pid: int) -> int:
    """Proportional set size of one process: shared pages count divided among their sharers."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
