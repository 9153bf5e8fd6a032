"""Send a probe through every declared queue and time the answers."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from workers.probe import probe
from workers.queues import QUEUE_NAMES

POLL_SECONDS = 0.02


@dataclass
class ProbeResult:
    queue: str
    ok: bool
    worker: str | None = None
    round_trip_ms: float | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def probe_all(timeout: float, queues: tuple[str, ...] = QUEUE_NAMES) -> list[ProbeResult]:
    """Probe every queue at once; a queue without an answer in time fails.

    A probe carries ``expires`` so that a worker arriving later drops it
    instead of answering into nothing.
    """
    started = time.monotonic()
    pending = {}
    for queue in queues:
        sent = time.monotonic()
        pending[queue] = (probe.apply_async(args=(queue, time.time()), queue=queue, expires=timeout), sent)
    results: dict[str, ProbeResult] = {}
    while pending and time.monotonic() - started < timeout:
        for queue, (async_result, sent) in list(pending.items()):
            if async_result.ready():
                results[queue] = _answer(queue, async_result, sent)
                del pending[queue]
        if pending:
            time.sleep(POLL_SECONDS)
    for queue, (async_result, _sent) in pending.items():
        async_result.forget()
        results[queue] = ProbeResult(queue, ok=False, error=f"no consumer answered within {timeout:g}s")
    return [results[queue] for queue in queues]


def _answer(queue: str, async_result, sent: float) -> ProbeResult:
    elapsed_ms = round((time.monotonic() - sent) * 1000, 1)
    if not async_result.successful():
        return ProbeResult(queue, ok=False, round_trip_ms=elapsed_ms, error=str(async_result.result))
    answer = async_result.get(disable_sync_subtasks=False)
    if answer.get("routing_key") not in (None, queue):
        return ProbeResult(queue, ok=False, worker=answer.get("worker"), round_trip_ms=elapsed_ms,
                           error=f"answered from queue {answer.get('routing_key')!r}")
    return ProbeResult(queue, ok=True, worker=answer.get("worker"), round_trip_ms=elapsed_ms)
