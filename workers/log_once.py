"""Log a recurring trouble once: when it starts, and once more when it ends.

A loop that meets the same failure every tick (a Redis that is away, a
malformed entry in a hash) would otherwise write the same line every few
seconds for as long as the trouble lasts.
"""

from __future__ import annotations

import threading


class LogOnce:
    """Which troubles are being reported, by key; thread-safe.

    The caller logs when :meth:`started` or :meth:`ended` answers True.
    At most ``limit`` keys are remembered (a flood of distinct malformed
    entries must not grow memory): past it, new keys are reported every time.
    """

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._failing: set[str] = set()
        self._lock = threading.Lock()

    def started(self, key: str) -> bool:
        """``key`` failed: True when it was not failing already (log it)."""
        with self._lock:
            if key in self._failing:
                return False
            if len(self._failing) < self.limit:
                self._failing.add(key)
            return True

    def ended(self, key: str) -> bool:
        """``key`` worked: True when it had been failing (log that it works again)."""
        with self._lock:
            if key not in self._failing:
                return False
            self._failing.discard(key)
            return True

    def failing(self, key: str) -> bool:
        with self._lock:
            return key in self._failing
