"""Cache rebuilders: what the ``stats_cache`` queue runs after a Redis restart.

The registry API (all of it):

``rebuilder(name)``
    a decorator that registers a function taking no argument as the rebuilder
    called ``name``, e.g.::

        from workers.rebuild import rebuilder

        @rebuilder("docs_index")
        def rebuild_docs_index() -> None: ...

    One function per name: registering another function under a taken name
    raises ``ValueError``; registering the same one again is a no-op (a
    module imported twice).
``unregister(name)``
    removes it (tests).
``run_rebuilders(names=None)``
    runs the named rebuilders (names nobody registered are skipped), all of
    them in registration order when ``names`` is None; one that raises is
    logged and reported, and the others still run.  Returns one
    :class:`RebuildResult` (name, ok, seconds, error) per rebuilder run.

The controller queues ``apps.metrics.tasks.rebuild_caches`` (which calls
:func:`run_rebuilders` and logs each result) at once when a Redis server
restarted (its run_id changed), and beat queues it periodically; it runs in a
``stats_cache`` worker.  Registration happens at import, so a rebuilder must
live in a module every process imports: an app's ``AppConfig.ready()`` (as
``apps.dashboard`` does for ``docs_index``) or its ``tasks.py``.  A rebuilder
should be idempotent and fill its cache from the database (Redis may have
lost everything).
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
