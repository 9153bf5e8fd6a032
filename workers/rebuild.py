"""Cache rebuilders: what the ``stats_cache`` queue runs after a Redis restart.

An app registers a function that refills one of its cache families::

    from workers.rebuild import rebuilder

    @rebuilder("stats")
    def rebuild_stats() -> None: ...

The controller queues a rebuild of every registered cache at once when a
Redis server restarted (its run_id changed), and beat queues one
periodically; both run :func:`run_rebuilders` in a ``stats_cache`` worker.
Registration happens at import, so a rebuilder lives in a module the worker
imports (an app's ``tasks.py`` or its ``AppConfig.ready``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable

logger = logging.getLogger("flowwatch.rebuild")

Rebuilder = Callable[[], object]


@dataclass
class RebuildResult:
    name: str
    ok: bool
    seconds: float
    error: str | None = None


_REGISTRY: dict[str, Rebuilder] = {}


def rebuilder(name: str) -> Callable[[Rebuilder], Rebuilder]:
    """Register ``func`` as the rebuilder called ``name`` (one per name)."""

    def register(func: Rebuilder) -> Rebuilder:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not func:
            raise ValueError(f"cache rebuilder {name!r} is already registered by {existing.__qualname__}")
        _REGISTRY[name] = func
        return func

    return register


def registered() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def run_rebuilders(names: Iterable[str] | None = None) -> list[RebuildResult]:
    """Run the named rebuilders (all when ``names`` is None); one failure does not stop the rest."""
    wanted = list(_REGISTRY) if names is None else [n for n in names if n in _REGISTRY]
    results = []
    for name in wanted:
        started = time.monotonic()
        try:
            _REGISTRY[name]()
        except Exception as exc:  # one broken rebuilder must not starve the others
            logger.exception("cache rebuilder %s failed", name)
            results.append(RebuildResult(name, False, time.monotonic() - started, f"{type(exc).__name__}: {exc}"))
            continue
        results.append(RebuildResult(name, True, time.monotonic() - started))
    return results
