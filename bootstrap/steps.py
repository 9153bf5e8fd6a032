"""The steps of ``boot.py up`` between a valid plan and supervisord.

What only `up` checks (installed programs, a stack already running, busy
ports), the runtime folder, and the steps that need Django: they run as
``manage.py`` in a child process of the same interpreter, so boot itself
stays standard-library only.
"""

from __future__ import annotations

import errno
import importlib.util
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from bootstrap.plan import BASE_DIR, Plan
from bootstrap.report import say
from bootstrap.supervisor import supervisord_binary
from config import redis_layout
from config.env import value, write_private
from config.redis_layout import LayoutError

MANAGE_PY = BASE_DIR / "manage.py"
ADMIN_PASSWORD_FILE = "superadmin-password"
SIMULATOR_HOST = "127.0.0.1"  # supervisord.conf's [program:simulator] listens here only


def runtime_problems(plan: Plan) -> list[str]:
    """What only `up` checks: programs to run, a stack already running, busy ports."""
    found: list[str] = []
    # find_spec looks without importing: boot itself stays stdlib-only.
    if importlib.util.find_spec("django") is None:
        found.append(f"Django is not installed for {sys.executable}: start with scripts/up, which "
                     "installs requirements.txt into .venv")
    if supervisord_binary() is None:
        found.append("supervisord is not installed: install requirements.txt (scripts/up does)")
    if _socket_answers(plan.socket_path):
        found.append(
            f"a Flowwatch stack is already running with VAR_DIR={plan.var_dir} "
            f"(socket {plan.socket_path}); stop it first or use another VAR_DIR"
        )
        return found  # its own ports are busy too: say it once
    if "web" in plan.roles:
        found += _port_problem("WEB_PORT", plan.web_host, plan.web_port)
    if "redis" in plan.roles:
        found += _port_problem("REDIS_LOCAL_PORT", redis_layout.BUNDLED_REDIS_HOST, plan.layout.local_port)
    if plan.simulator:
        found += _port_problem("SIMULATOR_PORT", SIMULATOR_HOST, plan.simulator_port)
    return found


def _socket_answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
            return True
        except OSError:
            return False  # a stale socket of a stack that died


def _port_problem(variable: str, host: str, port: int) -> list[str]:
    """Bind once to see whether the port is free (a FATAL program later is harder to read)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return [f"WEB_HOST={host!r} cannot be resolved ({exc.strerror or exc})"]
    family, _type, _proto, _name, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return [f"{variable}={port}: {host}:{port} is already in use"]
            return [f"{variable}={port}: cannot listen on {host}:{port} ({exc.strerror})"]
    return []


def prepare_var_dir(folder: Path) -> None:
    """VAR_DIR holds the secret key, the database and the superadmin password: 0700."""
    for path in (folder, folder / "log", folder / "run"):
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)


def _known_secrets(plan: Plan, env: Mapping[str, str]) -> list[str]:
    found = [r.password for r in plan.layout.roles.values() if r.password]
    try:
        found.append(urlsplit(str(value("DATABASE_URL", env) or "")).password or "")
    except (LayoutError, ValueError):
        pass
    found.append(env.get("FW_ADMIN_PASSWORD", ""))
    try:
        found.append(str(value("EMAIL_HOST_PASSWORD", env)))
    except LayoutError:
        pass
    return found


def run_step(done: str, args: list[str], env: Mapping[str, str], plan: Plan) -> subprocess.CompletedProcess | None:
    """Run ``manage.py <args>`` with the venv's python; show its output only on failure."""
    result = subprocess.run(
        [sys.executable, str(MANAGE_PY), *args], cwd=BASE_DIR, env=dict(env),
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        output = redis_layout.redact((result.stdout + result.stderr).strip(), _known_secrets(plan, env))
        tail = "\n".join(output.splitlines()[-25:])
        say([tail, f"boot: manage.py {args[0]} failed (exit {result.returncode}); nothing was started"],
            sys.stderr)
        return None
    if done:
        say([done])
    return result


# Runs inside `manage.py shell -c`.  The password arrives through the
# environment: a command line is visible to every user in `ps`.
CREATE_SUPERADMIN = """
import os
from django.contrib.auth import get_user_model
User = get_user_model()
name = os.environ["FW_ADMIN_USER"]
if User.objects.filter(username=name).exists():
    print("superadmin-exists")
else:
    User.objects.create_superuser(name, email="", password=os.environ["FW_ADMIN_PASSWORD"])
    print("superadmin-created")
"""


@dataclass(frozen=True)
class AdminPassword:
    value: str
    file: Path | None  # where it is stored, when boot stores it
    variable: str | None  # the variable it came from, when given
    generated: bool  # made by this start


def admin_password(plan: Plan) -> AdminPassword:
    """FLOWWATCH_ADMIN_PASSWORD(_FILE), else VAR_DIR/superadmin-password, generated once (0600)."""
    given = str(value("FLOWWATCH_ADMIN_PASSWORD", plan.env) or "")
    if given:
        from_file = plan.env.get("FLOWWATCH_ADMIN_PASSWORD_FILE", "").strip()
        variable = "FLOWWATCH_ADMIN_PASSWORD_FILE" if from_file else "FLOWWATCH_ADMIN_PASSWORD"
        return AdminPassword(given, None, variable, generated=False)
    path = plan.var_dir / ADMIN_PASSWORD_FILE
    if path.exists():
        return AdminPassword(path.read_text().strip(), path, None, generated=False)
    generated = secrets.token_urlsafe(18)
    write_private(path, generated + "\n")
    return AdminPassword(generated, path, None, generated=True)


def ensure_superadmin(plan: Plan, env: Mapping[str, str]) -> str | None:
    """Create the superadmin once; return the login hint (never the password)."""
    password = admin_password(plan)
    step_env = {**env, "FW_ADMIN_USER": plan.admin_user, "FW_ADMIN_PASSWORD": password.value}
    result = run_step("", ["shell", "-c", CREATE_SUPERADMIN], step_env, plan)
    if result is None:
        return None
    created = "superadmin-created" in result.stdout
    if not created and password.generated and password.file:
        # The user was made before, not by boot: this file would hold a wrong password.
        password.file.unlink()
    return login_hint(plan, password, created)


def login_hint(plan: Plan, password: AdminPassword, created: bool) -> str:
    login = f"Open {plan.web_url}superadmin/metrics/ and log in as {plan.admin_user!r}"
    if created and password.variable:
        return f"{login}; superadmin created with the password from {password.variable}"
    if created:
        return f"{login}; superadmin created, its password is in {password.file}"
    if password.file and not password.generated:
        return f"{login}; password in {password.file} (unless changed since)"
    return f"{login}; the user existed already, its password was not changed"


def register_simulator(plan: Plan, env: Mapping[str, str]) -> bool:
    """Register the bundled simulator as the tenant ``simulator`` (created once, its URLs kept current)."""
    root = f"http://{SIMULATOR_HOST}:{plan.simulator_port}"
    args = ["register_simulator_tenant", "--api-url", f"{root}/api/v1", "--token-url", f"{root}/oauth/token"]
    return run_step("", args, env, plan) is not None
