"""The cache's django-redis client, behind a circuit breaker (workers/breaker.py).

Every cache read and write of the process goes through it: after a cache
command fails for want of Redis (connection refused, a timeout), the cache
is skipped for ``COOL_OFF`` seconds and every call raises ``BreakerOpen``
(a ``redis.ConnectionError``, as django-redis lets through for a dead Redis)
at once, so the callers' 503 ``cache_unavailable`` handling is unchanged. A
page with several cache reads then pays one timeout, not one per read.
"""

from __future__ import annotations

import functools
import socket
from typing import Any, Callable

import redis
from django_redis.client import DefaultClient
from django_redis.exceptions import ConnectionInterrupted

from workers.breaker import Breaker, BreakerOpen

# The operations that reach Redis; each is guarded.
GUARDED = ("get", "set", "add", "delete", "delete_many", "get_many", "set_many", "has_key", "incr", "decr",
           "ttl", "pttl", "expire", "pexpire", "persist", "touch", "keys", "iter_keys", "delete_pattern", "clear")
_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, socket.timeout, OSError)

breaker = Breaker("the cache Redis")


def is_outage(exc: BaseException) -> bool:
    """A failure for want of Redis, not a refused command (a full Redis' OOM, a wrong type)."""
    cause = exc.__cause__ if isinstance(exc, ConnectionInterrupted) else exc
    return isinstance(cause, _UNAVAILABLE)


def _guard(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def guarded(self: DefaultClient, *args: Any, **kwargs: Any) -> Any:
        try:
            return breaker.call(lambda: method(self, *args, **kwargs), is_outage)
        except BreakerOpen as exc:
            raise ConnectionInterrupted(connection=None) from exc
    return guarded


class BreakerClient(DefaultClient):
    """django-redis' DefaultClient whose Redis operations go through :data:`breaker`."""


for _name in GUARDED:
    if hasattr(DefaultClient, _name):
        setattr(BreakerClient, _name, _guard(getattr(DefaultClient, _name)))
