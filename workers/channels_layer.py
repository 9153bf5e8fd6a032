"""The Channels layer of every Flowwatch process: channels-redis' core layer
with a bounded pool that waits, and one reconnect on a broken connection.

channels-redis 4.3 builds each host's pool with redis-py's asyncio
``ConnectionPool``, which raises ``MaxConnectionsError`` once
``max_connections`` connections are out: a burst of browsers joining the
metrics group at once then has its sockets closed before any frame.  Here
every pool is a ``BlockingConnectionPool`` of :data:`POOL_SIZE`: a command
that finds every connection busy waits for one (each is held for one
command, bounded by the host's ``socket_timeout``) instead of failing.

A pooled connection that a Redis restart broke fails its next command with
``ConnectionError``; each connection retries once on a fresh socket, so the
first snapshot after a restart is delivered and open pages stay connected.
A Redis that is really gone still fails at once (a refused connect) or
within the connect timeout.
"""

from __future__ import annotations

from typing import Any

from channels_redis.core import RedisChannelLayer
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

# Connections per host and event loop.  One is the receive loop's BZPOPMIN;
# the rest serve group_add/group_discard/send for every socket of the process.
POOL_SIZE = 50
# None: wait as long as the holders take; each holds a connection for one
# command, which its socket_timeout bounds.
POOL_WAIT: float | None = None


def reconnect_once() -> Retry:
    """One immediate retry, on a broken connection only: a read timeout is not retried."""
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def blocking_pool(host: dict[str, Any], size: int = POOL_SIZE,
                  wait: float | None = POOL_WAIT) -> aioredis.BlockingConnectionPool:
    """The pool for one channels-redis host entry (``address`` plus redis-py options)."""
    options = dict(host)
    address = options.pop("address")
    return aioredis.BlockingConnectionPool.from_url(address, max_connections=size, timeout=wait,
                                                    retry=reconnect_once(), **options)


class FlowwatchChannelLayer(RedisChannelLayer):
    """``RedisChannelLayer`` whose pools wait for a connection rather than refuse."""

    def __init__(self, *args: Any, pool_size: int = POOL_SIZE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool_size = pool_size

    def create_pool(self, index: int) -> aioredis.BlockingConnectionPool:
        host = self.hosts[index]
        if "address" not in host:
            raise ValueError("FlowwatchChannelLayer: each host needs an 'address' URL")
        return blocking_pool(host, self.pool_size)
