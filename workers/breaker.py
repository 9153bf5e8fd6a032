"""A circuit breaker: after a failure, skip the service for a few seconds.

A Redis that is frozen (``SIGSTOP``, a hung host) costs every command its
read timeout; a page with several cache reads would pay it once per read.
After one failure the breaker is *open* for :data:`COOL_OFF` seconds and
calls fail at once with :class:`BreakerOpen`; the first call after that
tries the service again (and closes the breaker when it answers, or opens
it again when it does not).  Thread-safe, one per service and process.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

import redis

T = TypeVar("T")

COOL_OFF = 5.0


class BreakerOpen(redis.ConnectionError):
    """The service failed moments ago: not asked again until its cool-off ends.

    A ``redis.ConnectionError``, so every handler of an unreachable Redis
    handles it too.
    """


class Breaker:
    def __init__(self, name: str, cool_off: float = COOL_OFF,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.cool_off, self.clock = name, cool_off, clock
        self._lock = threading.Lock()
        self._open_until = 0.0
        self.skipped = 0  # calls refused while open, for tests and diagnostics

    @property
    def is_open(self) -> bool:
        return self.clock() < self._open_until

    def check(self) -> None:
        """Raise BreakerOpen while the breaker is open."""
        if self.is_open:
            with self._lock:
                self.skipped += 1
            raise BreakerOpen(f"{self.name} failed moments ago; skipped for up to {self.cool_off:g} s")

    def failed(self) -> None:
        with self._lock:
            self._open_until = self.clock() + self.cool_off

    def succeeded(self) -> None:
        with self._lock:
            self._open_until = 0.0

    def call(self, action: Callable[[], T], is_failure: Callable[[BaseException], bool]) -> T:
        """Run ``action`` unless open; an exception that ``is_failure`` opens the breaker."""
        self.check()
        try:
            result = action()
        except Exception as exc:
            if is_failure(exc):
                self.failed()
            raise
        self.succeeded()
        return result
