"""The probe task behind ``manage.py probe_queues``: one per declared queue."""

from __future__ import annotations

import time
from typing import Any

from workers.queues import DEFAULT_QUEUE
from workers.routing import routed_task

MAX_HOLD_SECONDS = 30.0


# Declared on the default queue; probe_queues sends each probe to one queue (queue=...).
@routed_task(DEFAULT_QUEUE, name="workers.probe.probe", bind=True, ignore_result=False, acks_late=False)
def probe(self, queue: str, sent_at: float, hold_seconds: float = 0.0) -> dict[str, Any]:
    """Answer who consumed the probe, from which queue, and when.

    ``hold_seconds`` keeps the worker busy that long first: it lets an
    operator (and the stack test) check that a stop waits for running tasks.
    """
    delivery = self.request.delivery_info or {}
    if hold_seconds > 0:
        time.sleep(min(hold_seconds, MAX_HOLD_SECONDS))
    return {
        "queue": queue,
        "routing_key": delivery.get("routing_key"),
        "worker": self.request.hostname,
        "sent_at": sent_at,
        "received_at": time.time(),
    }


# Fault drills (tests/faults/, docs/recovery.md): a task that holds its worker
# and counts its runs, so "handed back once, run once" can be checked.
DRILL_RUNS_TTL = 3600


def _note(task: Any, token: str, what: str) -> None:
    """Append ``<what> <worker> <time>`` to ``fw:drill:<token>`` in the broker."""
    from workers.collect_keys import BrokerKeys
    from workers.heartbeat import broker_client

    key = BrokerKeys.from_options(task.app.conf.broker_transport_options).fw("drill", token)
    pipe = broker_client().pipeline(transaction=False)
    pipe.rpush(key, f"{what} {task.request.hostname or '?'} {time.time():.3f}")
    pipe.expire(key, DRILL_RUNS_TTL)
    pipe.execute()


def _drill(task: Any, token: str, hold_seconds: float) -> None:
    _note(task, token, "start")
    if hold_seconds > 0:
        time.sleep(min(hold_seconds, MAX_HOLD_SECONDS))
    _note(task, token, "done")


@routed_task(DEFAULT_QUEUE, name="workers.probe.drill", bind=True)
def drill(self, token: str, hold_seconds: float = 0.0) -> None:
    """Note its start and end under ``fw:drill:<token>``, holding its worker
    in between; acknowledged after it ran, like every task."""
    _drill(self, token, hold_seconds)


@routed_task(DEFAULT_QUEUE, name="workers.probe.drill_once", bind=True, repeat_safe=False)
def drill_once(self, token: str, hold_seconds: float = 0.0) -> None:
    """:func:`drill` for a task marked not safe to repeat: parked, not handed back."""
    _drill(self, token, hold_seconds)
