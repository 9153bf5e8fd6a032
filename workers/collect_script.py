"""The per-list reads of a collection as one Lua script in the broker (docs/metrics.md, "One tick").

For every priority sub-queue the script answers its length and, when it is
not empty, the ``fw_sent_at`` header of its oldest message (``LINDEX key
-1``), decoded by the server's own cjson.  The client then receives two
small values per list instead of the oldest message itself, and parses no
JSON: at 200 queues that is most of a collection's time.

The script is sent as ``EVALSHA`` inside the collection's one pipeline.  The
broker forgets scripts when it restarts (or on ``SCRIPT FLUSH``): its
``NOSCRIPT`` answer makes :class:`ListReads` load the script once and read
again.  A broker that refuses scripts altogether (a managed Redis, an ACL,
``rename-command EVALSHA ""``) is read with one ``LLEN`` and one ``LINDEX``
per list instead, with a warning; the refusal is tried again after
:data:`RETRY_REFUSED_AFTER` seconds, so an operator who enables scripting
needs no restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Any, Sequence

import redis

logger = logging.getLogger("flowwatch.collect")

# KEYS: the sub-queues, queue after queue; ARGV[1]: the header name;
# ARGV[2]: sub-queues per queue.  Answers a flat list: per queue, the length
# of each sub-queue, then the oldest sent-at over its non-empty sub-queues as
# a string (a Lua number would reach the client truncated to an integer) or
# nil.  pcall: a key of the wrong type, or a message that is not JSON,
# spoils its own entry only, as the pipelined reads do.
SCRIPT = """
local header = ARGV[1]
local per_queue = tonumber(ARGV[2])
local out = {}
local o = 0
for first = 1, #KEYS, per_queue do
  local oldest = nil
  for key_index = first, first + per_queue - 1 do
    local key = KEYS[key_index]
    local n = redis.pcall('LLEN', key)
    if type(n) ~= 'number' then n = 0 end
    o = o + 1
    out[o] = n
    if n > 0 then
      local ok, message = pcall(cjson.decode, redis.call('LINDEX', key, -1))
      if ok and type(message) == 'table' and type(message.headers) == 'table' then
        local value = tonumber(message.headers[header])
        if value and (oldest == nil or value < oldest) then oldest = value end
      end
    end
  end
  o = o + 1
  out[o] = oldest and string.format('%.6f', oldest) or false
end
return out
"""
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
RETRY_REFUSED_AFTER = 600.0

# Per queue: the length of each of its sub-queues, and the oldest sent time over them.
Reads = list[tuple[list[int], float | None]]


def sent_at(raw: Any, header: str) -> float | None:
    """The ``header`` of a raw kombu message, or None (the reads without a script)."""
    if not isinstance(raw, (bytes, str)):
        return None
    try:
        value = json.loads(raw).get("headers", {}).get(header)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


def is_noscript(reply: Any) -> bool:
    return isinstance(reply, redis.exceptions.NoScriptError) or (
        isinstance(reply, redis.ResponseError) and str(reply).startswith("NOSCRIPT"))


class ListReads:
    """Adds the per-list reads to a pipeline and reads their answers back.

    One instance per broker client: it remembers whether that broker refused
    scripts.  Thread-safe: the controller reads from one thread, tests and
    benchmarks from others.
    """

    def __init__(self, header: str) -> None:
        self.header = header
        self._refused_at: float | None = None
        self._lock = threading.Lock()

    @property
    def scripted(self) -> bool:
        with self._lock:
            if self._refused_at is not None and time.monotonic() - self._refused_at > RETRY_REFUSED_AFTER:
                self._refused_at = None
            return self._refused_at is None

    def queue(self, pipe: redis.client.Pipeline, lists: Sequence[str], per_queue: int, scripted: bool) -> int:
        """Add the reads of ``lists`` (``per_queue`` sub-queues per queue); answers how many replies they take."""
        if scripted:
            pipe.execute_command("EVALSHA", SHA, len(lists), *lists, self.header, per_queue)
            return 1
        for key in lists:
            pipe.llen(key)
        for key in lists:
            pipe.lindex(key, -1)
        return 2 * len(lists)

    def parse(self, replies: Sequence[Any], lists: Sequence[str], per_queue: int, scripted: bool) -> Reads:
        if scripted:  # per queue: an integer length per sub-queue, then a string or nil
            flat, stride = replies[0], per_queue + 1
            return [(flat[i:i + per_queue], float(flat[i + per_queue]) if flat[i + per_queue] is not None else None)
                    for i in range(0, len(flat), stride)]
        count = len(lists)
        lengths = [r if isinstance(r, int) else 0 for r in replies[:count]]
        stamps = [sent_at(raw, self.header) if n else None for raw, n in zip(replies[count:], lengths)]
        return [(lengths[i:i + per_queue], min((t for t in stamps[i:i + per_queue] if t is not None), default=None))
                for i in range(0, count, per_queue)]

    def load(self, client: redis.Redis) -> bool:
        """Load the script after NOSCRIPT; False (and scripts refused) when the broker will not."""
        try:
            client.script_load(SCRIPT)
            return True
        except redis.ResponseError as exc:
            self.refuse(exc)
            return False

    def refuse(self, reason: BaseException) -> None:
        with self._lock:
            already, self._refused_at = self._refused_at is not None, time.monotonic()
        if not already:
            logger.warning("the broker refuses Lua scripts (%s): reading each queue with LLEN and LINDEX "
                           "instead, which costs more per tick; trying the script again in %.0f s",
                           str(reason)[:120], RETRY_REFUSED_AFTER)
