"""Key names in the broker Redis: kombu's queues and Flowwatch's own ``fw:`` keys.

kombu's Redis transport spells a queue with priorities as several lists (the
bare name for the first step, then ``name + sep + step``) and keeps unacked
messages in a hash plus a sorted index.  All of it can be renamed through the
broker transport options (``priority_steps``, ``sep``, ``unacked_key``,
``unacked_index_key``, ``global_keyprefix``).  :class:`BrokerKeys` reads the
defaults from kombu's own ``Channel`` class and names the keys with kombu's
own ``_q_for_pri``, so a kombu upgrade that changes a default changes the
reader with it.

Flowwatch's keys (heartbeats, processed counters, locks incl. the leader lock) live
in the broker database too, behind the same ``global_keyprefix`` so that two
installations sharing one database stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from kombu.transport.redis import Channel as _KombuChannel

FW_PREFIX = "fw:"


class _KombuNamer:
    """Borrows kombu's naming methods without opening a connection."""

    priority = _KombuChannel.priority
    _q_for_pri = _KombuChannel._q_for_pri

    def __init__(self, priority_steps: list[int], sep: str) -> None:
        self.priority_steps = priority_steps
        self.sep = sep


@dataclass(frozen=True)
class BrokerKeys:
    """Every broker key name the readers and writers use."""

    priority_steps: tuple[int, ...]
    sep: str
    prefix: str  # kombu's global_keyprefix, '' by default
    unacked: str
    unacked_index: str

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None) -> "BrokerKeys":
        """The names for these broker transport options (kombu's defaults otherwise)."""
        options = options or {}
        return cls(
            priority_steps=tuple(options.get("priority_steps", _KombuChannel.priority_steps)),
            sep=options.get("sep", _KombuChannel.sep),
            prefix=options.get("global_keyprefix", _KombuChannel.global_keyprefix) or "",
            unacked=options.get("unacked_key", _KombuChannel.unacked_key),
            unacked_index=options.get("unacked_index_key", _KombuChannel.unacked_index_key),
        )

    def sub_queues(self, queue: str) -> list[str]:
        """The Redis lists of one queue, one per priority step, as kombu names them."""
        namer = _KombuNamer(list(self.priority_steps), self.sep)
        names = [namer._q_for_pri(queue, step) for step in self.priority_steps]
        # Steps that fold into the same list (e.g. [0, 0, 3]) must count once.
        return [self.prefix + name for name in dict.fromkeys(names)]

    def sub_queue_for(self, queue: str, priority: int) -> str:
        """The list kombu puts a message of this priority in (as its _put and restore do)."""
        namer = _KombuNamer(list(self.priority_steps), self.sep)
        return self.prefix + namer._q_for_pri(queue, priority)

    @property
    def unacked_key(self) -> str:
        return self.prefix + self.unacked

    @property
    def unacked_index_key(self) -> str:
        return self.prefix + self.unacked_index

    def fw(self, *parts: object) -> str:
        """A Flowwatch key in the broker database, e.g. ``fw:workers``."""
        return self.prefix + FW_PREFIX + ":".join(map(str, parts))

    # The keys the workers write and the controller reads.
    @property
    def workers(self) -> str:
        return self.fw("workers")

    def processed_minute(self, minute: int) -> str:
        return self.fw("processed", minute)

    @property
    def processed_total(self) -> str:
        return self.fw("processed", "total")

    def lock(self, name: str) -> str:
        return self.fw("lock", name)

    @property
    def lock_index(self) -> str:
        """A set of every lock key currently taken (kept by the lock scripts)."""
        return self.fw("locks")

