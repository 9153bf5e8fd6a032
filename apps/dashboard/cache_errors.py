"""What a cache read raises when the cache Redis is down or slow."""

from __future__ import annotations

import redis
from django_redis.exceptions import ConnectionInterrupted

# django-redis wraps connection errors in ConnectionInterrupted; redis-py's
# own errors and socket errors are listed too, for calls that bypass it.
CACHE_ERRORS: tuple[type[BaseException], ...] = (ConnectionInterrupted, redis.RedisError, OSError)
