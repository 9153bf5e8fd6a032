"""Cache reads against a frozen Redis: one timeout, then the breaker skips Redis at once."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
from django.core.cache import caches
from django.test import override_settings

from apps.core import cache_client
from tests.test_metrics_support import private_server
from workers.breaker import Breaker, BreakerOpen


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def failing() -> None:
    raise OSError("refused")


def test_the_breaker_opens_after_a_failure_skips_during_its_cool_off_and_tries_again_after():
    clock = Clock()
    breaker = Breaker("redis", cool_off=5, clock=clock)
    with pytest.raises(OSError):
        breaker.call(failing, lambda exc: True)
    with pytest.raises(BreakerOpen, match="skipped for up to 5 s"):
        breaker.call(lambda: "never asked", lambda exc: True)
    clock.now += 5.1
    assert breaker.call(lambda: "answered", lambda exc: True) == "answered"
    assert not breaker.is_open and breaker.skipped == 1


def test_a_refused_command_is_not_an_outage():
    breaker = Breaker("redis")
    with pytest.raises(ValueError):
        breaker.call(lambda: int("x"), lambda exc: isinstance(exc, OSError))
    assert not breaker.is_open


@pytest.fixture
def frozen_cache():
    """The real cache settings pointed at a private Redis that is then frozen with SIGSTOP."""
    from django.conf import settings

    with private_server() as server:
        options = {**settings.CACHES["default"], "LOCATION": server.url(2)}
        with override_settings(CACHES={"default": options}):
            cache = caches["default"]
            cache.set("warm", 1)  # a pooled connection exists, as in a running web process
            cache_client.breaker.succeeded()
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                yield cache
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
                cache_client.breaker.succeeded()
                cache.close()


def timed_read(cache) -> float:
    started = time.monotonic()
    with pytest.raises(redis.RedisError):  # what django-redis lets through for a dead Redis
        cache.get("warm")
    return time.monotonic() - started


def test_a_frozen_cache_costs_one_read_timeout_then_reads_fail_at_once(frozen_cache):
    first = timed_read(frozen_cache)
    following = [timed_read(frozen_cache) for _ in range(5)]
    print(f"\nfrozen cache: first read {first:.2f} s, next five {max(following):.3f} s at most")
    assert cache_client.breaker.is_open
    assert cache_client.breaker.skipped >= 5  # none of the five reached Redis
