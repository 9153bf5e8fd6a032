"""Leadership: only the holder of the leader lock acts; the others stand by.

The lock is ``fw:lock:controller:leader`` in the broker Redis, a
:class:`workers.locks.Lock` owned by ``host:pid``, taken or extended every
tick and, while the loop runs, renewed by a small thread every quarter TTL
(:class:`Renewer`), so a leader that backs off between ticks keeps it with
a short TTL.  A standby takes over within one TTL plus one interval of the
leader going away; a controller restarted on the same host (supervisor
after a ``kill -9``) takes the lock of its dead predecessor at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis

from workers.collect_keys import BrokerKeys
from workers.locks import RELEASE_SCRIPT, Lock, owner_of

logger = logging.getLogger("flowwatch.controller")

LEADER_LOCK = "controller:leader"
# A renewer that misses three quarters of a TTL in a row loses the lock.
RENEWALS_PER_TTL = 4


def leader_ttl(interval: float) -> float:
    """Two intervals: a killed leader is replaced within three (TTL + a standby's tick)."""
    return 2 * interval


def local_owner_dead(owner: str | None) -> bool:
    """``host:pid`` of a process on this host that no longer exists (not ours)."""
    host, sep, pid = (owner or "").rpartition(":")
    if not sep or host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, owned by another user
    return False


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
        self._guard = threading.Lock()  # the loop's claim and the renewer's extend

    def claim(self) -> bool:
        """True when this controller acts this tick."""
        self.memory_stale = False
        with self._guard:
            leads, gained = self._claim_lock()
        if not leads:
            self.stood_by = True
            return False
        self.memory_stale = gained and self._another_may_have_led()
        self.stood_by, self.last_acted = False, time.monotonic()
        return True

    def release(self) -> None:
        with self._guard:
            if self.lock is None or not self.held:
                return
            try:
                self.lock.release()
            except (redis.RedisError, OSError):
                pass  # it expires by itself
            self.held = False

    def renew(self) -> None:
        """Extend a held lock between ticks (the renewer thread); a lost lock is noticed here too."""
        with self._guard:
            if self.lock is None or not self.held:
                return
            try:
                if not self.lock.extend():
                    self.held = False
                    logger.warning("leader lock lost (expired or taken over)")
            except (redis.RedisError, OSError):
                pass  # the broker is away: nobody else can take the lock either

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
        self.held = lock.acquire() or self._take_from_dead_local_holder(lock)
        if self.held:
            logger.info("this controller is now the leader (%s)", lock.owner)
            return True
        self.holder = owner_of(lock.client.get(lock.key))
        return False

    def _take_from_dead_local_holder(self, lock: Lock) -> bool:
        """A predecessor on this host that was killed (its pid is gone) left
        the lock behind: delete it (compare-and-delete) and take it now,
        rather than after its TTL."""
        value = lock.client.get(lock.key)
        if not local_owner_dead(owner_of(value)):
            return False
        if lock.client.eval(RELEASE_SCRIPT, 2, lock.key, lock.keys.lock_index, value):
            logger.warning("took the leader lock of %s: that process no longer exists", owner_of(value))
        return lock.acquire()

    def _another_may_have_led(self) -> bool:
        """Since this controller last acted, it stood by, or its lock could have
        expired and been taken (a lock merely lost with a restarted broker and
        taken back at once was nobody else's)."""
        return (self.stood_by or self.last_acted is None
                or time.monotonic() - self.last_acted > self.ttl)


class Renewer(threading.Thread):
    """Renews the leader lock every quarter TTL while the loop shows signs of life.

    The loop calls :meth:`alive` at every tick; a loop stuck longer than
    ``stuck_after`` (its longest backoff plus a tick) stops the renewals, so
    a hung leader is replaced rather than kept for ever.
    """

    def __init__(self, leadership: Leadership, stuck_after: float) -> None:
        super().__init__(name="fw-leader-renewer", daemon=True)
        self.leadership, self.stuck_after = leadership, stuck_after
        self.stopping = threading.Event()
        self.last_alive = time.monotonic()

    def alive(self) -> None:
        self.last_alive = time.monotonic()

    def run(self) -> None:
        while not self.stopping.wait(self.leadership.ttl / RENEWALS_PER_TTL):
            if time.monotonic() - self.last_alive <= self.stuck_after:
                self.leadership.renew()

    def stop(self) -> None:
        self.stopping.set()
