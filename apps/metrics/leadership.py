"""Leadership: only the holder of the leader lock acts; the others stand by.

The lock is ``fw:lock:controller:leader`` in the broker Redis, a
:class:`workers.locks.Lock` owned by ``host:pid``, taken or extended every
tick; a standby takes over within one lock TTL of the leader going away.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import redis

from workers.collect_keys import BrokerKeys
from workers.locks import Lock, owner_of

logger = logging.getLogger("flowwatch.controller")

LEADER_LOCK = "controller:leader"


class Leadership:
    """The leader lock, and whether this controller's memory is stale when it leads.

    While the broker is unreachable nobody can take or renew the lock: the
    controller that held it last keeps acting, one that last saw another
    holder keeps standing by, and one that never saw any holder acts (it
    cannot know better, and somebody must report the outage).
    """

    def __init__(self, client: redis.Redis | None, keys: BrokerKeys, ttl: float) -> None:
        self.lock = Lock(client, keys, LEADER_LOCK, ttl, owner=f"{socket.gethostname()}:{os.getpid()}") \
            if client is not None else None
        self.ttl = ttl
        self.held = False
        self.last_seen: str | None = None  # "mine", "other" or None (never saw a holder)
        self.holder: str | None = None
        self.stood_by = False  # a claim stood by since this controller last acted
        self.last_acted: float | None = None  # time.monotonic() of the last claim that led
        # Set by claim(): this controller leads again, and another may have
        # led meanwhile, so what it remembers is stale.
        self.memory_stale = False

    def claim(self) -> bool:
        """True when this controller acts this tick."""
        self.memory_stale = False
        leads, gained = self._claim_lock()
        if not leads:
            self.stood_by = True
            return False
        self.memory_stale = gained and self._another_may_have_led()
        self.stood_by, self.last_acted = False, time.monotonic()
        return True

    def release(self) -> None:
        if self.lock is None or not self.held:
            return
        try:
            self.lock.release()
        except (redis.RedisError, OSError):
            pass  # it expires by itself
        self.held = False

    def _claim_lock(self) -> tuple[bool, bool]:
        """(whether to act, whether the lock was taken now, not held before)."""
        if self.lock is None:  # no broker role: nobody to compete with
            return True, False
        try:
            gained = self._take_or_extend(self.lock)
        except (redis.RedisError, OSError):
            return self.last_seen != "other", False
        self.last_seen = "mine" if self.held else "other"
        return self.held, gained

    def _take_or_extend(self, lock: Lock) -> bool:
        """Hold the lock if possible; True when it was taken now."""
        if self.held and not lock.extend():
            self.held = False
            logger.warning("leader lock lost (expired or taken over)")
        if self.held:
            return False
        self.held = lock.acquire()
        if self.held:
            logger.info("this controller is now the leader (%s)", lock.owner)
            return True
        self.holder = owner_of(lock.client.get(lock.key))
        return False

    def _another_may_have_led(self) -> bool:
        """Since this controller last acted, it stood by, or its lock could have
        expired and been taken (a lock merely lost with a restarted broker and
        taken back at once was nobody else's)."""
        return (self.stood_by or self.last_acted is None
                or time.monotonic() - self.last_acted > self.ttl)
