"""Thresholds, statuses and hysteresis: pure functions, no Redis, no database.

The hysteresis rule (docs/metrics.md):

* a status RISES at once, on the first tick a value reaches its threshold;
* it FALLS only when the status computed with every threshold lowered by
  :data:`CLEAR_MARGIN` (10 %) has stayed lower for :data:`CLEAR_TICKS`
  consecutive ticks (default 3, i.e. 15 s at the default interval).

So a queue hovering around 1000 messages warns once and stays warn until it
has been under 900 for three ticks in a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from apps.metrics.models import CRITICAL, DEFAULTS, OK, WARN

LEVEL = {OK: 0, WARN: 1, CRITICAL: 2}
CLEAR_MARGIN = 0.10
CLEAR_TICKS = 3


def worst(*statuses: str) -> str:
    return max(statuses, key=LEVEL.__getitem__, default=OK)


@dataclass(frozen=True)
class Thresholds:
    queue_warn: int = DEFAULTS["queue_warn"]
    queue_critical: int = DEFAULTS["queue_critical"]
    memory_warn_percent: float = DEFAULTS["memory_warn_percent"]
    memory_critical_percent: float = DEFAULTS["memory_critical_percent"]
    evicted_keys_warn_min: int = DEFAULTS["evicted_keys_warn_min"]
    evicted_keys_critical_min: int = DEFAULTS["evicted_keys_critical_min"]
    rejected_connections_critical_min: int = DEFAULTS["rejected_connections_critical_min"]
    queue_overrides: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def from_models(cls, settings: Any, overrides: list[Any]) -> "Thresholds":
        names = [f for f in cls.__dataclass_fields__ if f != "queue_overrides"]
        return cls(**{name: getattr(settings, name) for name in names},
                   queue_overrides={o.queue: (o.warn, o.critical) for o in overrides})

    def for_queue(self, queue: str) -> tuple[int, int]:
        return self.queue_overrides.get(queue, (self.queue_warn, self.queue_critical))

    def as_dict(self) -> dict[str, Any]:
        names = [f for f in self.__dataclass_fields__ if f != "queue_overrides"]
        found: dict[str, Any] = {name: getattr(self, name) for name in names}
        found["queue_overrides"] = {q: {"warn": w, "critical": c} for q, (w, c) in self.queue_overrides.items()}
        return found


def _level(value: float | None, warn: float | None, critical: float | None, scale: float) -> str:
    """ok/warn/critical of one value; thresholds scaled down by ``scale`` to clear."""
    if value is None:
        return OK
    if critical is not None and value >= critical * scale:
        return CRITICAL
    if warn is not None and value >= warn * scale:
        return WARN
    return OK


@dataclass
class QueueFacts:
    depth: int | None
    consumers: int | None  # None: unknown (workers have not beaten since the broker came back)
    stalled_seconds: float | None  # set once the queue counts as stalled


def queue_status(facts: QueueFacts, warn: int, critical: int, scale: float = 1.0) -> tuple[str, list[str]]:
    """Status and reasons of a queue.  ``scale`` < 1 gives the clearing status."""
    if facts.depth is None:
        return OK, ["broker unreachable: depth unknown"]
    reasons: list[str] = []
    status = _level(facts.depth, warn, critical, scale)
    if status == CRITICAL:
        reasons.append(f"depth {facts.depth} >= critical {critical}")
    elif status == WARN:
        reasons.append(f"depth {facts.depth} >= warn {warn}")
    if facts.consumers is None:
        reasons.append("consumers unknown: waiting for worker heartbeats after the broker came back")
    elif facts.consumers == 0:
        # An empty queue nobody consumes is a warning; with work waiting it is critical.
        status = worst(status, CRITICAL if facts.depth > 0 else WARN)
        reasons.append("no consumer")
    if facts.stalled_seconds is not None:
        status = CRITICAL
        reasons.append(f"stalled: {facts.depth} waiting, nothing processed for {facts.stalled_seconds:.0f} s")
    return status, reasons


@dataclass
class ServerFacts:
    reachable: bool
    error: str | None
    memory_percent: float | None
    no_maxmemory: bool
    evicted_keys_delta: int | None
    rejected_connections_delta: int | None
    maxmemory_policy: str | None


def redis_status(facts: ServerFacts, role: str, t: Thresholds, scale: float = 1.0) -> tuple[str, list[str]]:
    """Status and reasons of one role's server."""
    if not facts.reachable:
        return CRITICAL, [facts.error or "unreachable"]
    checks = (
        ("memory", facts.memory_percent, t.memory_warn_percent, t.memory_critical_percent, "%"),
        ("evicted keys", facts.evicted_keys_delta, t.evicted_keys_warn_min, t.evicted_keys_critical_min, ""),
        ("rejected connections", facts.rejected_connections_delta, None, t.rejected_connections_critical_min, ""),
    )
    status, reasons = OK, []
    for label, value, warn, critical, unit in checks:
        level = _level(value, warn, critical, scale)
        if level != OK:
            limit = critical if level == CRITICAL else warn
            shown = f"{value:.1f}{unit}" if unit else f"{value} since the previous sample"
            suffix = " of system memory (no maxmemory)" if label == "memory" and facts.no_maxmemory else ""
            reasons.append(f"{label} {shown}{suffix} >= {level} {limit:g}{unit}")
            status = worst(status, level)
    if role == "broker" and facts.maxmemory_policy not in (None, "noeviction"):
        reasons.append(f"maxmemory-policy {facts.maxmemory_policy} on the broker: evicted keys are lost tasks")
        status = CRITICAL
    return status, reasons


