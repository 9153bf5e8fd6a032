"""Work held by a dead worker goes back to its queue in seconds, not after
the visibility timeout.

kombu's Redis transport keeps every message a worker took and has not
acknowledged in the ``unacked`` hash (delivery tag -> ``[payload, exchange,
routing_key]``) and its delivery time in the ``unacked_index`` sorted set;
only the visibility timeout (an hour here) brings a message back when the
worker's *main* process dies.  So each worker publishes the delivery tags it
holds (:func:`write_holdings`, every :data:`HOLD_INTERVAL` from its
heartbeat thread) under a key that expires :data:`HOLD_TTL` after its last
beat; the controller calls :func:`find_orphans` and :func:`settle` every
tick:

* an unacked message taken more than :data:`HOLD_TTL` ago that no live
  worker lists is an orphan;
* a task marked not safe to repeat (header :data:`REPEAT_UNSAFE_HEADER`,
  stamped at send by ``routed_task(..., repeat_safe=False)``), or one that was
  handed back before (a task that kills its worker must not kill them all),
  is *parked* in ``fw:parked`` and reported instead;
* every other orphan goes back to the front of its queue at its original
  priority, marked redelivered, exactly as kombu's own restore does.

Both moves are one Lua script that first deletes the tag from ``unacked``:
a message acknowledged meanwhile, or settled by another controller, is left
alone, so nothing is handed back twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Iterable

import redis

from workers.collect_keys import BrokerKeys
from workers.queues import QUEUE_NAMES

HOLD_INTERVAL = 1.0
# Four beats: a worker's holdings outlive a slow beat or two.
HOLD_TTL = 4.0
# Parked messages stay this long for an operator to look at.
PARKED_TTL = 7 * 24 * 3600
REPEAT_UNSAFE_HEADER = "fw_repeat_unsafe"
HANDED_BACK_HEADER = "fw_handed_back"
# How many orphans one tick settles: a flood is worked off over ticks.
SETTLE_LIMIT = 500

HANDED_BACK, PARKED = "handed_back", "parked"

# KEYS: unacked, unacked_index, target; ARGV: tag, new value, push (1) or park (0).
# HDEL first: a tag acknowledged or settled meanwhile returns 0 and nothing moves.
_SETTLE = """
if redis.call('hdel', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('zrem', KEYS[2], ARGV[1])
if ARGV[3] == '1' then
  redis.call('rpush', KEYS[3], ARGV[2])
else
  redis.call('hset', KEYS[3], ARGV[1], ARGV[2])
  redis.call('expire', KEYS[3], tonumber(ARGV[4]))
end
return 1
"""


@dataclass(frozen=True)
class Orphan:
    tag: str
    delivered_at: float
    payload: dict[str, Any]
    exchange: str
    routing_key: str

    @property
    def headers(self) -> dict[str, Any]:
        headers = self.payload.get("headers")
        return headers if isinstance(headers, dict) else {}

    @property
    def queue(self) -> str | None:
        """The declared queue it came from: each queue has its own exchange and routing key."""
        return self.routing_key if self.routing_key in QUEUE_NAMES else None

    @property
    def priority(self) -> int:
        try:
            return max(0, min(int(self.payload["properties"]["priority"]), 255))
        except (KeyError, TypeError, ValueError):
            return 0

    def describe(self) -> dict[str, Any]:
        return {"tag": self.tag, "task": self.headers.get("task"), "task_id": self.headers.get("id"),
                "queue": self.queue, "priority": self.priority,
                "held_seconds": round(time.time() - self.delivered_at, 1)}


@dataclass(frozen=True)
class Settled:
    orphan: Orphan
    action: str  # HANDED_BACK or PARKED
    reason: str


# -- the worker's side ---------------------------------------------------------------
def holdings_key(keys: BrokerKeys, owner: str) -> str:
    return keys.fw("held", owner)


def write_holdings(client: redis.Redis, keys: BrokerKeys, owner: str, tags: Iterable[str]) -> None:
    """One round trip: this worker's tags, alive for HOLD_TTL, and its entry in the index."""
    pipe = client.pipeline(transaction=False)
    pipe.set(holdings_key(keys, owner), json.dumps(sorted(tags)), px=int(HOLD_TTL * 1000))
    pipe.sadd(keys.fw("held"), owner)
    pipe.execute()


def remove_holdings(client: redis.Redis, keys: BrokerKeys, owner: str) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.delete(holdings_key(keys, owner))
    pipe.srem(keys.fw("held"), owner)
    pipe.execute()


# -- the controller's side -----------------------------------------------------------
def live_tags(client: redis.Redis, keys: BrokerKeys) -> set[str]:
    """Every tag some live worker holds; index entries of expired holdings are pruned."""
    owners = sorted(o.decode() if isinstance(o, bytes) else o for o in client.smembers(keys.fw("held")))
    if not owners:
        return set()
    values = client.mget([holdings_key(keys, owner) for owner in owners])
    tags: set[str] = set()
    gone = []
    for owner, raw in zip(owners, values):
        if raw is None:
            gone.append(owner)
            continue
        try:
            tags.update(str(tag) for tag in json.loads(raw))
        except (ValueError, TypeError):
            continue  # unreadable holdings: its tags are unknown, so none is an orphan by it
    if gone:
        client.srem(keys.fw("held"), *gone)
    return tags


def find_orphans(client: redis.Redis, keys: BrokerKeys, now: float | None = None,
                 limit: int = SETTLE_LIMIT) -> list[Orphan]:
    """Unacked messages taken over HOLD_TTL ago that no live worker holds."""
    now = time.time() if now is None else now
    taken = client.zrange(keys.unacked_index_key, 0, now - HOLD_TTL, byscore=True, withscores=True,
                          offset=0, num=limit * 4)
    if not taken:
        return []
    live = live_tags(client, keys)
    candidates = [(t.decode() if isinstance(t, bytes) else t, score) for t, score in taken]
    candidates = [(tag, score) for tag, score in candidates if tag not in live][:limit]
    if not candidates:
        return []
    raws = client.hmget(keys.unacked_key, [tag for tag, _ in candidates])
    return [orphan for (tag, score), raw in zip(candidates, raws)
            if raw is not None and (orphan := _parse(tag, score, raw)) is not None]


def _parse(tag: str, score: float, raw: bytes) -> Orphan | None:
    try:
        payload, exchange, routing_key = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(payload, dict):
        return None
    return Orphan(tag, float(score), payload, str(exchange or ""), str(routing_key or ""))


def verdict(orphan: Orphan) -> tuple[str, str]:
    """(action, reason) for one orphan."""
    if orphan.headers.get(REPEAT_UNSAFE_HEADER):
        return PARKED, "the task is marked not safe to repeat"
    if orphan.headers.get(HANDED_BACK_HEADER):
        return PARKED, "it was handed back once already and its worker died again"
    if orphan.queue is None:
        return PARKED, f"routing key {orphan.routing_key!r} is not a declared queue"
    return HANDED_BACK, "its worker's heartbeat is gone"


def settle(client: redis.Redis, keys: BrokerKeys, orphans: Iterable[Orphan]) -> list[Settled]:
    """Hand back or park each orphan; those acknowledged meanwhile are skipped."""
    done = []
    for orphan in orphans:
        action, reason = verdict(orphan)
        if _move(client, keys, orphan, action):
            done.append(Settled(orphan, action, reason))
    return done


def _move(client: redis.Redis, keys: BrokerKeys, orphan: Orphan, action: str) -> bool:
    if action == PARKED:
        raw = json.dumps([orphan.payload, orphan.exchange, orphan.routing_key])
        return bool(client.eval(_SETTLE, 3, keys.unacked_key, keys.unacked_index_key, keys.fw("parked"),
                                orphan.tag, raw, "0", PARKED_TTL))
    payload = redelivered(orphan.payload)
    target = keys.sub_queue_for(orphan.queue or "", orphan.priority)
    return bool(client.eval(_SETTLE, 3, keys.unacked_key, keys.unacked_index_key, target,
                            orphan.tag, json.dumps(payload), "1", 0))


def redelivered(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as kombu restores it (redelivered), marked as handed back once."""
    copy = json.loads(json.dumps(payload))
    headers = copy.setdefault("headers", {})
    headers["redelivered"] = True
    headers[HANDED_BACK_HEADER] = 1
    delivery = copy.get("properties", {}).get("delivery_info")
    if isinstance(delivery, dict):
        delivery["redelivered"] = True
    return copy
