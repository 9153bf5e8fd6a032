"""Worker locks: an owner token and a TTL; only the owner releases (docs/metrics.md, "Locks").

A lock is the key ``fw:lock:<name>`` in the broker Redis whose value is
``<owner>|<token>``.  The owner is, in a worker, ``group@host#<instance>``:
the worker's name (the field of its heartbeat in ``fw:workers``) and the
instance id of this start of it, which the heartbeat carries too (pool
children share it); outside a worker it is ``host:pid``.  The token is
random per acquisition.  Release and extension are Lua scripts that act only
when the value is still exactly ours, so a lock that expired and was taken by
someone else is never released by the late first owner.

:func:`clean_dead_locks` (run by the controller every tick) deletes locks whose
owner is a worker that is not alive: its heartbeat expired or is gone, or the
worker heartbeating under that name is another instance (supervisor
restarted a crashed worker: its locks are dead at once, not after their
TTL).  Owners that never wrote a heartbeat (management commands, the web
process) are left to their TTL.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import redis

from workers.collect_keys import BrokerKeys
from workers.heartbeat import HEARTBEAT_TTL, INSTANCE_SEPARATOR, lock_owner, parse_heartbeats

SEPARATOR = "|"

# Compare-and-act scripts: the owner check and the action must be one atomic
# step, or a lock taken over in between would be lost.  Acquire and release
# also keep the index set fw:locks, so the cleaner never has to SCAN the
# broker's keyspace.  KEYS[1] = lock key, KEYS[2] = index; ARGV[1] = value.
_ACQUIRE = ("if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then "
            "redis.call('sadd', KEYS[2], KEYS[1]) return 1 end return 0")
_RELEASE = ("if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('srem', KEYS[2], KEYS[1]) "
            "return redis.call('del', KEYS[1]) end return 0")
# For holders that prove a lock's owner dead by other means (the leader lock).
RELEASE_SCRIPT = _RELEASE
_EXTEND = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
           "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0")


def default_owner() -> str:
    return lock_owner() or f"{socket.gethostname()}:{os.getpid()}"


class LockNotOwned(RuntimeError):
    """Extending or releasing a lock this holder no longer owns."""


@dataclass
class Lock:
    """``with Lock(client, keys, "tenant:42", ttl=60): ...`` or acquire()/release()."""

    client: redis.Redis
    keys: BrokerKeys
    name: str
    ttl: float
    owner: str = field(default_factory=default_owner)
    token: str = field(default_factory=lambda: secrets.token_hex(8))

    @property
    def key(self) -> str:
        return self.keys.lock(self.name)

    @property
    def value(self) -> str:
        return f"{self.owner}{SEPARATOR}{self.token}"

    def acquire(self) -> bool:
        return bool(self.client.eval(_ACQUIRE, 2, self.key, self.keys.lock_index, self.value, int(self.ttl * 1000)))

    def extend(self) -> bool:
        return bool(self.client.eval(_EXTEND, 1, self.key, self.value, int(self.ttl * 1000)))

    def release(self) -> bool:
        """True when this holder still owned the lock and deleted it."""
        return bool(self.client.eval(_RELEASE, 2, self.key, self.keys.lock_index, self.value))

    def __enter__(self) -> "Lock":
        if not self.acquire():
            raise LockNotOwned(f"lock {self.name!r} is held by someone else")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def owner_of(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    owner, sep, _token = text.rpartition(SEPARATOR)
    return owner if sep else None


def read_heartbeats(client: redis.Redis, keys: BrokerKeys) -> dict[str, dict[str, Any]]:
    """The readable heartbeats of ``fw:workers`` by worker name (malformed entries left out)."""
    return parse_heartbeats(client.hgetall(keys.workers))[0]


def owner_alive(owner: str, heartbeats: Mapping[str, Mapping[str, Any]], now: float) -> bool | None:
    """Whether a worker owner is alive; None for owners that are not workers.

    ``group@host#<instance>`` is alive while the heartbeat of ``group@host``
    is fresh AND carries that instance.  A bare ``group@host`` (an owner
    without an instance id) is alive while that name's heartbeat is fresh.
    """
    name, sep, instance = owner.rpartition(INSTANCE_SEPARATOR)
    if not sep:
        name, instance = owner, None
    if "@" not in name:
        return None  # host:pid of a command or the web process: left to its TTL
    beat = heartbeats.get(name)
    if beat is None or now - float(beat["ts"]) > HEARTBEAT_TTL:
        return False
    return instance is None or beat.get("instance") == instance


def clean_dead_locks(client: redis.Redis, keys: BrokerKeys,
                     heartbeats: Mapping[str, Mapping[str, Any]] | None = None,
                     now: float | None = None) -> list[str]:
    """Delete locks of workers that are not alive; returns the lock names deleted.

    ``heartbeats`` are the parsed payloads of ``fw:workers`` by name (the
    controller passes the ones its collection just read); without them they
    are read here.  Two round trips however many keys the broker holds: the
    lock index and the lock values; then one compare-and-delete per dead lock.
    """
    now = now or time.time()
    if heartbeats is None:
        heartbeats = read_heartbeats(client, keys)
    lock_keys = sorted(client.smembers(keys.lock_index))
    if not lock_keys:
        return []
    values = client.mget(lock_keys)
    prefix_len = len(keys.lock(""))
    deleted, expired = [], []
    for key, value in zip(lock_keys, values):
        owner = owner_of(value)
        if value is None:
            expired.append(key)  # gone by its TTL: only the index entry is left
        elif owner is not None and owner_alive(owner, heartbeats, now) is False:
            # Compare-and-delete: a lock re-taken since the MGET stays.
            if client.eval(_RELEASE, 2, key, keys.lock_index, value):
                deleted.append(key.decode()[prefix_len:])
    if expired:
        client.srem(keys.lock_index, *expired)
    return deleted