@dataclass
class _Track:
    status: str
    lower_ticks: int = 0


class Hysteresis:
    """Per subject: rises at once, falls after CLEAR_TICKS lower clearing statuses."""

    def __init__(self, clear_ticks: int = CLEAR_TICKS, initial: dict[str, str] | None = None) -> None:
        self.clear_ticks = clear_ticks
        self.tracks: dict[str, _Track] = {s: _Track(v) for s, v in (initial or {}).items()}

    def status(self, subject: str) -> str | None:
        track = self.tracks.get(subject)
        return track.status if track else None

    def update(self, subject: str, rising: str, clearing: str) -> tuple[str, str]:
        """(old, new) status of ``subject``; an unseen subject starts from ok."""
        track = self.tracks.setdefault(subject, _Track(OK))
        old = track.status
        if LEVEL[rising] > LEVEL[old]:
            track.status, track.lower_ticks = rising, 0
        elif LEVEL[clearing] < LEVEL[old]:
            track.lower_ticks += 1
            if track.lower_ticks >= self.clear_ticks:
                # Fall to where the plain thresholds say, never below the clearing view.
                track.status, track.lower_ticks = worst(rising, clearing), 0
        else:
            track.lower_ticks = 0
        return old, track.status

    def clearing_note(self, subject: str) -> str | None:
        track = self.tracks.get(subject)
        if track and track.lower_ticks:
            return f"clearing: lower for {track.lower_ticks}/{self.clear_ticks} ticks"
        return None

    def judge(self, subject: str, status_at: Callable[[float], tuple[str, list[str]]]) -> "Judgement":
        """The status of ``subject`` this tick.

        ``status_at(scale)`` is its status and reasons with every threshold
        scaled by ``scale``: 1 gives the rising status, 1 - CLEAR_MARGIN the
        clearing one.
        """
        rising, reasons = status_at(1.0)
        clearing, _ = status_at(1 - CLEAR_MARGIN)
        old, new = self.update(subject, rising, clearing)
        note = self.clearing_note(subject)
        return Judgement(old, new, reasons, reasons + ([note] if note else []))


@dataclass(frozen=True)
class Judgement:
    old: str
    new: str
    reasons: list[str]  # why, by the plain thresholds
    shown: list[str]  # the reasons and how far clearing got, as the snapshot shows them
