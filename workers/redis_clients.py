"""Plain redis-py clients for the four roles, built from the layout.

Used where Celery, django-redis and channels-redis do not reach: readiness
checks, the controller's readers, locks.  One client per role per process.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import redis_layout


@lru_cache(maxsize=None)
def _layout() -> redis_layout.Layout:
    return redis_layout.resolve()


def client_for(role: str, layout: redis_layout.Layout | None = None, **overrides) -> redis.Redis:
    """A fail-fast client for ``role`` (TLS options included)."""
    layout = layout or _layout()
    options = {
        "socket_connect_timeout": redis_layout.CONNECT_TIMEOUT,
        "socket_timeout": redis_layout.SOCKET_TIMEOUT,
        "health_check_interval": 30,
        # redis-py's default retries with backoff for seconds; these clients
        # answer "unreachable" instead, and their callers try again later.
        # One retry on a broken connection (a restarted Redis), none after a
        # read timeout: a frozen Redis accepts the new connection and never
        # answers it either, so a retry doubled the wait (2 s for one ping).
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        **layout.ssl_kwargs(role),
        **overrides,
    }
    return redis.Redis.from_url(layout.url(role), **options)


@lru_cache(maxsize=None)
def client(role: str) -> redis.Redis:
    """The process-wide client of ``role`` for the environment's layout."""
    return client_for(role)


def _ping(role: str) -> bool:
    try:
        return bool(client(role).ping())
    except (redis.RedisError, OSError):
        return False


def ping_roles(roles: tuple[str, ...] = redis_layout.ROLES) -> dict[str, bool]:
    """Which roles answer PING right now.

    The pings run in parallel so that four dead servers cost one connect
    timeout, not four.
    """
    with ThreadPoolExecutor(max_workers=len(roles)) as pool:
        return dict(zip(roles, pool.map(_ping, roles)))
